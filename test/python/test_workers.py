"""--workers N: pre-forked worker processes sharing the listeners."""

import os
import signal
import threading
import time

import requests


def _children(pid):
    """Live child processes of pid, from /proc."""
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(d))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pids_serving(url, n=8, sleep=0.2):
    """n concurrent requests that each hold their worker's loop for a while."""
    got, lock = [], threading.Lock()

    def one():
        r = requests.get(url + "/?%s" % sleep, timeout=10)
        with lock:
            got.append(r.text)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return got


def test_workers_share_the_port_and_stop_together(serve):
    s = serve("wsgiapps:pid_app", "--workers", "2")
    workers = set()
    try:
        deadline = time.monotonic() + 10
        while len(_children(s.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(s.proc.pid)
        assert len(workers) == 2
        # Each worker imports the application after the fork: wait until
        # both serve (a forked worker may still be importing).
        deadline = time.monotonic() + 10
        while True:
            answers = _pids_serving(s.url)
            pids = {int(a.split()[0]) for a in answers}
            if pids == workers or time.monotonic() > deadline:
                break
        assert len(answers) == 8
        assert all(a.endswith(" mp") for a in answers)  # wsgi.multiprocess
        # A blocked loop does not block the other worker: both served.
        assert pids == workers
        assert s.proc.pid not in pids

        # A killed worker is replaced.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = _children(s.proc.pid)
            if victim not in now and len(now) == 2:
                break
            time.sleep(0.05)
        now = _children(s.proc.pid)
        assert victim not in now and len(now) == 2
        workers |= now
        deadline = time.monotonic() + 10
        while True:  # the new worker imports the application first
            answers = _pids_serving(s.url)
            if {int(a.split()[0]) for a in answers} == now or time.monotonic() > deadline:
                break
        assert {int(a.split()[0]) for a in answers} == now

        assert s.stop(signal.SIGTERM) == 0
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers)
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_single_process_is_not_multiprocess(serve):
    s = serve("wsgiapps:pid_app")
    assert requests.get(s.url).text == f"{s.proc.pid} sp"


def test_bad_worker_count_is_a_usage_error(serve):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fapws", "--workers", "0", "x:y"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "workers" in r.stderr
