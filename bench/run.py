#!/usr/bin/env python3
"""./dev bench: fapws against its peers, side by side, in one run.

Each server is started here on 127.0.0.1, pinned to core 0; wrk runs pinned
to core 1. Rounds are interleaved (A B C A B C ...) so drift hits all alike.
The figure that ranks servers is the server's CPU microseconds per request
(utime+stime of the server's process tree over the measured run, divided by
the requests wrk completed): on 2 cores wrk saturates near the servers'
speed, so requests/s is reported beside it, not instead.

  ./dev bench            full run (about 16 minutes), writes RESULTS.md
  ./dev bench --report   rebuild RESULTS.md from the last run's CSVs
  ./dev bench --quick    1 round, 2 s, a subset: a smoke check, judges nothing
"""

import argparse
import csv
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.dirname(sys.executable)
CLK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / CLK


def rss_kb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("did not start")


# ------------------------------------------------------------------ servers

class Server:
    def __init__(self, name, cmd, workloads, cwd=None, env=None, setup=None):
        self.name, self.cmd, self.workloads, self.cwd, self.env, self.setup = name, cmd, workloads, cwd, env, setup

    def start(self, ctx):
        port = free_port()
        if self.setup:
            self.setup(ctx, port)
        cmd = [c.format(port=port, **ctx) for c in self.cmd]
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, cwd=self.cwd or HERE, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(port, self.proc)
        self.port = port
        return port

    def stop(self):
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            for p in reversed(tree(self.proc.pid)):
                try:
                    os.kill(p, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for p in tree(self.proc.pid):
                    os.kill(p, signal.SIGKILL)
                self.proc.wait()


def nginx_setup(ctx, port):
    conf = os.path.join(ctx["tmp"], f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {ctx['tmp']}/nginx-{port}.pid;
error_log {ctx['tmp']}/nginx-error.log;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    location = / {{ return 200 "Hello, World!"; }}
    location /static/ {{ alias {ctx['www']}/; }}
  }}
}}
""")
    ctx["nginx_conf"] = conf


HELLO = ["hello", "c1000", "idle"]
ALL_APP = ["hello", "10k", "post", "gen", "c1000"]
# Hello with 16 requests pipelined per write (TechEmpower's plaintext shape):
# fapws and nginx; gunicorn's sync worker closes after each answer.
PIPE = ["pipe16"]
FRAMEWORKS = ["flask", "django"]  # Python servers only
STATIC = ["static-1k", "static-50k", "static-10m"]


def servers(build):
    py = sys.executable
    gunicorn = shutil.which("gunicorn") or "gunicorn"
    return [
        Server("fapws-cpp", [f"{build}/bench/cpp_server", "{port}", "{www}"], ALL_APP + PIPE + ["idle", "pending", "sse"]),
        # The same program on the portable core (-Dreactor=asio, ./dev bench
        # builds it in build/cpp-asio): what macOS and the BSDs get.
        Server("fapws-cpp-asio", [f"{build}-asio/bench/cpp_server", "{port}", "{www}"], ["hello", "10k", "c1000", "idle"]),
        Server("beast-naive", [f"{build}/bench/beast_naive", "{port}"], HELLO),
        Server("beast-sse", [f"{build}/bench/beast_sse", "{port}"], ["sse"]),
        Server("fapws-wsgi", [py, "-m", "fapws", "--bind", "127.0.0.1:{port}", "--log-level", "error",
                              "--static", "/static={www}", "apps:app"], ALL_APP + PIPE + FRAMEWORKS + ["idle", "sse"] + STATIC),
        Server("fapws-static", [f"{VENV_BIN}/fapws-static", "--bind", "127.0.0.1:{port}",
                                "--log-level", "error", "{www}"], [], ),
        Server("nginx", ["nginx", "-c", "{nginx_conf}", "-p", "{tmp}"], ["hello", "pipe16", "c1000", "idle"] + STATIC,
               setup=nginx_setup),
        Server("gunicorn-sync", [gunicorn, "-w", "1", "-b", "127.0.0.1:{port}", "--log-level", "error",
                                 "apps:app"], ALL_APP + FRAMEWORKS),
        Server("gunicorn-gevent", [gunicorn, "-w", "1", "-k", "gevent", "-b", "127.0.0.1:{port}",
                                   "--log-level", "error", "apps:app"], ["hello"]),
        Server("uwsgi", ["uwsgi", "--plugin", "python3", "--http11-socket", "127.0.0.1:{port}",
                         "--wsgi-file", "apps.py", "--callable", "app",
                         "--processes", "1", "--disable-logging", "--need-app"],
               [w for w in ALL_APP if w != "gen"] + FRAMEWORKS),
        # uWSGI's http11 socket neither chunks nor closes a body of unknown
        # length, so wrk never sees the generator's answers end; its users
        # put the HTTP router in front for that (--http-auto-chunked). The
        # router's process counts in the CPU figure, as it would for them.
        Server("uwsgi-router", ["uwsgi", "--plugin", "python3,http", "--http", "127.0.0.1:{port}",
                                "--http-keepalive", "--http-auto-chunked", "--wsgi-file", "apps.py",
                                "--callable", "app", "--processes", "1", "--disable-logging", "--need-app"],
               ["gen"]),
        Server("waitress-1", [py, "-m", "waitress", "--listen", "127.0.0.1:{port}", "--threads", "1",
                              "apps:app"], ["hello"]),
        Server("waitress", [py, "-m", "waitress", "--listen", "127.0.0.1:{port}", "apps:app"], ["hello"]),
        Server("gevent-pywsgi", [py, "gevent_server.py", "{port}", HERE], ["hello"]),
    ]


# fapws-static serves the static workloads from the root, the others under /static/.
def target(server, workload):
    if workload.startswith("static-"):
        name = {"static-1k": "1k.bin", "static-50k": "50k.bin", "static-10m": "10m.bin"}[workload]
        return "/" + name if server.name == "fapws-static" else "/static/" + name
    return {"hello": "/", "pipe16": "/", "c1000": "/", "10k": "/10k", "post": "/echo", "gen": "/gen", "flask": "/flask",
            "django": "/django"}[workload]


# ------------------------------------------------------------------ load

def parse_wrk(out):
    def num(pattern, conv=float, default=0):
        m = re.search(pattern, out)
        return conv(m.group(1)) if m else default

    def ms(text):
        v, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:] if text.endswith(("ms", "us")) else text[-1:]
        return v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    lat = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)", out, re.M) or re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "requests": num(r"(\d+) requests in", int),
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": ms(lat["50"]) if "50" in lat else 0,
        "p99_ms": ms(lat["99"]) if "99" in lat else 0,
        "errors": errors,
        "non2xx": num(r"Non-2xx or 3xx responses: (\d+)", int),
    }


def run_wrk(port, path, duration, conns, lua=None, lua_args=()):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency",
           "--timeout", "5s"]
    if lua:
        cmd += ["-s", lua]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    if lua_args:
        cmd += ["--", *lua_args]
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def measure(server, workload, duration):
    conns = 1000 if workload == "c1000" else 50
    lua = {"post": "post.lua", "pipe16": "pipeline.lua"}.get(workload)
    lua = os.path.join(HERE, lua) if lua else None
    lua_args = ("16",) if workload == "pipe16" else ()
    path = target(server, workload)
    run_wrk(server.port, path, 1, conns, lua, lua_args)  # warm up
    rss0 = rss_kb(server.proc.pid)
    c0 = cpu_seconds(server.proc.pid)
    out = run_wrk(server.port, path, duration, conns, lua, lua_args)
    c1 = cpu_seconds(server.proc.pid)
    r = parse_wrk(out)
    r["cpu_us"] = (c1 - c0) * 1e6 / r["requests"] if r["requests"] else float("nan")
    r["rss_start_kb"] = rss0
    r["rss_peak_kb"] = rss_kb(server.proc.pid)
    r["mb_s"] = 0.0
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    if m:
        r["mb_s"] = float(m.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}.get(m.group(2), 1)
    return r


def idle_memory(server, count):
    """RSS growth per idle keep-alive connection, after one request each."""
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    warm = socket.create_connection(("127.0.0.1", server.port))
    warm.sendall(req)
    warm.recv(4096)
    time.sleep(0.3)
    base = rss_kb(server.proc.pid)
    socks = []
    try:
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(req)
            socks.append(s)
            if i % 500 == 499:  # read as we go so the server is never far behind
                for t in socks[-500:]:
                    t.recv(4096)
        for t in socks[len(socks) - len(socks) % 500:]:
            t.recv(4096)
        time.sleep(1.0)
        grown = rss_kb(server.proc.pid) - base
        t0 = time.perf_counter()
        fresh = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        fresh.sendall(req)
        ok = fresh.recv(4096).startswith(b"HTTP/1.1 200")
        latency_ms = (time.perf_counter() - t0) * 1000
        fresh.close()
        alive = sum(1 for s in socks[:200] if _alive(s))
    finally:
        for s in socks:
            s.close()
        warm.close()
    return {"bytes_per_conn": grown * 1024 / count, "fresh_ms": latency_ms, "fresh_ok": ok,
            "alive_sample": alive, "rss_start_kb": base, "rss_peak_kb": base + grown}


def pending_memory(server, count):
    """RSS growth per request left pending in an asynchronous handler."""
    warm = socket.create_connection(("127.0.0.1", server.port))
    warm.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    warm.recv(4096)
    time.sleep(0.3)
    base = rss_kb(server.proc.pid)
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /pending HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
        time.sleep(1.0)
        grown = rss_kb(server.proc.pid) - base
        t0 = time.perf_counter()
        warm.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        ok = warm.recv(4096).startswith(b"HTTP/1.1 200")
        latency_ms = (time.perf_counter() - t0) * 1000
    finally:
        for s in socks:
            s.close()
        warm.close()
    return {"bytes_per_pending": grown * 1024 / count, "fresh_ms": latency_ms, "fresh_ok": ok,
            "rss_start_kb": base, "rss_peak_kb": base + grown}


def sse_fanout(server, count, events):
    """Server CPU per delivered event: `count` subscribers, `events` events,
    each published by GET /publish once every subscriber has the last one."""
    import selectors

    sel = selectors.DefaultSelector()
    subs, seen, bufs = [], {}, {}
    base = rss_kb(server.proc.pid)
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            subs.append(s)
            seen[s], bufs[s] = 0, b""

        def pump(want, timeout=30.0):
            deadline = time.monotonic() + timeout
            behind = sum(1 for s in subs if seen[s] < want)
            while behind and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(s)
                        continue
                    b = bufs[s] + data
                    n = b.count(b"data: ")
                    was = seen[s]
                    seen[s] += n
                    bufs[s] = b[b.rfind(b"data: ") + 6:] if n else b[-8:]
                    if was < want <= seen[s]:
                        behind -= 1
            return behind == 0

        time.sleep(1.0)  # every subscriber is waiting
        per_sub = (rss_kb(server.proc.pid) - base) * 1024 / count
        ctl = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        c0 = cpu_seconds(server.proc.pid)
        delivered_all = True
        for i in range(events):
            ctl.sendall(b"GET /publish HTTP/1.1\r\nHost: bench\r\n\r\n")
            ctl.recv(4096)
            delivered_all = pump(i + 1) and delivered_all
        c1 = cpu_seconds(server.proc.pid)
        ctl.close()
        delivered = sum(min(v, events) for v in seen.values())
    finally:
        for s in subs:
            s.close()
    return {"cpu_us_per_event": (c1 - c0) * 1e6 / delivered if delivered else float("nan"),
            "delivered": delivered, "expected": count * events, "complete": delivered_all,
            "bytes_per_sub": per_sub}


def _alive(s):
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ report

GOALS = [
    ("C++ hello handler: CPU/request <= 1.0x nginx return 200", "fapws-cpp", "hello", "nginx", "hello", 1.0),
    ("WSGI hello: CPU/request <= 1.00x nginx return 200", "fapws-wsgi", "hello", "nginx", "hello", 1.00),
    ("Static 1 KiB: CPU/request <= 1.0x nginx", "fapws-static", "static-1k", "nginx", "static-1k", 1.0),
    ("Static 50 KiB: CPU/request <= 1.0x nginx", "fapws-static", "static-50k", "nginx", "static-50k", 1.0),
    ("Static via Server.static (Python) 1 KiB <= fapws-static", "fapws-wsgi", "static-1k", "fapws-static", "static-1k", 1.05),
    ("Flask hello: CPU/request <= 0.65x uWSGI", "fapws-wsgi", "flask", "uwsgi", "flask", 0.65),
    ("Django template view: CPU/request <= 0.65x uWSGI", "fapws-wsgi", "django", "uwsgi", "django", 0.65),
]


def valid(rows):
    """Runs that measured the real answer: non-2xx responses mean an error page was measured."""
    return [r for r in rows if r["non2xx"] == 0 and r["requests"] > 0]


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) == r.get(key)]
    return statistics.median(vals) if vals else float("nan")


def ratio(a, b):
    return f"{a / b:.2f}x" if a == a and b == b and b > 0 else "-"


def write_outputs(results, idle, args, started, out_md, asyn=None):
    asyn = asyn or {}
    # A quick run writes under build/: only a full run updates bench/results.
    outdir = os.path.join(ROOT, "build", "bench-quick") if args.quick else os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server", "workload", "round", "requests", "rps", "cpu_us", "p50_ms", "p99_ms", "errors",
                    "non2xx", "mb_s", "rss_start_kb", "rss_peak_kb"])
        for (s, wl), rows in results.items():
            for i, r in enumerate(rows):
                w.writerow([s, wl, r.get("round", i), r["requests"], f"{r['rps']:.0f}", f"{r['cpu_us']:.2f}", r["p50_ms"],
                            r["p99_ms"], r["errors"], r["non2xx"], f"{r['mb_s']:.1f}", r["rss_start_kb"],
                            r["rss_peak_kb"]])

    if asyn:
        with open(os.path.join(outdir, "async.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["server", "test", "value", "detail"])
            for (srv, test), r in asyn.items():
                if test == "pending":
                    w.writerow([srv, test, f"{r['bytes_per_pending']:.1f}", f"fresh {r['fresh_ms']:.2f} ms"])
                else:
                    w.writerow([srv, test, f"{r['cpu_us_per_event']:.3f}",
                                f"{r['delivered']}/{r['expected']} {r.get('bytes_per_sub', 0):.0f}B/sub"])
    with open(os.path.join(outdir, "idle.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server", "connections", "bytes_per_conn", "fresh_ms", "fresh_ok", "rss_start_kb", "rss_peak_kb"])
        for s, r in idle.items():
            w.writerow([s, args.idle, f"{r['bytes_per_conn']:.1f}", f"{r['fresh_ms']:.2f}", int(r["fresh_ok"]),
                        r["rss_start_kb"], r["rss_peak_kb"]])

    def cpu(s, wl):
        return med(valid(results.get((s, wl), [])), "cpu_us")

    def paired(s, wl, ref, rwl):
        """s's CPU/request over ref's, round by round. The median of ratios
        taken within each round (the two ran seconds apart) is steadier than
        a ratio of medians on a noisy machine."""
        mine = {r.get("round", i): r["cpu_us"] for i, r in enumerate(valid(results.get((s, wl), [])))}
        theirs = {r.get("round", i): r["cpu_us"] for i, r in enumerate(valid(results.get((ref, rwl), [])))}
        return [mine[k] / theirs[k] for k in mine if k in theirs and theirs[k] > 0]

    lines = []
    lines.append("## Goals\n")
    lines.append("| goal | measured | verdict |\n|---|---|---|")
    for text, s, wl, ref, rwl, limit in GOALS:
        a, b = cpu(s, wl), cpu(ref, rwl)
        p = paired(s, wl, ref, rwl)
        if p and a == a and b == b:
            r = statistics.median(p)
            lines.append(f"| {text} | {a:.2f} us vs {b:.2f} us; paired ratio **{r:.2f}x** "
                         f"[{min(p):.2f}-{max(p):.2f}] | {'met' if r <= limit else 'MISSED'} |")
        else:
            lines.append(f"| {text} | not measured | - |")
    # The portable core has no goal of its own: its cost is reported.
    p = paired("fapws-cpp-asio", "hello", "fapws-cpp", "hello")
    if p:
        r = statistics.median(p)
        lines.append(f"| asio reactor (portable core, -Dreactor=asio): C++ hello CPU/request against the epoll path "
                     f"(reported, no goal) | {cpu('fapws-cpp-asio', 'hello'):.2f} us vs {cpu('fapws-cpp', 'hello'):.2f} us; "
                     f"paired ratio **{r:.2f}x** [{min(p):.2f}-{max(p):.2f}], "
                     f"{ratio(cpu('fapws-cpp-asio', 'hello'), cpu('nginx', 'hello'))} nginx's | - |")
    for s, r in idle.items():
        if s == "fapws-cpp" or s == "fapws-wsgi":
            verdict = "met" if r["bytes_per_conn"] <= 400 and r["fresh_ms"] < 10 else "MISSED"
            lines.append(f"| 10,000 idle keep-alive connections ({s}): <= 400 B each, fresh request < 10 ms | "
                         f"{r['bytes_per_conn']:.0f} B, {r['fresh_ms']:.1f} ms | {verdict} |")
    pend = asyn.get(("fapws-cpp", "pending"))
    if pend:
        v = pend["bytes_per_pending"]
        lines.append(f"| {args.pending:,} pending asynchronous requests (fapws-cpp): <= 1 KiB each | {v:.0f} B, "
                     f"fresh request {pend['fresh_ms']:.1f} ms | {'met' if v <= 1024 and pend['fresh_ok'] else 'MISSED'} |")
    mine, theirs = asyn.get(("fapws-cpp", "sse")), asyn.get(("beast-sse", "sse"))
    if mine and theirs and theirs["cpu_us_per_event"] > 0:
        r = mine["cpu_us_per_event"] / theirs["cpu_us_per_event"]
        ok = r <= 1.0 and mine["delivered"] == mine["expected"]
        lines.append(f"| SSE fan-out, {args.subscribers:,} subscribers: CPU/event <= 1.0x a Beast coroutine server | "
                     f"{mine['cpu_us_per_event']:.3f} us vs {theirs['cpu_us_per_event']:.3f} us: **{r:.2f}x**, "
                     f"{mine['delivered']:,}/{mine['expected']:,} delivered | {'met' if ok else 'MISSED'} |")
    py = asyn.get(("fapws-wsgi", "sse"))
    if py and mine and theirs and theirs["cpu_us_per_event"] > 0:
        r_cpp = py["cpu_us_per_event"] / mine["cpu_us_per_event"]
        r_beast = py["cpu_us_per_event"] / theirs["cpu_us_per_event"]
        ok = r_beast <= 2.0 and r_cpp <= 2.0 and py["delivered"] == py["expected"]
        lines.append(f"| SSE fan-out from Python (fapws.Pushed), {args.subscribers:,} subscribers: CPU/event <= 2.0x "
                     f"the C++ body writer and a Beast coroutine server | {py['cpu_us_per_event']:.3f} us: "
                     f"**{r_cpp:.2f}x** C++ writer, **{r_beast:.2f}x** Beast, "
                     f"{py['delivered']:,}/{py['expected']:,} delivered | {'met' if ok else 'MISSED'} |")
        b = py.get("bytes_per_sub", float("nan"))
        lines.append(f"| {args.subscribers:,} idle fapws.Pushed subscribers: <= 2 KiB each | {b:.0f} B | "
                     f"{'met' if b <= 2048 else 'MISSED'} |")
    errs = {s: med(results.get((s, "c1000"), []), "errors") for s in ("fapws-cpp", "fapws-wsgi")}
    for s, e in errs.items():
        if e == e:
            lines.append(f"| c=1000 hello ({s}): zero errors | {e:.0f} errors | {'met' if e == 0 else 'MISSED'} |")

    lines.append("\n## All figures (medians over rounds; min-max of CPU/request in brackets)\n")
    lines.append("| server | workload | CPU us/req | req/s | p50 ms | p99 ms | MB/s | errors | non-2xx | RSS start-peak KiB | vs nginx | vs fapws-wsgi |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (s, wl), rows in sorted(results.items(), key=lambda kv: (kv[0][1], med(kv[1], "cpu_us"))):
        c = med(rows, "cpu_us")
        lo = min(r["cpu_us"] for r in rows)
        hi = max(r["cpu_us"] for r in rows)
        ng, fw = cpu("nginx", wl), cpu("fapws-wsgi", wl)
        flag = "" if len(valid(rows)) == len(rows) else " (INVALID: non-2xx answers)"
        lines.append(
            f"| {s}{flag} | {wl} | {c:.2f} [{lo:.2f}-{hi:.2f}] | {med(rows, 'rps'):.0f} | {med(rows, 'p50_ms'):.2f} | "
            f"{med(rows, 'p99_ms'):.2f} | {med(rows, 'mb_s'):.1f} | {med(rows, 'errors'):.0f} | {med(rows, 'non2xx'):.0f} | "
            f"{int(med(rows, 'rss_start_kb'))}-{int(med(rows, 'rss_peak_kb'))} | "
            f"{ratio(c, ng)} | {ratio(c, fw)} |")
    if idle:
        lines.append("\n## Idle keep-alive connections\n")
        lines.append("| server | connections | RSS growth per connection | fresh request | RSS before-after KiB |")
        lines.append("|---|---|---|---|---|")
        for s, r in idle.items():
            lines.append(f"| {s} | {args.idle} | {r['bytes_per_conn']:.0f} B | {r['fresh_ms']:.2f} ms "
                         f"({'ok' if r['fresh_ok'] else 'FAILED'}) | {r['rss_start_kb']}-{r['rss_peak_kb']} |")
    table = "\n".join(lines)
    print(table)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        wls = [w for w in ("hello", "pipe16", "10k", "post", "gen", "static-1k", "static-50k") if any(k[1] == w for k in results)]
        fig, axes = plt.subplots(1, len(wls), figsize=(3.2 * len(wls), 4.5), squeeze=False)
        for ax, wl in zip(axes[0], wls):
            rows = sorted(((s, med(r, "cpu_us")) for (s, w), r in results.items() if w == wl), key=lambda x: x[1])
            names = [s for s, _ in rows]
            vals = [v for _, v in rows]
            colors = ["#d62728" if n.startswith("fapws") else ("#2ca02c" if n == "nginx" else "#7f7f7f") for n in names]
            ax.barh(names, vals, color=colors)
            ax.set_title(wl)
            ax.set_xlabel("server CPU us / request")
            ax.invert_yaxis()
        fig.suptitle("CPU per request, lower is better (server and wrk on separate cores)")
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "cpu_per_request.png"), dpi=90)
    except Exception as e:  # the chart is a convenience; the table is the result
        print(f"(chart not drawn: {e})")

    if out_md:
        versions = {}
        for name, cmd in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"]), ("gunicorn", ["gunicorn", "--version"]),
                          ("uwsgi", ["uwsgi", "--version"])):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True)
                versions[name] = (p.stdout + p.stderr).strip().splitlines()[0]
            except OSError:
                versions[name] = "missing"
        with open(out_md, "w") as f:
            f.write("# Benchmark results\n\n")
            f.write("![CPU per request](results/cpu_per_request.png)\n\n")
            when = (f"Report rebuilt {started:%Y-%m-%d %H:%M} UTC from the last run's CSVs; that run used"
                    if getattr(args, "report", False) else f"Run {started:%Y-%m-%d %H:%M} UTC with")
            f.write(f"{when} `./dev bench` ({args.rounds} rounds x {args.duration} s, "
                    f"interleaved; wrk -t1 -c50, c1000 for that workload), server pinned to CPU {SERVER_CPU}, "
                    f"wrk to CPU {LOAD_CPU}.\n\n")
            f.write(f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}, "
                    f"Python {platform.python_version()}; {'; '.join(f'{k}: {v}' for k, v in versions.items())}.\n\n")
            f.write("CPU/request = (utime+stime of the server's process tree during the run) / requests wrk completed. "
                    "Absolute numbers drift on shared machines; compare ratios within one run. Raw runs: "
                    "`bench/results/runs.csv`.\n\n")
            f.write(table + "\n")
            notes = os.path.join(HERE, "NOTES.md")
            if os.path.exists(notes):
                f.write("\n" + open(notes).read())


def load_saved():
    """The last run's raw figures, to rebuild the report (--report)."""
    results, idle = {}, {}
    with open(os.path.join(HERE, "results", "runs.csv")) as f:
        for row in csv.DictReader(f):
            r = {k: float(row[k]) for k in ("rps", "cpu_us", "p50_ms", "p99_ms", "mb_s")}
            r.update({k: int(row[k]) for k in ("requests", "errors", "non2xx", "rss_start_kb", "rss_peak_kb")})
            r["round"] = int(row["round"])
            results.setdefault((row["server"], row["workload"]), []).append(r)
    path = os.path.join(HERE, "results", "idle.csv")
    if os.path.exists(path):
        with open(path) as f:
            for row in csv.DictReader(f):
                idle[row["server"]] = {"bytes_per_conn": float(row["bytes_per_conn"]), "fresh_ms": float(row["fresh_ms"]),
                                       "fresh_ok": row["fresh_ok"] == "1", "rss_start_kb": int(row["rss_start_kb"]),
                                       "rss_peak_kb": int(row["rss_peak_kb"])}
    asyn = {}
    path = os.path.join(HERE, "results", "async.csv")
    if os.path.exists(path):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row["test"] == "pending":
                    ms = float(row["detail"].split()[1])
                    asyn[(row["server"], "pending")] = {"bytes_per_pending": float(row["value"]), "fresh_ms": ms,
                                                        "fresh_ok": True}
                else:
                    parts = row["detail"].split()
                    got, want = (int(x) for x in parts[0].split("/"))
                    per_sub = float(parts[1][:-5]) if len(parts) > 1 else float("nan")
                    asyn[(row["server"], "sse")] = {"cpu_us_per_event": float(row["value"]), "delivered": got,
                                                    "expected": want, "bytes_per_sub": per_sub}
    return results, idle, asyn


