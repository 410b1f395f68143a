"""FAPWS3's base module, for `evwsgi.set_base_module(base)`.

Under the FAPWS3 layer (fapws._evwsgi) each request's environ is an instance
of the base module's Environ, filled through its update_headers,
update_uri and update_from_request hooks, and start_response is an instance
of its Start_response. Subclass either in your own base module to change
them (e.g. a wsgi.input that parses multipart bodies), as FAPWS3 allowed.
"""

import datetime
import email.utils
import http.client
import io
import sys
import time
from http.cookies import CookieError, SimpleCookie

# The methods FAPWS3 serves; others get 501. OPTIONS is answered by the
# server itself with this list in Allow.
supported_HTTP_command = ["GET", "POST", "HEAD", "OPTIONS"]


def get_status(code):
    """200 -> '200 OK'."""
    return "%s %s" % (code, http.client.responses[int(code)])


def split_len(seq, length):
    """Slices of `length` items: split_len('abcde', 2) -> ['ab', 'cd', 'e']."""
    return [seq[i:i + length] for i in range(0, len(seq), length)]


def parse_cookies(environ):
    """The request's cookies as a SimpleCookie, or None without any."""
    line = environ.get("HTTP_COOKIE")
    if not line:
        return None
    cookies = SimpleCookie()
    cookies.load(line)
    return cookies


def redirectStdErr():
    """Sends what is written to stderr into a string (sys.stderr.getvalue())."""
    sys.stderr = io.StringIO()


class Environ(dict):
    """One request's environ. The server calls the three update hooks in
    order; override them to adapt what the application sees."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self["wsgi.version"] = (1, 0)
        self["wsgi.errors"] = sys.stderr
        self["wsgi.input"] = io.BytesIO()
        self["wsgi.multithread"] = False
        self["wsgi.multiprocess"] = True
        self["wsgi.run_once"] = False
        self["fapws.params"] = {}

    def update_headers(self, data):
        """The request line and headers: REQUEST_METHOD, fapws.uri,
        QUERY_STRING, SERVER_PROTOCOL, fapws.major_minor, fapws.raw_header,
        HTTP_*."""
        dict.update(self, data)

    def update_uri(self, data):
        """SERVER_NAME/PORT, SCRIPT_NAME, PATH_INFO, QUERY_STRING,
        fapws.params; for a body, CONTENT_LENGTH, CONTENT_TYPE, wsgi.input."""
        dict.update(self, data)

    def update_from_request(self, data):
        """REMOTE_ADDR, fapws.remote_addr, fapws.remote_port, fapws.socket_fd."""
        dict.update(self, data)


class Start_response:
    """FAPWS3's start_response: calling it is optional (the default is
    200 OK); headers live in a dict; cookies in a SimpleCookie."""

    def __init__(self):
        self.status_code = "200"
        self.status_reasons = "OK"
        self.response_headers = {}
        self.exc_info = None
        self.cookies = None
        self.sent = False

    def __call__(self, status, response_headers, exc_info=None):
        code, _, reason = str(status).partition(" ")
        self.status_code, self.status_reasons = code, reason
        for key, value in response_headers:
            self.response_headers[str(key)] = str(value)
        self.exc_info = exc_info
        return self._write

    def _write(self, data):
        raise RuntimeError("write() is not supported by the FAPWS3 layer; return the body instead")

    def add_header(self, key, value):
        self.response_headers[str(key)] = str(value)

    def set_cookie(self, key, value="", max_age=None, expires=None, path="/", domain=None, secure=None):
        if self.cookies is None:
            self.cookies = SimpleCookie()
        self.cookies[key] = value
        morsel = self.cookies[key]
        if max_age is not None:
            morsel["max-age"] = max_age
        if expires is not None:
            if isinstance(expires, datetime.datetime):
                expires = email.utils.formatdate(time.mktime(expires.timetuple()), usegmt=True)
            elif not isinstance(expires, str):
                raise CookieError("expires must be a datetime or a string")
            morsel["expires"] = expires
        if path:
            morsel["path"] = path
        if domain:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True

    def delete_cookie(self, key):
        self.set_cookie(key, "", max_age=0)

    @property
    def status(self):
        return f"{self.status_code} {self.status_reasons}".strip()

    def headers(self):
        """The header list the server sends: the dict, then one Set-Cookie
        per cookie."""
        out = list(self.response_headers.items())
        if self.cookies:
            out += [("Set-Cookie", m.OutputString()) for m in self.cookies.values()]
        return out

    def __str__(self):
        lines = [f"HTTP/1.1 {self.status}"] + [f"{k}: {v}" for k, v in self.headers()]
        return "\r\n".join(lines) + "\r\n\r\n"
