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


def _seconds_or_zero(text):
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return _seconds(text)  # its checks and messages


def _workers(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}")
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"workers must be between 1 and 1024: {text!r}")
    return value


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _octal(text):
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid octal mode {text!r} (e.g. 007, 660)")
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range: {text!r}")
    return value


def _proxies(text):
    import ipaddress

    for item in (t.strip() for t in text.split(",")):
        if item and item not in ("*", "unix"):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"invalid entry {item!r} (an address, a CIDR range such as 10.0.0.0/8, '*' or 'unix')")
    return text


def _log_format(text):
    if text in ("common", "combined"):
        return {"combined": text == "combined"}
    return {"format": text}


def _prefix(text):
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"a path starting with '/' expected, not {text!r}")
    return text


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
    p.add_argument("--access-log-format", default="common", metavar="FORMAT",
                   help="common, combined, or gunicorn's atoms: %%(h)s client, %%(r)s request line, %%(s)s "
                        "status, %%(b)s bytes, %%(D)s microseconds, %%(L)s seconds, %%({header}i)s, ... "
                        "(README)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "off"],
                   metavar="LEVEL", help="debug, info, warning, error or off: the least severe error-log line kept")
    p.add_argument("--log-config", metavar="FILE",
                   help="Python logging configuration (.json: dictConfig, else an .ini fileConfig); the error log "
                        "then goes to the 'fapws.error' logger, after --log-level filtered it")
    p.add_argument("--debug", action="store_true", help="show tracebacks in 500 pages (never in production)")
    p.add_argument("-w", "--workers", type=_workers, default=None, metavar="N",
                   help="run a supervisor and N worker processes sharing the listeners (without it: one "
                        "process). Needed by --timeout, --max-requests, --max-rss, --preload; SIGHUP then "
                        "reloads with no failed request, SIGTTIN/SIGTTOU add/remove a worker")
    p.add_argument("--preload", action="store_true",
                   help="import the application once in the supervisor (shared memory) instead of in each "
                        "worker after the fork (reloadable code; the default)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                   help="kill and replace a worker whose loop has not turned for S seconds")
    p.add_argument("--graceful-timeout", type=_seconds, default=30.0, metavar="S",
                   help="on SIGTERM/SIGINT, kill what is still running after S seconds")
    p.add_argument("--busy-release", type=_seconds_or_zero, default=1.0, metavar="S",
                   help="with --workers 2 or more: once a worker has been stuck S seconds in one request, its "
                        "idle keep-alive connections are closed, so their next requests go to a free worker "
                        "(0: never)")
    p.add_argument("--max-requests", type=_count, default=0, metavar="N",
                   help="replace a worker after N requests (0: never)")
    p.add_argument("--max-requests-jitter", type=_count, default=0, metavar="J",
                   help="add 0..J to --max-requests per worker, so they do not restart together")
    p.add_argument("--max-rss", type=_count, default=0, metavar="MB",
                   help="replace a worker whose resident memory passes MB megabytes (0: never)")
    p.add_argument("--reload", action="store_true",
                   help="development: reload when a module of the application changes (implies --workers 1)")
    p.add_argument("--factory", action="store_true",
                   help="MODULE:APP is a function returning the application; call it")
    p.add_argument("--metrics", type=_prefix, default=None, metavar="PATH",
                   help="serve the counters in Prometheus' text format at PATH (e.g. /metrics), summed over "
                        "workers; protect it at your proxy")
    p.add_argument("--pid", metavar="FILE", help="write the main process id to FILE")
    p.add_argument("--user", metavar="USER", help="switch to USER after binding (when started as root)")
    p.add_argument("--group", metavar="GROUP", help="switch to GROUP after binding (default: USER's group)")
    p.add_argument("--umask", type=_octal, default=None, metavar="MODE",
                   help="umask for files and UNIX sockets created, e.g. 007")
    p.add_argument("--chmod-socket", type=_octal, default=None, metavar="MODE",
                   help="mode of UNIX sockets created, e.g. 660 (so a proxy in the group can connect)")
    p.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT, for several processes on one port")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="every --bind listener expects HAProxy's PROXY header (v1 or v2) first: it gives the "
                        "client's address; a connection without one is refused")
    p.add_argument("--backlog", type=int, default=d["backlog"], help="listen backlog")
    p.add_argument("--forwarded-allow-ips", type=_proxies, default="127.0.0.1,::1,unix", metavar="IPS",
                   help="proxies whose X-Forwarded-For/-Proto and Forwarded headers set REMOTE_ADDR and "
                        "wsgi.url_scheme: addresses, CIDR ranges, 'unix' (UNIX socket peers), '*' (any); "
                        "'' for none")
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
    p.add_argument("-c", "--config", metavar="FILE",
                   help="a Python file of settings (bind = '0.0.0.0:8000', workers = 4, ...; names as the options "
                        "with '_' for '-'). Precedence: command line > FAPWS_CMD_ARGS > FAPWS_<NAME> > file > default")
    p.add_argument("--version", action="version", version="fapws " + __import__("fapws").__version__)
    return p


