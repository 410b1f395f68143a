"""Fixtures: start the real fapws CLI as a subprocess on a free loopback
port and wait until it accepts; stop it by PID afterwards."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


class Running:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])


def start(app=None, *args, cwd=None, env=None):
    port = free_port()
    cmd = [sys.executable, "-m", "fapws", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    cmd += list(args)
    if app:
        cmd.append(app)
    e = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"), PYTHONUNBUFFERED="1")
    e.update(env or {})
    proc = subprocess.Popen(cmd, cwd=cwd or HERE, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_listening(port, proc)
    return Running(proc, port)


@pytest.fixture
def serve():
    started = []

    def _serve(app=None, *args, **kw):
        r = start(app, *args, **kw)
        started.append(r)
        return r

    yield _serve
    for r in started:
        r.stop()


def raw(port, data, timeout=3.0):
    """Send bytes, read until the server closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out
