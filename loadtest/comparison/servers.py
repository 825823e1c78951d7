"""The servers compared: corecast, corecast with a fixed merge window or its low-latency
setting, and nginx with the RTMP module: configuration, start, readiness, counters, stop.
"""

import os
import signal
import time
import urllib.request

from .children import connectable, free_ports, tail
from .common import CORECAST, Fatal, METRICS
from .procfs import child_pids, rss_kib, thread_affinities


class Corecast:
    """corecast with one shard, on loopback ports picked anew at each start, admin
    endpoints moved to a loopback port of their own; every other setting is the default."""

    kind = "corecast"
    # Configuration added to the overlay (the low-latency variant sets flush_on_video).
    extra = ""

    def __init__(self, ctx, label, protocol):
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

    def __init__(self, ctx, label, protocol):
        self.ctx, self.label = ctx, label
        # For HLS players: `hls on`, and nginx's HTTP server on the segments' directory.
        self.hls = protocol == "hls"
        # Where HLS is written: under the prefix unless set (part f: a tmpfs).
        self.hls_root = None
        self.proc = None
        self.worker = None
        self.notes = []

    @staticmethod
    def config(ctx, prefix, port, http_port=None, root=None):
        """The configuration; with `http_port`, the application writes HLS (2 s fragments,
        a 12 s playlist, as corecast's defaults: 2 s target, 6 segments) under `root`
        (default `prefix`/hls), and an HTTP server serves it with sendfile."""
        root = root or f"{prefix}/hls"
        hls = (f" hls on; hls_path {root}/live; hls_fragment 2s;"
               " hls_playlist_length 12s;" if http_port else "")
        http = ("http {\n"
                "    access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
                "    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
                f"    server {{ listen 127.0.0.1:{http_port}; root {root}; }}\n"
                "}\n" if http_port else "")
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
            f"        application live {{ live on;{hls} }}\n"
            "    }\n"
            "}\n"
            + http
        )

    def start(self):
        ctx = self.ctx
        for attempt in range(3):
            port, http_port = free_ports(2)
            prefix = ctx.tmp / self.label
            prefix.mkdir(exist_ok=True)
            # The worker writes and serves HLS files as nginx's unprivileged user: it must
            # reach the directory (the temporary one is private) and write into it (made
            # here: nginx-rtmp's master would make it its own).
            root = self.hls_root or prefix / "hls"
            (root / "live").mkdir(parents=True, exist_ok=True)
            for d in {ctx.tmp, prefix, root.parent}:
                d.chmod(0o711)
            for d in (root, root / "live"):
                d.chmod(0o777)
            conf = prefix / "nginx.conf"
            conf.write_text(self.config(ctx, prefix, port, http_port if self.hls else None,
                                        root))
            self.log_path = prefix / "error.log"
            args = ["taskset", "-c", ctx.server_cpu, ctx.nginx, "-p", prefix,
                    "-e", self.log_path, "-c", conf]
            with open(prefix / "stdout.log", "wb") as out:
                self.proc = ctx.children.spawn(args, stdout=out)
            deadline = time.monotonic() + 10
            self.worker = None
            while time.monotonic() < deadline and self.proc.poll() is None:
                # With an HTTP server, nginx also starts a cache manager process.
                workers = [p for p in child_pids(self.proc.pid) if is_worker(p)]
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
            self.port, self.http_port = port, http_port
            return
        raise Fatal("nginx did not start")

    def target(self, protocol):
        if protocol == "hls" and self.hls:
            return f"127.0.0.1:{self.port}", f"127.0.0.1:{self.http_port}"
        if protocol != "rtmp":
            raise Fatal("nginx-rtmp serves RTMP players, and HLS from files, only")
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


def is_worker(pid):
    """Whether `pid` is an nginx worker process (not the cache manager)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"worker process" in f.read()
    except OSError:
        return False


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


class CorecastFixed(Corecast):
    """corecast with the fixed merge window (`viewer.send_schedule = "fixed"`, 50 ms): the
    default before the adaptive schedule, everything else as `Corecast`."""

    kind = "corecast-fixed"
    extra = '[viewer]\nsend_schedule = "fixed"\n'


class CorecastUring(Corecast):
    """corecast reading each publisher as soon as a message arrives, through an io_uring
    poll of its own (`rtmp.input_poll_us = 0`, as before the shard's epoll set):
    everything else as `Corecast`."""

    kind = "corecast-uring"
    extra = "[rtmp]\ninput_poll_us = 0\n"


SERVERS = {"corecast": Corecast, "corecast-fixed": CorecastFixed,
           "corecast-ll": CorecastLowLatency, "corecast-uring": CorecastUring, "nginx": Nginx}
