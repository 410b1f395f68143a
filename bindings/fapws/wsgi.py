"""The Python face of the server: Server, serve() and wsgi.file_wrapper."""

import os
import sys

from fapws import _core

__all__ = ["Server", "serve", "FileWrapper", "VERSION"]

VERSION = "0.1.0"
SERVER_SOFTWARE = "fapws/" + VERSION


class FileWrapper:
    """wsgi.file_wrapper: a file object returned as the response body.

    When ``filelike`` is a regular file with a ``fileno()``, the server sends
    it with sendfile(2) from its current position; otherwise it is read
    ``blksize`` bytes at a time.
    """

    def __init__(self, filelike, blksize=64 * 1024):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def _seconds(name, value):
    value = float(value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value}")
    return value


class Server:
    """One process, one thread, one event loop.

    Keyword options are the core's limits and timeouts (see
    ``fapws._core.defaults()``): header_limit, header_line_limit, body_limit,
    body_memory_limit, spool_dir, block_size, max_pipelined, header_timeout,
    keepalive_timeout, io_timeout, shutdown_timeout, drain_grace (seconds), defer_limit,
    backlog, server_header. ``debug`` puts tracebacks in 500 pages;
    ``forwarded_allow_ips`` lists the proxies whose X-Forwarded-For/-Proto and
    Forwarded headers set REMOTE_ADDR and wsgi.url_scheme: addresses, CIDR
    ranges, "unix" (UNIX socket peers), "*" (any). Default: the local host.
    """

    def __init__(self, *args, debug=False, multiprocess=False, forwarded_allow_ips=("127.0.0.1", "::1", "unix"),
                 **options):
        if args:
            raise TypeError("fapws.Server() takes keyword options only; give the address to "
                            "server.listen('HOST:PORT') (got positional %r)" % (args,))
        for key in ("header_timeout", "keepalive_timeout", "io_timeout", "shutdown_timeout"):
            if key in options:
                options[key] = _seconds(key, options[key])
        self._core = _core.Server(**options)
        self.debug = debug
        self.multiprocess = multiprocess
        self.forwarded_allow_ips = list(forwarded_allow_ips)
        self.listeners = []
        self._combined = {}

    # -- listeners --------------------------------------------------------
    def listen(self, spec, reuse_port=False, url_scheme="http", proxy_protocol=False):
        """Listen on "HOST:PORT", "[::1]:PORT", "unix:PATH" or "fd:N".
        proxy_protocol: connections start with HAProxy's PROXY header (v1 or
        v2), which gives REMOTE_ADDR; only for a listener only the proxy reaches.

        Returns (address, port); port is the real one when 0 was asked."""
        where = self._core.listen(spec, reuse_port=reuse_port, url_scheme=url_scheme,
                                  proxy_protocol=proxy_protocol)
        self.listeners.append(where)
        return where

    # -- applications -----------------------------------------------------
    def route(self, prefix, app):
        """Mount a WSGI application on a path prefix ("/" for everything)."""
        if not callable(app):
            raise TypeError(f"WSGI application for {prefix!r} is not callable")
        script_name = prefix.rstrip("/")
        environ = {
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": bool(self.multiprocess),
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SCRIPT_NAME": _unquote_latin1(script_name),
        }
        self._core.route_wsgi(prefix, app, environ, FileWrapper, debug=self.debug,
                              forwarded_allow_ips=self.forwarded_allow_ips)

    def static(self, prefix, directory, max_age=None, **options):
        """Serve a directory under prefix with the C++ static file handler."""
        if not os.path.isdir(directory) or not os.access(directory, os.R_OK | os.X_OK):
            raise _core.SetupError(f"static directory {directory!r} is not a readable directory")
        self._core.route_static(prefix, directory, max_age=-1 if max_age is None else int(max_age), **options)

    # -- loop -------------------------------------------------------------
    def add_timer(self, seconds, callback):
        """Call callback() every `seconds` on the loop. Returns a Timer."""
        return self._core.add_timer(float(seconds), callback)

    def defer(self, callback, arg=None, combined=False):
        """Run callback(arg) when the loop is idle, FIFO.

        combined=True adds nothing if the same callback with the same arg is
        already queued (returns False). Raises DeferQueueFull at the limit."""
        if not combined:
            return self._core.defer(callback, arg)
        # Equality, not identity: obj.method is a new object at each access.
        for cb, a in self._combined.values():
            try:
                if cb == callback and a == arg:
                    return False
            except Exception:
                continue
        key = object()
        self._combined[key] = (callback, arg)

        def run(value):
            del self._combined[key]
            callback(value)

        try:
            return self._core.defer(run, arg)
        except BaseException:
            del self._combined[key]
            raise

    def defer_queue_size(self):
        return self._core.defer_queue_size()

    def access_log(self, path, combined=False, format=None):
        """Common (or Combined) Log Format to a file, or "-" for stdout;
        format: gunicorn's atoms instead, e.g. '%(h)s "%(r)s" %(s)s %(D)s'."""
        self._core.access_log(path, combined, format or "")

    def stats(self):
        return self._core.stats()

    def run(self, handle_signals=True):
        """Serve until stop(); SIGTERM and Ctrl-C stop gracefully. With
        handle_signals=False the caller's own SIGTERM handler stays."""
        import signal
        import threading

        global _current
        previous = None
        if handle_signals and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: self._core.stop())
        outer, _current = _current, self
        try:
            self._core.run()
        finally:
            _current = outer
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def stop(self):
        """Graceful stop: safe from any thread or a signal handler."""
        self._core.stop()

    def stop_now(self):
        """Immediate stop: closes every connection. Loop thread only (a
        Python signal handler runs there)."""
        self._core.stop_now()

    def listener_fds(self):
        """The listening descriptors, in listen() order (owned by the server)."""
        return self._core.listener_fds()

    def fork(self):
        """Fork a worker that serves this server's listeners; returns its pid
        in the parent and 0 in the worker (which should then call run()).
        The listeners must exist already; call before run() in the parent."""
        self._core.notify_fork("prepare")
        pid = os.fork()
        self._core.notify_fork("child" if pid == 0 else "parent")
        return pid


_current = None


def current_server():
    """The Server whose loop is running (call it from an application, a timer
    or a deferred task), or None. Lets an app served by the ``fapws`` command
    add timers and deferred tasks to the loop it runs on."""
    return _current


def _unquote_latin1(path):
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(path).decode("latin-1")


def serve(app, host="127.0.0.1", port=8080, **options):
    """Serve one WSGI application on host:port until interrupted."""
    server = Server(**options)
    server.route("/", app)
    spec = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    address, real_port = server.listen(spec)
    _core.log("info", f"fapws serving on http://{address}:{real_port}/")
    server.run()
