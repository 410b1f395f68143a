"""The smallest WSGI application:  fapws examples.hello:app"""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]
