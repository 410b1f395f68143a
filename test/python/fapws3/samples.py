"""FAPWS3's samples, rewritten for Python 3 the way a FAPWS3 user would
port them (print() and bytes/str, nothing else), all on one server:

    python samples.py PORT WORKDIR
"""
import json
import os
import sqlite3
import sys
import time

import fapws._evwsgi as evwsgi
from fapws import base
from fapws.contrib import cgiapp, headers, log, views, zip

port, workdir = sys.argv[1], sys.argv[2]
base.supported_HTTP_command.append("TRACE")  # the http_cmd sample


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return ["hello world!!"]


def iter_app(environ, start_response):
    # The iter sample: start_response from inside the generator.
    def gen():
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            yield "part %d\n" % i
    return gen()


def display(environ, start_response):
    # The wiki sample's view: the page name is PATH_INFO after "/display/".
    name = environ["PATH_INFO"]
    if not name:
        return headers.redirect(start_response, "/display/Home")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["page=%s script=%s" % (name, environ["SCRIPT_NAME"])]


def env(environ, start_response):
    keys = ["SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "fapws.uri", "fapws.major_minor", "fapws.params",
            "fapws.remote_addr", "fapws.remote_port", "fapws.socket_fd", "REMOTE_ADDR", "CONTENT_LENGTH",
            "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "REQUEST_METHOD"]
    data = {k: environ.get(k) for k in keys}
    data["raw_header"] = environ["fapws.raw_header"]
    data["input"] = environ["wsgi.input"].getvalue().decode("latin-1")
    data["environ_class"] = type(environ).__name__
    data["start_response_class"] = type(start_response).__name__
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(data)]


def cookie(environ, start_response):
    # Never calls start_response: FAPWS3 answered 200 OK.
    start_response.add_header("X-Added", "yes")
    start_response.set_cookie("session", "abc", max_age=60)
    start_response.response_headers["Content-Type"] = "text/plain"
    return ["status=%s %s" % (start_response.status_code, start_response.status_reasons)]


def broken(environ, start_response):
    raise ValueError("broken view")


@zip.Gzip()
def gzipped(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"gzip me " * 100]


@log.Log(open(os.path.join(workdir, "log.txt"), "a"))
def logged(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["logged"]


def a_file(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return open(os.path.join(workdir, "lines.txt"), "rb")


DEFERRED = []


def defer_app(environ, start_response):
    evwsgi.defer(DEFERRED.append, environ["QUERY_STRING"], False)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["queued %d" % evwsgi.defer_queue_size()]


def deferred(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [",".join(DEFERRED)]


# The timers sample: inserts are committed by a timer, not per request.
db = sqlite3.connect(os.path.join(workdir, "names.db"))
db.execute("CREATE TABLE IF NOT EXISTS names (name TEXT)")
db.commit()


def commit():
    db.commit()


def add_name(environ, start_response):
    db.execute("INSERT INTO names VALUES (?)", (environ["fapws.params"]["name"][0],))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["added"]


def count(environ, start_response):
    other = sqlite3.connect(os.path.join(workdir, "names.db"))
    n = other.execute("SELECT count(*) FROM names").fetchone()[0]
    other.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(n)]


TIMER = {}


def timers(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["first=%s" % TIMER["first"]]


def proxy(environ, start_response):
    # The proxy sample's generic callback: an absolute-form request.
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["proxy for %s" % environ["fapws.uri"]]


evwsgi.start("127.0.0.1", port)
evwsgi.set_base_module(base)
evwsgi.wsgi_cb(("/hello", hello))
evwsgi.wsgi_cb(("/iter", iter_app))
evwsgi.wsgi_cb(("/display/", display))
evwsgi.wsgi_cb(("/static/", views.Staticfile(os.path.join(workdir, "static") + "/")))
evwsgi.wsgi_cb(("/env", env))
evwsgi.wsgi_cb(("/cookie", cookie))
evwsgi.wsgi_cb(("/broken", broken))
evwsgi.wsgi_cb(("/gzip", gzipped))
evwsgi.wsgi_cb(("/logged", logged))
evwsgi.wsgi_cb(("/file", a_file))
# First registered, first matched: "/defer" would also take "/deferred".
evwsgi.wsgi_cb(("/deferred", deferred))
evwsgi.wsgi_cb(("/defer", defer_app))
evwsgi.wsgi_cb(("/add", add_name))
evwsgi.wsgi_cb(("/count", count))
evwsgi.wsgi_cb(("/timers", timers))
evwsgi.wsgi_cb(("/cgi/", cgiapp.CGIApplication(os.path.join(workdir, "test.cgi"))))
evwsgi.wsgi_gen_cb(proxy)
TIMER["first"] = evwsgi.add_timer(0.1, commit)
print("libev", evwsgi.libev_version())
sys.stdout.flush()
evwsgi.run()
