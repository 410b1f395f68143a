"""A chat and a clock over server-sent events, without threads.

    fapws --bind 127.0.0.1:8080 --chdir examples chat:app

Open http://127.0.0.1:8080/ in two browsers: what one says, the others see
at once, and every page gets the server's time each second. Each open page
holds one connection and one fapws.Pushed body; an idle one costs no CPU.
"""

import html
import json
import time
from urllib.parse import parse_qs

import fapws

SUBSCRIBERS = set()
_clock = []

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>fapws chat</title>
<p>Server time: <b id="clock">...</b></p>
<form id="f"><input id="m" autocomplete="off" autofocus placeholder="say something"> <button>Send</button></form>
<ul id="log"></ul>
<script>
const es = new EventSource("/events");
es.addEventListener("clock", e => { document.getElementById("clock").textContent = e.data; });
es.addEventListener("say", e => {
  const li = document.createElement("li"); li.innerHTML = e.data;
  document.getElementById("log").prepend(li);
});
document.getElementById("f").onsubmit = e => {
  e.preventDefault();
  const m = document.getElementById("m");
  fetch("/say", {method: "POST", body: new URLSearchParams({text: m.value})});
  m.value = "";
};
</script>
"""


def publish(event, data):
    message = f"event: {event}\ndata: {data}\n\n".encode()
    for body in list(SUBSCRIBERS):
        try:
            body.send(message)
        except fapws.Backpressure:
            body.close()  # a client that stopped reading: drop it


def tick():
    publish("clock", time.strftime("%H:%M:%S"))


def app(environ, start_response):
    if not _clock:
        # First request: the loop runs now; a timer on it feeds the clock.
        _clock.append(fapws.current_server().add_timer(1.0, tick))
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/events":
        body = fapws.Pushed(high_water=64 * 1024)
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        SUBSCRIBERS.add(body)
        body.on_close(lambda: SUBSCRIBERS.discard(body))
        body.send(b"retry: 2000\n\n")  # the head leaves now: the browser shows the page as connected
        return body
    if path == "/say" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        text = parse_qs(environ["wsgi.input"].read(size).decode("utf-8", "replace")).get("text", [""])[0]
        if text.strip():
            publish("say", html.escape(text[:500]))
        start_response("204 No Content", [])
        return []
    if path == "/stats":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"subscribers": len(SUBSCRIBERS)}).encode()]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
