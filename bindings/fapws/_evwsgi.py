"""The FAPWS3 API (fapws._evwsgi), on the new core, for old scripts.

    import fapws._evwsgi as evwsgi
    from fapws import base
    evwsgi.start("0.0.0.0", "8080")
    evwsgi.set_base_module(base)
    evwsgi.wsgi_cb(("/hello", hello))
    evwsgi.run()

What an old script can see behaves as in FAPWS3: routes are raw prefixes
tried in registration order (the first that matches wins, "/hello" also
serves "/hellox"); SCRIPT_NAME is the prefix verbatim ("/display/") and
PATH_INFO the rest ("Toto"); the environ is the base module's Environ, filled
through its update hooks; start_response is the base module's
Start_response (calling it is optional: 200 OK); methods outside
base.supported_HTTP_command get 501 and OPTIONS is answered with them.
The deliberate differences are listed in README ("Migrating from FAPWS3").
"""

import email.utils
import io
import socket as _socket
import traceback
from urllib.parse import parse_qs, unquote_to_bytes

from fapws import _core
from fapws import base as _default_base
from fapws._core import Pushed
from fapws.errors import SetupError
from fapws.wsgi import Server

# FAPWS3's exception for a server that cannot start.
error = SetupError

_server = None
_sock = None
_base = None
_debug = 0
_timers = []
_routes = []  # (prefix, app), in registration order
_generic = None


def _require():
    if _server is None:
        raise RuntimeError("call evwsgi.start(host, port) first")
    return _server


