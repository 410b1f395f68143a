"""FAPWS: the Fast Asynchronous Python Web Server, on a C++ core.

    import fapws
    fapws.serve(app, host="127.0.0.1", port=8080)
"""

from fapws.errors import DeferQueueFull, SetupError
from fapws.wsgi import VERSION, FileWrapper, Server, serve

__version__ = VERSION
__all__ = ["Server", "serve", "FileWrapper", "SetupError", "DeferQueueFull", "__version__"]
