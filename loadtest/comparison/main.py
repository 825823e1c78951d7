"""The run: arguments, checks, build, the selected parts, the raw JSON, the tables, the exit
status.
"""

import datetime
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path

from .channels import part_channels
from .children import Children
from .common import BENCH_DIR, Fatal, MAX_GENERATOR_PEAK, MAX_P99_MS, REPO, log
from .context import Ctx, configs, hls_configs, parse_args
from .markdown import markdown
from .parts import estimate, part_fanout, part_hls, part_search, part_storm, plan_text
from .preflight import build, facts, preflight, sources


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
    # nginx-rtmp's HLS in part f goes to a tmpfs, as corecast's stays in memory.
    ctx.shm = Path(tempfile.mkdtemp(prefix="corecast-compare-", dir="/dev/shm"))
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
        if not configs(ctx) and not hls_configs(ctx):
            raise Fatal("nothing to run: --servers and --protocols select no configuration")
        if "a" in args.only:
            part_fanout(ctx, "a", "720p", args.counts_a)
        if "b" in args.only:
            part_fanout(ctx, "b", "clip", args.counts_b)
        if "c" in args.only:
            part_search(ctx)
        if "d" in args.only:
            part_storm(ctx)
        if "e" in args.only:
            part_hls(ctx)
        if "f" in args.only:
            part_channels(ctx)
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
    shutil.rmtree(ctx.shm, ignore_errors=True)
    log(f"done in {(time.monotonic() - ctx.t_start) / 60:.1f} minutes")
    return status
