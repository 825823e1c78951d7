"""The parts a-e: fan-out series, the search for the most viewers served healthily, the
join storm, HLS players (part f, many channels, is `channels`); the plan and its time
estimate.
"""

from .channels import LOADS, estimate_channels
from .common import OVERHEAD, PROTOCOL_LABEL, WARMUP
from .context import configs, fd_cap, hls_configs
from .point import run_point


def part_fanout(ctx, part, source, counts):
    """Parts a and b: every count for every configuration, alternating the servers at
    each count so that drifting machine load falls on both alike."""
    for count in counts:
        for kind, proto in configs(ctx):
            n = min(count, fd_cap(ctx))
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
        cap = fd_cap(ctx)
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


def part_hls(ctx):
    """Part e: HLS players of the 720p source: corecast's HLS from memory against
    nginx-rtmp's (`hls on`: segments written to disk, served by nginx), alternating the
    servers at each count."""
    for count in ctx.args.counts_e:
        for kind, proto in hls_configs(ctx):
            run_point(ctx, "e", kind, proto, "720p", min(count, fd_cap(ctx)),
                      warmup=ctx.args.mem_warmup, mem=True)


def plan_text(ctx):
    args = ctx.args
    lines = [f"plan: {', '.join(f'{k} {PROTOCOL_LABEL[p]}' for k, p in configs(ctx))}; "
             f"{args.duration:g} s of viewers per point"]
    for part, counts in (("a", args.counts_a), ("b", args.counts_b)):
        if part in args.only:
            per = "; ".join(
                f"{k} {PROTOCOL_LABEL[p]} "
                + ", ".join(f"{n:,}" for n in sorted({min(c, fd_cap(ctx)) for c in counts}))
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
    if "e" in args.only:
        lines.append(f"  part e: {', '.join(k for k, _ in hls_configs(ctx))} HLS "
                     + ", ".join(f"{n:,}" for n in args.counts_e) + " players")
    if "f" in args.only:
        lines.append("  part f: " + ", ".join(f"{n:,} streams of {k:,} kbit/s" for n, k in LOADS)
                     + ", publishers then 400 RTMP players of one, and with HLS on every "
                     "stream")
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
        b = {(k, p, min(c, fd_cap(ctx))) for c in args.counts_b for k, p in configs(ctx)}
        total += len(b) * (args.mem_warmup + d + OVERHEAD)
    if "c" in args.only:
        # About 8 runs a search (doubling, then bisection), some of them part a's.
        per = min(args.search_runs, 8) - (len(args.counts_a) if "a" in args.only else 0)
        total += n_cfg * (max(per, 2) + 1) * (WARMUP + d + OVERHEAD)
    if "d" in args.only:
        total += n_cfg * (WARMUP + max(6.0, min(d, 15.0)) + OVERHEAD)
    if "e" in args.only:
        total += len(args.counts_e) * len(hls_configs(ctx)) * (args.mem_warmup + d + OVERHEAD)
    if "f" in args.only:
        total += estimate_channels(ctx)
    return total
