"""The FAPWS3 API (fapws._evwsgi), on the new core, for old scripts.

    import fapws._evwsgi as evwsgi
    from fapws import base
    evwsgi.start("0.0.0.0", "8080")
    evwsgi.set_base_module(base)
    evwsgi.wsgi_cb(("/hello", hello))
    evwsgi.run()

Differences from FAPWS3 (Python 2) are in README's migration notes.
"""

import email.utils
import socket as _socket
from urllib.parse import parse_qs

from fapws._core import Pushed
from fapws.wsgi import Server

_server = None
_sock = None
_base = None
_debug = 0
_timers = []


def _require():
    if _server is None:
        raise RuntimeError("call evwsgi.start(host, port) first")
    return _server


def start(host, port):
    """Listen on host:port (port may be a str), or start(path, "unix")."""
    global _server, _sock
    _server = Server()
    if str(port) == "unix":
        _server.listen("unix:" + host)
        return
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    _sock = _socket.socket(family, _socket.SOCK_STREAM)
    _sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    _sock.bind((host, int(port)))
    _sock.listen(1024)
    _server.listen(f"fd:{_sock.fileno()}")


def set_base_module(base):
    global _base
    _base = base


def _fapws3(app):
    """FAPWS3 apps get fapws.params and may return str (Python 2 habits)."""

    def wrapped(environ, start_response):
        params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            body = environ["wsgi.input"].read()
            environ["wsgi.input"] = _Replay(body)
            for k, v in parse_qs(body.decode("latin-1"), keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        environ["fapws.params"] = params
        environ["fapws.uri"] = environ.get("REQUEST_URI", "")
        environ["fapws.remote_addr"] = environ.get("REMOTE_ADDR", "")
        if _base is not None and hasattr(_base, "Environ"):
            for k, v in getattr(_base.Environ, "defaults", {}).items():
                environ.setdefault(k, v)
        result = app(environ, start_response)
        if isinstance(result, Pushed):
            return result  # served as it is: fapws iterates nothing on its loop
        if isinstance(result, (str, bytes)):
            result = [result]
        return _Encode(result)

    return wrapped


class _Replay:
    def __init__(self, data):
        import io

        self._buf = io.BytesIO(data)
        self.read = self._buf.read
        self.readline = self._buf.readline
        self.readlines = self._buf.readlines

    def __iter__(self):
        return iter(self._buf)


class _Encode:
    def __init__(self, result):
        self._result = result
        self._it = iter(result)

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._it)
        return item.encode("utf-8") if isinstance(item, str) else item

    def close(self):
        if hasattr(self._result, "close"):
            self._result.close()


def wsgi_cb(prefix_app):
    prefix, app = prefix_app
    _require().route(prefix, _fapws3(app))


def wsgi_gen_cb(app):
    """The catch-all application."""
    _require().route("/", _fapws3(app))


def run():
    _require().run()


def add_timer(seconds, callback):
    """Returns the timer's index, for stop_timer/restart_timer."""
    _timers.append(_require().add_timer(seconds, callback))
    return len(_timers) - 1


def stop_timer(index):
    _timers[index].stop()


def restart_timer(index):
    _timers[index].restart()


def defer(callback, arg=None, combined=False):
    return _require().defer(callback, arg, combined)


def defer_queue_size():
    return _require().defer_queue_size()


def rfc1123_date(t):
    return email.utils.formatdate(t, usegmt=True)


def parse_query(qs):
    return parse_qs(qs, keep_blank_values=True)


def set_debug(level):
    global _debug
    _debug = int(level)
    from fapws import _core

    _core.set_log_level("debug" if _debug else "info")


def get_debug():
    return _debug


def socket_fd():
    return _sock.fileno() if _sock is not None else -1