def start(host, port):
    """Listen on host:port (port may be a str), or start(path, "unix");
    a path starting with NUL is an abstract socket, as in FAPWS3."""
    global _server, _sock
    _server = Server()
    try:
        if str(port) == "unix":
            path = str(host)
            _server.listen("unix:@" + path[1:] if path.startswith("\0") else "unix:" + path)
        else:
            family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
            _sock = _socket.socket(family, _socket.SOCK_STREAM)
            _sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            _sock.bind((host, int(port)))
            _sock.listen(1024)
            _server.listen(f"fd:{_sock.fileno()}")
    except OSError as e:
        raise error(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    _server.route("/", _dispatch)


def set_base_module(module):
    global _base
    _base = module


def wsgi_cb(prefix_app):
    """Adds (prefix, app); the first registered prefix that starts the
    request's URI serves it."""
    prefix, app = prefix_app
    _require()
    _routes.append((prefix, app))


def wsgi_gen_cb(app):
    """The application for URIs no prefix matched."""
    global _generic
    _require()
    _generic = app


def run():
    _require().run()


def add_timer(seconds, callback):
    """Returns the number of timers after this one, as FAPWS3 did;
    stop_timer and restart_timer take a 0-based index (that number - 1)."""
    _timers.append(_require().add_timer(seconds, callback))
    return len(_timers)


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


def libev_version():
    """FAPWS3 ran on libev and returned its ABI version; there is no libev
    here: (0, 0)."""
    return (0, 0)


def set_debug(level):
    global _debug
    _debug = int(level)
    _core.set_log_level("debug" if _debug else "info")


def get_debug():
    return _debug


def socket_fd():
    return _sock.fileno() if _sock is not None else -1


# ---------------------------------------------------------------- requests

def _header_name(key):
    return "-".join(part.capitalize() for part in key[5:].split("_"))


def _headers_of(environ):
    """What FAPWS3 handed to Environ.update_headers."""
    data = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    if "CONTENT_TYPE" in environ:
        data["HTTP_CONTENT_TYPE"] = environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ:
        data["HTTP_CONTENT_LENGTH"] = environ["CONTENT_LENGTH"]
    method, uri, protocol = environ["REQUEST_METHOD"], environ.get("REQUEST_URI", ""), environ["SERVER_PROTOCOL"]
    # The core parses in place and keeps no copy of the raw head: rebuilt.
    raw = [f"{method} {uri} {protocol}"] + [f"{_header_name(k)}: {v}" for k, v in data.items()]
    data.update({
        "fapws.raw_header": "\r\n".join(raw) + "\r\n\r\n",
        "REQUEST_METHOD": method,
        "fapws.uri": uri,
        "QUERY_STRING": uri.partition("?")[2],
        "SERVER_PROTOCOL": protocol,
        "REQUEST_PROTOCOL": protocol,
        "fapws.major_minor": protocol.rpartition("/")[2],
        # Not in FAPWS3, kept for modern middleware.
        "wsgi.url_scheme": environ["wsgi.url_scheme"],
        "wsgi.file_wrapper": environ["wsgi.file_wrapper"],
        "wsgi.input_terminated": True,
        "REQUEST_URI": uri,
        "SERVER_SOFTWARE": environ["SERVER_SOFTWARE"],
    })
    return data


def _uri_of(environ, prefix, target):
    uri = environ.get("REQUEST_URI", "")
    rest = uri[len(prefix):]
    path, question, query = rest.partition("?")
    data = {
        "SERVER_NAME": environ["SERVER_NAME"],
        "SERVER_PORT": environ["SERVER_PORT"],
        "SCRIPT_NAME": prefix,
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
    }
    if question:
        data["fapws.params"] = parse_qs(query, keep_blank_values=True)
    if "CONTENT_LENGTH" in environ or environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        data["CONTENT_LENGTH"] = len(body)  # an int, as in FAPWS3
        if hasattr(target, "write"):
            # The Environ's own wsgi.input (a MultipartFormData, a
            # BytesIO) gets the body written into it, as in FAPWS3.
            target.write(body)
            if hasattr(target, "seek"):
                target.seek(0)
        else:
            data["wsgi.input"] = io.BytesIO(body)
        ctype = environ.get("CONTENT_TYPE")
        data["CONTENT_TYPE"] = ctype
        if ctype and ctype.lower().startswith("application/x-www-form-urlencoded"):
            # FAPWS3 replaced the query's fields with the body's.
            data["fapws.params"] = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    return data


def _request_info(environ):
    addr = environ.get("REMOTE_ADDR", "")
    return {
        "REMOTE_ADDR": addr,
        "fapws.remote_addr": addr,
        "fapws.remote_port": int(environ.get("REMOTE_PORT") or 0),
        # The descriptor belongs to the core's connection: writing to it
        # behind the core's back would corrupt the response framing.
        "fapws.socket_fd": None,
    }


def _encode(item):
    return item.encode("utf-8") if isinstance(item, str) else item


def _error_page(base):
    from fapws import config

    tb = traceback.format_exc()
    _core.log("error", "FAPWS3 application failed:\n" + tb.rstrip())
    if getattr(config, "send_traceback_to_browser", False):
        import html

        return [b"<h1>Error</h1><pre>", html.escape(tb).encode("utf-8"), b"</pre>"]
    return [_encode(getattr(config, "send_traceback_short", "<h1>Error</h1>"))]


def _dispatch(environ, start_response):
    base = _base or _default_base
    method = environ["REQUEST_METHOD"]
    env = base.Environ()
    env.update_headers(_headers_of(environ))
    allowed = list(getattr(base, "supported_HTTP_command", _default_base.supported_HTTP_command))
    if method not in allowed:
        start_response("501 Not Implemented", [("Content-Type", "text/html")])
        return [b"<html><head><title>Not Implemented</title></head><body><p>Not Implemented!!!</p></body></html>"]
    if method == "OPTIONS":
        start_response("200 OK", [("Allow", ", ".join(allowed)), ("Content-Length", "0")])
        return []
    uri = environ.get("REQUEST_URI", "")
    for prefix, app in _routes:
        if uri.startswith(prefix):
            break
    else:
        prefix, app = "", _generic
    if app is None:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"Page not found."]
    env.update_uri(_uri_of(environ, prefix, env.get("wsgi.input")))
    env.update_from_request(_request_info(environ))
    sr = base.Start_response()
    sr.response_headers.setdefault("Date", email.utils.formatdate(usegmt=True))
    try:
        result = app(env, sr)
        if isinstance(result, Pushed):
            start_response(sr.status, sr.headers())
            return result
        if isinstance(result, (str, bytes)):
            body = [_encode(result)]
        elif isinstance(result, (list, tuple)):
            body = [_encode(i) for i in result]
        elif isinstance(result, io.IOBase) and hasattr(result, "fileno"):
            # A returned file goes out in blocks (sendfile), not line by line.
            start_response(sr.status, sr.headers())
            return environ["wsgi.file_wrapper"](result)
        else:
            # An iterator runs to its first item before the head, as in
            # FAPWS3: it may call start_response from there.
            it = iter(result)
            try:
                first = [_encode(next(it))]
            except StopIteration:
                first = []
            start_response(sr.status, sr.headers())
            return _Chain(first, it, result)
    except Exception:
        start_response("500 Internal Server Error", [("Content-Type", "text/html")])
        return _error_page(base)
    start_response(sr.status, sr.headers())
    return body


class _Chain:
    """The first item already pulled, then the rest, str items encoded;
    close() reaches the application's iterable (PEP 3333)."""

    def __init__(self, first, it, result):
        self._first, self._it, self._result = first, it, result

    def __iter__(self):
        return self

    def __next__(self):
        if self._first:
            return self._first.pop()
        return _encode(next(self._it))

    def close(self):
        if hasattr(self._result, "close"):
            self._result.close()
