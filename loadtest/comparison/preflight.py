"""Before the first point: checks of the machine and the tools, the release build, the
sources (the 720p fixture, generated once), the machine facts recorded with the results.
"""

import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .children import free_ports
from .common import (
    APT,
    BENCH_DIR,
    CLIP,
    CLK_TCK,
    CORECAST,
    FIXTURE_720P,
    FIXTURE_CMD,
    Fatal,
    LOADGEN,
    NGINX_MODULES,
    NGINX_PROGRAMS,
    REPO,
    log,
    run_text,
)
from .procfs import cpu_ticks
from .servers import Nginx


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
    need_720p = bool(set(ctx.args.only) & {"a", "c", "d", "e"})
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
        "reads": ctx.args.reads,
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
        (prefix / "hls" / "live").mkdir(parents=True)
        conf = prefix / "nginx.conf"
        for hls in ([False, True] if "e" in ctx.args.only else [False]):
            port, http_port = free_ports(2)
            conf.write_text(Nginx.config(ctx, prefix, port, http_port if hls else None))
            t = subprocess.run([ctx.nginx, "-t", "-p", prefix, "-e", prefix / "error.log",
                                "-c", conf],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if t.returncode != 0:
                raise Fatal(f"nginx -t fails on the generated configuration:\n{t.stdout}")
            f["nginx_hls_conf" if hls else "nginx_conf"] = conf.read_text()
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
                                 "--config FILE  (FILE: [admin] listen = \"127.0.0.1:P3\"{extra})"
                                 .format(cpu=ctx.server_cpu, extra="".join(
                                     f" and, for {kind}, {setting}"
                                     for kind, setting in [
                                         ("corecast-fixed", '[viewer] send_schedule = "fixed"'),
                                         ("corecast-ll", "[viewer] flush_on_video = true"),
                                         ("corecast-uring", "[rtmp] input_poll_us = 0")]
                                     if kind in ctx.args.servers)))
    return f
