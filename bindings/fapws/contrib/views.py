"""views.Staticfile: FAPWS3's static file application, on wsgi.file_wrapper
(so the file leaves with sendfile(2)). For plain directory serving prefer
Server.static / --static, the C++ handler, which also does ranges and ETags."""

import mimetypes
import os
import posixpath
import time
from email.utils import formatdate, parsedate_to_datetime


class Staticfile:
    def __init__(self, rootpath, maxage=None):
        self.rootpath = os.path.realpath(rootpath)
        self.maxage = maxage

    def _resolve(self, path_info):
        parts = [p for p in posixpath.normpath("/" + path_info).split("/") if p not in ("", ".", "..")]
        full = os.path.realpath(os.path.join(self.rootpath, *parts))
        if full != self.rootpath and not full.startswith(self.rootpath + os.sep):
            return None
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
            return [b""]
        path = self._resolve(environ.get("PATH_INFO", ""))
        try:
            f = open(path, "rb") if path else None
        except OSError:
            f = None
        if f is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            return [b"Not Found\n"]
        st = os.fstat(f.fileno())
        last_modified = formatdate(st.st_mtime, usegmt=True)
        # FAPWS3's validator: the mtime as the ETag, with If-None-Match.
        etag = str(st.st_mtime)
        if environ.get("HTTP_IF_NONE_MATCH") in (etag, f'"{etag}"'):
            f.close()
            start_response("304 Not Modified", [("ETag", etag), ("Last-Modified", last_modified)])
            return []
        since = environ.get("HTTP_IF_MODIFIED_SINCE")
        if since:
            try:
                if int(st.st_mtime) <= parsedate_to_datetime(since).timestamp():
                    f.close()
                    start_response("304 Not Modified", [("Last-Modified", last_modified)])
                    return []
            except (TypeError, ValueError):
                pass
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        headers = [("Content-Type", ctype), ("Content-Length", str(st.st_size)), ("Last-Modified", last_modified),
                   ("ETag", etag)]
        if self.maxage is not None:
            headers.append(("Cache-Control", f"max-age={int(self.maxage)}"))
            headers.append(("Expires", formatdate(time.time() + int(self.maxage), usegmt=True)))
        start_response("200 OK", headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            f.close()
            return []
        return environ["wsgi.file_wrapper"](f)
