"""WSGI applications the tests serve."""

import json
import os
import sys
import threading
import time
from wsgiref.validate import validator

CLOSED = os.environ.get("FAPWS_TEST_CLOSED", "/tmp/fapws-test-closed")


def _send(start_response, body, ctype="text/plain", status="200 OK"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def environ_app(environ, start_response):
    out = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool, tuple))}
    out["input_type"] = type(environ["wsgi.input"]).__name__
    out["has_file_wrapper"] = environ.get("wsgi.file_wrapper") is not None
    return _send(start_response, json.dumps(out).encode(), "application/json")


validated = validator(lambda e, s: _send(s, b"validated"))


def body_app(environ, start_response):
    inp = environ["wsgi.input"]
    mode = environ.get("QUERY_STRING", "read")
    if mode == "readline":
        lines = []
        while True:
            line = inp.readline()
            if not line:
                break
            lines.append(line.decode())
        data = json.dumps(lines).encode()
    elif mode == "iter":
        data = json.dumps([l.decode() for l in inp]).encode()
    elif mode == "chunks":
        parts = []
        while True:
            c = inp.read(7)
            if not c:
                break
            parts.append(len(c))
        data = json.dumps(parts).encode()
    elif mode == "size":
        import hashlib

        h = hashlib.sha256()
        n = 0
        while True:
            c = inp.read(1 << 20)
            if not c:
                break
            h.update(c)
            n += len(c)
        data = json.dumps({"n": n, "sha256": h.hexdigest(), "cl": environ.get("CONTENT_LENGTH")}).encode()
    else:
        data = inp.read()
        assert inp.read() == b""
    return _send(start_response, data)


class Closing:
    """Records close() calls in a file so the test can count them."""

    def __init__(self, items, fail_at=None):
        self.items, self.fail_at = items, fail_at

    def __iter__(self):
        for i, x in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("iteration failed")
            yield x

    def close(self):
        with open(CLOSED, "a") as f:
            f.write("closed\n")


_kept = []


def results_app(environ, start_response):
    kind = environ["PATH_INFO"].strip("/")
    if kind == "tuple":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"a", b"b", b"c")
    if kind == "generator":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * 1024 for _ in range(100))
    if kind == "lazy-start":
        def gen():
            start_response("201 Created", [("X-Lazy", "yes")])
            yield b"late"
        return gen()
    if kind == "big-list":
        start_response("200 OK", [])
        return [b"y" * 100_000, b"z" * 100_000]
    if kind == "file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    if kind == "write":
        write = start_response("200 OK", [])
        write(b"written-")
        return [b"returned"]
    if kind == "keep-callables":
        # Keeps start_response and write() past the request. The server may
        # reuse a start_response nobody kept, never one the app holds.
        write = start_response("200 OK", [])
        same = any(sr is start_response or w is write for sr, w in _kept)
        _kept.append((start_response, write))
        write(b"reused" if same else b"fresh")
        return [b"-%d" % len(_kept)]
    if kind == "str":
        start_response("200 OK", [])
        return ["not bytes"]
    if kind == "closing":
        start_response("200 OK", [])
        return Closing([b"one", b"two"])
    if kind == "closing-fails":
        start_response("200 OK", [])
        return Closing([b"one" * 10000, b"two" * 10000, b"three"], fail_at=2)
    if kind == "raise":
        raise ValueError("app exploded")
    if kind == "no-start":
        return [b"x"]
    if kind == "inject":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: evil=1")])
        return [b"x"]
    if kind == "bad-status":
        start_response("OK", [])
        return [b"x"]
    if kind == "exc-before":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("oops")
        except KeyError:
            start_response("500 Oops", [("X-Second", "1")], sys.exc_info())
        return [b"replaced"]
    if kind == "exc-after":
        def gen():
            start_response("200 OK", [])
            yield b"first" * 10000
            try:
                raise KeyError("late")
            except KeyError:
                start_response("500 Oops", [], sys.exc_info())
            yield b"never"
        return gen()
    if kind == "slow":
        time.sleep(float(environ.get("QUERY_STRING") or 0.2))
        return _send(start_response, b"slow")
    if kind == "threads":
        return _send(start_response, str(threading.active_count()).encode())
    return _send(start_response, b"not found", status="404 Not Found")


_counter = {"n": 0}


def _tick():
    _counter["n"] += 1


ticker = None


def timer_app(environ, start_response):
    return _send(start_response, str(_counter["n"]).encode())


# A background thread started by the app must run while the loop waits.
_beats = {"n": 0}


def _beat():
    while True:
        _beats["n"] += 1
        time.sleep(0.01)


threading.Thread(target=_beat, daemon=True).start()


def thread_app(environ, start_response):
    return _send(start_response, str(_beats["n"]).encode())


def pid_app(environ, start_response):
    """Answers with the serving process's pid, after an optional sleep that
    blocks this worker's loop (so a concurrent request goes to another)."""
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    mp = "mp" if environ["wsgi.multiprocess"] else "sp"
    return _send(start_response, f"{os.getpid()} {mp}".encode())


def corpus_app(environ, start_response):
    """For the request corpus: every str value of the environ, and the body."""
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    out["body"] = environ["wsgi.input"].read().decode("latin-1")
    return _send(start_response, json.dumps(out).encode(), "application/json")


def hardening_app(environ, start_response):
    """Issue 9: a 1xx status, an iterable failing on its first item, write()
    during iteration and a write() kept from an earlier request."""
    path = environ["PATH_INFO"]
    if path == "/informational":
        start_response("100 Continue", [])
        return [b"never sent"]
    if path == "/fail-first":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            raise ValueError("first item boom")
            yield b"x"
        return gen()
    if path == "/write-during-iteration":
        write = start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first;"
            try:
                write(b"lost")
                yield b"write accepted"
            except RuntimeError:
                yield b"write raised"
        return gen()
    if path == "/keep-write":
        _kept.append(start_response("200 OK", [("Content-Type", "text/plain")]))
        return [b"kept"]
    if path == "/use-kept-write":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            _kept[-1](b"late")
            return [b"write accepted"]
        except RuntimeError:
            return [b"write raised"]
    return _send(start_response, b"ok")


_kept = []


def ticks_app(environ, start_response):
    """Items stamped with time.monotonic() when yielded, 0.3 s apart; the
    first after a 20 KB item when the query says so (issue 11)."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        if environ.get("QUERY_STRING") == "big":
            yield b"x" * 20000 + b"\n"
        for i in range(4):
            if i:
                time.sleep(0.3)
            yield f"tick {i} {time.monotonic():.6f}\n".encode()
    return gen()
