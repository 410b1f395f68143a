import signal
import socket
import threading
import time

import requests


def test_sigterm_finishes_in_flight_request(serve):
    s = serve("wsgiapps:results_app")
    result = {}

    def slow():
        result["r"] = requests.get(s.url + "/slow?0.5")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    s.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert result["r"].status_code == 200 and result["r"].text == "slow"
    assert s.proc.wait(10) == 0
    # No longer accepting.
    try:
        socket.create_connection(("127.0.0.1", s.port), timeout=0.5).close()
        accepted = True
    except OSError:
        accepted = False
    assert not accepted


def test_sigint_twice_stops_at_once(serve):
    s = serve("wsgiapps:results_app", "--timeout-shutdown", "30")
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"GET /tuple HTTP/1.1\r\nHost: t\r\n")  # a partial request keeps it busy
    time.sleep(0.1)
    s.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert s.proc.poll() is None  # graceful: waiting for the partial request
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(5) == 0
    c.close()