def use_log_config(path):
    """--log-config: Python logging configured from FILE, and the core's error
    lines sent to the "fapws.error" logger (--log-level filters them first)."""
    import atexit
    import logging
    import logging.config

    try:
        if path.endswith(".json"):
            import json

            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(json.load(f))
        else:
            with open(path, encoding="utf-8"):
                pass  # fileConfig says "KeyError: 'formatters'" for a missing file
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as e:
        raise SetupError(f"--log-config {path}: {type(e).__name__}: {e}") from None
    logger = logging.getLogger("fapws.error")
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
    _core.set_log_handler(lambda level, message: logger.log(levels.get(level, logging.ERROR), message))
    atexit.register(_core.set_log_handler, None)


def settings_table():
    """Every setting as a Markdown table, from the parser itself: the
    README's "All settings" block is this output (./dev docs writes it, a
    test checks it), so the flags, environment variables, config-file keys
    and defaults are declared once, in build_parser()."""
    rows = ["| option | config file key / environment | default | meaning |", "|---|---|---|---|"]
    for a in build_parser()._actions:
        if a.dest in ("help", "version", "config"):
            continue
        if a.option_strings:
            flags = ", ".join(a.option_strings)
            if a.nargs != 0:
                flags += " " + (a.metavar or a.dest.upper())
        else:
            flags = a.metavar
        if a.nargs == 0:
            default = "off"
        elif a.default in (None, [], ""):
            default = ""
        else:
            default = f"`{a.default}`"
        # Help strings are %-formatted, as argparse prints them.
        text = ((a.help or "") % {"default": a.default}).replace("|", "\\|")
        rows.append(f"| `{flags}` | `{a.dest}`, `FAPWS_{a.dest.upper()}` | {default} | {text} |")
    return "\n".join(rows) + "\n"


def _settings(parser, argv):
    """Defaults from the config file and FAPWS_<NAME> variables; returns the
    arguments to parse (FAPWS_CMD_ARGS first, then the command line, which
    wins) and the list settings the command line did not give."""
    import shlex

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(argv)
    env_args = shlex.split(os.environ.get("FAPWS_CMD_ARGS", ""))
    if not known.config:
        known, _ = pre.parse_known_args(env_args)
    actions = {a.dest: a for a in parser._actions
               if (a.option_strings or a.dest == "app") and a.dest not in ("help", "version", "config")}
    values = {}
    if known.config:
        import runpy

        try:
            found = runpy.run_path(known.config)
        except FileNotFoundError:
            parser.error(f"--config {known.config}: no such file")
        except Exception as e:
            parser.error(f"--config {known.config}: {type(e).__name__}: {e}")
        for key, value in found.items():
            if key.startswith("_") or callable(value) or type(value).__name__ == "module":
                continue
            if key not in actions:
                parser.error(f"--config {known.config}: unknown setting {key!r}")
            values[key] = value
    for dest in actions:
        env = os.environ.get("FAPWS_" + dest.upper())
        if env is not None and dest not in ("app",):
            values[dest] = env.split(",") if isinstance(actions[dest], argparse._AppendAction) else env
    late = {}
    for dest, value in values.items():
        action = actions[dest]
        where = f"setting {dest!r}"
        try:
            if isinstance(action, argparse._StoreTrueAction):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            elif isinstance(action, argparse._AppendAction):
                items = [value] if isinstance(value, str) else list(value)
                late[dest] = [action.type(str(v)) if action.type else str(v) for v in items]
                continue
            elif action.type is not None:
                value = action.type(str(value))
            elif action.choices is not None and value not in action.choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(action.choices)}")
        except (argparse.ArgumentTypeError, ValueError) as e:
            parser.error(f"{where}: {e}")
        parser.set_defaults(**{dest: value})
    return env_args + list(argv), late


