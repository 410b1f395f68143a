#!/usr/bin/env python3
"""./dev soak [SECONDS]: mixed traffic against fapws (WSGI) and fapws-static
on loopback, sampling each server's RSS and open descriptors.

Clients (threads, each on its own connections): keep-alive GETs, uploads of
up to 1 MiB echoed back and compared, uploads aborted half-way, pipelined
bursts of 16, a generator body, static files checked by sha256, and slow
readers of a 2 MiB file. It fails on any failed request, on RSS that grows
after warm-up (the last third of the samples against the first third after
warm-up: more than 10 % + 4 MiB), or on descriptors left open at the end.
"""

import argparse
import hashlib
import http.client
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc):
    for _ in range(500):
        if proc.poll() is not None:
            raise SystemExit(f"soak: server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("soak: server did not start")


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.failed = []

    def done(self, kind):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + 1

    def fail(self, kind, why):
        with self.lock:
            self.failed.append(f"{kind}: {why}")


def read_response(sock_file):
    """Reads one Content-Length or chunked response from a file object."""
    status = sock_file.readline()
    if not status:
        raise IOError("connection closed before a response")
    code = int(status.split()[1])
    length, chunked = None, False
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            n = int(sock_file.readline().split(b";")[0], 16)
            body += sock_file.read(n)
            sock_file.readline()
            if n == 0:
                break
        return code, body
    return code, sock_file.read(length or 0)


OPS = {"wsgi": ["keepalive", "upload", "abort", "pipeline", "gen"], "static": ["static", "static", "slow"]}


def client(kind, port, files, stats, stop, rng):
    def conn():
        return http.client.HTTPConnection("127.0.0.1", port["wsgi"], timeout=30)

    while not stop.is_set():
        op = rng.choice(OPS[kind])
        try:
            if op == "keepalive":
                c = conn()
                for _ in range(20):
                    c.request("GET", "/")
                    r = c.getresponse()
                    if r.status != 200 or r.read() != b"Hello, World!":
                        raise IOError(f"status {r.status}")
                c.close()
            elif op == "upload":
                body = os.urandom(rng.randint(0, 1 << 20))
                c = conn()
                c.request("POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
                r = c.getresponse()
                if r.status != 200 or r.read() != body:
                    raise IOError(f"echo mismatch (status {r.status})")
                c.close()
            elif op == "abort":
                s = socket.create_connection(("127.0.0.1", port["wsgi"]), timeout=10)
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 500000\r\n\r\n" + b"x" * 100000)
                s.close()
            elif op == "pipeline":
                s = socket.create_connection(("127.0.0.1", port["wsgi"]), timeout=30)
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 16)
                f = s.makefile("rb")
                for _ in range(16):
                    code, body = read_response(f)
                    if code != 200 or body != b"Hello, World!":
                        raise IOError(f"pipelined status {code}")
                f.close()
                s.close()
            elif op == "gen":
                c = conn()
                c.request("GET", "/gen")
                r = c.getresponse()
                if r.status != 200 or len(r.read()) != 100 * 1024:
                    raise IOError("generator body")
                c.close()
            elif op == "static":
                name, digest = rng.choice(files)
                c = http.client.HTTPConnection("127.0.0.1", port["static"], timeout=30)
                for _ in range(5):
                    c.request("GET", "/" + name)
                    r = c.getresponse()
                    if r.status != 200 or hashlib.sha256(r.read()).hexdigest() != digest:
                        raise IOError(f"static {name} status {r.status}")
                c.close()
            else:  # slow reader of a 2 MiB file
                name, digest = files[-1]
                s = socket.create_connection(("127.0.0.1", port["static"]), timeout=30)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.sendall(f"GET /{name} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    time.sleep(0.01)
                s.close()
                body = data.partition(b"\r\n\r\n")[2]
                if hashlib.sha256(body).hexdigest() != digest:
                    raise IOError("slow reader got a wrong body")
            stats.done(op)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            if not stop.is_set():
                stats.fail(op, repr(e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", nargs="?", type=float, default=60.0)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "cpp"))
    ap.add_argument("--clients", type=int, default=6)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="fapws-soak-")
    files = []
    for name, size in [("1k.bin", 1024), ("100k.bin", 100 * 1024), ("2m.bin", 2 << 20)]:
        data = os.urandom(size)
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
        files.append((name, hashlib.sha256(data).hexdigest()))

    port = {"wsgi": free_port(), "static": free_port()}
    env = dict(os.environ, PYTHONPATH=HERE)
    procs = {
        "wsgi": subprocess.Popen([os.path.join(VENV_BIN, "fapws"), "--bind", f"127.0.0.1:{port['wsgi']}",
                                  "--log-level", "warning", "apps:app"], env=env),
        "static": subprocess.Popen([os.path.join(args.build, "apps", "fapws-static"),
                                    "--bind", f"127.0.0.1:{port['static']}", tmp]),
    }
    for k, p in procs.items():
        wait_listening(port[k], p)

    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=client, args=(k, port, files, stats, stop, random.Random(i)))
               for i, k in enumerate(["wsgi", "static"] * (args.clients // 2))]
    start = time.monotonic()
    base = {k: sample(p.pid) for k, p in procs.items()}
    for t in threads:
        t.start()
    samples = {k: [] for k in procs}
    try:
        while time.monotonic() - start < args.seconds:
            time.sleep(min(2.0, max(0.1, args.seconds / 30)))
            for k, p in procs.items():
                if p.poll() is not None:
                    stats.fail(k, f"server exited with {p.returncode}")
                    stop.set()
                else:
                    samples[k].append(sample(p.pid))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    time.sleep(1.0)  # let the servers close what the clients left
    end = {k: sample(p.pid) for k, p in procs.items() if p.poll() is None}
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            stats.fail("stop", "a server did not stop on SIGTERM")
    shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - start
    total = sum(stats.ok.values())
    print(f"soak: {elapsed:.0f} s, {args.clients} clients, {total} operations, {len(stats.failed)} failed")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(stats.ok.items())))
    verdict = not stats.failed
    for k in procs:
        rss = [s[0] for s in samples[k]]
        if len(rss) < 6 or k not in end:
            verdict = False
            print(f"  {k}: too few samples")
            continue
        warm = rss[len(rss) // 5:]
        third = max(1, len(warm) // 3)
        early, late = statistics.median(warm[:third]), statistics.median(warm[-third:])
        grew = late > early * 1.10 + 4096
        leaked_fds = end[k][1] > base[k][1] + 2
        print(f"  {k}: RSS {base[k][0] / 1024:.1f} MiB at start, {early / 1024:.1f} after warm-up, "
              f"{late / 1024:.1f} at the end (peak {max(rss) / 1024:.1f}); fds {base[k][1]} -> {end[k][1]}"
              f"{'  GROWTH' if grew else ''}{'  FD LEAK' if leaked_fds else ''}")
        verdict = verdict and not grew and not leaked_fds
    for line in stats.failed[:20]:
        print("  FAILED " + line)
    print("soak: " + ("passed" if verdict else "FAILED"))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
