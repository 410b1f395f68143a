"""Issue 9 through the WSGI server: what hostile or broken input must not do."""

import signal
import socket
import threading
import time

import requests

from conftest import raw


def test_upload_still_arriving_at_sigterm_is_answered(serve):
    s = serve("wsgiapps:body_app")
    results = []

    def upload():
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        n = 2_000_000
        c.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n)
        for _ in range(n // 20_000):
            c.sendall(b"x" * 20_000)
            time.sleep(0.01)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        results.append(data)
        c.close()

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(20)
    assert len(results) == 4
    for head in results:
        assert head.startswith(b"HTTP/1.1 200 OK"), head[:80]
        assert b"Connection: close" in head
    assert s.proc.wait(10) == 0


def test_informational_status_from_the_app_is_a_500_not_a_final_1xx(serve):
    s = serve("wsgiapps:hardening_app")
    out = raw(s.port, b"GET /informational HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 ")
    assert out.count(b"HTTP/1.1 ") == 2
    assert out.rstrip().endswith(b"ok")
    s.stop()
    assert b"not a final status" in s.proc.stderr.read()


def test_iterable_failing_on_its_first_item_logs_the_real_traceback(serve):
    s = serve("wsgiapps:hardening_app")
    assert requests.get(s.url + "/fail-first").status_code == 500
    assert requests.get(s.url + "/ok").text == "ok"
    s.stop()
    err = s.proc.stderr.read().decode()
    assert "ValueError: first item boom" in err
    assert "NoneType: None" not in err
    assert "SystemError" not in err


def test_write_during_iteration_raises_instead_of_losing_data(serve):
    s = serve("wsgiapps:hardening_app")
    assert requests.get(s.url + "/write-during-iteration").text == "first;write raised"


def test_write_kept_from_a_finished_request_raises(serve):
    s = serve("wsgiapps:hardening_app")
    assert requests.get(s.url + "/keep-write").text == "kept"
    assert requests.get(s.url + "/use-kept-write").text == "write raised"


def test_static_upload_is_refused_before_the_body_is_read(serve, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    s = serve(None, "--static", f"/s={tmp_path}")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"PUT /s/a.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n")
    data = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD\r\n" in data
    assert b"100 Continue" not in data


def test_body_below_the_minimum_rate_is_cut_with_408(serve):
    s = serve("wsgiapps:body_app", "--timeout-io", "0.3", "--limit-body-rate", "1000")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
    start = time.monotonic()
    try:
        for _ in range(40):
            time.sleep(0.05)
            c.sendall(b"x")
    except OSError:
        pass
    data = c.recv(4096)
    assert data.startswith(b"HTTP/1.1 408 "), data[:80]
    assert time.monotonic() - start < 2.5
