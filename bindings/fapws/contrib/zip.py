"""zip.Gzip: gzip middleware that honours Accept-Encoding (FAPWS3's name).

Both forms work: Gzip(app), and FAPWS3's Gzip()(app) or @zip.Gzip()."""

import gzip


class Gzip:
    def __init__(self, app=None, min_size=256, level=6):
        self.app = app
        self.min_size = min_size
        self.level = level

    def __call__(self, *args):
        if self.app is None:
            # FAPWS3's form: Gzip() is a decorator; called with the app.
            (app,) = args
            return Gzip(app, self.min_size, self.level)
        return self._serve(*args)

    def _serve(self, environ, start_response):
        accepts = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower()
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"], captured["exc_info"] = status, headers, exc_info
            return lambda data: captured.setdefault("written", []).append(data)

        result = self.app(environ, capture)
        try:
            body = b"".join(captured.get("written", [])) + b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        headers = list(captured["headers"])
        names = {k.lower() for k, _ in headers}
        if accepts and len(body) >= self.min_size and "content-encoding" not in names:
            body = gzip.compress(body, self.level)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers += [("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
            if "vary" not in names:
                headers.append(("Vary", "Accept-Encoding"))
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]
