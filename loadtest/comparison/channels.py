"""Part f: many channels on one box. Each run starts a fresh server and publishes N
synthetic streams at once (25 fps, 2 s GOP) from the generator; after a publisher-only
phase, viewers join: 400 RTMP players of one stream, or, with HLS, one HLS player of every
stream (nginx-rtmp then writes every stream's HLS to a tmpfs and serves it from there).

Measured per run: the server's RSS idle (right after it started), with the publishers alone
(at the end of their phase) and with the viewers (at the end; for nginx-rtmp with HLS, plus
its HLS files in the tmpfs); the server's CPU over the
publisher-only phase (from 5 s in, once every publisher runs) and over the viewers' phase
(from 3 s after they joined). The figures per stream divide by N. Over the publisher-only
window it also counts the bytes the server's RTMP connections received (from `ss`), so the
CPU is also given per ingested GB: the two servers' figures stay comparable when the
generator delivers a little more to one than to the other.
"""

import json
import time

from .children import tail
from .common import CLK_TCK, LOADGEN, Fatal, log
from .point import wait_until
from .procfs import proc_ticks, tcp_bytes_received
from .servers import SERVERS

# (streams, kbit/s each) of the runs.
LOADS = [(200, 1000), (1000, 250), (50, 4000)]
# Publisher-only seconds, and the viewers' seconds after them.
PUBLISHERS_S = 15.0
VIEWERS_S = 15.0
# When the publishers' CPU window opens (all of them connected and past their first GOP).
PUBLISHERS_FROM_S = 5.0
# When the viewers' CPU window opens, after they joined.
VIEWERS_FROM_S = 3.0
# RTMP players of the first stream in the viewers' phase.
PLAYERS = 400


def scenario_text(ctx, rtmp, http, streams, kbps, hls):
    q = json.dumps
    lines = [
        "# written by loadtest/compare.py, part f",
        f"duration = {q(f'{VIEWERS_S:g}s')}", "",
        "[target]", f"rtmp = {q(rtmp)}", f"http = {q(http)}", "",
        "[generator]", f"cpu = {ctx.generator_cpu}", f"warmup = {q(f'{PUBLISHERS_S:g}s')}", "",
        "[[publish]]", 'app = "live"', 'prefix = "ch"', f"streams = {streams}",
        f"synthetic_kbps = {kbps}", "fps = 25", "gop_seconds = 2.0", "",
    ]
    if hls:
        for i in range(streams):
            lines += ["[[viewers]]", 'protocol = "hls"', f'stream = "live/ch{i}"',
                      "hls_start = 3", 'steps = [{ at = "0s", viewers = 1, rate = 1000 }]', ""]
    else:
        lines += ["[[viewers]]", 'protocol = "rtmp"', 'stream = "live/ch0"', "probes = 10",
                  f'steps = [{{ at = "0s", viewers = {PLAYERS}, rate = {PLAYERS} }}]', ""]
    return "\n".join(lines)


