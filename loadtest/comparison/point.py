"""One point: a fresh server, the generator's scenario, what one run measured, its verdict
and its progress line.
"""

import datetime
import json
import subprocess
import time

from .children import tail
from .common import (
    CLK_TCK,
    Fatal,
    GENERATOR_START,
    LOADGEN,
    MAX_GENERATOR_PEAK,
    MAX_P99_MS,
    PROTOCOL_LABEL,
    STEADY_FROM_S,
    STREAM,
    WARMUP,
    log,
)
from .context import join_rate, window_seconds
from .markdown import ms
from .procfs import cpu_ticks, proc_ticks, sockstat_tcp_mem_pages
from .servers import SERVERS


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
        # HLS players start three segments back, as hls.js and Safari do.
        + ("hls_start = 3\n" if protocol == "hls" else "")
        + f"steps = [ {{ at = \"0s\", viewers = {viewers}, rate = {rate:.1f} }} ]\n"
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
    server = SERVERS[kind](ctx, label, protocol)
    server.start()
    try:
        rtmp, http = server.target(protocol)
        scenario = ctx.tmp / f"{label}.toml"
        scenario.write_text(scenario_text(ctx, rtmp, http, source, protocol, viewers, rate,
                                          probes, duration, warmup, window))
        out_path, err_path = ctx.tmp / f"{label}.json", ctx.tmp / f"{label}.stderr"
        cmd = [LOADGEN, "run", scenario, "--json", "--cpu", ctx.generator_cpu,
               "--reads", ctx.args.reads]
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
    STEADY_FROM_S) and the generator kept up; 'generator' when the generator saturated.
    HLS players: no stall, 404 or failed request instead of the windows and latency."""
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
    hls = g.get("hls")
    if hls is not None:
        # HLS players: every segment fetched in time, and nothing refused or failed.
        for key in ("stalls", "not_found", "errors"):
            if hls[key]:
                reasons.append(f"{hls[key]} HLS {key.replace('_', ' ')}")
    elif g["windows"] == 0:
        reasons.append("no delivery window checked")
    if g["windows_behind"]:
        reasons.append(f"{g['windows_behind']} windows behind "
                       f"(worst {g['worst_window_share'] * 100:.0f}%)")
    if hls is None and g["latency"]["count"] == 0:
        reasons.append("no latency samples")
    elif hls is None and rec["steady_p99_ms"] >= MAX_P99_MS:
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
