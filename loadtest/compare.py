#!/usr/bin/env python3
"""Side-by-side live fan-out benchmark: corecast against nginx with the RTMP module.

Both servers run on the same machine in the same run. Each point starts a fresh server,
pinned to one CPU (--server-cpu, default 0), and runs the load generator
(`corecast-load run`, a scenario written by this script) pinned to another
(--generator-cpu, default 1). The generator publishes one stream from an FLV file in
real time and opens N viewers of it (RTMP, or HTTP-FLV for corecast), 20 of them probes
that parse the stream and read the publisher's SEI send-time stamps.

What it measures, for every point (server, protocol, source, viewers):

- server CPU: utime + stime of the server process (corecast: the whole process; nginx:
  the worker) from /proc/PID/stat, over the viewers' run; and the busy time of the server's
  CPU from /proc/stat (user + nice + system + irq + softirq + steal), which also catches
  kernel work done there outside the process's account. Both as CPU-seconds per delivered
  GB (bytes counted by the viewers, 1 GB = 1e9 bytes) and as % of one core;
- from the generator's JSON summary: viewers connected, failed and ended early; the
  delivery windows (every viewer must receive 98% of the published bytes in every 10 s
  window: worst share, windows behind); the slowest viewer; the probes' end-to-end latency
  (p50, p99, p99.9, max), startup time, stalls and skipped-frame gaps; the generator's
  own CPU (mean and busiest second, in cores);
- server memory per viewer: (VmRSS with all viewers, sampled at 80% of the run) minus
  (VmRSS with the publisher alone, sampled at the end of a publisher-only warm-up that is
  longer than corecast's 10 s ring), divided by the viewers. corecast: the process;
  nginx: the worker (the master does not grow with viewers; it is recorded separately).

Parts (--only a,b,c,d):

  a  RTMP fan-out of the ~2.6 Mbit/s 720p source (target/bench/720p.flv, generated once
     with ffmpeg) at 500, 1000, 2000 and 4000 viewers, both servers, plus corecast HTTP-FLV.
  b  RTMP fan-out of the 268 kbit/s clip (tests/fixtures/clip.flv) at 5000, 10000 and 19000
     viewers, capped by the open-file limit (hard limit minus 200; corecast's RTMP players
     use two descriptors each, so its RTMP cap is half that), plus corecast HTTP-FLV.
  c  The most viewers of the 720p source before any viewer falls behind real time:
     doubling from 500, then bisection to 10%. A run is healthy iff no viewer failed or
     ended early, no delivery window was behind, the probes' p99 latency < 500 ms in
     every second from 2.5 s on (leaving out the GOP-cache burst at join), and the
     generator's busiest second < 95% of its core, and so its CPU's (otherwise the
     limit found is the generator's, and the table says so). Then one run at 120% of the
     maximum. Runs of part a are reused as steps of the search.
  d  Join storm: 1000 viewers of the 720p source joining at 1000/s, 100 of them probes:
     startup time (request to first keyframe) p50 and p99.

Output: a progress line per point on stderr; Markdown tables (one per part, machine facts
first) on stdout, ready for docs/BENCHMARKS.md; every raw figure (generator summaries
included) in target/bench/compare-<UTC timestamp>.json.

How to run (from anywhere; paths are relative to the repository):

    python3 loadtest/compare.py                  # everything, about 30 minutes
    python3 loadtest/compare.py --quick          # smoke test, about 7 minutes
    python3 loadtest/compare.py --dry-run        # the plan and its estimate only
    python3 loadtest/compare.py --only a,d --servers corecast,nginx --duration 20

It builds the release binaries first (`cargo build --release -p corecast -p
corecast-load`; --no-build skips that). It needs a machine with two or more CPUs, Linux,
Python 3.9+, and nginx, libnginx-mod-rtmp and ffmpeg (on Debian: `sudo apt-get install -y
nginx libnginx-mod-rtmp ffmpeg`); it checks and prints that command instead of installing
anything. Nothing else may run on the two CPUs it uses: the figures are CPU time.

Every child process is stopped on exit, Ctrl-C included. A server that cannot start is a
fatal error (exit status 1); a server that exits during a run is recorded as such, and
the script ends with exit status 3 after writing its results.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "target" / "bench"
CORECAST = REPO / "target" / "release" / "corecast"
LOADGEN = REPO / "target" / "release" / "corecast-load"
CLIP = REPO / "tests" / "fixtures" / "clip.flv"
FIXTURE_720P = BENCH_DIR / "720p.flv"
NGINX_PROGRAMS = ["/usr/sbin/nginx", "nginx"]
NGINX_MODULES = [
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
]
APT = "sudo apt-get install -y nginx libnginx-mod-rtmp ffmpeg"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STREAM = "live/load0"
PROTOCOL_LABEL = {"rtmp": "RTMP", "flv": "HTTP-FLV"}
SOURCE_LABEL = {"720p": "720p (2.6 Mbit/s)", "clip": "clip (268 kbit/s)"}

# ffmpeg command of the 720p fixture: 20 s, 1280x720 at 30 fps, a keyframe every 2 s, no
# B-frames, 2450 kbit/s CBR-ish video + 128 kbit/s AAC. One encoder thread and bitexact
# flags make the file the same on every run of the same ffmpeg build.
FIXTURE_CMD = [
    "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-t", "20", "-map", "0:v", "-map", "1:a",
    "-c:v", "libx264", "-threads", "1", "-preset", "veryfast", "-profile:v", "high",
    "-pix_fmt", "yuv420p", "-bf", "0",
    "-b:v", "2450k", "-maxrate", "2450k", "-bufsize", "2450k",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-x264-params", "nal-hrd=none",
    "-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "2",
    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
    "-f", "flv",
]

# Health thresholds of part c.
MAX_P99_MS = 500.0
# The latency criterion uses the probes' per-second p99 from this many seconds into the run
# on, leaving the join out.
STEADY_FROM_S = 2.5
MAX_GENERATOR_PEAK = 0.95
# corecast counters kept from /metrics at the end of each run (summed over shards).
METRICS = [
    "corecast_flv_bytes_out_total", "corecast_rtmp_bytes_out_total",
    "corecast_flv_sends_total", "corecast_rtmp_sends_total",
    "corecast_frames_skipped_total", "corecast_viewers_disconnected_slow_total",
    "corecast_play_rejections_total", "corecast_timeouts_total",
    "corecast_mesh_units_dropped_total", "corecast_bytes_in_total",
]
# Publisher-only seconds before the viewers join in parts c and d: viewers join halfway
# through a GOP (the publisher starts on a keyframe, one every 2 s), so that a viewer
# that waits for the next keyframe waits about 1 s, the mean over random join times.
WARMUP = 3.0
# Seconds from spawning the generator to its viewers' run starting, after the warm-up
# (process start, reading the source, connecting the publisher).
GENERATOR_START = 0.05
# Seconds per point besides warm-up and run: server start and stop, the publishers'
# 2 s tail, settling.
OVERHEAD = 5.0


class Fatal(Exception):
    """An error that ends the run (exit status 1)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_text(args, **kw):
    """Output (stdout + stderr) of a short command, or None when it cannot run."""
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=kw.pop("timeout", 60), **kw)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


# --------------------------------------------------------------------------------------
# /proc


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


# --------------------------------------------------------------------------------------
# Child processes


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


# --------------------------------------------------------------------------------------
# Servers