def run_channels(ctx, kind, streams, kbps, hls):
    """One run of part f; returns its record."""
    ctx.point_no += 1
    label = f"p{ctx.point_no:03d}-{kind}-channels-{streams}x{kbps}{'-hls' if hls else ''}"
    rec = {"id": ctx.point_no, "part": "f", "server": kind, "streams": streams,
           "kbit_per_s": kbps, "hls": hls, "protocol": "hls" if hls else "rtmp",
           "viewers": streams if hls else PLAYERS}
    began = time.monotonic()
    server = SERVERS[kind](ctx, label, "hls" if hls else "rtmp")
    server.hls_root = ctx.shm / label if kind == "nginx" and hls else None
    server.start()
    try:
        key = "process" if kind.startswith("corecast") else "worker"
        rec["rss_idle_kib"] = server.rss()[key]
        rtmp, http = server.target("hls" if hls else "rtmp")
        scenario = ctx.tmp / f"{label}.toml"
        scenario.write_text(scenario_text(ctx, rtmp, http, streams, kbps, hls))
        out_path, err_path = ctx.tmp / f"{label}.json", ctx.tmp / f"{label}.stderr"
        cmd = [LOADGEN, "run", scenario, "--json", "--cpu", ctx.generator_cpu]
        rec["generator_command"] = " ".join(str(c) for c in cmd)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.monotonic()
            gen = ctx.children.spawn(cmd, stdout=out, stderr=err)
        try:
            rtmp_port = int(rtmp.rsplit(":", 1)[1])

            def cpu():
                return (sum(proc_ticks(p) for p in server.cpu_pids()), time.monotonic(),
                        tcp_bytes_received(rtmp_port))

            ok = wait_until(t0 + PUBLISHERS_FROM_S, gen)
            a = cpu()
            ok = ok and wait_until(t0 + PUBLISHERS_S - 0.5, gen)
            b = cpu()
            rec["rss_publishers_kib"] = server.rss()[key]
            ok = ok and wait_until(t0 + PUBLISHERS_S + VIEWERS_FROM_S, gen)
            c = cpu()
            ok = ok and wait_until(t0 + PUBLISHERS_S + VIEWERS_S - 0.5, gen)
            d = cpu()
            rec["rss_viewers_kib"] = server.rss()[key]
            if server.hls_root is not None:
                # nginx-rtmp's HLS is in the tmpfs, outside the worker's RSS.
                rec["hls_files_kib"] = sum(f.stat().st_size for f in
                                           server.hls_root.rglob("*") if f.is_file()) / 1024
            if not ok:
                raise Fatal(f"the generator ended early: {tail(err_path, 20)}")
            rec["cpu_publishers"] = (b[0] - a[0]) / CLK_TCK / (b[1] - a[1])
            rec["cpu_viewers"] = (d[0] - c[0]) / CLK_TCK / (d[1] - c[1])
            if a[2] is not None and b[2] is not None and b[2] > a[2]:
                rec["ingest_bytes"] = b[2] - a[2]
                rec["cpu_s_per_ingest_gb"] = (b[0] - a[0]) / CLK_TCK / (rec["ingest_bytes"] / 1e9)
            gen.wait(timeout=60)
        finally:
            ctx.children.stop(gen)
        rec["metrics"] = server.metrics()
        rec["server_exited"] = not server.alive()
    finally:
        server.stop()
    rec["generator_stderr"] = tail(err_path, 20)
    if gen.returncode != 0:
        raise Fatal(f"the generator failed (exit {gen.returncode}): {rec['generator_stderr']}")
    summary = json.loads(out_path.read_text())
    groups = summary["groups"]
    rec["summary"] = {k: summary[k] for k in ("seconds", "generator_cpu_peak") if k in summary}
    rec["connected"] = sum(g["connected"] for g in groups)
    rec["failed"] = sum(g["failed"] + g["ended_early"] for g in groups)
    rec["windows_behind"] = sum(g["windows_behind"] for g in groups)
    if hls:
        rec["hls_problems"] = sum(g["hls"][k] for g in groups if g.get("hls")
                                  for k in ("stalls", "not_found", "errors"))
    else:
        rec["p99_ms"] = groups[0]["latency"]["p99_ms"]
    per = lambda kib: kib / 1024 / streams  # noqa: E731 - MB per stream
    rec["mb_per_stream"] = per(rec["rss_publishers_kib"] - rec["rss_idle_kib"])
    rec["mb_per_stream_viewers"] = per(rec["rss_viewers_kib"] - rec["rss_idle_kib"]
                                      + rec.get("hls_files_kib", 0))
    rec["wall_s"] = time.monotonic() - began
    ctx.points.append(rec)
    log(f"[f #{rec['id']}] {kind} {streams} x {kbps} kbit/s{' + HLS' if hls else ''}: "
        f"{rec['mb_per_stream']:.2f} MB/stream, CPU {rec['cpu_publishers'] * 100:.0f}% "
        f"publishers ({rec.get('cpu_s_per_ingest_gb', float('nan')):.1f} CPU-s per ingested "
        f"GB), {rec['cpu_viewers'] * 100:.0f}% with viewers; "
        f"{rec['connected']} viewers, {rec['failed']} failed, "
        f"{rec['windows_behind']} windows behind")
    return rec


# The servers part f runs (of those selected).
CHANNEL_SERVERS = ("corecast", "corecast-uring", "nginx")


def part_channels(ctx):
    """Part f: every load, without and with HLS, alternating the servers."""
    for streams, kbps in LOADS:
        for hls in (False, True):
            for kind in ctx.args.servers:
                if kind in CHANNEL_SERVERS:
                    run_channels(ctx, kind, streams, kbps, hls)


def estimate_channels(ctx):
    runs = len(LOADS) * 2 * len([k for k in ctx.args.servers if k in CHANNEL_SERVERS])
    return runs * (PUBLISHERS_S + VIEWERS_S + 8.0)

