import hashlib
import json
import socket

import requests

from conftest import raw


def test_read_all(serve):
    s = serve("wsgiapps:body_app")
    assert requests.post(s.url + "/?read", data=b"hello world").content == b"hello world"


def test_readline_iteration_and_chunks(serve):
    s = serve("wsgiapps:body_app")
    body = b"one\ntwo\n\nthree"
    assert requests.post(s.url + "/?readline", data=body).json() == ["one\n", "two\n", "\n", "three"]
    assert requests.post(s.url + "/?iter", data=body).json() == ["one\n", "two\n", "\n", "three"]
    assert requests.post(s.url + "/?chunks", data=body).json() == [7, 7]


def test_chunked_request_body(serve):
    s = serve("wsgiapps:body_app")

    def gen():
        yield b"abc"
        yield b"defg"

    r = requests.post(s.url + "/?size", data=gen())
    assert r.json()["n"] == 7 and r.json()["cl"] == "7"


def test_expect_continue(serve):
    s = serve("wsgiapps:body_app")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=3)
    c.sendall(b"POST /?read HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert c.recv(100).startswith(b"HTTP/1.1 100 Continue")
    c.sendall(b"data")
    assert c.recv(1000).endswith(b"data")


def test_body_limit_is_413(serve):
    s = serve("wsgiapps:body_app", "--limit-body", "1000")
    out = raw(s.port, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413")


def test_100mb_upload_is_spooled_not_held(serve):
    s = serve("wsgiapps:body_app")
    base = s.rss_kb()
    block = bytes(range(256)) * 4096  # 1 MiB
    h = hashlib.sha256()

    class Body:  # an iterable with a length: sent with Content-Length, not chunked
        def __len__(self):
            return 100 * len(block)

        def __iter__(self):
            for _ in range(100):
                h.update(block)
                yield block

    r = requests.post(s.url + "/?size", data=Body())
    got = r.json()
    assert got["n"] == 100 * len(block) and got["sha256"] == h.hexdigest()
    grew_mb = (s.rss_kb() - base) / 1024
    assert grew_mb < 20, f"server RSS grew by {grew_mb:.1f} MiB for a 100 MiB upload"


def test_a_body_that_cannot_be_spooled_is_a_500_not_a_413(serve, tmp_path):
    # No such TMPDIR: the server says so at start, and an upload past the
    # memory limit gets 500 (the server's fault), not 413 (the client's).
    s = serve("wsgiapps:body_app", "--limit-body-memory", "1024",
              env={"TMPDIR": str(tmp_path / "missing")})
    r = requests.post(s.url + "/", data=b"x" * 100_000)
    assert r.status_code == 500
    assert requests.post(s.url + "/", data=b"y" * 100).status_code == 200  # the server goes on
    s.stop()
    err = s.proc.stderr.read().decode()
    assert "not writable" in err and "cannot create a spool file" in err
