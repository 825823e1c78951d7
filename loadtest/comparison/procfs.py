"""Readings from /proc: CPU ticks of a process and of one CPU, resident memory, thread
affinities, child processes, the kernel's TCP socket memory; and (from `ss`) the bytes a
server's connections received.
"""

import os
import re
import subprocess

from .common import Fatal


def proc_ticks(pid):
    """utime + stime of a process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_ticks(cpu):
    """(busy, total) clock ticks of one CPU from /proc/stat; busy counts user, nice,
    system, irq, softirq and steal (guest time is inside user)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                user, nice, system, idle, iowait, irq, softirq, steal = v
                return user + nice + system + irq + softirq + steal, sum(v)
    raise Fatal(f"no cpu{cpu} line in /proc/stat")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def thread_affinities(pid):
    """{tid: (name, affinity set)} of a process's threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            out[int(tid)] = (name, os.sched_getaffinity(int(tid)))
        except OSError:
            pass
    return out


def child_pids(pid):
    pids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def sockstat_tcp_mem_pages():
    """System-wide TCP buffer memory (pages) from /proc/net/sockstat."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return None


def tcp_bytes_received(port):
    """Bytes received so far by the established TCP sockets whose local port is `port`
    (the server's side of its connections), from `ss -ti`; None when ss is missing."""
    try:
        out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", out))