class Corecast:
    """corecast with one shard, on loopback ports picked anew at each start, admin
    endpoints moved to a loopback port of their own; every other setting is the default."""

    kind = "corecast"
    # Configuration added to the overlay (the low-latency variant sets flush_on_video).
    extra = ""

    def __init__(self, ctx, label):
        self.ctx, self.label = ctx, label
        self.proc = None
        self.notes = []

    def start(self):
        ctx = self.ctx
        cpu = ctx.server_cpu
        for attempt in range(8):
            rtmp, http, admin = free_ports(3)
            overlay = ctx.tmp / f"{self.label}-admin.toml"
            overlay.write_text(f'[admin]\nlisten = "127.0.0.1:{admin}"\n{self.extra}')
            self.log_path = ctx.tmp / f"{self.label}.log"
            args = ["taskset", "-c", cpu, CORECAST, "--shards", "1",
                    "--rtmp-listen", f"127.0.0.1:{rtmp}", "--http-listen", f"127.0.0.1:{http}",
                    "--config", overlay]
            with open(self.log_path, "wb") as out:
                self.proc = ctx.children.spawn(args, stdout=out)
            deadline = time.monotonic() + 15
            ready = False
            while time.monotonic() < deadline and self.proc.poll() is None:
                if "corecast serving" in tail(self.log_path, 200):
                    ready = True
                    break
                time.sleep(0.05)
            if not ready:
                text = tail(self.log_path)
                self.stop()
                if "in use" in text and attempt < 7:
                    continue
                raise Fatal(f"corecast did not start ({args}):\n{text}")
            # The shard runs on the first CPU of the process's affinity (taskset's). Check
            # anyway: a thread that landed elsewhere is moved to the server's CPU.
            for tid, (name, cpus) in thread_affinities(self.proc.pid).items():
                if cpus != {cpu}:
                    os.sched_setaffinity(tid, {cpu})
                    self.notes.append(f"thread {name} ({tid}) was on CPUs {sorted(cpus)}: "
                                      f"moved to CPU {cpu}")
            self.rtmp_port, self.http_port, self.admin_port = rtmp, http, admin
            return
        raise Fatal(f"corecast did not start: {self.notes}")

    def target(self, protocol):
        return f"127.0.0.1:{self.rtmp_port}", f"127.0.0.1:{self.http_port}"

    def cpu_pids(self):
        return [self.proc.pid]

    def rss(self):
        return {"process": rss_kib(self.proc.pid)}

    def alive(self):
        return self.proc.poll() is None

    def metrics(self):
        try:
            url = f"http://127.0.0.1:{self.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError as e:
            return {"error": str(e)}
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in METRICS:
                try:
                    out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return out

    def stop(self):
        if self.proc is not None:
            self.ctx.children.stop(self.proc)


class Nginx:
    """nginx with the RTMP module in a temporary prefix: one worker, pinned (and its
    master pinned with taskset) to the server's CPU."""

    kind = "nginx"

    def __init__(self, ctx, label):
        self.ctx, self.label = ctx, label
        self.proc = None
        self.worker = None
        self.notes = []

    @staticmethod
    def config(ctx, prefix, port):
        mask = format(1 << ctx.server_cpu, f"0{max(ctx.ncpu, ctx.server_cpu + 1)}b")
        return (
            f"load_module {ctx.nginx_module};\n"
            "worker_processes 1;\n"
            f"worker_cpu_affinity {mask};\n"
            f"worker_rlimit_nofile {ctx.nofile};\n"
            "daemon off;\n"
            "master_process on;\n"
            f"error_log {prefix}/error.log warn;\n"
            f"pid {prefix}/nginx.pid;\n"
            f"events {{ worker_connections {ctx.nofile}; multi_accept on; }}\n"
            "rtmp {\n"
            "    server {\n"
            f"        listen 127.0.0.1:{port};\n"
            "        chunk_size 4096;\n"
            "        application live { live on; }\n"
            "    }\n"
            "}\n"
        )

    def start(self):
        ctx = self.ctx
        for attempt in range(3):
            (port,) = free_ports(1)
            prefix = ctx.tmp / self.label
            prefix.mkdir(exist_ok=True)
            conf = prefix / "nginx.conf"
            conf.write_text(self.config(ctx, prefix, port))
            self.log_path = prefix / "error.log"
            args = ["taskset", "-c", ctx.server_cpu, ctx.nginx, "-p", prefix,
                    "-e", self.log_path, "-c", conf]
            with open(prefix / "stdout.log", "wb") as out:
                self.proc = ctx.children.spawn(args, stdout=out)
            deadline = time.monotonic() + 10
            self.worker = None
            while time.monotonic() < deadline and self.proc.poll() is None:
                workers = child_pids(self.proc.pid)
                if (len(workers) == 1 and connectable(port)
                        and thread_affinities(workers[0]).get(workers[0], ("", None))[1]
                        == {ctx.server_cpu}):
                    self.worker = workers[0]
                    break
                time.sleep(0.05)
            if self.worker is None:
                text = tail(self.log_path) + tail(prefix / "stdout.log")
                self.stop()
                if "in use" in text and attempt < 2:
                    continue
                raise Fatal(f"nginx did not start ({args}):\n{text}")
            master_cpus = os.sched_getaffinity(self.proc.pid)
            if master_cpus != {ctx.server_cpu}:
                self.stop()
                raise Fatal(f"nginx master on CPUs {sorted(master_cpus)}, not {ctx.server_cpu}")
            self.port = port
            return
        raise Fatal("nginx did not start")

    def target(self, protocol):
        if protocol != "rtmp":
            raise Fatal("nginx-rtmp serves RTMP players only")
        # The HTTP target is unused; any loopback address will do.
        return f"127.0.0.1:{self.port}", f"127.0.0.1:{self.port}"

    def cpu_pids(self):
        return [self.worker]

    def rss(self):
        return {"worker": rss_kib(self.worker), "master": rss_kib(self.proc.pid)}

    def alive(self):
        return self.proc.poll() is None and os.path.exists(f"/proc/{self.worker}")

    def metrics(self):
        return {}

    def stop(self):
        if self.proc is None:
            return
        worker = self.worker
        self.ctx.children.stop(self.proc)
        # The master stops its worker before it exits; make sure.
        if worker and child_of_ours(worker, "nginx"):
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass


