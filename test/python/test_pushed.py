"""fapws.Pushed (issue 11): server-sent events and long polling without
threads, over real loopback sockets."""

import os
import selectors
import socket
import statistics
import threading
import time
import wsgiref.simple_server

import pytest
import requests

import fapws

APP = "pushed_app:app"
HERE_TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def pushed(serve):
    return serve(APP)


def stats(srv):
    return requests.get(srv.url + "/stats", timeout=5).json()


def subscribe(port, path="/events"):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return s


def wait_for(cond, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_500_subscribers_get_every_event_on_time_and_plain_requests_stay_fast(pushed):
    subs = [subscribe(pushed.port) for _ in range(500)]
    assert wait_for(lambda: stats(pushed)["subscribers"] == 500)
    sel = selectors.DefaultSelector()
    for s in subs:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, {"buf": b"", "events": 0, "head": False})
    lags, plain = [], []

    def plain_requests():
        with requests.Session() as c:
            for _ in range(100):
                t0 = time.monotonic()
                assert c.get(pushed.url + "/hello", timeout=5).text == "hello"
                plain.append(time.monotonic() - t0)
                time.sleep(0.01)

    t = threading.Thread(target=plain_requests)
    t.start()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        for key, _ in sel.select(0.05):
            data = key.fileobj.recv(65536)
            now = time.time()
            st = key.data
            st["buf"] += data
            if not st["head"] and b"\r\n\r\n" in st["buf"]:
                head, st["buf"] = st["buf"].split(b"\r\n\r\n", 1)
                assert head.startswith(b"HTTP/1.1 200")
                assert b"text/event-stream" in head
                st["head"] = True
            while st["head"] and b"\n\n" in st["buf"]:
                chunk, st["buf"] = st["buf"].split(b"\n\n", 1)
                stamp = float(chunk.rsplit(b"data: ", 1)[1])
                lags.append(now - stamp)
                st["events"] += 1
    t.join()
    counts = [key.data["events"] for key in sel.get_map().values()]
    for s in subs:
        s.close()
    # 1.5 s of a 100 ms timer: every subscriber got every event (14-16).
    assert min(counts) >= 13, counts
    assert max(counts) - min(counts) <= 1
    assert max(lags) < 0.050, f"worst lag {max(lags) * 1000:.1f} ms"
    plain.sort()
    assert plain[98] < 0.020, f"p99 {plain[98] * 1000:.1f} ms"
    assert wait_for(lambda: stats(pushed)["subscribers"] == 0)


def test_a_subscriber_that_leaves_runs_on_close_and_send_returns_false(pushed):
    s = subscribe(pushed.port)
    s.recv(4096)  # head and the first event
    before = stats(pushed)
    s.close()
    t0 = time.monotonic()
    assert wait_for(lambda: stats(pushed)["closed"] == before["closed"] + 1, 1.0)
    assert time.monotonic() - t0 < 0.1 + 0.02  # the poll's own cost
    assert stats(pushed)["subscribers"] == before["subscribers"] - 1


def test_send_after_the_client_left_returns_false():
    body = fapws.Pushed()
    # Served by nobody yet: send queues; once closed it refuses.
    assert body.send(b"x") is True
    body.close()
    assert body.send(b"y") is False
    assert body.closed


def test_an_empty_body_closed_at_once_is_a_valid_empty_response(pushed):
    with requests.Session() as c:
        r = c.get(pushed.url + "/empty", timeout=5)
        assert r.status_code == 200
        assert r.headers["Content-Length"] == "0"
        assert r.content == b""
        assert c.get(pushed.url + "/hello", timeout=5).text == "hello"  # keep-alive goes on


def test_a_body_ended_from_the_loop_after_return(pushed):
    with requests.Session() as c:
        r = c.get(pushed.url + "/later", timeout=5)
        assert r.text == "one two"
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert c.get(pushed.url + "/later", timeout=5).text == "one two"


def test_send_from_another_thread(pushed):
    t0 = time.monotonic()
    r = requests.get(pushed.url + "/thread", timeout=5)
    assert r.text == "".join(f"thread {i}\n" for i in range(5))
    assert time.monotonic() - t0 >= 0.15


def test_exc_info_before_the_first_block_replaces_the_head(pushed):
    r = requests.get(pushed.url + "/changed", timeout=5)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.text == "try again\n"


def test_a_slow_reader_hits_backpressure_and_memory_stays_bounded(pushed):
    rss0 = pushed.rss_kb()
    s = subscribe(pushed.port, "/flood")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert wait_for(lambda: stats(pushed)["backpressure"] >= 5, 3.0)
    grown = pushed.rss_kb() - rss0
    # high_water is 256 KiB; socket buffers add what the kernel keeps.
    assert grown < 8 * 1024, f"RSS grew {grown} KiB"
    s.close()
    assert wait_for(lambda: pushed.rss_kb() is not None and stats(pushed)["closed"] >= 1)


def test_graceful_stop_closes_pushed_bodies_and_runs_on_close(serve, tmp_path):
    srv = serve(APP)
    subs = [subscribe(srv.port) for _ in range(3)]
    for s in subs:
        s.recv(4096)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 2.0  # subscribers between events do not hold the stop
    for s in subs:
        s.settimeout(2)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()


def test_pushed_works_as_a_blocking_iterator_under_another_server():
    """Portable: wsgiref iterates it on its own thread while another thread sends."""

    def app(environ, start_response):
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/plain")])

        def feed():
            for i in range(3):
                time.sleep(0.05)
                body.send(b"tick %d\n" % i)
            body.close()
        threading.Thread(target=feed, daemon=True).start()
        closed.append(body)
        return body

    closed = []
    httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, app,
                                              handler_class=_QuietHandler)
    t = threading.Thread(target=httpd.handle_request, daemon=True)
    t.start()
    r = requests.get(f"http://127.0.0.1:{httpd.server_port}/", timeout=5)
    t.join(5)
    httpd.server_close()
    assert r.text == "tick 0\ntick 1\ntick 2\n"
    assert closed[0].closed


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_a_pushed_body_wrapped_by_middleware_is_a_500_not_a_frozen_loop(serve):
    srv = serve("pushed_app:wrapped")
    r = requests.get(srv.url + "/events", timeout=5)
    assert r.status_code == 500
    assert requests.get(srv.url + "/hello", timeout=5).text == "hello"


def test_the_chat_example_relays_a_message_to_every_open_page(serve):
    examples = os.path.join(os.path.dirname(HERE_TESTS), "..", "examples")
    srv = serve("chat:app", "--chdir", os.path.abspath(examples))
    assert b"EventSource" in requests.get(srv.url + "/", timeout=5).content
    pages = [subscribe(srv.port) for _ in range(3)]
    for p in pages:
        p.settimeout(3)
        assert b"retry: 2000" in p.recv(4096)
    r = requests.post(srv.url + "/say", data={"text": "hi <b>all</b>"}, timeout=5)
    assert r.status_code == 204
    for p in pages:
        got = b""
        while b"event: say" not in got:
            got += p.recv(4096)
        assert b"data: hi &lt;b&gt;all&lt;/b&gt;" in got
        p.close()
    assert wait_for(lambda: requests.get(srv.url + "/stats", timeout=5).json()["subscribers"] == 0)
