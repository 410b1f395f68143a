"""fapws.Pushed under test (issue 11): subscribers fed by a 100 ms timer,
an empty body, a flood held by back-pressure, a feeder thread, a change of
mind before the first block, and counters the tests read over HTTP."""

import json
import sys
import threading
import time

import fapws

SUBSCRIBERS = set()
STATS = {"closed": 0, "sent_false": 0, "backpressure": 0, "ticks": 0}
_state = {"timer": None, "floods": []}


def _tick():
    # Each event carries the time it was sent: the client measures the lag.
    STATS["ticks"] += 1
    msg = b"data: %.6f\n\n" % time.time()
    for body in list(SUBSCRIBERS):
        if not body.send(msg):
            STATS["sent_false"] += 1
    for body in list(_state["floods"]):
        try:
            while body.send(b"x" * 65536):
                pass
            _state["floods"].remove(body)  # closed or gone
        except fapws.Backpressure:
            STATS["backpressure"] += 1


def _closed(body):
    def run():
        SUBSCRIBERS.discard(body)
        STATS["closed"] += 1
    return run


def _feed_from_thread(body, n):
    for i in range(n):
        time.sleep(0.03)
        body.send(b"thread %d\n" % i)
    body.close()


def app(environ, start_response):
    if _state["timer"] is None:
        _state["timer"] = fapws.current_server().add_timer(0.1, _tick)
    path = environ["PATH_INFO"]
    if path == "/events":
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        SUBSCRIBERS.add(body)
        body.on_close(_closed(body))
        return body
    if path == "/empty":
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/plain")])
        body.close()
        return body
    if path == "/later":
        # The body ends from the loop, after the application returned.
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/plain")])
        fapws.current_server().defer(lambda _: (body.send(b"one "), body.send(b"two"), body.close()))
        return body
    if path == "/flood":
        body = fapws.Pushed(high_water=256 * 1024)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        body.on_close(_closed(body))
        _state["floods"].append(body)
        return body
    if path == "/thread":
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/plain")])
        threading.Thread(target=_feed_from_thread, args=(body, 5), daemon=True).start()
        return body
    if path == "/changed":
        # start_response(..., exc_info) before the first block replaces the head.
        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/plain")])

        def fail(_):
            try:
                raise ValueError("backend failed")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                           ("Retry-After", "1")], sys.exc_info())
            body.send(b"try again\n")
            body.close()
        fapws.current_server().defer(fail)
        return body
    if path == "/stats":
        data = dict(STATS, subscribers=len(SUBSCRIBERS))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(data).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def wrapped(environ, start_response):
    """A middleware that iterates whatever the app returns: a Pushed must not
    be wrapped (fapws would iterate it on its own loop)."""
    result = app(environ, start_response)
    if isinstance(result, fapws.Pushed):
        def relay():
            yield from result
        return relay()
    return result
