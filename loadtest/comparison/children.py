"""Child processes, each started in a session of its own and all stopped on exit (Ctrl-C
included); free ports; the tail of a log.
"""

import os
import signal
import socket
import subprocess

from .common import REPO


class Children:
    """Every process this script starts, so that all of them are stopped on exit. Each
    runs in a session of its own (Ctrl-C reaches only this script, which stops them)."""

    def __init__(self):
        self.live = []

    def spawn(self, args, stdout, stderr=subprocess.STDOUT):
        p = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=stdout,
                             stderr=stderr, cwd=REPO, start_new_session=True)
        self.live.append(p)
        return p

    def stop(self, p, grace=5.0):
        """SIGTERM, then SIGKILL to the process's own group if it has not exited after
        `grace` seconds (its leader is not reaped yet, so the group id is still ours)."""
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, grace=3.0)


def free_ports(n):
    """n distinct free loopback ports (free when picked; a start retries on a clash)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