def child_of_ours(pid, name):
    """Whether `pid` still exists and is an nginx worker (orphaned: our master is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


class CorecastLowLatency(Corecast):
    """corecast in its low-latency setting: `viewer.flush_on_video = true` (a video frame
    ends the merge window at once), everything else as `Corecast`."""

    kind = "corecast-ll"
    extra = "[viewer]\nflush_on_video = true\n"


SERVERS = {"corecast": Corecast, "corecast-ll": CorecastLowLatency, "nginx": Nginx}


# --------------------------------------------------------------------------------------
# Context: settings and facts of this run


class Ctx:
    pass


def parse_list(text, allowed=None):
    items = [x.strip() for x in text.split(",") if x.strip()]
    if allowed is not None:
        bad = [x for x in items if x not in allowed]
        if bad:
            raise SystemExit(f"unknown value(s) {bad}; choose from {sorted(allowed)}")
    return items


def parse_counts(text):
    try:
        return [int(x.replace("_", "")) for x in parse_list(text)]
    except ValueError:
        raise SystemExit(f"bad viewer counts: {text}")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Compare corecast and nginx-rtmp fan-out on this machine "
                    "(see the docstring at the top of this file).")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of viewers per point (default 30; 10 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 s points, fewer of them")
    p.add_argument("--only", default="a,b,c,d", help="parts to run, e.g. a,c")
    p.add_argument("--servers", default="corecast,nginx",
                   help="comma-separated: corecast, corecast-ll (flush_on_video), nginx")
    p.add_argument("--protocols", default="rtmp,flv",
                   help="viewer protocols (flv: corecast only)")
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the time estimate, run nothing")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU of the server (default 0)")
    p.add_argument("--generator-cpu", type=int, default=1,
                   help="CPU of the generator: publisher and viewers (default 1)")
    p.add_argument("--counts-a", default=None, help="viewer counts of part a (500,1000,2000,4000)")
    p.add_argument("--counts-b", default=None,
                   help="viewer counts of part b, capped by the open-file limit (5000,10000,19000)")
    p.add_argument("--probes", type=int, default=20, help="probe viewers per point (default 20)")
    p.add_argument("--join-rate", type=float, default=None,
                   help="viewers joining per second (default: max(1000, viewers / 10))")
    p.add_argument("--mem-warmup", type=float, default=None,
                   help="publisher-only seconds before the viewers in parts a and b, for the "
                        "memory baseline (default 13: longer than corecast's 10 s ring, and "
                        "viewers join halfway through a 2 s GOP)")
    p.add_argument("--search-start", type=int, default=None, help="first count of part c (500)")
    p.add_argument("--search-precision", type=float, default=None,
                   help="part c stops when (unhealthy - healthy) <= this x healthy (0.1)")
    p.add_argument("--search-runs", type=int, default=None,
                   help="most runs of one search in part c (10; 4 with --quick)")
    p.add_argument("--storm-viewers", type=int, default=1000, help="part d viewers (1000)")
    p.add_argument("--storm-rate", type=float, default=1000.0, help="part d join rate (1000/s)")
    p.add_argument("--storm-probes", type=int, default=100, help="part d probes (100)")
    p.add_argument("--out", type=Path, default=None,
                   help="raw JSON file (default target/bench/compare-<UTC timestamp>.json)")
    p.add_argument("--keep-temp", action="store_true",
                   help="keep the temporary directory (configs, scenarios, logs)")
    p.add_argument("--nginx", default=None, help="nginx program (default /usr/sbin/nginx)")
    p.add_argument("--nginx-module", default=None, help="path of ngx_rtmp_module.so")
    a = p.parse_args(argv)
    a.only = parse_list(a.only, {"a", "b", "c", "d"})
    a.servers = parse_list(a.servers, set(SERVERS))
    a.protocols = parse_list(a.protocols, {"rtmp", "flv"})
    q = a.quick
    if a.duration is None:
        a.duration = 10.0 if q else 30.0
    if a.duration < 6:
        raise SystemExit("--duration must be at least 6 seconds")
    a.counts_a = parse_counts(a.counts_a) if a.counts_a else ([500, 1000] if q else [500, 1000, 2000, 4000])
    a.counts_b = parse_counts(a.counts_b) if a.counts_b else ([5000] if q else [5000, 10000, 19000])
    if a.mem_warmup is None:
        a.mem_warmup = 5.0 if q else 13.0
    if a.search_start is None:
        a.search_start = 1000 if q else 500
    if a.search_precision is None:
        a.search_precision = 0.25 if q else 0.10
    if a.search_runs is None:
        a.search_runs = 4 if q else 10
    return a


def configs(ctx):
    """(server, protocol) pairs of this run, nginx-rtmp serving RTMP only."""
    out = []
    for kind, proto in [("corecast", "rtmp"), ("nginx", "rtmp"), ("corecast", "flv"),
                        ("corecast-ll", "rtmp"), ("corecast-ll", "flv")]:
        if kind in ctx.args.servers and proto in ctx.args.protocols:
            out.append((kind, proto))
    return out


def fd_cap(ctx, kind, proto):
    """Most viewers one point may open: the open-file hard limit minus 200, halved for
    corecast's RTMP players (a reader and a writer descriptor each)."""
    cap = ctx.nofile - 200
    if kind.startswith("corecast") and proto == "rtmp":
        cap //= 2
    return cap


def join_rate(ctx, viewers):
    if ctx.args.join_rate:
        return ctx.args.join_rate
    return max(1000.0, viewers / 10.0)


def window_seconds(duration):
    """10 s delivery windows; shorter runs get windows of a third of the run (the first
    window only starts the count, so a run needs two)."""
    return 10.0 if duration >= 30 else max(2.0, math.floor(duration / 3))


def preflight(ctx):
    """Checks tools, CPUs and limits; fails with what to install or change."""
    args = ctx.args
    missing = []
    if not shutil.which("taskset"):
        missing.append("taskset (util-linux)")
    if "nginx" in args.servers:
        ctx.nginx = args.nginx or next(
            (n for n in NGINX_PROGRAMS if (os.path.exists(n) or shutil.which(n))), None)
        ctx.nginx_module = args.nginx_module or next(
            (m for m in NGINX_MODULES if os.path.exists(m)), None)
        if not ctx.nginx:
            missing.append("nginx")
        if not ctx.nginx_module:
            missing.append("the nginx RTMP module (libnginx-mod-rtmp)")
    need_720p = bool(set(args.only) & {"a", "c", "d"})
    if need_720p and not FIXTURE_720P.exists() and not shutil.which("ffmpeg"):
        missing.append("ffmpeg (to generate target/bench/720p.flv)")
    if not shutil.which("ffprobe"):
        missing.append("ffprobe (ffmpeg), to check the sources' bitrates")
    if missing:
        raise Fatal("missing: " + ", ".join(missing) + f"\ninstall with:\n    {APT}")
    online = os.sched_getaffinity(0)
    ctx.ncpu = os.cpu_count() or 1
    for name, cpu in [("--server-cpu", args.server_cpu), ("--generator-cpu", args.generator_cpu)]:
        if cpu not in online:
            raise Fatal(f"{name} {cpu}: not a CPU this script may use ({sorted(online)})")
    if args.server_cpu == args.generator_cpu:
        raise Fatal("the server and the generator need CPUs of their own")
    ctx.server_cpu, ctx.generator_cpu = args.server_cpu, args.generator_cpu
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    ctx.nofile = hard
    if hard < 2000:
        raise Fatal(f"the open-file hard limit is {hard}; raise it (ulimit -Hn) to 20000 or more")
    _, memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if (memlock != resource.RLIM_INFINITY and memlock < 512 * 1024
            and any(k.startswith("corecast") for k in args.servers)):
        raise Fatal(f"RLIMIT_MEMLOCK hard limit {memlock} B < 512 KiB: corecast cannot start "
                    "a shard (ulimit -l unlimited, or --ulimit memlock=-1:-1 in docker)")
    ctx.memlock = memlock


def build(ctx):
    if ctx.args.no_build:
        log("skipping the build (--no-build)")
    else:
        cmd = ["cargo", "build", "--release", "-p", "corecast", "-p", "corecast-load"]
        log("building: " + " ".join(cmd))
        if subprocess.run(cmd, cwd=REPO, stdout=sys.stderr).returncode != 0:
            raise Fatal("the release build failed")
    for binary in (CORECAST, LOADGEN):
        if not binary.exists():
            raise Fatal(f"{binary} is missing: build without --no-build")
    if run_text([LOADGEN, "run", "--help"]) is None:
        raise Fatal(f"{LOADGEN} has no `run` subcommand: rebuild it (without --no-build)")


def probe_source(path):
    """Bitrate and duration of an FLV file (ffprobe), and its SHA-256."""
    info = {"path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
            "bytes": path.stat().st_size}
    with open(path, "rb") as f:
        info["sha256"] = hashlib.sha256(f.read()).hexdigest()
    text = run_text(["ffprobe", "-v", "error", "-show_entries", "format=duration,bit_rate",
                     "-show_entries", "stream=codec_name,width,height,avg_frame_rate",
                     "-of", "json", str(path)])
    if text is None:
        raise Fatal(f"ffprobe cannot read {path}")
    probe = json.loads(text)
    fmt = probe.get("format", {})
    info["duration_s"] = float(fmt.get("duration", 0))
    info["kbit_per_s"] = (float(fmt["bit_rate"]) / 1000 if "bit_rate" in fmt else
                          info["bytes"] * 8 / 1000 / max(info["duration_s"], 1e-3))
    info["streams"] = probe.get("streams", [])
    return info


