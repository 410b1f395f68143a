"""The supervisor of `fapws --workers N`: pre-forked workers, each one
process, one thread, one loop, sharing the listeners this process bound.

Signals (gunicorn's conventions):
  TERM, INT  graceful stop: workers finish in-flight requests; whatever is
             left after --graceful-timeout is killed. A second one: QUIT.
  QUIT       immediate stop.
  HUP        reload: new workers import the current code and start serving,
             then the old ones drain and exit. No request fails.
  USR1       workers reopen their access log (after flushing it).
  TTIN/TTOU  one worker more / less.
A worker whose loop has not turned for --timeout seconds is killed and
replaced; one past --max-requests or --max-rss finishes its requests and is
replaced. Workers that keep dying at start-up are restarted with back-off.
"""

import errno
import mmap
import os
import random
import select
import signal
import struct
import sys
import time
import traceback

from fapws import _core, systemd

MAX_WORKERS = 1024
SLOT = 128           # per worker: heartbeat, ready flag, the last request line
_HB = struct.Struct("dd")
BOOT_ERROR = 3       # a worker's exit code when the application did not load


def log(level, message):
    _core.log(level, message)


class Worker:
    __slots__ = ("pid", "slot", "started", "generation", "stopping", "killed")

    def __init__(self, pid, slot, generation):
        self.pid, self.slot, self.generation = pid, slot, generation
        self.started = time.monotonic()
        self.stopping = False
        self.killed = None


