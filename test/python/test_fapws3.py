import os
import subprocess
import sys
import time

import requests

from conftest import HERE, free_port, wait_listening


def test_fapws3_script_runs(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "apps", "fapws3_hello.py"), str(port)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_listening(port, p)
        url = f"http://127.0.0.1:{port}"
        r = requests.get(url + "/hello?x=1&x=2")
        assert r.text == "hello world!! params=[('x', ['1', '2'])]"
        r = requests.post(url + "/hello", data={"f": "v"})
        assert "('f', ['v'])" in r.text
        time.sleep(0.3)
        assert int(requests.get(url + "/status").text.split()[0].split("=")[1]) >= 3
        # combined=True drops the second "2"; the queue runs once the loop is idle.
        assert requests.get(url + "/queue").text == "queued 3"
        time.sleep(0.1)
        assert "deferred=[1, 2, 3] queue=0" in requests.get(url + "/status").text
        assert requests.get(url + "/later").text == "pushed later"
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert b"date Thu, 01 Jan 1970 00:00:00 GMT" in out
    assert b"'a': ['1', '2']" in out
