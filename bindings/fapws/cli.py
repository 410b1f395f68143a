"""fapws [OPTIONS] MODULE:APP -- serve a WSGI application.

Conventions of gunicorn and uvicorn. A bad argument ends with one line on
stderr and exit code 2.
"""

import argparse
import importlib
import os
import sys

from fapws import _core
from fapws.errors import SetupError
from fapws.wsgi import Server

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"fapws: error: {message}\n")


def _rate(text):
    """A size where 0 means off."""
    return 0 if text.strip() == "0" else _size(text)


def _size(text):
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().rstrip("b")
    mult = units.get(t[-1:], 1)
    if t[-1:] in units:
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 65536, 64k, 1g)")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (seconds)")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return value


def _workers(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}")
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"workers must be between 1 and 1024: {text!r}")
    return value


def _static(text):
    prefix, sep, directory = text.partition("=")
    if not sep or not prefix.startswith("/") or not directory:
        raise argparse.ArgumentTypeError(f"invalid --static {text!r} (expected /PREFIX=DIR)")
    return prefix, directory


def build_parser():
    d = _core.defaults()
    p = _Parser(
        prog="fapws",
        description="Serve a WSGI application with FAPWS: one process, one thread, one event loop.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("app", metavar="MODULE:APP", nargs="?",
                   help="the WSGI application, e.g. myproject.wsgi:application (APP defaults to 'application', then 'app')")
    p.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                   help="HOST:PORT, [IPv6]:PORT, unix:PATH or fd:N; repeatable (default 127.0.0.1:8080)")
    p.add_argument("--static", action="append", type=_static, default=[], metavar="/PREFIX=DIR",
                   help="serve DIR under /PREFIX with the C++ static file handler; repeatable")
    p.add_argument("--static-max-age", type=int, default=None, metavar="S",
                   help="Cache-Control max-age for --static files")
    p.add_argument("--chdir", metavar="DIR", help="change to DIR before importing the application")
    p.add_argument("--access-log", metavar="FILE", help="access log file, or - for stdout (off by default)")
    p.add_argument("--access-log-format", choices=["common", "combined"], default="common")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "off"])
    p.add_argument("--debug", action="store_true", help="show tracebacks in 500 pages (never in production)")
    p.add_argument("-w", "--workers", type=_workers, default=1, metavar="N",
                   help="worker processes sharing the listeners, each one loop; restarted if they die")
    p.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT, for several processes on one port")
    p.add_argument("--backlog", type=int, default=d["backlog"], help="listen backlog")
    p.add_argument("--forwarded-allow-ips", default="", metavar="IPS",
                   help="comma-separated proxy addresses whose X-Forwarded-Proto is trusted ('*' for any)")
    p.add_argument("--limit-header", type=_size, default=d["header_limit"], metavar="BYTES",
                   help="request line + headers (431 above)")
    p.add_argument("--limit-header-line", type=_size, default=d["header_line_limit"], metavar="BYTES",
                   help="one header line (431) or request line (414)")
    p.add_argument("--limit-body", type=_size, default=d["body_limit"], metavar="BYTES",
                   help="request body (413 above)")
    p.add_argument("--limit-body-memory", type=_size, default=d["body_memory_limit"], metavar="BYTES",
                   help="bodies above this are spooled to a temporary file")
    p.add_argument("--limit-body-rate", type=_rate, default=d["body_min_rate"], metavar="BYTES",
                   help="a body must average this many bytes/s once --timeout-io has passed (0: off)")
    p.add_argument("--limit-pipeline", type=int, default=d["max_pipelined"], metavar="N",
                   help="pipelined responses batched into one write")
    p.add_argument("--limit-defer", type=int, default=d["defer_limit"], metavar="N", help="defer queue size")
    p.add_argument("--block-size", type=_size, default=d["block_size"], metavar="BYTES",
                   help="block size for streamed responses")
    p.add_argument("--timeout-header", type=_seconds, default=d["header_timeout"], metavar="S",
                   help="time to receive a request head (slowloris defence)")
    p.add_argument("--timeout-keepalive", type=_seconds, default=d["keepalive_timeout"], metavar="S",
                   help="idle keep-alive connection")
    p.add_argument("--timeout-io", type=_seconds, default=d["io_timeout"], metavar="S",
                   help="inactivity while reading a body or writing a response")
    p.add_argument("--timeout-shutdown", type=_seconds, default=d["shutdown_timeout"], metavar="S",
                   help="graceful stop: time left to in-flight requests")
    p.add_argument("--version", action="version", version="fapws " + __import__("fapws").__version__)
    return p