class Arbiter:
    SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGTTIN", "SIGTTOU", "SIGCHLD")

    def __init__(self, server, args, boot):
        """boot(server) runs in each new worker: it imports the application
        and routes it, unless it was preloaded (then boot is None)."""
        self.server, self.args, self.boot = server, args, boot
        self.count = args.workers
        self.workers = {}
        self.generation = 0
        self.slots = mmap.mmap(-1, SLOT * MAX_WORKERS)
        self.free = list(range(MAX_WORKERS - 1, -1, -1))
        self.pending = []
        self.stopping = None  # None, "graceful" or "now"
        self.deadline = None
        self.failures = 0
        self.next_spawn = 0.0
        self.reload = None  # the generation being started by a HUP
        self.booted = False  # some worker got ready once
        self.exit_code = 0
        self.board = None
        if args.metrics:
            from fapws.metrics import Board

            self.board = Board(MAX_WORKERS)

    # ------------------------------------------------------------ master
    def run(self):
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for name in self.SIGNALS:
            signal.signal(getattr(signal, name), self._on_signal)
        signal.set_wakeup_fd(self.wfd, warn_on_full_buffer=False)
        log("info", f"fapws: supervisor {os.getpid()} starting {self.count} worker(s)")
        for _ in range(self.count):
            self.spawn()
        try:
            while self.workers or not self.stopping:
                self.wait(0.2)
                self.handle_signals()
                self.reap()
                if self.stopping:
                    if self.deadline and time.monotonic() > self.deadline:
                        self.kill_all(signal.SIGKILL, "graceful timeout passed")
                        self.deadline = None
                    continue
                if not self.booted and any(self.ready(w) for w in self.workers.values()):
                    self.booted = True
                    systemd.notify(f"READY=1\nMAINPID={os.getpid()}")
                self.watchdog()
                self.progress_reload()
                self.maintain()
        finally:
            signal.set_wakeup_fd(-1)
        log("info", "fapws: supervisor stopped")
        return self.exit_code

    def wait(self, timeout):
        try:
            select.select([self.rfd], [], [], timeout)
            while os.read(self.rfd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _on_signal(self, signum, _frame):
        self.pending.append(signum)

    def handle_signals(self):
        while self.pending:
            sig = self.pending.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:
                    self.stop_now()
                else:
                    self.stop_graceful(signal.Signals(sig).name)
            elif sig == signal.SIGQUIT:
                self.stop_now()
            elif sig == signal.SIGHUP and not self.stopping:
                self.start_reload()
            elif sig == signal.SIGUSR1:
                log("info", "fapws: reopening log files")
                self.signal_all(signal.SIGUSR1)
            elif sig == signal.SIGTTIN and not self.stopping:
                self.count = min(MAX_WORKERS, self.count + 1)
                log("info", f"fapws: SIGTTIN: {self.count} worker(s)")
            elif sig == signal.SIGTTOU and not self.stopping:
                self.count = max(1, self.count - 1)
                log("info", f"fapws: SIGTTOU: {self.count} worker(s)")

    def stop_graceful(self, why):
        log("info", f"fapws: {why}: graceful stop (up to {self.args.graceful_timeout:g} s)")
        systemd.notify("STOPPING=1")
        self.stopping = "graceful"
        self.deadline = time.monotonic() + self.args.graceful_timeout
        self.signal_all(signal.SIGTERM)

    def stop_now(self):
        log("info", "fapws: immediate stop")
        systemd.notify("STOPPING=1")
        self.stopping = "now"
        self.deadline = time.monotonic() + 2.0
        self.signal_all(signal.SIGQUIT)

    def signal_all(self, sig):
        for w in list(self.workers.values()):
            self._kill(w, sig)

    def kill_all(self, sig, why):
        for w in list(self.workers.values()):
            log("warning", f"fapws: worker {w.pid} killed: {why}")
            self._kill(w, sig)

    @staticmethod
    def _kill(w, sig):
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            self.free.append(w.slot)
            code = os.waitstatus_to_exitcode(status)
            lived = time.monotonic() - w.started
            if self.board is not None:
                self.board.retire(w.slot, restarted=not (self.stopping or w.stopping))
            if self.stopping or w.stopping:
                continue
            if code == BOOT_ERROR:
                self.boot_failed(w)
                continue
            if code == 0 and w.killed is None:
                continue  # recycled (max requests or RSS): replaced by maintain()
            how = w.killed or (f"signal {-code}" if code < 0 else f"exit code {code}")
            log("warning", f"fapws: worker {pid} ended ({how}); starting another")
            if lived < 1.0:
                self.failures += 1
                delay = min(30.0, 0.5 * 2 ** self.failures)
                log("warning", f"fapws: workers die at start-up; next attempt in {delay:g} s")
                self.next_spawn = time.monotonic() + delay
            elif lived > 5.0:
                self.failures = 0

    def boot_failed(self, w):
        if self.reload is not None and w.generation == self.reload:
            log("error", "fapws: reload failed: the new code did not load; the old workers go on")
            for other in self.workers.values():
                if other.generation == self.reload:
                    other.stopping = True
                    self._kill(other, signal.SIGTERM)
            self.reload = None
            self.generation -= 1
            systemd.notify("READY=1")
            return
        if not self.booted:
            print("fapws: error: the application failed to load in the worker (traceback above)",
                  file=sys.stderr)
            self.exit_code = 2
            self.stop_now()
            return
        self.failures += 1
        delay = min(30.0, 0.5 * 2 ** self.failures)
        log("error", f"fapws: a new worker could not load the application; next attempt in {delay:g} s")
        self.next_spawn = time.monotonic() + delay

    def current(self):
        return [w for w in self.workers.values() if w.generation == self.generation and not w.stopping]

    def maintain(self):
        live = self.current()
        if len(live) > self.count:
            for w in sorted(live, key=lambda w: w.started, reverse=True)[: len(live) - self.count]:
                w.stopping = True
                self._kill(w, signal.SIGTERM)
        elif len(live) < self.count and time.monotonic() >= self.next_spawn:
            for _ in range(self.count - len(live)):
                self.spawn()

    def ready(self, w):
        return _HB.unpack_from(self.slots, w.slot * SLOT)[1] > 0

    def heartbeat(self, w):
        return _HB.unpack_from(self.slots, w.slot * SLOT)[0]

    def watchdog(self):
        timeout = self.args.timeout
        now = time.monotonic()
        if not timeout:
            return
        for w in list(self.workers.values()):
            # A worker still importing the application has no heartbeat yet.
            if w.killed is None and self.ready(w) and now - self.heartbeat(w) > timeout:
                raw = bytes(self.slots[w.slot * SLOT + _HB.size:(w.slot + 1) * SLOT]).split(b"\0", 1)[0]
                what = raw.decode("latin-1") or "no request"
                log("error", f"fapws: worker {w.pid} timed out: its loop did not turn for {timeout:g} s "
                             f"(last request started: {what}); killed, request aborted")
                w.killed = f"watchdog, {timeout:g} s"
                self._kill(w, signal.SIGKILL)

    def start_reload(self):
        log("info", "fapws: SIGHUP: reloading (new workers first, then the old ones drain)")
        systemd.notify("RELOADING=1")
        if self.reload is not None:
            return
        self.generation += 1
        self.reload = self.generation
        for _ in range(self.count):
            self.spawn()

    def progress_reload(self):
        if self.reload is None:
            return
        new = [w for w in self.workers.values() if w.generation == self.reload]
        if len(new) < self.count or not all(self.ready(w) for w in new):
            return
        for w in self.workers.values():
            if w.generation < self.reload and not w.stopping:
                w.stopping = True
                self._kill(w, signal.SIGTERM)
        log("info", "fapws: reloaded; old workers draining")
        self.reload = None
        systemd.notify("READY=1")

    def spawn(self):
        slot = self.free.pop()
        self.slots[slot * SLOT:(slot + 1) * SLOT] = bytes(SLOT)
        pid = self.server.fork()
        if pid == 0:
            code = 0
            try:
                code = self.worker(slot)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        self.workers[pid] = Worker(pid, slot, self.generation)

    # ------------------------------------------------------------ worker
    def worker(self, slot):
        signal.set_wakeup_fd(-1)
        os.close(self.rfd)
        os.close(self.wfd)
        for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGCHLD"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        server, args = self.server, self.args
        offset = slot * SLOT
        slots = self.slots

        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGQUIT, lambda *_: server.stop_now())
        signal.signal(signal.SIGUSR1, lambda *_: reopen_logs(server, args))

        if self.boot is not None:
            try:
                self.boot(server, slots, offset)
            except BaseException:
                traceback.print_exc()
                return BOOT_ERROR
        if self.board is not None:
            from fapws.metrics import Metrics

            metrics = Metrics(server, self.board, slot)
            server.route(args.metrics, metrics)
            server.add_timer(1.0, metrics.publish)
            metrics.publish()

        def beat():
            _HB.pack_into(slots, offset, time.monotonic(), 1.0)

        interval = min(1.0, args.timeout / 4) if args.timeout else 1.0
        server.add_timer(interval, beat)
        limit = None
        if args.max_requests:
            limit = args.max_requests + random.randint(0, args.max_requests_jitter or 0)
        if limit or args.max_rss:
            server.add_timer(0.25, recycler(server, limit, args.max_rss))
        if args.reload:
            server.add_timer(1.0, module_watcher())
        beat()
        server.run(handle_signals=False)
        if self.board is not None:
            metrics.publish()  # the final counters, before the supervisor retires them
        return 0


