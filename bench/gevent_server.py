import sys

from gevent.pywsgi import WSGIServer

sys.path.insert(0, sys.argv[2])
from apps import app  # noqa: E402

WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
