"""FAPWS3's base module, kept so `from fapws import base` and
`evwsgi.set_base_module(base)` work. The environ itself now comes from the
server; Environ.defaults are added to it for FAPWS3 applications."""

import sys


class Environ(dict):
    defaults = {
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "fapws.major_minor": "3",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(self.defaults, *args, **kwargs)


class Start_response:
    """A start_response that records what it is given (for tests and tools)."""

    def __init__(self):
        self.status = "200 OK"
        self.response_headers = []
        self.exc_info = None

    def __call__(self, status, response_headers, exc_info=None):
        self.status = status
        self.response_headers = response_headers
        self.exc_info = exc_info
