import os
import socket

import pytest
import requests

from conftest import raw

CLOSED = "/tmp/fapws-test-closed-%d" % os.getpid()


@pytest.fixture
def app(serve):
    if os.path.exists(CLOSED):
        os.unlink(CLOSED)
    yield serve("wsgiapps:results_app", env={"FAPWS_TEST_CLOSED": CLOSED})
    if os.path.exists(CLOSED):
        os.unlink(CLOSED)


def closes():
    try:
        with open(CLOSED) as f:
            return f.read().count("closed")
    except FileNotFoundError:
        return 0


def test_tuple(app):
    r = requests.get(app.url + "/tuple")
    assert r.text == "abc" and r.headers["Content-Length"] == "3"


def test_generator_is_chunked(app):
    r = requests.get(app.url + "/generator")
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.content == b"x" * 102400


def test_generator_http10_is_close_delimited(app):
    out = raw(app.port, b"GET /generator HTTP/1.0\r\n\r\n")
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and body == b"x" * 102400


def test_start_response_from_inside_generator(app):
    r = requests.get(app.url + "/lazy-start")
    assert r.status_code == 201 and r.headers["X-Lazy"] == "yes" and r.text == "late"


def test_big_list_has_content_length(app):
    r = requests.get(app.url + "/big-list")
    assert r.headers["Content-Length"] == "200000"
    assert r.content == b"y" * 100000 + b"z" * 100000


def test_file_wrapper(app):
    r = requests.get(app.url + "/file")
    with open(os.path.join(os.path.dirname(__file__), "apps", "wsgiapps.py"), "rb") as f:
        assert r.content == f.read()
    assert r.headers["Content-Length"] == str(len(r.content))


def test_write_callable(app):
    assert requests.get(app.url + "/write").text == "written-returned"


def test_callables_kept_by_the_app_are_never_reused(app):
    with requests.Session() as s:
        for i in range(1, 6):
            assert s.get(app.url + "/write").text == "written-returned"
            assert s.get(app.url + "/keep-callables").text == "fresh-%d" % i
    # A kept write() still works after its request ended (its data goes nowhere).
    assert requests.get(app.url + "/tuple").text == "abc"


def test_str_items_are_500(app):
    r = requests.get(app.url + "/str")
    assert r.status_code == 500
    assert requests.get(app.url + "/tuple").status_code == 200


def test_close_called_once(app):
    requests.get(app.url + "/closing")
    assert closes() == 1


def test_close_called_when_iteration_fails_mid_response(app):
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(app.url + "/closing-fails")
    assert closes() == 1
    assert requests.get(app.url + "/tuple").status_code == 200


def test_close_called_on_client_disconnect(app):
    s = socket.create_connection(("127.0.0.1", app.port))
    s.sendall(b"GET /closing-fails HTTP/1.1\r\nHost: t\r\n\r\n")
    s.recv(100)
    s.close()
    for _ in range(100):
        if closes():
            break
        __import__("time").sleep(0.02)
    assert closes() == 1


def test_app_exception_is_500_and_server_goes_on(app):
    r = requests.get(app.url + "/raise")
    assert r.status_code == 500
    assert "app exploded" not in r.text  # no traceback outside debug mode
    assert requests.get(app.url + "/tuple").status_code == 200


def test_missing_start_response_is_500(app):
    assert requests.get(app.url + "/no-start").status_code == 500


def test_header_injection_refused(app):
    out = raw(app.port, b"GET /inject HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500")
    assert b"evil" not in out


def test_bad_status_is_500(app):
    assert requests.get(app.url + "/bad-status").status_code == 500


def test_exc_info_before_headers_replaces_them(app):
    r = requests.get(app.url + "/exc-before")
    assert r.status_code == 500 and r.reason == "Oops"
    assert "X-Second" in r.headers and "X-First" not in r.headers
    assert r.text == "replaced"


def test_exc_info_after_headers_cuts_the_connection(app):
    out = raw(app.port, b"GET /exc-after HTTP/1.1\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert b"0\r\n\r\n" not in out[-5:]  # no clean end of the chunked body
    assert requests.get(app.url + "/tuple").status_code == 200


def test_keep_alive_across_many_requests(app):
    with requests.Session() as sess:
        for _ in range(200):
            assert sess.get(app.url + "/tuple").text == "abc"


def test_debug_mode_shows_traceback(serve):
    s = serve("wsgiapps:results_app", "--debug")
    r = requests.get(s.url + "/raise")
    assert r.status_code == 500 and "app exploded" in r.text


def test_app_threads_run_while_loop_waits(serve):
    import time

    s = serve("wsgiapps:thread_app")
    a = int(requests.get(s.url).text)
    time.sleep(0.3)
    b = int(requests.get(s.url).text)
    assert b - a >= 10


# ---------------------------------------------------------------- issue 11: no block held back

def _stamped_arrivals(port, request, marker):
    """Sends a request, then records when each line holding `marker` and a
    stamp (time.monotonic() at the yield, the same clock here) arrives."""
    import re as _re
    import socket as _socket
    import time as _time

    s = _socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    lags, buf = [], b""
    while True:
        chunk = s.recv(65536)
        now = _time.monotonic()
        if not chunk:
            break
        buf += chunk
        for m in _re.finditer(marker + rb" (\d+) (\d+\.\d+)", chunk):
            lags.append(now - float(m.group(2)))
        if buf.endswith(b"0\r\n\r\n") and b"chunked" in buf[:buf.find(b"\r\n\r\n")]:
            break
    s.close()
    return lags, buf


def test_each_generator_item_is_sent_when_yielded_http11(serve):
    s = serve("wsgiapps:ticks_app")
    lags, raw_bytes = _stamped_arrivals(s.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", rb"tick")
    assert b"Transfer-Encoding: chunked" in raw_bytes
    assert len(lags) == 4
    assert max(lags) < 0.05, lags


def test_each_generator_item_is_sent_when_yielded_http10(serve):
    s = serve("wsgiapps:ticks_app")
    lags, raw_bytes = _stamped_arrivals(s.port, b"GET / HTTP/1.0\r\n\r\n", rb"tick")
    assert b"Content-Length" not in raw_bytes.split(b"\r\n\r\n")[0]
    assert len(lags) == 4
    assert max(lags) < 0.05, lags


def test_items_after_a_large_first_item_are_not_held_back(serve):
    s = serve("wsgiapps:ticks_app")
    lags, _ = _stamped_arrivals(s.port, b"GET /?big HTTP/1.1\r\nHost: a\r\n\r\n", rb"tick")
    assert len(lags) == 4
    assert max(lags) < 0.05, lags


def test_flask_server_sent_events_stream_in_real_time(serve):
    s = serve("flaskapp:app")
    lags, _ = _stamped_arrivals(s.port, b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n", rb"data:")
    assert len(lags) == 3
    assert max(lags) < 0.05, lags


def test_django_streaming_response_streams_in_real_time(serve):
    s = serve("djproject.wsgi:application")
    lags, _ = _stamped_arrivals(s.port, b"GET /stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", rb"item")
    assert len(lags) == 3
    assert max(lags) < 0.05, lags
