"""FAPWS: the Fast Asynchronous Python Web Server, on a C++ core.

    import fapws
    fapws.serve(app, host="127.0.0.1", port=8080)
"""

from fapws._core import Pushed
from fapws.errors import Backpressure, DeferQueueFull, SetupError
from fapws.wsgi import VERSION, FileWrapper, Server, current_server, serve

__version__ = VERSION
__all__ = ["Server", "serve", "current_server", "FileWrapper", "Pushed", "SetupError", "DeferQueueFull", "Backpressure",
           "__version__"]
