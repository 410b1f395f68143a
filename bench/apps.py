"""The WSGI application every Python server runs in the benchmark."""

HELLO = b"Hello, World!"
TEN_K = b"k" * 10240
BLOCK = b"g" * 1024
SUBSCRIBERS = set()
PUBLISHED = [0]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/flask" or path == "/django":
        from frameworks import django_app, flask_app

        return (flask_app if path == "/flask" else django_app)(environ, start_response)
    if path == "/10k":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10240")])
        return [TEN_K]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (BLOCK for _ in range(100))
    if path == "/events":
        # Server-sent events without threads: fapws only (issue 11).
        import fapws

        body = fapws.Pushed()
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        SUBSCRIBERS.add(body)
        body.on_close(lambda: SUBSCRIBERS.discard(body))
        return body
    if path == "/publish":
        PUBLISHED[0] += 1
        event = b"data: event %d\n\n" % PUBLISHED[0]
        for body in SUBSCRIBERS:
            body.send(event)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d\n" % len(SUBSCRIBERS)]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]
