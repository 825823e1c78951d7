"""Paths, fixed settings and thresholds shared by every part of the comparison; the
Fatal error; logging and short commands.
"""

import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent.parent
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
PROTOCOL_LABEL = {"rtmp": "RTMP", "flv": "HTTP-FLV", "hls": "HLS"}
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