def make_www(path):
    os.makedirs(path, exist_ok=True)
    for name, size in (("1k.bin", 1024), ("50k.bin", 50 * 1024), ("10m.bin", 10 * 1024 * 1024)):
        p = os.path.join(path, name)
        if not os.path.exists(p) or os.path.getsize(p) != size:
            with open(p, "wb") as f:
                f.write(os.urandom(size))
        os.chmod(p, 0o644)
    os.chmod(path, 0o755)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "cpp"))
    ap.add_argument("--quick", action="store_true", help="1 round, 2 s, a subset; judges nothing")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the memory test")
    ap.add_argument("--pending", type=int, default=10000, help="pending asynchronous requests")
    ap.add_argument("--subscribers", type=int, default=10000, help="SSE subscribers for the fan-out test")
    ap.add_argument("--events", type=int, default=10, help="events published in the fan-out test")
    ap.add_argument("--only", default="", help="comma-separated server names")
    ap.add_argument("--workloads", default="", help="comma-separated workloads")
    ap.add_argument("--report", action="store_true", help="rebuild RESULTS.md from bench/results/*.csv only")
    args = ap.parse_args()
    if args.report:
        results, idle, asyn = load_saved()
        write_outputs(results, idle, args, datetime.datetime.utcnow(), os.path.join(HERE, "RESULTS.md"), asyn)
        return 0
    if args.quick:
        args.rounds, args.duration, args.idle = 1, 2, 500
        args.pending, args.subscribers, args.events = 200, 200, 3
        args.only = args.only or "fapws-cpp,fapws-wsgi,fapws-static,nginx"
        args.workloads = args.workloads or "hello,post,gen,static-1k,idle,pending,sse"
    if os.cpu_count() < 2:
        global LOAD_CPU
        LOAD_CPU = "0"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it
    if hard < 2 * args.idle + 100:
        args.idle = max(100, (hard - 100) // 2)
        args.pending = min(args.pending, args.idle)
        args.subscribers = min(args.subscribers, args.idle)

    started = datetime.datetime.utcnow()
    tmp = tempfile.mkdtemp(prefix="fapws-bench-")
    os.chmod(tmp, 0o755)  # nginx's worker runs as nobody and must read www/
    www = os.path.join(tmp, "www")
    make_www(www)
    ctx = {"tmp": tmp, "www": www}
    only = set(filter(None, args.only.split(",")))
    wanted = set(filter(None, args.workloads.split(",")))
    plan = [s for s in servers(args.build) if not only or s.name in only]
    for s in plan:
        if s.name == "fapws-static":
            s.workloads = STATIC
    results, idle = {}, {}
    order = ["hello", "pipe16", "c1000", "10k", "post", "gen", "static-1k", "static-50k", "static-10m", "flask", "django"]
    for rnd in range(args.rounds):
        # Servers compared on a workload run back to back, so drift between
        # them is seconds, not minutes; each round repeats the whole set.
        for wl in order:
            if wanted and wl not in wanted:
                continue
            for s in plan:
                if wl not in s.workloads:
                    continue
                try:
                    s.start(ctx)
                except Exception as e:
                    print(f"skip {s.name}: {e}", file=sys.stderr)
                    continue
                try:
                    r = measure(s, wl, args.duration)
                    r["round"] = rnd
                    results.setdefault((s.name, wl), []).append(r)
                    print(f"round {rnd + 1} {s.name:16} {wl:11} {r['cpu_us']:8.2f} us/req {r['rps']:9.0f} req/s "
                          f"errors {r['errors']} non-2xx {r['non2xx']}", file=sys.stderr)
                finally:
                    s.stop()
    for s in plan:
        if "idle" in s.workloads and (not wanted or "idle" in wanted):
            try:
                s.start(ctx)
                idle[s.name] = idle_memory(s, args.idle)
                print(f"idle {s.name:16} {idle[s.name]['bytes_per_conn']:.0f} B/conn, fresh request "
                      f"{idle[s.name]['fresh_ms']:.2f} ms", file=sys.stderr)
            except Exception as e:
                print(f"idle {s.name}: {e}", file=sys.stderr)
            finally:
                s.stop()
    asyn = {}
    for s in plan:
        for test in ("pending", "sse"):
            if test not in s.workloads or (wanted and test not in wanted):
                continue
            try:
                s.start(ctx)
                if test == "pending":
                    r = asyn[(s.name, test)] = pending_memory(s, args.pending)
                    print(f"pending {s.name:16} {r['bytes_per_pending']:.0f} B/request", file=sys.stderr)
                else:
                    r = asyn[(s.name, test)] = sse_fanout(s, args.subscribers, args.events)
                    print(f"sse {s.name:16} {r['cpu_us_per_event']:.3f} us/event, {r['delivered']}/{r['expected']}",
                          file=sys.stderr)
            except Exception as e:
                print(f"{test} {s.name}: {e}", file=sys.stderr)
            finally:
                s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    write_outputs(results, idle, args, started, None if args.quick else os.path.join(HERE, "RESULTS.md"), asyn)
    if args.quick:
        bad = [k for k, rows in results.items() if not rows or rows[0]["requests"] == 0]
        if bad:
            print(f"bench smoke check: no requests served for {bad}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