def sources(ctx):
    ctx.sources = {}
    need_720p = bool(set(ctx.args.only) & {"a", "c", "d"})
    if need_720p:
        if not FIXTURE_720P.exists():
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
            partial = FIXTURE_720P.with_suffix(".partial.flv")
            log(f"generating {FIXTURE_720P.relative_to(REPO)} with ffmpeg (about 20 s)")
            if subprocess.run(FIXTURE_CMD + [str(partial)], cwd=REPO).returncode != 0:
                raise Fatal("ffmpeg could not generate the 720p fixture")
            partial.rename(FIXTURE_720P)
        ctx.sources["720p"] = dict(probe_source(FIXTURE_720P), file=FIXTURE_720P,
                                   ffmpeg=" ".join(FIXTURE_CMD + [str(FIXTURE_720P.relative_to(REPO))]))
    if "b" in ctx.args.only:
        ctx.sources["clip"] = dict(probe_source(CLIP), file=CLIP)
    for name, s in ctx.sources.items():
        log(f"source {name}: {s['path']}, {s['kbit_per_s']:,.0f} kbit/s (ffprobe), "
            f"{s['duration_s']:.1f} s, {s['bytes']:,} bytes")
        if name == "720p" and not 2300 <= s["kbit_per_s"] <= 2900:
            log(f"warning: the 720p fixture is {s['kbit_per_s']:.0f} kbit/s, not about 2,600: "
                f"delete {FIXTURE_720P} to regenerate it")


def idle_check(ctx, seconds=2.0):
    """Busy share of the server's and the generator's CPUs before the run: anything else
    running there makes every CPU figure noisy."""
    cpus = [ctx.server_cpu, ctx.generator_cpu]
    before = {c: cpu_ticks(c) for c in cpus}
    time.sleep(seconds)
    busy = {}
    for c in cpus:
        b, t = cpu_ticks(c)
        busy[c] = (b - before[c][0]) / max(1, t - before[c][1])
        if busy[c] > 0.10:
            log(f"warning: CPU {c} is {busy[c] * 100:.0f}% busy before the benchmark: "
                "something else runs there and the CPU figures will be noisy")
    return busy


