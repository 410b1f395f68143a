"""contrib.cgiapp: a CGI script as a WSGI application (RFC 3875).

    evwsgi.wsgi_cb(("/cgi/", cgiapp.CGIApplication("/srv/cgi/test.cgi")))

The script runs as a child process with the request's CGI variables and
its body on stdin. Like any application it runs on the loop: the loop waits
for it, so a slow script holds the server; `timeout` (seconds) bounds that
wait and answers 504 when it passes.
"""

import os
import subprocess


class CGIApplication:
    def __init__(self, script, timeout=30.0):
        self.script = script
        self.dirname = os.path.dirname(os.path.abspath(script))
        self.timeout = timeout

    def _environ(self, environ):
        env = {k: v for k, v in environ.items() if isinstance(v, str)}
        env["GATEWAY_INTERFACE"] = "CGI/1.1"
        env["REQUEST_URI"] = environ.get("fapws.uri", environ.get("REQUEST_URI", ""))
        env["SCRIPT_FILENAME"] = os.path.abspath(self.script)
        env["REDIRECT_STATUS"] = "200"  # php-cgi refuses to run without it
        if environ.get("CONTENT_LENGTH") not in (None, ""):
            env["CONTENT_LENGTH"] = str(environ["CONTENT_LENGTH"])
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        return env

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length) if length else b""
        try:
            proc = subprocess.run([self.script], input=data, capture_output=True, env=self._environ(environ),
                                  cwd=self.dirname, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
            return [b"CGI script timed out\n"]
        except OSError as e:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [f"CGI script failed to start: {e.strerror}\n".encode()]
        if proc.returncode != 0 and not proc.stdout:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [proc.stderr or b"CGI script failed\n"]
        out = proc.stdout.replace(b"\r\n", b"\n")
        head, sep, body = out.partition(b"\n\n")
        if not sep:
            head, body = b"", out
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\n"):
            name, colon, value = line.partition(":")
            if not colon:
                continue
            if name.strip().lower() == "status":
                status = value.strip()
            else:
                headers.append((name.strip(), value.strip()))
        if any(k.lower() == "location" for k, _ in headers) and status == "200 OK":
            status = "302 Found"
        start_response(status, headers)
        return [body]
