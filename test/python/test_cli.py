import os
import signal
import socket
import subprocess
import sys
import time

import requests

from conftest import HERE, free_port, start


def run_cli(*args, timeout=20):
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    return subprocess.run([sys.executable, "-m", "fapws", *args], env=env, capture_output=True,
                          timeout=timeout, cwd=HERE)


def test_help_lists_options_with_defaults():
    r = run_cli("--help")
    assert r.returncode == 0
    for opt in ("--bind", "--static", "--access-log", "--log-level", "--limit-header", "--limit-body",
                "--timeout-header", "--timeout-keepalive", "--timeout-io", "--chdir"):
        assert opt in r.stdout.decode()
    assert "65536" in r.stdout.decode()


def one_line_exit_2(*args):
    r = run_cli(*args)
    err = r.stderr.decode().strip()
    assert r.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("fapws: error:")
    assert "Traceback" not in err
    return err


def test_bad_arguments():
    assert "no such module" in one_line_exit_2("--bind", "127.0.0.1:0", "nosuchmodule:app")
    assert "no attribute" in one_line_exit_2("--bind", "127.0.0.1:0", "wsgiapps:nope")
    assert "not callable" in one_line_exit_2("--bind", "127.0.0.1:0", "wsgiapps:CLOSED")
    assert "invalid port" in one_line_exit_2("--bind", "127.0.0.1:x", "wsgiapps:environ_app")
    one_line_exit_2("--timeout-io", "abc", "wsgiapps:environ_app")
    one_line_exit_2("--no-such-flag")
    one_line_exit_2("--bind", "127.0.0.1:0", "--static", "/s=/no/such/dir", "wsgiapps:environ_app")


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        err = one_line_exit_2("--bind", f"127.0.0.1:{s.getsockname()[1]}", "wsgiapps:environ_app")
        assert "in use" in err


def test_import_error_in_app_shows_its_traceback_then_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("import os\n\ndef f():\n    raise RuntimeError('broken at import')\n\nf()\n")
    r = run_cli("--chdir", str(tmp_path), "--bind", "127.0.0.1:0", "broken:app")
    err = r.stderr.decode()
    assert r.returncode == 2
    assert 'broken.py", line 4, in f' in err  # file and line: something a developer can act on
    assert err.rstrip().splitlines()[-1].startswith("fapws: error: importing 'broken' failed")


def test_a_failing_request_is_logged_with_pid_method_and_path(serve):
    srv = serve("wsgiapps:results_app")
    import requests

    assert requests.get(srv.url + "/raise?x=1", timeout=5).status_code == 500
    srv.stop()
    err = srv.proc.stderr.read().decode()
    line = next(l for l in err.splitlines() if "failed" in l and "GET /raise?x=1" in l)
    assert f"[{srv.proc.pid}]" in line


def test_python_m_and_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    p = subprocess.Popen([sys.executable, "-m", "fapws", "--bind", "unix:" + path, "wsgiapps:environ_app"],
                         env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.02)
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        c.sendall(b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b'"PATH_INFO": "/u"' in data
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert not os.path.exists(path)


def test_access_log(tmp_path, serve):
    log = tmp_path / "access.log"
    s = serve("wsgiapps:environ_app", "--access-log", str(log), "--access-log-format", "combined")
    requests.get(s.url + "/logged?q=1", headers={"User-Agent": "tester", "Referer": "http://r/"})
    s.stop()
    line = log.read_text()
    assert '"GET /logged?q=1 HTTP/1.1" 200' in line and '"http://r/" "tester"' in line
    assert line.startswith("127.0.0.1 - - [")


def test_settings_from_a_config_file_the_environment_and_the_command_line(tmp_path, serve):
    import requests

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p = port.getsockname()[1]
    port.close()
    conf = tmp_path / "fapws.conf.py"
    conf.write_text(f"bind = ['127.0.0.1:{p}']\nworkers = 2\napp = 'wsgiapps:pid_app'\ntimeout_keepalive = 5\n")
    # The file gives the bind, the app and two workers; FAPWS_CMD_ARGS the
    # log level; the command line's --workers 1 wins over the file.
    env = {"FAPWS_CMD_ARGS": "--log-level error", "FAPWS_TIMEOUT_KEEPALIVE": "7"}
    e = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"), **env)
    proc = subprocess.Popen([sys.executable, "-m", "fapws", "-c", str(conf), "--workers", "1"], env=e,
                            stderr=subprocess.PIPE)
    try:
        from conftest import wait_listening

        wait_listening(p, proc)
        pid, mode = requests.get(f"http://127.0.0.1:{p}/", timeout=5).text.split()
        assert int(pid) != proc.pid  # a supervised worker: --workers from the command line
        assert mode == "sp"          # one worker (the file's 2 lost to the command line's 1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert b"[info]" not in proc.stderr.read()  # FAPWS_CMD_ARGS's --log-level error


def test_a_bad_config_file_is_one_line(tmp_path):
    conf = tmp_path / "bad.py"
    conf.write_text("no_such_setting = 1\n")
    r = run_cli("-c", str(conf), "x:y")
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and "no_such_setting" in r.stderr.decode()


def test_access_log_with_gunicorn_atoms_and_duration(tmp_path, serve):
    log = tmp_path / "access.log"
    s = serve("wsgiapps:results_app", "--access-log", str(log), "--access-log-format",
              '%(h)s "%(r)s" %(s)s %(b)s %(D)s %(L)s %({x-request-id}i)s %(p)s')
    requests.get(s.url + "/slow?0.05", headers={"X-Request-Id": "abc-1"})
    s.stop()
    line = log.read_text().strip()
    host, rest = line.split(" ", 1)
    assert host == "127.0.0.1"
    assert '"GET /slow?0.05 HTTP/1.1" 200 4 ' in rest
    us, secs, rid, pid = rest.rsplit(" ", 4)[1:]
    assert int(us) >= 50_000 and 0.05 <= float(secs) < 5  # the handler slept 50 ms
    assert rid == "abc-1" and int(pid) == s.proc.pid


def test_an_unknown_access_log_atom_is_one_line(tmp_path):
    r = run_cli("--access-log", str(tmp_path / "a.log"), "--access-log-format", "%(zz)s", "--bind", "127.0.0.1:0",
                "wsgiapps:environ_app")
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and "zz" in r.stderr.decode()


def test_readme_settings_table_is_the_parsers():
    """README's "All settings" table is generated from build_parser() (./dev
    docs): every flag, its environment variable, config-file key and default."""
    import re

    from conftest import HERE
    from fapws.cli import settings_table

    with open(os.path.join(HERE, "..", "..", "README.md"), encoding="utf-8") as f:
        block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", f.read(), re.S).group(1)
    assert block.strip() == settings_table().strip(), "README is stale: run ./dev docs"
    table = settings_table()
    assert "`--timeout-keepalive S` | `timeout_keepalive`, `FAPWS_TIMEOUT_KEEPALIVE` | `75.0`" in table
    assert "`--log-config FILE`" in table