def facts(ctx):
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = run_text(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    f = {
        "date_utc": ctx.started_utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": model,
        "cpus": ctx.ncpu,
        "kernel": platform.release(),
        "corecast_commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "python": platform.python_version(),
        "nofile_hard_limit": ctx.nofile,
        "memlock_hard_limit": ctx.memlock,
        "server_cpu": ctx.server_cpu,
        "generator_cpu": ctx.generator_cpu,
        "clk_tck": CLK_TCK,
        "command": " ".join([sys.executable, *sys.argv]),
        "idle_busy_before_run": {f"cpu{c}": round(b, 3) for c, b in idle_check(ctx).items()},
    }
    for key, path in [("tcp_tw_reuse", "/proc/sys/net/ipv4/tcp_tw_reuse"),
                      ("ip_local_port_range", "/proc/sys/net/ipv4/ip_local_port_range"),
                      ("somaxconn", "/proc/sys/net/core/somaxconn")]:
        try:
            f[key] = Path(path).read_text().split()
        except OSError:
            pass
    ffmpeg = run_text(["ffmpeg", "-version"])
    f["ffmpeg"] = ffmpeg.splitlines()[0] if ffmpeg else None
    if "nginx" in ctx.args.servers:
        v = subprocess.run([ctx.nginx, "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        f["nginx"] = v.stdout.strip().replace("nginx version: ", "")
        f["nginx_module"] = ctx.nginx_module
        # Check the configuration as the servers will run it.
        prefix = ctx.tmp / "nginx-t"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(Nginx.config(ctx, prefix, free_ports(1)[0]))
        t = subprocess.run([ctx.nginx, "-t", "-p", prefix, "-e", prefix / "error.log", "-c", conf],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if t.returncode != 0:
            raise Fatal(f"nginx -t fails on the generated configuration:\n{t.stdout}")
        f["nginx_conf"] = conf.read_text()
    if any(k.startswith("corecast") for k in ctx.args.servers):
        overlay = ctx.tmp / "print-config.toml"
        overlay.write_text('[admin]\nlisten = "127.0.0.1:3"\n')
        cfg = run_text([CORECAST, "--config", overlay, "--shards", "1",
                        "--rtmp-listen", "127.0.0.1:1", "--http-listen", "127.0.0.1:2",
                        "--print-config"])
        if cfg is None:
            raise Fatal("corecast --print-config failed")
        for port in "123":  # the real ports are picked anew at each start
            cfg = cfg.replace(f'"127.0.0.1:{port}"', '"127.0.0.1:<port>"')
        f["corecast_config"] = cfg
        f["corecast_version"] = run_text([CORECAST, "--version"])
        f["corecast_command"] = ("taskset -c {cpu} target/release/corecast --shards 1 "
                                 "--rtmp-listen 127.0.0.1:P1 --http-listen 127.0.0.1:P2 "
                                 "--config FILE  (FILE: [admin] listen = \"127.0.0.1:P3\"{ll})"
                                 .format(cpu=ctx.server_cpu,
                                         ll=" and, for corecast-ll, [viewer] flush_on_video = true"
                                         if "corecast-ll" in ctx.args.servers else ""))
    return f


# --------------------------------------------------------------------------------------
# One point


def scenario_text(ctx, rtmp, http, source, protocol, viewers, rate, probes, duration, warmup,
                  window):
    q = json.dumps  # TOML basic strings accept JSON's escapes for these values
    return (
        "# written by loadtest/compare.py\n"
        f"duration = {q(f'{duration:g}s')}\n\n"
        "[target]\n"
        f"rtmp = {q(rtmp)}\n"
        f"http = {q(http)}\n\n"
        "[generator]\n"
        f"cpu = {ctx.generator_cpu}\n"
        f"window = {q(f'{window:g}s')}\n"
        f"warmup = {q(f'{warmup:g}s')}\n\n"
        "[[publish]]\n"
        f"file = {q(str(ctx.sources[source]['file']))}\n\n"
        "[[viewers]]\n"
        f"protocol = {q(protocol)}\n"
        f"stream = {q(STREAM)}\n"
        f"probes = {min(probes, viewers)}\n"
        f"steps = [ {{ at = \"0s\", viewers = {viewers}, rate = {rate:.1f} }} ]\n"
    )


def wait_until(deadline, gen):
    """Sleeps until `deadline` (monotonic); False if the generator exits first."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            return True
        if gen.poll() is not None:
            return False
        time.sleep(min(0.1, deadline - now))


def run_point(ctx, part, kind, protocol, source, viewers, *, probes=None, rate=None,
              warmup=None, mem=False, duration=None):
    """Starts a fresh server, runs one scenario against it, measures; returns the record."""
    ctx.point_no += 1
    n = ctx.point_no
    duration = duration or ctx.args.duration
    warmup = WARMUP if warmup is None else warmup
    probes = ctx.args.probes if probes is None else probes
    rate = rate or join_rate(ctx, viewers)
    window = window_seconds(duration)
    label = f"p{n:03d}-{kind}-{protocol}-{source}-{viewers}"
    rec = {
        "id": n, "part": part, "server": kind, "protocol": protocol, "source": source,
        "viewers": viewers, "join_rate": rate, "probes": min(probes, viewers),
        "duration_s": duration, "warmup_s": warmup, "window_s": window,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    began = time.monotonic()
    server = SERVERS[kind](ctx, label)
    server.start()
    try:
        rtmp, http = server.target(protocol)
        scenario = ctx.tmp / f"{label}.toml"
        scenario.write_text(scenario_text(ctx, rtmp, http, source, protocol, viewers, rate,
                                          probes, duration, warmup, window))
        out_path, err_path = ctx.tmp / f"{label}.json", ctx.tmp / f"{label}.stderr"
        cmd = [LOADGEN, "run", scenario, "--json", "--cpu", ctx.generator_cpu]
        rec["generator_command"] = " ".join(str(c) for c in cmd)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            spawned = time.monotonic()
            gen = ctx.children.spawn(cmd, stdout=out, stderr=err)
        try:
            ok = True
            if mem:
                ok = wait_until(spawned + warmup - 0.5, gen)
                rec["rss_publisher_kib"] = server.rss()
                rec["tcp_mem_pages_publisher"] = sockstat_tcp_mem_pages()
            t0 = spawned + warmup + GENERATOR_START
            ok = ok and wait_until(t0, gen)
            c0 = (time.monotonic(), sum(proc_ticks(p) for p in server.cpu_pids()),
                  cpu_ticks(ctx.server_cpu), cpu_ticks(ctx.generator_cpu))
            master0 = proc_ticks(server.proc.pid) if kind == "nginx" else None
            # Once a second, both CPUs' busy time (for their busiest second: the generator's
            # CPU may be taken by something else than the generator); at 80%, the memory.
            ticks = [(c0[2], c0[3])]
            end, next_tick = t0 + duration, t0 + 1.0
            mem_at = t0 + 0.8 * duration if mem else None
            while ok:
                ok = wait_until(min(next_tick, end, mem_at or end), gen)
                now = time.monotonic()
                if mem_at is not None and now >= mem_at:
                    rec["rss_full_kib"] = server.rss()
                    rec["tcp_mem_pages_full"] = sockstat_tcp_mem_pages()
                    mem_at = None
                if now >= next_tick:
                    ticks.append((cpu_ticks(ctx.server_cpu), cpu_ticks(ctx.generator_cpu)))
                    next_tick += 1.0
                if now >= end:
                    break
            per_second = [[(b[i][0] - a[i][0]) / max(1, b[i][1] - a[i][1]) for i in (0, 1)]
                          for a, b in zip(ticks, ticks[1:])]
            if per_second:
                rec["cpu_busy_peak"] = max(x[0] for x in per_second)
                rec["generator_cpu_busy_peak"] = max(x[1] for x in per_second)
            alive = server.alive()
            if alive:
                c1 = (time.monotonic(), sum(proc_ticks(p) for p in server.cpu_pids()),
                      cpu_ticks(ctx.server_cpu), cpu_ticks(ctx.generator_cpu))
                if kind == "nginx":
                    rec["nginx_master_cpu_s"] = (proc_ticks(server.proc.pid) - master0) / CLK_TCK
            try:
                gen.wait(timeout=max(5.0, spawned + warmup + duration + 60 - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Fatal(f"the generator did not end ({rec['generator_command']})")
        finally:
            ctx.children.stop(gen)
        rec["metrics"] = server.metrics() if alive else {}
        alive = alive and server.alive()
        rec["server_exited"] = not alive
        rec["server_notes"] = server.notes
        if not alive:
            rec["server_log_tail"] = tail(server.log_path, 50)
    finally:
        server.stop()
    stderr = tail(err_path, 40)
    rec["generator_stderr"] = stderr
    if gen.returncode != 0:
        if not alive:
            rec["summary"] = None
        else:
            raise Fatal(f"the generator failed (exit {gen.returncode}): "
                        f"{rec['generator_command']}\n{stderr}")
    else:
        try:
            rec["summary"] = json.loads(out_path.read_text())
        except (OSError, ValueError) as e:
            raise Fatal(f"no JSON summary from the generator ({e}):\n{stderr}")
    if alive:
        seconds = c1[0] - c0[0]
        cpu_s = (c1[1] - c0[1]) / CLK_TCK
        busy_s = (c1[2][0] - c0[2][0]) / CLK_TCK
        rec.update(interval_s=seconds, server_cpu_s=cpu_s, cpu_busy_s=busy_s,
                   cpu_total_s=(c1[2][1] - c0[2][1]) / CLK_TCK,
                   server_util=cpu_s / seconds, cpu_busy_util=busy_s / seconds,
                   generator_cpu_busy_util=(c1[3][0] - c0[3][0]) / CLK_TCK / seconds)
    s = rec.get("summary")
    if s:
        g = s["groups"][0]
        rec["bytes"] = sum(x["bytes"] for x in s["groups"])
        rec["gbit_per_s"] = rec["bytes"] * 8 / 1e9 / max(s["seconds"], 1e-3)
        gb = rec["bytes"] / 1e9
        if alive and gb > 0:
            rec["cpu_s_per_gb"] = rec["server_cpu_s"] / gb
            rec["cpu_busy_s_per_gb"] = rec["cpu_busy_s"] / gb
        if mem and g["connected"]:
            key = "process" if kind.startswith("corecast") else "worker"
            base = rec.get("rss_publisher_kib", {}).get(key)
            full = rec.get("rss_full_kib", {}).get(key)
            if base is not None and full is not None:
                rec["rss_per_viewer_kib"] = (full - base) / viewers
                rec["rss_measured"] = ("corecast process" if kind.startswith("corecast")
                                       else "nginx worker (master recorded separately)")
    verdict(rec)
    rec["wall_s"] = time.monotonic() - began
    ctx.points.append(rec)
    progress(ctx, rec)
    return rec


def steady_p99(summary):
    """The probes' worst per-second p99 latency from STEADY_FROM_S into the run on."""
    if not summary:
        return None
    samples = [x["p99_ms"] for g in summary["groups"] for x in g["timeline"]
               if x["t"] >= STEADY_FROM_S]
    return max(samples) if samples else None


def verdict(rec):
    """Healthy iff nothing failed or ended early, every delivery window was met, the
    probes' p99 latency stayed under 500 ms in every second (from 2.5 s on: see
    STEADY_FROM_S) and the generator kept up; 'generator' when the generator saturated."""
    reasons = []
    s = rec.get("summary")
    rec["steady_p99_ms"] = steady_p99(s)
    if rec.get("server_exited"):
        reasons.append("server exited")
    if not s:
        rec["verdict"], rec["reasons"] = "unhealthy", reasons or ["no summary"]
        return
    g = s["groups"][0]
    failed_publishers = [line for line in rec.get("generator_stderr", "").splitlines()
                         if line.startswith("publisher ")]
    if failed_publishers:
        reasons.append("; ".join(failed_publishers))
    if g["failed"]:
        reasons.append(f"{g['failed']} failed")
    if g["ended_early"]:
        reasons.append(f"{g['ended_early']} ended early")
    if g["connected"] < g["viewers"]:
        reasons.append(f"{g['connected']} of {g['viewers']} connected")
    if g["windows"] == 0:
        reasons.append("no delivery window checked")
    if g["windows_behind"]:
        reasons.append(f"{g['windows_behind']} windows behind "
                       f"(worst {g['worst_window_share'] * 100:.0f}%)")
    if g["latency"]["count"] == 0:
        reasons.append("no latency samples")
    elif rec["steady_p99_ms"] >= MAX_P99_MS:
        reasons.append(f"worst 1-s p99 {rec['steady_p99_ms']:.0f} ms")
    generator = False
    if s["generator_cpu_peak"] >= MAX_GENERATOR_PEAK:
        generator = True
        reasons.append(f"generator saturated (peak {s['generator_cpu_peak'] * 100:.0f}%)")
    elif rec.get("generator_cpu_busy_peak", 0) >= MAX_GENERATOR_PEAK:
        # The generator's CPU was full, but not all of it was the generator's.
        generator = True
        reasons.append(f"generator's CPU {rec['generator_cpu_busy_peak'] * 100:.0f}% busy "
                       f"(the generator's own peak: {s['generator_cpu_peak'] * 100:.0f}%)")
    if not reasons:
        rec["verdict"] = "healthy"
    elif generator:
        rec["verdict"] = "generator"
    else:
        rec["verdict"] = "unhealthy"
    rec["reasons"] = reasons


def progress(ctx, rec):
    done = len(ctx.points)
    elapsed = time.monotonic() - ctx.t_start
    left = max(0.0, ctx.estimate_s - elapsed)
    s = rec.get("summary")
    g = s["groups"][0] if s else None
    bits = [f"[{rec['part']} #{rec['id']}] {rec['server']} {PROTOCOL_LABEL[rec['protocol']]} "
            f"{rec['source']} {rec['viewers']:,} viewers:"]
    if g:
        bits.append(f"{g['connected']:,} connected, {rec['gbit_per_s']:.2f} Gbit/s,")
    if "server_util" in rec:
        bits.append(f"server {rec['server_util'] * 100:.0f}% CPU "
                    f"({rec.get('cpu_s_per_gb', float('nan')):.2f} CPU-s/GB),")
    if g:
        bits.append(f"p99 {g['latency']['p99_ms']:.0f} ms (worst second "
                    f"{ms(rec.get('steady_p99_ms'))} ms), worst window "
                    f"{g['worst_window_share'] * 100:.0f}%, generator peak "
                    f"{s['generator_cpu_peak'] * 100:.0f}%")
    bits.append(f"-> {rec['verdict']}" + (f" ({'; '.join(rec['reasons'])})" if rec["reasons"] else ""))
    bits.append(f"[{done} points, {elapsed / 60:.1f} min, ~{left / 60:.0f} min left]")
    log(" ".join(bits))


# --------------------------------------------------------------------------------------
# Parts


def part_fanout(ctx, part, source, counts):
    """Parts a and b: every count for every configuration, alternating the servers at
    each count so that drifting machine load falls on both alike."""
    for count in counts:
        for kind, proto in configs(ctx):
            n = min(count, fd_cap(ctx, kind, proto))
            key = (part, kind, proto, n)
            if key in ctx.done:
                continue
            ctx.done.add(key)
            rec = run_point(ctx, part, kind, proto, source, n, warmup=ctx.args.mem_warmup,
                            mem=True)
            if n < count:
                rec["capped_from"] = count


def nice(x):
    step = 50 if x < 2000 else 100 if x < 10000 else 500
    return max(step, int(round(x / step)) * step)


def part_search(ctx):
    """Part c: the most viewers of the 720p source each configuration serves healthily."""
    args = ctx.args
    results = []
    for kind, proto in configs(ctx):
        cap = fd_cap(ctx, kind, proto)
        tried = {}
        order = []

        def trial(n):
            if n in tried:
                return tried[n]
            reuse = next((r for r in ctx.points if r["part"] == "a" and r["server"] == kind
                          and r["protocol"] == proto and r["viewers"] == n
                          and r["duration_s"] == args.duration), None)
            rec = reuse or run_point(ctx, "c", kind, proto, "720p", n)
            tried[n] = rec
            order.append(rec["id"])
            return rec

        lo = hi = None
        limit = None
        n = min(args.search_start, cap)
        while True:
            r = trial(n)
            if r["verdict"] == "healthy":
                lo = n
                if n >= cap:
                    limit = "fd"
                    break
                if len(order) >= args.search_runs:
                    limit = "runs"
                    break
                n = min(n * 2, cap)
            else:
                hi = n
                limit = "generator" if r["verdict"] == "generator" else None
                break
        while lo is None and limit is None and n > 50 and len(order) < args.search_runs:
            n = nice(n / 2)
            r = trial(n)
            if r["verdict"] == "healthy":
                lo = n
            else:
                hi = n
                if r["verdict"] == "generator":
                    limit = "generator"
        if limit is None and lo is not None and hi is not None:
            while hi - lo > args.search_precision * lo and len(order) < args.search_runs:
                mid = nice((lo + hi) / 2)
                if mid <= lo or mid >= hi:
                    break
                r = trial(mid)
                if r["verdict"] == "healthy":
                    lo = mid
                else:
                    hi = mid
                    if r["verdict"] == "generator":
                        limit = "generator"
                        break
            if limit is None:
                limit = "server"
        over = None
        if lo is not None:
            target = nice(lo * 1.2)
            if target > cap:
                target = cap if cap > lo else None
            if target is not None:
                over = run_point(ctx, "c+", kind, proto, "720p", target)
        results.append({
            "server": kind, "protocol": proto, "max_healthy": lo, "first_unhealthy": hi,
            "limited_by": limit, "cap": cap, "runs": order,
            "over_run": over["id"] if over else None,
        })
    ctx.search = results


def part_storm(ctx):
    """Part d: a join storm; the probes are spread over its viewers."""
    args = ctx.args
    duration = max(6.0, min(args.duration, 15.0))
    for kind, proto in configs(ctx):
        run_point(ctx, "d", kind, proto, "720p", args.storm_viewers, probes=args.storm_probes,
                  rate=args.storm_rate, duration=duration)


def plan_text(ctx):
    args = ctx.args
    lines = [f"plan: {', '.join(f'{k} {PROTOCOL_LABEL[p]}' for k, p in configs(ctx))}; "
             f"{args.duration:g} s of viewers per point"]
    for part, counts in (("a", args.counts_a), ("b", args.counts_b)):
        if part in args.only:
            per = "; ".join(
                f"{k} {PROTOCOL_LABEL[p]} "
                + ", ".join(f"{n:,}" for n in sorted({min(c, fd_cap(ctx, k, p)) for c in counts}))
                for k, p in configs(ctx))
            lines.append(f"  part {part}: {per} viewers, after {args.mem_warmup:g} s of "
                         "publisher alone")
    if "c" in args.only:
        lines.append(f"  part c: search from {args.search_start:,} viewers to "
                     f"{args.search_precision * 100:.0f}%, at most {args.search_runs} runs per "
                     "configuration, then one run at 120%")
    if "d" in args.only:
        lines.append(f"  part d: {args.storm_viewers:,} viewers at {args.storm_rate:g}/s, "
                     f"{args.storm_probes} probes")
    lines.append(f"estimated {estimate(ctx) / 60:.0f} minutes (part c adapts: it may take "
                 "more or less)")
    return "\n".join(lines)


def estimate(ctx):
    """Seconds the selected parts should take."""
    args, d = ctx.args, ctx.args.duration
    n_cfg = len(configs(ctx))
    total = 0.0
    if "a" in args.only:
        total += len(args.counts_a) * n_cfg * (args.mem_warmup + d + OVERHEAD)
    if "b" in args.only:
        b = {(k, p, min(c, fd_cap(ctx, k, p))) for c in args.counts_b for k, p in configs(ctx)}
        total += len(b) * (args.mem_warmup + d + OVERHEAD)
    if "c" in args.only:
        # About 8 runs a search (doubling, then bisection), some of them part a's.
        per = min(args.search_runs, 8) - (len(args.counts_a) if "a" in args.only else 0)
        total += n_cfg * (max(per, 2) + 1) * (WARMUP + d + OVERHEAD)
    if "d" in args.only:
        total += n_cfg * (WARMUP + max(6.0, min(d, 15.0)) + OVERHEAD)
    return total


# --------------------------------------------------------------------------------------
# Markdown


def num(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def ms(x):
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def pct(x):
    return "–" if x is None else f"{x * 100:.0f}%"


def table(header, rows):
    if not rows:
        return "(no runs)"
    out = ["| " + " | ".join(h for h, _ in header) + " |",
           "|" + "|".join("---:" if right else "---" for _, right in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def config_label(rec):
    return rec["server"], PROTOCOL_LABEL[rec["protocol"]]


def fanout_table(ctx, part):
    rows = []
    for r in ctx.points:
        if r["part"] != part:
            continue
        s = r.get("summary")
        g = s["groups"][0] if s else None
        lat = g["latency"] if g else {}
        viewers = f"{r['viewers']:,}" + (f" (cap; asked {r['capped_from']:,})" if r.get("capped_from") else "")
        rows.append([
            *config_label(r), viewers,
            num(g["connected"]) if g else "–",
            f"{r['gbit_per_s']:.2f}" if "gbit_per_s" in r else "–",
            pct(r.get("server_util")), pct(r.get("cpu_busy_util")),
            num(r.get("cpu_s_per_gb"), 2), num(r.get("cpu_busy_s_per_gb"), 2),
            num(r.get("rss_per_viewer_kib"), 1),
            " / ".join(ms(lat.get(k)) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")) if g else "–",
            ms(r.get("steady_p99_ms")),
            pct(g["worst_window_share"]) if g else "–",
            f"{g['windows_behind']} of {g['windows']}" if g else "–",
            pct(g["slowest_fraction"]) if g else "–",
            f"{g['failed']} / {g['ended_early']}" if g else "–",
            f"{g['stalls']} / {g['gaps']}" if g else "–",
            f"{pct(s['generator_cpu'])} / {pct(s['generator_cpu_peak'])} / "
            f"{pct(r.get('generator_cpu_busy_peak'))}" if s else "–",
            "server exited" if r.get("server_exited") else "",
        ])
    notes = any(row[-1] for row in rows)
    rows = [row if notes else row[:-1] for row in rows]
    header = [("server", False), ("protocol", False), ("viewers", True), ("connected", True),
              ("Gbit/s", True), ("server CPU", True), ("CPU busy", True),
              ("CPU-s per GB (process)", True),
              ("CPU-s per GB (CPU busy)", True), ("RSS KiB per viewer", True),
              ("latency p50 / p99 / p99.9 / max, ms", True),
              ("worst 1-s p99 from 2.5 s, ms", True), ("worst window", True),
              ("windows behind", True), ("slowest viewer", True), ("failed / ended early", True),
              ("stalls / gaps", True), ("generator CPU mean / peak / its CPU's busy peak", True),
              ("note", False)]
    return table(header if notes else header[:-1], rows)


def search_tables(ctx):
    by_id = {r["id"]: r for r in ctx.points}
    limits = {"server": "the server", "generator": "the generator (its CPU was full)",
              "fd": "the open-file limit", "runs": "the run budget (--search-runs)", None: "–"}
    summary_rows, over_rows, ladder_rows = [], [], []
    for res in ctx.search:
        lo = res["max_healthy"]
        best = next((by_id[i] for i in res["runs"] if by_id[i]["viewers"] == lo), None) if lo else None
        lim = limits.get(res["limited_by"], res["limited_by"])
        if res["limited_by"] == "generator" and res["first_unhealthy"]:
            lim += f" at {res['first_unhealthy']:,}"
        elif res["limited_by"] == "server" and res["first_unhealthy"]:
            lim += f" (unhealthy at {res['first_unhealthy']:,})"
        elif res["limited_by"] == "fd":
            lim += f" ({res['cap']:,} viewers)"
        summary_rows.append([
            res["server"], PROTOCOL_LABEL[res["protocol"]],
            f"{lo:,}" if lo else "none healthy",
            f"{best['gbit_per_s']:.2f}" if best and "gbit_per_s" in best else "–",
            pct(best.get("server_util")) if best else "–",
            num(best.get("cpu_s_per_gb"), 2) if best else "–",
            ms(best["summary"]["groups"][0]["latency"]["p99_ms"]) if best and best.get("summary") else "–",
            ms(best.get("steady_p99_ms")) if best else "–",
            lim, len(res["runs"]),
        ])
        o = by_id.get(res["over_run"])
        if o:
            s = o.get("summary")
            g = s["groups"][0] if s else None
            m = o.get("metrics") or {}
            server_side = (f"{int(m.get('corecast_frames_skipped_total', 0)):,} frames skipped, "
                           f"{int(m.get('corecast_viewers_disconnected_slow_total', 0)):,} slow "
                           "disconnects" if o["server"].startswith("corecast") and m else "–")
            over_rows.append([
                o["server"], PROTOCOL_LABEL[o["protocol"]], f"{o['viewers']:,}",
                num(g["connected"]) if g else "–",
                f"{g['failed']} / {g['ended_early']}" if g else "–",
                f"{g['windows_behind']} of {g['windows']}" if g else "–",
                pct(g["worst_window_share"]) if g else "–",
                pct(g["slowest_fraction"]) if g else "–",
                " / ".join(ms(g["latency"].get(k)) for k in ("p50_ms", "p99_ms", "max_ms")) if g else "–",
                ms(o.get("steady_p99_ms")),
                f"{g['stalls']} / {g['gaps']}" if g else "–",
                pct(o.get("server_util")),
                pct(s["generator_cpu_peak"]) if s else "–",
                server_side, o["verdict"] + ("; server exited" if o.get("server_exited") else ""),
            ])
        for i in res["runs"]:
            r = by_id[i]
            s = r.get("summary")
            g = s["groups"][0] if s else None
            ladder_rows.append([
                r["server"], PROTOCOL_LABEL[r["protocol"]], f"{r['viewers']:,}",
                r["verdict"] + (" (run of part a)" if r["part"] == "a" else ""),
                "; ".join(r["reasons"]) or "–",
                f"{r['gbit_per_s']:.2f}" if "gbit_per_s" in r else "–",
                pct(r.get("server_util")),
                ms(g["latency"]["p99_ms"]) if g else "–",
                ms(r.get("steady_p99_ms")),
                pct(g["worst_window_share"]) if g else "–",
                f"{pct(s['generator_cpu_peak'])} / {pct(r.get('generator_cpu_busy_peak'))}"
                if s else "–",
            ])
    t1 = table([("server", False), ("protocol", False), ("most viewers, healthy", True),
                ("Gbit/s", True), ("server CPU", True), ("CPU-s per GB", True),
                ("latency p99, ms", True), ("worst 1-s p99, ms", True), ("limited by", False),
                ("runs", True)], summary_rows)
    t2 = table([("server", False), ("protocol", False), ("viewers (120%)", True),
                ("connected", True), ("failed / ended early", True), ("windows behind", True),
                ("worst window", True), ("slowest viewer", True),
                ("latency p50 / p99 / max, ms", True), ("worst 1-s p99, ms", True),
                ("stalls / gaps", True),
                ("server CPU", True), ("generator CPU peak", True), ("server counters", False),
                ("verdict", False)], over_rows)
    t3 = table([("server", False), ("protocol", False), ("viewers", True), ("verdict", False),
                ("why", False), ("Gbit/s", True), ("server CPU", True), ("latency p99, ms", True),
                ("worst 1-s p99, ms", True), ("worst window", True),
                ("generator CPU peak / its CPU's busy peak", True)], ladder_rows)
    return t1, t2, t3


def storm_table(ctx):
    rows = []
    for r in ctx.points:
        if r["part"] != "d":
            continue
        s = r.get("summary")
        g = s["groups"][0] if s else None
        st = g["startup"] if g else {}
        rows.append([
            *config_label(r), f"{r['viewers']:,}", f"{r['join_rate']:,.0f}/s", r["probes"],
            num(g["connected"]) if g else "–",
            f"{g['failed']} / {g['ended_early']}" if g else "–",
            " / ".join(ms(st.get(k)) for k in ("p50_ms", "p99_ms", "max_ms")) if g else "–",
            ms(g["latency"]["p99_ms"]) if g else "–",
            ms(r.get("steady_p99_ms")),
            pct(r.get("server_util")),
            pct(s["generator_cpu_peak"]) if s else "–",
        ])
    return table([("server", False), ("protocol", False), ("viewers", True), ("join rate", True),
                  ("probes", True), ("connected", True), ("failed / ended early", True),
                  ("startup p50 / p99 / max, ms", True), ("latency p99, ms", True),
                  ("worst 1-s p99, ms", True), ("server CPU", True), ("generator CPU peak", True)],
                 rows)


def markdown(ctx):
    f, a = ctx.facts, ctx.args
    cfg = f.get("corecast_config", "")
    keys = {}
    section = ""
    for line in cfg.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            keys[f"{section}.{k}"] = v
    src = ctx.sources
    lines = [
        "## corecast and nginx-rtmp side by side (`loadtest/compare.py`)", "",
        f"- Run: {f['date_utc']}, `{f['command'].replace(sys.executable, 'python3')}`",
        f"- Machine: {f['cpu_model']}, {f['cpus']} CPUs, Linux {f['kernel']}, loopback only; "
        f"open-file hard limit {f['nofile_hard_limit']:,}. Busy before the run: "
        + ", ".join(f"{k} {v * 100:.0f}%" for k, v in f["idle_busy_before_run"].items()) + ".",
        f"- Server on CPU {f['server_cpu']}, generator (`corecast-load run`: the publisher and "
        f"every viewer) on CPU {f['generator_cpu']}.",
    ]
    if "corecast_config" in f:
        lines.append(
            f"- corecast {f['corecast_commit']}: `{f['corecast_command']}`; every other "
            f"setting is the default (merge window {keys.get('viewer.merge_window_ms', '?')} ms, "
            f"RTMP chunk size {keys.get('rtmp.chunk_size', '?')}, HLS remux "
            f"{'on' if keys.get('hls.enabled') == 'true' else 'off'}).")
    if "nginx" in f:
        lines.append(
            f"- nginx {f['nginx']} with `{f['nginx_module']}`: one worker "
            f"(`worker_cpu_affinity` to CPU {f['server_cpu']}), master pinned with taskset, "
            "`chunk_size 4096`, `application live { live on; }`. Its CPU and memory are the "
            "worker's. nginx-rtmp serves no HTTP-FLV, so its rows are RTMP only.")
    for name, s in src.items():
        lines.append(f"- Source `{name}`: `{s['path']}`, {s['kbit_per_s']:,.0f} kbit/s "
                     f"(ffprobe), {s['duration_s']:.1f} s, looped in real time.")
    lines.append(
        f"- Each point: a fresh server; {a.duration:g} s of viewers "
        f"({a.probes} of them probes), joining at max(1,000, viewers/10) a second"
        + (f" ({a.join_rate:g}/s)" if a.join_rate else "")
        + f", after {a.mem_warmup:g} s (parts a, b) or {WARMUP:g} s (c, d) of the publisher "
        "alone (so viewers join halfway through a 2 s GOP); "
        f"delivery windows of {window_seconds(a.duration):g} s.")
    lines += [
        "- Server CPU: the process's utime + stime over the viewers' run (`/proc/PID/stat`); "
        "CPU busy: the server CPU's user + nice + system + irq + softirq + steal "
        "(`/proc/stat`), which includes kernel work not charged to the process. "
        "GB = 10^9 bytes received by the viewers. RSS per viewer: VmRSS at 80% of the run "
        "minus VmRSS at the end of the publisher-only warm-up, over the viewers.",
        "- Latency: the probes' send-time stamp to arrival, over the whole run; frames sent "
        "before a probe asked (corecast's GOP cache) are left out. \"Worst 1-s p99\": the "
        "highest per-second p99 from 2.5 s into the run on; part c's health criterion uses "
        "it.",
        "- Gbit/s: bytes received over the run's length. corecast's viewers start with the "
        "GOP cache (up to 2 s of video at once), nginx's wait for the next keyframe, so at "
        "the same audience the two differ by up to a GOP per viewer; CPU per GB is per byte "
        "actually delivered. \"Slowest viewer\": the bytes of the viewer that got least, as "
        "a share of the median viewer's, so viewers that joined late count too.",
        "",
    ]
    if "a" in a.only:
        lines += ["### a. RTMP fan-out of the 720p source (and corecast HTTP-FLV)", "",
                  fanout_table(ctx, "a"), ""]
    if "b" in a.only:
        lines += ["### b. Fan-out of the 268 kbit/s clip up to the open-file limit", "",
                  fanout_table(ctx, "b"), "",
                  f"corecast's RTMP players hold two descriptors each (a reader and a writer), "
                  f"so its RTMP rows stop at {(ctx.nofile - 200) // 2:,}; HTTP-FLV viewers and "
                  "nginx's players hold one.", ""]
    if "c" in a.only and getattr(ctx, "search", None):
        t1, t2, t3 = search_tables(ctx)
        lines += ["### c. Most viewers of the 720p source before any falls behind", "",
                  f"Healthy: no viewer failed or ended early, every viewer received at least "
                  f"98% of the published bytes in every delivery window, the probes' p99 "
                  f"latency under {MAX_P99_MS:.0f} ms in every second from {STEADY_FROM_S:g} s "
                  f"on, and the generator's busiest second under "
                  f"{MAX_GENERATOR_PEAK * 100:.0f}% of a core, and its CPU's busiest second too "
                  f"(otherwise the limit is the generator's). Doubling from {a.search_start:,}, then bisection to "
                  f"{a.search_precision * 100:.0f}%.", "", t1, "",
                  "At 120% of the maximum:", "", t2, "", "Every run of the search:", "", t3, ""]
    if "d" in a.only:
        lines += [f"### d. Join storm: {a.storm_viewers:,} viewers at {a.storm_rate:,.0f}/s", "",
                  storm_table(ctx), "",
                  "Startup: a probe's request to its first keyframe. The probes are spread over "
                  f"the storm, which starts {WARMUP:g} s after the publisher (halfway through "
                  "a 2 s GOP). corecast starts a viewer on its GOP cache; nginx-rtmp (no GOP cache) "
                  "makes it wait for the next keyframe.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------


def write_results(ctx):
    out = ctx.args.out or BENCH_DIR / f"compare-{ctx.started_utc.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(ctx.args).items()}
    sources = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
               for k, v in ctx.sources.items()}
    data = {
        "facts": ctx.facts, "settings": settings, "sources": sources,
        "thresholds": {"max_p99_ms": MAX_P99_MS, "max_generator_peak": MAX_GENERATOR_PEAK,
                       "window_share": 0.98},
        "points": ctx.points, "search": getattr(ctx, "search", []),
        "complete": ctx.complete, "elapsed_s": time.monotonic() - ctx.t_start,
    }
    out.write_text(json.dumps(data, indent=1))
    return out


def main(argv):
    args = parse_args(argv)
    ctx = Ctx()
    ctx.args = args
    ctx.children = Children()
    ctx.points, ctx.done, ctx.point_no = [], set(), 0
    ctx.sources, ctx.facts, ctx.complete = {}, {}, False
    ctx.started_utc = datetime.datetime.now(datetime.timezone.utc)
    ctx.t_start = time.monotonic()
    ctx.estimate_s = 0.0

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    ctx.tmp = Path(tempfile.mkdtemp(prefix="corecast-compare-"))
    status = 0
    try:
        preflight(ctx)
        if args.dry_run:
            log(plan_text(ctx))
            return 0
        build(ctx)
        sources(ctx)
        ctx.facts = facts(ctx)
        ctx.t_start = time.monotonic()
        ctx.estimate_s = estimate(ctx)
        log(plan_text(ctx))
        if not configs(ctx):
            raise Fatal("nothing to run: --servers and --protocols select no configuration")
        if "a" in args.only:
            part_fanout(ctx, "a", "720p", args.counts_a)
        if "b" in args.only:
            part_fanout(ctx, "b", "clip", args.counts_b)
        if "c" in args.only:
            part_search(ctx)
        if "d" in args.only:
            part_storm(ctx)
        ctx.complete = True
    except Fatal as e:
        log(f"error: {e}")
        status = 1
    except KeyboardInterrupt:
        log("interrupted: stopping every child process")
        status = 130
    finally:
        ctx.children.stop_all()
    if ctx.points or ctx.complete:
        path = write_results(ctx)
        print(markdown(ctx))
        log(f"raw figures: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    if status == 0 and any(r.get("server_exited") for r in ctx.points):
        log("error: a server exited during a run (see server_log_tail in the JSON)")
        status = 3
    if args.keep_temp or status not in (0, 3):
        log(f"temporary files kept in {ctx.tmp}")
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    log(f"done in {(time.monotonic() - ctx.t_start) / 60:.1f} minutes")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
