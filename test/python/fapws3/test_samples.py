"""FAPWS3's samples and unit-test server, ported to Python 3 and run over
loopback (issue 13): the bytes a FAPWS3 client saw."""

import gzip
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from conftest import free_port, raw, wait_listening  # noqa: E402


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    work = tmp_path_factory.mktemp("samples")
    (work / "static").mkdir()
    (work / "static" / "a.txt").write_text("static file\n")
    (work / "lines.txt").write_text("".join("line %d\n" % i for i in range(2000)))
    cgi = work / "test.cgi"
    cgi.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Cgi: 1\\r\\n\\r\\n'\n"
                   "echo \"cgi $REQUEST_METHOD $QUERY_STRING\"\ncat\n")
    cgi.chmod(cgi.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "samples.py"), str(port), str(work)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_listening(port, p)
    yield f"http://127.0.0.1:{port}", port, work, p
    p.terminate()
    p.wait(10)


def test_hello_str_and_raw_prefixes(samples):
    url = samples[0]
    assert requests.get(url + "/hello").text == "hello world!!"
    # FAPWS3 matched raw prefixes, first registered first: /hello serves /hellox.
    assert requests.get(url + "/hellox/y").text == "hello world!!"


def test_iter_calls_start_response_inside_the_generator(samples):
    r = requests.get(samples[0] + "/iter")
    assert r.status_code == 200 and r.text == "part 0\npart 1\npart 2\n"


def test_script_name_is_the_prefix_verbatim_and_path_info_the_rest(samples):
    assert requests.get(samples[0] + "/display/Toto").text == "page=Toto script=/display/"
    r = requests.get(samples[0] + "/display/", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/display/Home"


def test_environ_keys_a_fapws3_app_reads(samples):
    r = requests.post(samples[0] + "/env/x%20y?a=1&b=2", data={"a": "body"})
    env = r.json()
    assert env["SCRIPT_NAME"] == "/env" and env["PATH_INFO"] == "/x y"
    assert env["fapws.uri"] == "/env/x%20y?a=1&b=2"
    assert env["fapws.major_minor"] == "1.1"
    # A urlencoded body replaces the query's fields, as in FAPWS3.
    assert env["fapws.params"] == {"a": ["body"]}
    assert env["CONTENT_LENGTH"] == 6 and env["input"] == "a=body"
    assert env["HTTP_CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["HTTP_CONTENT_LENGTH"] == "6"
    assert env["fapws.remote_addr"] == "127.0.0.1" and isinstance(env["fapws.remote_port"], int)
    assert env["raw_header"].startswith("POST /env/x%20y?a=1&b=2 HTTP/1.1\r\n")
    assert env["environ_class"] == "Environ" and env["start_response_class"] == "Start_response"
    assert requests.get(samples[0] + "/env?q=1").json()["fapws.params"] == {"q": ["1"]}


def test_start_response_is_optional_and_has_fapws3_helpers(samples):
    r = requests.get(samples[0] + "/cookie")
    assert r.status_code == 200 and r.text == "status=200 OK"
    assert r.headers["X-Added"] == "yes"
    assert r.cookies["session"] == "abc"
    assert "Max-Age=60" in r.headers["Set-Cookie"]


def test_an_exception_is_a_500_without_traceback_by_default(samples):
    r = requests.get(samples[0] + "/broken")
    assert r.status_code == 500 and "Please contact your administrator" in r.text
    assert "ValueError" not in r.text
    assert requests.get(samples[0] + "/hello").status_code == 200


def test_http_cmd_methods_501_and_options(samples):
    port = samples[1]
    assert raw(port, b"DELETE /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 501 ")
    r = raw(port, b"OPTIONS /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200 ") and b"Allow: GET, POST, HEAD, OPTIONS, TRACE\r\n" in r
    assert raw(port, b"TRACE /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").endswith(b"hello world!!")


def test_staticfile_etag_is_the_mtime_and_if_none_match_gives_304(samples):
    url, _, work, _ = samples
    r = requests.get(url + "/static/a.txt")
    assert r.text == "static file\n"
    assert r.headers["ETag"] == str(os.stat(work / "static" / "a.txt").st_mtime)
    again = requests.get(url + "/static/a.txt", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    # Traversal-safe (FAPWS3 only removed '..'): lines.txt lies beside static/.
    r = raw(samples[1], b"GET /static/../lines.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 404 ")


def test_gzip_decorator_form(samples):
    r = requests.get(samples[0] + "/gzip", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(r.raw.read()) == b"gzip me " * 100


def test_log_writes_fapws3_fields(samples):
    url, _, work, _ = samples
    requests.get(url + "/logged", headers={"User-Agent": "ua/1", "Referer": "http://r/", "X-Forwarded-For": "9.9.9.9"})
    line = (work / "log.txt").read_text().splitlines()[-1]
    assert line.startswith("9.9.9.9 127.0.0.1:")
    assert '"GET /logged HTTP/1.1" 200 6 "http://r/" "ua/1"' in line


def test_a_returned_file_goes_out_whole(samples):
    r = requests.get(samples[0] + "/file")
    assert r.text == "".join("line %d\n" % i for i in range(2000))
    assert r.headers.get("Content-Length") == str(len(r.content))  # sent as a file, not line by line


def test_defer(samples):
    url = samples[0]
    assert requests.get(url + "/defer?one").text.startswith("queued")
    requests.get(url + "/defer?two")
    time.sleep(0.1)
    assert requests.get(url + "/deferred").text == "one,two"


def test_timers_commit_sqlite_and_add_timer_counts_from_one(samples):
    url = samples[0]
    assert requests.get(url + "/timers").text == "first=1"
    before = int(requests.get(url + "/count").text)
    requests.get(url + "/add?name=toto")
    time.sleep(0.3)  # the 100 ms timer committed it
    assert int(requests.get(url + "/count").text) == before + 1


def test_cgi(samples):
    r = requests.post(samples[0] + "/cgi/run?x=1", data=b"posted")
    assert r.headers["X-Cgi"] == "1"
    assert r.text == "cgi POST x=1\nposted"


def test_the_generic_callback_gets_proxy_requests(samples):
    port = samples[1]
    r = raw(port, b"GET http://example.org/page HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
    assert r.endswith(b"proxy for http://example.org/page")


def test_unittest_server_abstract_socket_and_custom_base(tmp_path):
    name = f"/org/fapws3/server-{os.getpid()}"
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "unittest_server.py"), name, str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            c = socket.socket(socket.AF_UNIX)
            try:
                c.connect("\0" + name)  # exactly FAPWS3's address: no trailing NUL
                break
            except OSError:
                c.close()
                if time.monotonic() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.05)
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
                b"--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"../a.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n")
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                  b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            out += chunk
        c.close()
        text = out.split(b"\r\n\r\n", 1)[1].decode()
        stored = str(tmp_path / "a.txt")  # the client's '../' is dropped
        assert f"doc={stored}\n" in text and "title=hello\n" in text and "hooked=yes" in text
        assert open(stored).read() == "file body"
    finally:
        p.terminate()
        p.wait(10)


def test_server_with_positional_host_and_port_is_a_clear_type_error():
    import fapws

    with pytest.raises(TypeError, match="keyword options only"):
        fapws.Server("127.0.0.1", 8080)