def _print_import_error():
    """The application's own error: its traceback, with file and line, goes
    to stderr before the one-line summary (a SyntaxError shows the line)."""
    import traceback

    traceback.print_exc()


def load_app(spec):
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SetupError(f"invalid application {spec!r} (expected MODULE:APP)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise SetupError(f"cannot import {module_name!r}: no such module") from None
        _print_import_error()
        raise SetupError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # the application's own import-time error
        _print_import_error()
        raise SetupError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    names = [attr] if attr else ["application", "app"]
    for name in names:
        obj = module
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if not callable(obj):
            raise SetupError(f"{module_name}:{name} is not callable")
        return obj
    raise SetupError(f"module {module_name!r} has no attribute {' or '.join(map(repr, names))}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.app and not args.static:
        build_parser().error("give a MODULE:APP, or --static /PREFIX=DIR")
    try:
        _core.set_log_level(args.log_level)
        if args.chdir:
            try:
                os.chdir(args.chdir)
            except OSError as e:
                raise SetupError(f"--chdir {args.chdir}: {e.strerror}") from None
            sys.path.insert(0, os.getcwd())
        app = load_app(args.app) if args.app else None
        server = Server(
            debug=args.debug,
            multiprocess=args.workers > 1,
            forwarded_allow_ips=[ip.strip() for ip in args.forwarded_allow_ips.split(",") if ip.strip()],
            header_limit=args.limit_header,
            header_line_limit=args.limit_header_line,
            body_limit=args.limit_body,
            body_memory_limit=args.limit_body_memory,
            body_min_rate=args.limit_body_rate,
            max_pipelined=args.limit_pipeline,
            defer_limit=args.limit_defer,
            block_size=args.block_size,
            header_timeout=args.timeout_header,
            keepalive_timeout=args.timeout_keepalive,
            io_timeout=args.timeout_io,
            shutdown_timeout=args.timeout_shutdown,
            backlog=args.backlog,
        )
        for prefix, directory in args.static:
            server.static(prefix, directory, max_age=args.static_max_age)
        if app is not None:
            server.route("/", app)
        if args.access_log:
            server.access_log(args.access_log, combined=args.access_log_format == "combined")
        for spec in args.bind or ["127.0.0.1:8080"]:
            address, port = server.listen(spec, reuse_port=args.reuse_port)
            where = address if address.startswith("unix:") else f"http://{address}:{port}/"
            _core.log("info", f"fapws listening on {where}")
    except (SetupError, ValueError, OSError) as e:
        print(f"fapws: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.workers > 1:
        return _arbiter(server, args.workers)
    server.run()
    return 0


def _arbiter(server, count):
    """Pre-fork: the workers inherit the listeners and each runs its own
    loop; this process only supervises. SIGTERM or SIGINT stops the workers
    gracefully; a second SIGINT stops them at once. A worker that dies is
    replaced (after a second's pause when it died young)."""
    import signal
    import time

    workers = {}  # pid -> start time
    state = {"signals": 0}

    def spawn():
        pid = server.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                server.run()
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        workers[pid] = time.monotonic()

    def on_signal(signum, _frame):
        state["signals"] += 1
        forward = signal.SIGTERM if state["signals"] == 1 else signal.SIGINT
        for pid in list(workers):
            try:
                os.kill(pid, forward)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _core.log("info", f"fapws: {count} workers")
    for _ in range(count):
        spawn()
    while workers:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        started = workers.pop(pid, None)
        if started is None or state["signals"]:
            continue
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit code {os.waitstatus_to_exitcode(status)}")
        _core.log("warning", f"worker {pid} ended ({how}); starting another")
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)
        if not state["signals"]:
            spawn()
    return 0
