"""systemd without libsystemd: socket activation (LISTEN_FDS) and sd_notify.

Both are small, documented protocols (sd_listen_fds(3), sd_notify(3)); the
datagram is written here directly.
"""

import os
import socket

SD_LISTEN_FDS_START = 3


def listen_fds(unset=True):
    """The descriptors systemd passed to this process (fd 3 onwards), or [].
    LISTEN_PID must name us: a variable inherited by a child is not ours."""
    try:
        pid = int(os.environ.get("LISTEN_PID", "0"))
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    if unset:
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(k, None)
    if pid != os.getpid() or count <= 0:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def notify(state):
    """Sends 'READY=1', 'RELOADING=1', 'STOPPING=1'... to NOTIFY_SOCKET when
    set. Returns True when sent; never raises."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
        return True
    except OSError:
        return False
