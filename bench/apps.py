"""The WSGI application every Python server runs in the benchmark."""

HELLO = b"Hello, World!"
TEN_K = b"k" * 10240
BLOCK = b"g" * 1024


def app(environ, start_response):
    path = environ["PATH_INFO"]
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
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]
