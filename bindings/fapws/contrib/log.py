"""log.Log: an access-log decorator for one WSGI application (FAPWS3's name).
The server's own --access-log is cheaper; this one is per application."""

import sys
import time


class Log:
    def __init__(self, output=sys.stdout):
        self.output = output

    def __call__(self, app):
        def logged(environ, start_response):
            seen = {}

            def sr(status, headers, exc_info=None):
                seen["status"] = status.split(" ", 1)[0]
                return start_response(status, headers, exc_info)

            result = app(environ, sr)
            stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
            self.output.write(
                f'{environ.get("REMOTE_ADDR", "-") or "-"} - - {stamp} "{environ["REQUEST_METHOD"]} '
                f'{environ.get("REQUEST_URI", "")} {environ["SERVER_PROTOCOL"]}" {seen.get("status", "-")} -\n'
            )
            return result

        return logged
