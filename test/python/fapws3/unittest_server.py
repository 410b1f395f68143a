"""FAPWS3's unit-test server, for Python 3: an abstract UNIX socket and a
custom base module whose Environ parses multipart bodies.

    python unittest_server.py NAME UPLOADDIR
"""
import sys

import fapws._evwsgi as evwsgi
from fapws import base
from fapws.contrib import multipart

name, uploads = sys.argv[1], sys.argv[2]


class mybase:
    supported_HTTP_command = ["GET", "POST", "HEAD", "OPTIONS", "PUT"]
    Start_response = base.Start_response

    class Environ(base.Environ):
        def __init__(self):
            super().__init__()
            self["wsgi.input"] = multipart.MultipartFormData(uploads + "/")

        def update_uri(self, data):
            data["x.hooked"] = "yes"
            base.Environ.update_uri(self, data)


def upload(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    results = environ["wsgi.input"].getvalue()
    return ["%s=%s\n" % (k, results[k][0]) for k in sorted(results)] + ["hooked=%s" % environ["x.hooked"]]


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["hello %s" % environ["REQUEST_METHOD"]]


evwsgi.start("\0" + name, "unix")
evwsgi.set_base_module(mybase)
evwsgi.wsgi_cb(("/upload", upload))
evwsgi.wsgi_cb(("/", hello))
evwsgi.run()
