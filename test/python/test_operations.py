"""Operations (issue 12): the supervisor's signals, reload, watchdog,
recycling, systemd, privileges and sockets, driven through the real CLI."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import HERE, free_port, wait_listening
from test_workers import _alive, _children

APP = '''
import os, time
VERSION = {version}

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stuck":
        while True:
            pass
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or 1))
    if path == "/grow":
        _HOARD.append(b"x" * (8 << 20))
    if path == "/boom":
        raise RuntimeError("boom in the view")
    body = b"v%d %d" % (VERSION, os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

_HOARD = []

def make_app():
    return app
'''


def write_app(directory, version):
    path = directory / "opsapp.py"
    path.write_text(APP.format(version=version))
    # A new mtime even within the same second, for --reload's poll.
    t = time.time() + version
    os.utime(path, (t, t))
    for cached in (directory / "__pycache__").glob("opsapp*") if (directory / "__pycache__").exists() else []:
        cached.unlink()


class Cli:
    def __init__(self, args, directory, env=None, port=None):
        self.port = port or free_port()
        cmd = [sys.executable, "-m", "fapws", "--bind", f"127.0.0.1:{self.port}", "--log-level", "info",
               "--chdir", str(directory)] + list(args)
        e = dict(os.environ, PYTHONUNBUFFERED="1")
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_listening(self.port, self.proc)

    def get(self, path="/", timeout=5):
        return requests.get(self.url + path, timeout=timeout)

    def workers(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = _children(self.proc.pid)
            if len(kids) == n:
                return kids
            time.sleep(0.05)
        return _children(self.proc.pid)

    def stop(self):
        kids = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
        return self.proc.stderr.read().decode()


@pytest.fixture
def cli(tmp_path):
    started = []

    def start(*args, version=1, **kw):
        write_app(tmp_path, version)
        c = Cli(args, tmp_path, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


class Load:
    """Requests in a loop on 4 threads, half on keep-alive sessions, half on
    fresh connections; counts failures and remembers the answers."""

    def __init__(self, url):
        self.url, self.failures, self.answers = url, [], []
        self.running = True
        self.threads = [threading.Thread(target=self.run, args=(i % 2 == 0,)) for i in range(4)]
        for t in self.threads:
            t.start()

    def run(self, keep):
        session = requests.Session() if keep else requests
        while self.running:
            try:
                r = session.get(self.url + "/", timeout=10)
                if r.status_code != 200:
                    self.failures.append(r.status_code)
                self.answers.append(r.text)
            except requests.RequestException as e:
                self.failures.append(repr(e))
            time.sleep(0.002)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(15)


def _quietly(url):
    """A request whose worker is killed under it: its error is expected."""
    try:
        requests.get(url, timeout=10)
    except requests.RequestException:
        pass


def test_supervisor_only_flags_need_workers(tmp_path):
    for flag in (["--timeout", "5"], ["--max-requests", "10"], ["--max-rss", "100"], ["--preload"]):
        r = subprocess.run([sys.executable, "-m", "fapws", *flag, "x:app"], capture_output=True, text=True)
        assert r.returncode == 2, flag
        assert r.stderr.count("\n") == 1 and "needs --workers" in r.stderr


def test_sighup_reloads_new_code_with_zero_failed_requests(cli, tmp_path):
    c = cli("--workers", "2", "opsapp:app")
    old = c.workers(2)
    assert c.get().text.startswith("v1 ")
    load = Load(c.url)
    time.sleep(0.5)
    write_app(tmp_path, 2)
    c.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not c.get().text.startswith("v2 "):
        time.sleep(0.05)
    time.sleep(1.0)
    load.stop()
    assert load.failures == []
    assert len(load.answers) > 200
    assert load.answers[-1].startswith("v2 ")
    new = c.workers(2)
    assert len(new) == 2 and not (new & old)  # the old workers drained and left


def test_sigterm_with_a_stuck_worker_ends_within_the_graceful_timeout(cli):
    c = cli("--workers", "1", "--graceful-timeout", "1", "opsapp:app")
    kids = c.workers(1)
    threading.Thread(target=_quietly, args=(c.url + "/stuck",), daemon=True).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    c.proc.wait(10)
    assert time.monotonic() - t0 < 1 + 1
    time.sleep(0.1)
    assert not any(_alive(k) for k in kids)


def test_the_watchdog_kills_a_stuck_worker_and_a_fresh_one_serves(cli):
    c = cli("--workers", "1", "--timeout", "1", "opsapp:app")
    (stuck,) = c.workers(1)
    threading.Thread(target=_quietly, args=(c.url + "/stuck?why",), daemon=True).start()
    t0 = time.monotonic()
    while _alive(stuck) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not _alive(stuck)
    assert time.monotonic() - t0 < 3
    r = c.get()
    assert r.status_code == 200 and int(r.text.split()[1]) != stuck
    err = c.stop()
    assert f"worker {stuck} timed out" in err and "GET /stuck?why" in err


def test_max_requests_recycles_workers_without_a_failed_request(cli):
    c = cli("--workers", "2", "--max-requests", "50", "--max-requests-jitter", "10", "opsapp:app")
    first = c.workers(2)
    load = Load(c.url)
    time.sleep(2.0)
    load.stop()
    assert load.failures == []
    pids = {int(a.split()[1]) for a in load.answers}
    assert len(load.answers) > 150
    assert len(pids) >= 4  # recycled at least twice
    assert len(c.workers(2)) == 2
    assert not first <= c.workers(2)


def test_max_rss_recycles_a_leaking_worker(cli):
    c = cli("--workers", "1", "--max-rss", "80", "opsapp:app")
    (first,) = c.workers(1)
    with requests.Session() as s:
        for _ in range(12):  # 96 MB of leak
            assert s.get(c.url + "/grow", timeout=5).status_code == 200
    deadline = time.monotonic() + 5
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(first)
    assert c.get().status_code == 200
    assert "RSS" in c.stop()


def test_sigttin_and_sigttou_change_the_worker_count(cli):
    c = cli("--workers", "2", "opsapp:app")
    assert len(c.workers(2)) == 2
    c.proc.send_signal(signal.SIGTTIN)
    assert len(c.workers(3)) == 3
    # One at a time: two identical signals pending together arrive as one.
    c.proc.send_signal(signal.SIGTTOU)
    assert len(c.workers(2)) == 2
    c.proc.send_signal(signal.SIGTTOU)
    assert len(c.workers(1)) == 1
    assert c.get().status_code == 200


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_sigusr1_reopens_a_moved_access_log_with_no_line_lost(cli, tmp_path, workers):
    log = tmp_path / "access.log"
    c = cli(*workers, "--access-log", str(log), "opsapp:app")
    with requests.Session() as s:
        for i in range(5):
            s.get(c.url + f"/before{i}", timeout=5)
        os.rename(log, tmp_path / "access.log.1")
        c.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(5):
            s.get(c.url + f"/after{i}", timeout=5)
    assert c.proc.poll() is None  # USR1 never kills
    c.stop()
    old, new = (tmp_path / "access.log.1").read_text(), log.read_text()
    assert [f"/before{i}" in old for i in range(5)] == [True] * 5
    assert [f"/after{i}" in new for i in range(5)] == [True] * 5


def test_sighup_in_one_process_reloads_the_code_and_refuses_no_connection(cli, tmp_path):
    c = cli("opsapp:app")
    assert c.get().text == f"v1 {c.proc.pid}"
    write_app(tmp_path, 2)
    load = Load(c.url)
    time.sleep(0.3)
    c.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not load.answers[-1].startswith("v2 "):
        time.sleep(0.05)
    time.sleep(0.3)
    load.stop()
    assert load.failures == []
    assert load.answers[-1] == f"v2 {c.proc.pid}"  # the same process, new code


def test_reload_flag_picks_up_an_edited_module(cli, tmp_path):
    c = cli("--reload", "opsapp:app")
    (old,) = c.workers(1)
    assert c.get().text.startswith("v1 ")
    time.sleep(0.2)
    write_app(tmp_path, 3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(old):  # replaced once the new worker serves
        time.sleep(0.1)
    assert not _alive(old)
    assert c.get().text.startswith("v3 ")


def test_factory(cli):
    c = cli("--factory", "opsapp:make_app")
    assert c.get().text.startswith("v1 ")


def test_a_factory_without_the_flag_is_a_clear_error(tmp_path):
    write_app(tmp_path, 1)
    r = subprocess.run([sys.executable, "-m", "fapws", "--chdir", str(tmp_path), "opsapp:make_app"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--factory" in r.stderr


def test_a_file_name_suggests_the_module(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fapws", "app.py"], capture_output=True, text=True)
    assert r.returncode == 2 and "app:app" in r.stderr


def test_pid_file_user_and_socket_mode(cli, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    os.chmod(tmp_path, 0o755)
    sock = tmp_path / "s.sock"
    pid = tmp_path / "fapws.pid"
    c = cli("--bind", f"unix:{sock}", "--chmod-socket", "660", "--pid", str(pid), "--user", "nobody",
            "opsapp:app")
    # Answered: the loop runs, so privileges were dropped (the listener
    # accepts into its backlog from bind(), before the switch).
    assert c.get().status_code == 200
    assert int(pid.read_text()) == c.proc.pid
    assert oct(os.stat(sock).st_mode & 0o777) == "0o660"
    with open(f"/proc/{c.proc.pid}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65534"] * 4
    c.stop()
    assert not pid.exists() or pid.read_text()  # removed when allowed


def test_systemd_socket_activation_and_notify(tmp_path):
    write_app(tmp_path, 1)
    port = free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    os.set_inheritable(listener.fileno(), True)
    # fd 3 with LISTEN_PID naming the server itself, as systemd sets it.
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.executable, [sys.executable] + sys.argv[2:])")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    p = subprocess.Popen([sys.executable, "-c", launcher, str(listener.fileno()), "-m", "fapws",
                          "--chdir", str(tmp_path), "opsapp:app"],
                         env=env, pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            ready = notify.recv(256)
        except socket.timeout:
            p.kill()
            raise AssertionError("no READY=1: " + p.communicate()[1].decode())
        assert ready.startswith(b"READY=1")
        listener.close()  # only the server holds it now
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == f"v1 {p.pid}"
        p.send_signal(signal.SIGTERM)
        assert notify.recv(256) == b"STOPPING=1"
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        notify.close()


def test_systemd_socket_activate_tool(tmp_path):
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate is not installed")
    write_app(tmp_path, 1)
    port = free_port()
    p = subprocess.Popen([tool, "-l", f"127.0.0.1:{port}", sys.executable, "-m", "fapws", "--chdir", str(tmp_path),
                          "opsapp:app"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_listening(port, p)
        # The tool accepts nothing itself: fapws answers on the socket it was given.
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text.startswith("v1 ")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def _scrape(url):
    out = {}
    for line in requests.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_endpoint_one_process(cli):
    c = cli("--metrics", "/metrics", "opsapp:app")
    with requests.Session() as s:
        for _ in range(10):
            s.get(c.url + "/")
        s.get(c.url + "/nope/../", timeout=5)
        s.get(c.url + "/sleep?0.3", timeout=5)
    m = _scrape(c.url + "/metrics")
    assert m["fapws_requests_total"] >= 10
    assert m['fapws_responses_total{class="2xx"}'] >= 10
    assert m["fapws_connections_open"] >= 1
    assert m["fapws_workers"] == 1
    # The latency histogram: cumulative buckets, the 0.3 s request above 0.25 s.
    h = "fapws_request_duration_seconds"
    buckets = [(k, v) for k, v in m.items() if k.startswith(h + "_bucket")]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == m[h + "_count"] >= 11
    assert m[h + '_bucket{le="+Inf"}'] - m[h + '_bucket{le="0.25"}'] >= 1
    assert m[h + '_bucket{le="0.25"}'] >= 10
    assert m[h + "_sum"] >= 0.3


def test_metrics_are_summed_over_workers_and_survive_recycling(cli):
    c = cli("--workers", "2", "--max-requests", "30", "--metrics", "/metrics", "opsapp:app")
    c.workers(2)
    for _ in range(100):
        requests.get(c.url + "/", timeout=5)
        time.sleep(0.01)  # over a second: the recyclers (every 0.25 s) see their counts
    # Every worker published, and the recycled ones retired: a recycled
    # worker keeps its idle connections for drain_grace (1 s) before it exits.
    # One worker may have taken most requests: at least one was recycled.
    # Workers publish once a second: wait for the last publication.
    time.sleep(1.2)
    deadline = time.monotonic() + 6
    while True:
        time.sleep(0.3)
        m = _scrape(c.url + "/metrics")
        if (m["fapws_worker_restarts_total"] >= 2 and m["fapws_requests_total"] >= 100) \
                or time.monotonic() > deadline:
            break
    assert m["fapws_requests_total"] >= 100  # none lost with the recycled workers
    assert m['fapws_request_duration_seconds_bucket{le="+Inf"}'] >= 100
    assert m["fapws_worker_restarts_total"] >= 1
    assert m["fapws_workers"] == 2


def test_log_config_sends_the_error_log_to_python_logging(cli, tmp_path):
    log = tmp_path / "errors.log"
    conf = tmp_path / "logging.json"
    conf.write_text(json.dumps({
        "version": 1,
        "formatters": {"f": {"format": "CUSTOM %(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "f"}},
        "loggers": {"fapws.error": {"handlers": ["file"], "level": "INFO"}},
    }))
    c = cli("--log-config", str(conf), "opsapp:app")
    assert c.get("/boom").status_code == 500
    assert c.get("/").status_code == 200
    c.stop()
    lines = log.read_text().splitlines()
    assert any(line.startswith("CUSTOM ERROR fapws.error ") and "GET /boom" in line for line in lines), lines
    assert any("RuntimeError: boom in the view" in line for line in lines) or "boom in the view" in log.read_text()


def test_a_bad_log_config_is_one_line_and_exit_2(tmp_path):
    write_app(tmp_path, 1)
    for name, text in (("missing.json", None), ("bad.json", "{not json"), ("bad.ini", "[loggers]\nkeys=x\n")):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        p = subprocess.run([sys.executable, "-m", "fapws", "--chdir", str(tmp_path), "--log-config", str(path),
                            "opsapp:app"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (name, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "--log-config" in p.stderr, (name, p.stderr)


def _recv_some(s):
    chunk = s.recv(4096)
    assert chunk, "the server closed the connection"
    return chunk


def _keepalive_on_each_worker(port, want=2, tries=60):
    """Raw keep-alive connections, each with one request answered, grouped by
    the worker pid that answered."""
    by_pid = {}
    for _ in range(tries):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv_some(s)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += _recv_some(s)
        by_pid.setdefault(int(body.split(b" ")[1]), []).append(s)
        if len(by_pid) == 2 and all(len(v) >= want for v in by_pid.values()):
            break
    return by_pid


def test_a_busy_worker_hands_its_idle_keep_alive_connections_to_a_free_one(cli):
    c = cli("--workers", "2", "--busy-release", "0.5", "opsapp:app")
    c.workers(2)
    by_pid = _keepalive_on_each_worker(c.port)
    busy_pid = next(pid for pid, socks in by_pid.items() if len(socks) >= 2)
    busy, idle = by_pid[busy_pid][:2]
    try:
        busy.sendall(b"GET /sleep?3 HTTP/1.1\r\nHost: t\r\n\r\n")
        # Past --busy-release (0.5 s, looked at every 125 ms), the idle
        # connection of the stuck worker gets a FIN...
        idle.settimeout(2)
        t0 = time.monotonic()
        assert idle.recv(4096) == b""
        assert 0.3 < time.monotonic() - t0 < 1.5
        # ...so a client with a pool (requests/urllib3, a proxy) reconnects,
        # and the free worker answers at once instead of after 3 s.
        with requests.Session() as s:
            t0 = time.monotonic()
            r = s.get(c.url + "/", timeout=5)
            assert time.monotonic() - t0 < 1.0
            assert int(r.text.split()[1]) != busy_pid
        # The long request itself is answered in full.
        busy.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv_some(busy)
        assert data.startswith(b"HTTP/1.1 200")
    finally:
        for socks in by_pid.values():
            for s in socks:
                s.close()


def test_one_process_keeps_its_idle_connections_while_busy(cli):
    c = cli("opsapp:app")  # no --workers: nobody else could answer them
    with socket.create_connection(("127.0.0.1", c.port), timeout=10) as idle, \
            socket.create_connection(("127.0.0.1", c.port), timeout=10) as busy:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        busy.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: t\r\n\r\n")
        idle.settimeout(1.5)
        with pytest.raises(socket.timeout):
            idle.recv(4096)  # no FIN while the loop is stuck
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        idle.settimeout(5)
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
