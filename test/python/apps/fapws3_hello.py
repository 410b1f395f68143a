"""A FAPWS3 script, ported to Python 3 with nothing changed but prints."""
import sys

import fapws._evwsgi as evwsgi
from fapws import base

port = sys.argv[1]
counter = {"ticks": 0, "deferred": []}


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return ["hello world!! params=%s" % sorted(environ["fapws.params"].items())]


def tick():
    counter["ticks"] += 1


def status(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["ticks=%d deferred=%s queue=%d" % (counter["ticks"], counter["deferred"], evwsgi.defer_queue_size())]


def queue(environ, start_response):
    for i in (1, 2, 2, 3):
        evwsgi.defer(counter["deferred"].append, i, True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["queued %d" % evwsgi.defer_queue_size()]


def later(environ, start_response):
    # Not FAPWS3: the new pushed body, through the old API (issue 11).
    import fapws

    body = fapws.Pushed()
    start_response("200 OK", [("Content-Type", "text/plain")])
    evwsgi.defer(lambda _: (body.send(b"pushed later"), body.close()), None)
    return body


evwsgi.start("127.0.0.1", port)
evwsgi.set_base_module(base)
evwsgi.wsgi_cb(("/hello", hello))
evwsgi.wsgi_cb(("/status", status))
evwsgi.wsgi_cb(("/queue", queue))
evwsgi.wsgi_cb(("/later", later))
t = evwsgi.add_timer(0.05, tick)
evwsgi.set_debug(0)
print("fd", evwsgi.socket_fd(), "date", evwsgi.rfc1123_date(0), "q", evwsgi.parse_query("a=1&a=2"))
sys.stdout.flush()
evwsgi.run()