def reopen_logs(server, args):
    if args.access_log:
        from fapws.cli import _log_format

        server.access_log(args.access_log, **_log_format(args.access_log_format))


def recycler(server, limit, max_rss_mb):
    page = os.sysconf("SC_PAGE_SIZE")
    state = {"done": False}

    def check():
        if state["done"]:
            return
        why = None
        if limit and server.stats()["requests"] >= limit:
            why = f"{limit} requests served"
        elif max_rss_mb:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page
            if rss > max_rss_mb * 1024 * 1024:
                why = f"RSS {rss // (1024 * 1024)} MB above {max_rss_mb} MB"
        if why:
            state["done"] = True
            log("info", f"fapws: worker {os.getpid()}: {why}; finishing its requests, then replaced")
            server.stop()

    return check


def module_watcher():
    """--reload: the application's own modules (not the standard library or
    site-packages), polled once a second; a change asks the supervisor for a
    reload (SIGHUP), so the edited code is served by fresh workers."""
    import sysconfig

    skip = tuple({os.path.realpath(p) for p in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                                                 sysconfig.get_paths()["platlib"], sys.prefix, sys.base_prefix)})

    def files():
        out = {}
        for m in list(sys.modules.values()):
            f = getattr(m, "__file__", None)
            if not f or not f.endswith(".py"):
                continue
            f = os.path.realpath(f)
            if f.startswith(skip):
                continue
            try:
                out[f] = os.stat(f).st_mtime_ns
            except OSError:
                pass
        return out

    seen = files()
    state = {"asked": False}

    def check():
        if state["asked"]:
            return
        for f, mtime in files().items():
            if seen.get(f, mtime) != mtime:
                log("info", f"fapws: {f} changed; reloading")
                state["asked"] = True
                try:
                    os.kill(os.getppid(), signal.SIGHUP)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
                return

    return check