def _print_import_error():
    """The application's own error: its traceback, with file and line, goes
    to stderr before the one-line summary (a SyntaxError shows the line)."""
    import traceback

    traceback.print_exc()


def load_app(spec, factory=False):
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SetupError(f"invalid application {spec!r} (expected MODULE:APP)")
    if not attr and module_name.endswith(".py"):
        guess = os.path.splitext(os.path.basename(module_name))[0]
        raise SetupError(f"{spec!r} is a file name; give a module, e.g. {guess}:app")
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
        if factory:
            try:
                obj = obj()
            except Exception as e:
                _print_import_error()
                raise SetupError(f"the factory {module_name}:{name}() failed: {type(e).__name__}: {e}") from None
            if not callable(obj):
                raise SetupError(f"the factory {module_name}:{name}() returned {type(obj).__name__}, "
                                 "not a WSGI application")
        elif _looks_like_factory(obj):
            raise SetupError(f"{module_name}:{name} takes no arguments: an application factory? "
                             "add --factory to call it")
        return obj
    raise SetupError(f"module {module_name!r} has no attribute {' or '.join(map(repr, names))}")


def _looks_like_factory(obj):
    """A plain function of no parameters cannot be a WSGI application (it
    takes environ and start_response): every request would be a 500."""
    import inspect

    if not inspect.isfunction(obj):
        return False
    try:
        return len(inspect.signature(obj).parameters) == 0
    except (TypeError, ValueError):
        return False


SUPERVISED = ("timeout", "max_requests", "max_rss", "preload")


