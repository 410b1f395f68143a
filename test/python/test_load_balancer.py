"""The scaling recipe (README, Deployment): one fapws process per core
behind HAProxy. An instance killed mid-run costs no failed request."""

import os
import shutil
import signal
import socket
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


def _haproxy_failover(tmp_path, backends, victim, procs):
    """HAProxy in front of `backends` (HOST:PORT): every one serves, then
    `victim` is killed under load and no request fails."""
    front = free_port()
    servers = "\n".join(f"    server s{i} {b}" for i, b in enumerate(backends))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=front, servers=servers))
    lb = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(lb)
    wait_listening(front, lb)
    url = f"http://127.0.0.1:{front}"
    deadline = time.monotonic() + 5
    seen = set()
    while len(seen) < len(backends) and time.monotonic() < deadline:
        seen.add(requests.get(url, timeout=5).text.split()[0])
    assert len(seen) == len(backends)  # every instance serves

    load = Load(url)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)  # a crash, not a graceful stop
    time.sleep(2.0)
    load.stop()
    assert load.failures == [], [a for a in load.answers if not a.split()[0].isdigit()][:3]
    after = {a.split()[0] for a in load.answers[-100:]}
    assert str(victim.pid) not in after and len(after) == len(backends) - 1


def _stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt install haproxy)")
def test_haproxy_in_front_of_three_instances_one_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    procs, backends = [], []
    try:
        for _ in range(3):
            port = free_port()
            p = subprocess.Popen([sys.executable, "-m", "fapws", "--bind", f"127.0.0.1:{port}",
                                  "--log-level", "warning", "wsgiapps:pid_app"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_listening(port, p)
            backends.append(f"127.0.0.1:{port}")
        _haproxy_failover(tmp_path, backends, procs[0], procs)
    finally:
        _stop_all(procs)

def _netns_usable():
    """Root with iproute2, and a kernel (container) that lets us make a
    network namespace."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = f"fapws-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


class Hosts:
    """Three network namespaces, each a separate host on its own veth link:
    10.213.N.2 inside, 10.213.N.1 on our side."""

    def __init__(self, n):
        self.names, self.links = [], []
        tag = os.getpid() % 100000
        # Nothing for 10.213/16 ever leaves by the default route, whatever
        # happens to a link: only the namespaces' own /24 routes carry it.
        subprocess.run(["ip", "route", "add", "blackhole", "10.213.0.0/16"], capture_output=True)
        for i in range(n):
            ns, host_if, ns_if = f"fapws-lb-{tag}-{i}", f"fl{tag}h{i}", f"fl{tag}n{i}"
            self.names.append(ns)
            self.links.append(host_if)
            for cmd in (["ip", "netns", "add", ns],
                        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                        ["ip", "link", "set", ns_if, "netns", ns],
                        ["ip", "addr", "add", f"10.213.{i + 1}.1/24", "dev", host_if],
                        ["ip", "link", "set", host_if, "up"],
                        ["ip", "netns", "exec", ns, "ip", "addr", "add", f"10.213.{i + 1}.2/24", "dev", ns_if],
                        ["ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"],
                        ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]):
                if subprocess.run(cmd, capture_output=True).returncode != 0:
                    self.remove()
                    pytest.skip(f"cannot set up network namespaces here: {' '.join(cmd)} failed")

    def address(self, i):
        return f"10.213.{i + 1}.2"

    def reachable(self, i):
        """Whether a TCP connection from here reaches a listener inside
        namespace i (a sandboxed network stack may let us create namespaces
        and links without carrying traffic over them)."""
        token = os.urandom(8).hex()
        code = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('{self.address(i)}',8001));s.listen(1);s.settimeout(5)\n"
                f"c,_=s.accept();c.sendall(b'{token}');c.close()")
        p = subprocess.Popen(["ip", "netns", "exec", self.names[i], sys.executable, "-c", code],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection((self.address(i), 8001), timeout=1) as c:
                        return c.recv(64) == token.encode()
                except OSError:
                    time.sleep(0.05)
            return False
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()

    def remove(self):
        subprocess.run(["ip", "route", "del", "blackhole", "10.213.0.0/16"], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt install haproxy)")
def test_haproxy_in_front_of_three_hosts_in_network_namespaces_one_killed(tmp_path):
    if not _netns_usable():
        pytest.skip("network namespaces need root and 'ip netns' (not allowed here): the loopback variant "
                    "above covers the same recipe")
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    hosts = Hosts(3)
    procs = []
    try:
        if not hosts.reachable(0):
            pytest.skip("network namespaces and veth links can be made here, but no traffic crosses them "
                        "(a sandboxed network stack): the loopback variant above covers the same recipe")
        for i, ns in enumerate(hosts.names):
            # Each instance binds its host's own address, as on separate machines.
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "fapws", "--bind",
                                  f"{hosts.address(i)}:8000", "--log-level", "warning", "wsgiapps:pid_app"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_listening(8000, p, host=hosts.address(i))
        _haproxy_failover(tmp_path, [f"{hosts.address(i)}:8000" for i in range(3)], procs[0], procs)
    finally:
        _stop_all(procs)
        hosts.remove()
