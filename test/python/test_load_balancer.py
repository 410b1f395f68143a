"""The scaling recipe (README, Deployment): one fapws process per core
behind HAProxy. An instance killed mid-run costs no failed request."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import HERE, free_port, wait_listening
from test_operations import Load

HAPROXY_CFG = """
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend web
    bind 127.0.0.1:{port}
    default_backend fapws
backend fapws
    balance roundrobin
    option httpchk GET /
    default-server check inter 200ms fall 1 rise 2
{servers}
"""


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt install haproxy)")
def test_haproxy_in_front_of_three_instances_one_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    instances = []
    try:
        for _ in range(3):
            port = free_port()
            p = subprocess.Popen([sys.executable, "-m", "fapws", "--bind", f"127.0.0.1:{port}",
                                  "--log-level", "warning", "wsgiapps:pid_app"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_listening(port, p)
            instances.append((p, port))
        front = free_port()
        servers = "\n".join(f"    server s{i} 127.0.0.1:{port}" for i, (_, port) in enumerate(instances))
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=front, servers=servers))
        lb = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        instances.append((lb, front))
        wait_listening(front, lb)
        url = f"http://127.0.0.1:{front}"
        deadline = time.monotonic() + 5
        seen = set()
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.add(requests.get(url, timeout=5).text.split()[0])
        assert len(seen) == 3  # every instance serves

        load = Load(url)
        time.sleep(1.0)
        victim = instances[0][0]
        victim.send_signal(signal.SIGKILL)  # a crash, not a graceful stop
        time.sleep(2.0)
        load.stop()
        assert load.failures == []
        after = {a.split()[0] for a in load.answers[-100:]}
        assert str(victim.pid) not in after and len(after) == 2
    finally:
        for p, _ in instances:
            if p.poll() is None:
                p.kill()
                p.wait()