def main(argv=None):
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    combined, late = _settings(parser, given)
    args = parser.parse_args(combined)
    for dest, value in late.items():
        if not getattr(args, dest):
            setattr(args, dest, value)  # a list from the file or environment; the command line's replaces it
    if not args.app and not args.static:
        parser.error("give a MODULE:APP, or --static /PREFIX=DIR")
    if args.workers is None:
        if args.reload:
            args.workers = 1
        else:
            for name in SUPERVISED:
                if getattr(args, name):
                    parser.error(f"--{name.replace('_', '-')} needs --workers N: a supervisor does it")
    cwd = os.getcwd()
    pidfile = None
    try:
        _core.set_log_level(args.log_level)
        if args.log_config:
            use_log_config(args.log_config)
        if args.umask is not None:
            os.umask(args.umask)
        if args.chdir:
            try:
                os.chdir(args.chdir)
            except OSError as e:
                raise SetupError(f"--chdir {args.chdir}: {e.strerror}") from None
            sys.path.insert(0, os.getcwd())
        supervised = args.workers is not None
        app = None
        if args.app and (not supervised or args.preload):
            app = load_app(args.app, args.factory)
        server = make_server(args)
        if app is not None:
            server.route("/", app)
        if args.metrics and not supervised:
            from fapws.metrics import Metrics

            server.route(args.metrics, Metrics(server))
        bind(server, args)
        if args.pid:
            pidfile = write_pid(args.pid)  # as root, like nginx: /run is root's
        drop_privileges(args)
    except (SetupError, ValueError, OSError) as e:
        print(f"fapws: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if supervised:
            from fapws.arbiter import Arbiter

            boot = None
            if args.app and not args.preload:
                def boot(server, slots, offset):
                    server.route("/", watched(load_app(args.app, args.factory), args, slots, offset))
            return Arbiter(server, args, boot).run()
        return serve_single(server, args, cwd, given)
    finally:
        if pidfile:
            try:
                os.unlink(pidfile)
            except OSError:
                pass


def make_server(args):
    server = Server(
        debug=args.debug,
        multiprocess=args.workers is not None and args.workers > 1,
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
        latency_histogram=bool(args.metrics),
        # Fair keep-alive between workers; one process has nobody to hand to.
        busy_release=args.busy_release if args.workers is not None and args.workers > 1 else 0,
    )
    for prefix, directory in args.static:
        server.static(prefix, directory, max_age=args.static_max_age)
    if args.access_log:
        server.access_log(args.access_log, **_log_format(args.access_log_format))
    return server


def bind(server, args):
    """Listeners: descriptors handed over by our own re-exec (SIGHUP in one
    process) or by systemd (LISTEN_FDS), then --bind (default 127.0.0.1:8080)."""
    from fapws import systemd

    inherited = {}
    for item in os.environ.pop("FAPWS_LISTEN_FDS", "").split(","):
        if "=" in item:
            i, fd = item.split("=")
            inherited[int(i)] = int(fd)
    activated = systemd.listen_fds()
    specs = [f"fd:{fd}" for fd in activated] + (args.bind or ([] if activated else ["127.0.0.1:8080"]))
    for i, spec in enumerate(specs):
        real = f"fd:{inherited[i]}" if i in inherited else spec
        address, port = server.listen(real, reuse_port=args.reuse_port, proxy_protocol=args.proxy_protocol)
        if address.startswith("unix:") and args.chmod_socket is not None and not real.startswith("fd:"):
            path = address[5:]
            if not path.startswith("@"):
                os.chmod(path, args.chmod_socket)
        where = address if address.startswith("unix:") else f"http://{address}:{port}/"
        _core.log("info", f"fapws listening on {where}")
    server.bind_specs = specs


def drop_privileges(args):
    if not args.user and not args.group:
        return
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(args.user) if args.user else None
    except KeyError:
        raise SetupError(f"--user {args.user}: no such user") from None
    try:
        gid = grp.getgrnam(args.group).gr_gid if args.group else pw.pw_gid
    except KeyError:
        raise SetupError(f"--group {args.group}: no such group") from None
    try:
        if pw:
            os.initgroups(pw.pw_name, gid)
        else:
            os.setgroups([])
        os.setgid(gid)
        if pw:
            os.setuid(pw.pw_uid)
    except PermissionError:
        raise SetupError("--user/--group: switching needs root") from None


def write_pid(path):
    path = os.path.abspath(path)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    return path


def watched(app, args, slots, offset):
    """With --timeout, each request's line goes into the worker's slot, so
    the supervisor can name the request a stuck worker was serving."""
    if not args.timeout:
        return app
    start = offset + 16
    size = 112

    def app_with_line(environ, start_response):
        line = f"{environ.get('REQUEST_METHOD', '')} {environ.get('REQUEST_URI', '')}".encode("latin-1", "replace")
        slots[start:start + size] = line[: size - 1].ljust(size, b"\0")
        return app(environ, start_response)

    return app_with_line


def serve_single(server, args, cwd, argv):
    """One process. TERM/INT: graceful stop (a second INT: now), bounded by
    --graceful-timeout even if a request never returns; QUIT: now; HUP:
    reload by re-executing this command, the TCP listeners kept open across
    the exec (connections wait in the backlog, none is refused); USR1:
    reopen the access log."""
    import signal

    from fapws import systemd

    state = {"stops": 0, "reload": None}

    def hard_deadline():
        # SIGALRM's default action ends the process even when the loop is
        # stuck in the application and Python handlers cannot run.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(max(1, int(args.graceful_timeout + 0.999)))

    def graceful(signum, _frame):
        state["stops"] += 1
        if state["stops"] > 1 and signum == signal.SIGINT:
            return server.stop_now()
        if state["stops"] == 1:
            _core.log("info", f"fapws: {signal.Signals(signum).name}: graceful stop")
            systemd.notify("STOPPING=1")
            hard_deadline()
            server.stop()

    def now(_signum, _frame):
        systemd.notify("STOPPING=1")
        server.stop_now()

    def reload(_signum, _frame):
        if state["reload"] is not None or state["stops"]:
            return
        _core.log("info", "fapws: SIGHUP: reloading (re-executing with the listeners kept)")
        systemd.notify("RELOADING=1")
        kept = []
        for i, fd in enumerate(server.listener_fds()):
            spec = server.bind_specs[i] if i < len(server.bind_specs) else ""
            if spec.startswith("unix:"):
                continue  # its file goes with the old listener; the new process binds it again
            dup = os.dup(fd)
            os.set_inheritable(dup, True)
            kept.append(f"{i}={dup}")
        state["reload"] = ",".join(kept)
        state["stops"] += 1
        hard_deadline()
        server.stop()

    def reopen(_signum, _frame):
        _core.log("info", "fapws: SIGUSR1: reopening the access log")
        if args.access_log:
            server.access_log(args.access_log, **_log_format(args.access_log_format))

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    signal.signal(signal.SIGQUIT, now)
    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGUSR1, reopen)
    systemd.notify(f"READY=1\nMAINPID={os.getpid()}")
    server.run(handle_signals=False)
    signal.alarm(0)
    if state["reload"] is None:
        return 0
    os.chdir(cwd)
    env = dict(os.environ, FAPWS_LISTEN_FDS=state["reload"])
    command = [sys.executable, "-m", "fapws"] + list(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
