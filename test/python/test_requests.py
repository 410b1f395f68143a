"""Replays the request corpus (test/requests) through the WSGI server: each
case gets its status, in one write, byte by byte and in random pieces; a valid
one shows the app the environ its file names; nothing smuggled ever runs."""

import json
import os
import random
import re
import socket
import time

import pytest

from conftest import HERE, start

CORPUS = os.path.join(HERE, "..", "requests")


def load(kind):
    cases = []
    for name in sorted(os.listdir(os.path.join(CORPUS, kind))):
        if not name.endswith(".http"):
            continue
        meta, raw = {}, []
        with open(os.path.join(CORPUS, kind, name), encoding="latin-1") as f:
            for line in f.read().split("\n"):
                if not raw and line.startswith("# "):
                    m = re.match(r"# (expect|responses|environ): (.*)", line)
                    if m:
                        meta[m.group(1)] = m.group(2)
                    continue
                raw.append(line)
        data = "".join(raw)
        data = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), data)
        data = data.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
        cases.append(pytest.param(data.encode("latin-1"), meta, id=f"{kind}/{name[:-5]}"))
    return cases


@pytest.fixture(scope="module")
def server():
    r = start("wsgiapps:corpus_app")
    yield r
    r.stop()


def exchange(port, pieces, pause):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i, p in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            s.sendall(p)
    except OSError:
        pass  # the server may close while a refused request is still being sent
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def responses(data):
    """Splits a byte stream of Content-Length responses: [(status, head, body)]."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response: {data[:200]!r}"
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        n = int(m.group(1)) if m else 0
        out.append((status, head, rest[:n]))
        data = rest[n:]
    return out


def check(data, meta, answer, how):
    got = responses(answer)
    assert got, f"{how}: no answer"
    status, head, body = got[0]
    assert status == int(meta["expect"]), f"{how}: {head!r}"
    if status >= 400:
        assert len(got) == 1, f"{how}: answered after a refused request"
        assert b"Connection: close" in head
        return
    assert len(got) == int(meta.get("responses", 1)), how
    want = json.loads(meta.get("environ", "{}"))
    env = json.loads(body)
    for key, value in want.items():
        assert env.get(key) == value, f"{how}: {key}={env.get(key)!r}, want {value!r}"


@pytest.mark.parametrize("data,meta", load("valid") + load("invalid"))
def test_corpus_request(server, data, meta):
    check(data, meta, exchange(server.port, [data], 0), "one write")
    rng = random.Random(len(data))
    pieces, at = [], 0
    while at < len(data):
        n = rng.randint(1, 4096 if len(data) > 4096 else 24)
        pieces.append(data[at:at + n])
        at += n
    check(data, meta, exchange(server.port, pieces, 0.002), "random pieces")
    if len(data) <= 200:
        check(data, meta, exchange(server.port, [data[i:i + 1] for i in range(len(data))], 0.0005), "byte by byte")
