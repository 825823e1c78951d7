"""The run's settings: the command line and what follows from it (the configurations run,
open-file caps, join rates, delivery windows).
"""

import argparse
import math
from pathlib import Path

from .servers import SERVERS


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
                    "(see the docstring of loadtest/comparison/__init__.py).")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of viewers per point (default 30; 10 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 s points, fewer of them")
    p.add_argument("--only", default="a,b,c,d,e,f", help="parts to run, e.g. a,c")
    p.add_argument("--servers", default="corecast,nginx",
                   help="comma-separated: corecast, corecast-fixed (send_schedule = fixed), "
                        "corecast-ll (flush_on_video), corecast-uring (rtmp.input_poll_us = 0), "
                        "nginx")
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
    p.add_argument("--counts-e", default=None,
                   help="HLS player counts of part e (500,1000,2000)")
    p.add_argument("--probes", type=int, default=20, help="probe viewers per point (default 20)")
    p.add_argument("--reads", choices=["player", "kernel-discard"], default="player",
                   help="how the generator's viewers read: like players (default: woken on "
                        "every arrival) or kernel-discard (woken per 32 KiB, data dropped)")
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
    a.only = parse_list(a.only, {"a", "b", "c", "d", "e", "f"})
    a.servers = parse_list(a.servers, set(SERVERS))
    a.protocols = parse_list(a.protocols, {"rtmp", "flv"})
    q = a.quick
    if a.duration is None:
        a.duration = 10.0 if q else 30.0
    if a.duration < 6:
        raise SystemExit("--duration must be at least 6 seconds")
    a.counts_a = parse_counts(a.counts_a) if a.counts_a else ([500, 1000] if q else [500, 1000, 2000, 4000])
    a.counts_b = parse_counts(a.counts_b) if a.counts_b else ([5000] if q else [5000, 10000, 19000])
    a.counts_e = parse_counts(a.counts_e) if a.counts_e else ([1000] if q else [500, 1000, 2000])
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
                        ("corecast-fixed", "rtmp"), ("corecast-fixed", "flv"),
                        ("corecast-ll", "rtmp"), ("corecast-ll", "flv"),
                        ("corecast-uring", "rtmp"), ("corecast-uring", "flv")]:
        if kind in ctx.args.servers and proto in ctx.args.protocols:
            out.append((kind, proto))
    return out


def hls_configs(ctx):
    """(server, "hls") pairs of part e: every selected server serves HLS (nginx through
    nginx-rtmp's `hls on`)."""
    return [(kind, "hls") for kind in ("corecast", "nginx", "corecast-fixed", "corecast-ll",
                                             "corecast-uring")
            if kind in ctx.args.servers]


def fd_cap(ctx):
    """Most viewers one point may open: the open-file hard limit minus 200 (every viewer
    holds one descriptor on the server)."""
    return ctx.nofile - 200


def join_rate(ctx, viewers):
    if ctx.args.join_rate:
        return ctx.args.join_rate
    return max(1000.0, viewers / 10.0)


def window_seconds(duration):
    """10 s delivery windows; shorter runs get windows of a third of the run (the first
    window only starts the count, so a run needs two)."""
    return 10.0 if duration >= 30 else max(2.0, math.floor(duration / 3))
