"""log.Log: an access-log decorator for one WSGI application (FAPWS3's name
and fields). The server's own --access-log is cheaper; this one is per
application.

    @log.Log()                    # or log.Log(open("access.log", "a"))
    def app(environ, start_response): ...

One line per request: client (X-Forwarded-For when present), Host, time,
request line, status, size, Referer, User-Agent.
"""

import os
import sys
import time


class Log:
    def __init__(self, output=sys.stdout):
        self.output = output

    def __call__(self, app):
        def logged(environ, start_response):
            seen = {}

            def sr(status, headers, exc_info=None):
                seen["status"] = str(status).split(" ", 1)[0]
                return start_response(status, headers, exc_info)

            result = app(environ, sr)
            # A FAPWS3 Start_response may never be called: it holds the status.
            status = seen.get("status") or getattr(start_response, "status_code", "-")
            if isinstance(result, (list, tuple)):
                size = sum(len(i) for i in result)
            elif isinstance(result, (str, bytes)):
                size = len(result)
            elif hasattr(result, "name") and isinstance(getattr(result, "name"), str) and os.path.isfile(result.name):
                size = os.path.getsize(result.name)
            else:
                size = "-"
            client = environ.get("HTTP_X_FORWARDED_FOR") or environ.get("REMOTE_ADDR", "-") or "-"
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.gmtime())
            uri = environ.get("fapws.uri", environ.get("REQUEST_URI", ""))
            self.output.write(
                f'{client} {environ.get("HTTP_HOST", "-")} - [{stamp} GMT] "{environ["REQUEST_METHOD"]} {uri} '
                f'{environ.get("SERVER_PROTOCOL", "-")}" {status} {size} "{environ.get("HTTP_REFERER", "-")}" '
                f'"{environ.get("HTTP_USER_AGENT", "-")}"\n')
            self.output.flush()
            return result

        return logged
