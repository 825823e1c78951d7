"""The Markdown tables printed at the end of a run, ready for docs/BENCHMARKS.md.
"""

import sys

from .common import MAX_GENERATOR_PEAK, MAX_P99_MS, PROTOCOL_LABEL, STEADY_FROM_S, WARMUP
from .context import window_seconds


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


def channels_table(ctx):
    """Part f's table: one row per run."""
    header = [("server", False), ("streams x kbit/s", False), ("viewers", False),
              ("RSS MB per stream, publishers", True), ("CPU, publishers", True),
              ("CPU per 100 streams", True), ("CPU-s per ingested GB", True),
              ("RSS MB per stream, with viewers", True),
              ("CPU, with viewers", True), ("viewers' p99 ms / HLS problems", True),
              ("failed, windows behind", True)]
    rows = []
    for r in ctx.points:
        if r["part"] != "f":
            continue
        viewers = (f"{r['viewers']:,} HLS, one a stream" if r["hls"]
                   else f"{r['viewers']:,} RTMP of one")
        quality = r.get("hls_problems") if r["hls"] else num(r.get("p99_ms"))
        rows.append([r["server"], f"{r['streams']:,} x {r['kbit_per_s']:,}", viewers,
                     num(r["mb_per_stream"], 2), pct(r["cpu_publishers"]),
                     pct(r["cpu_publishers"] * 100 / r["streams"]),
                     num(r.get("cpu_s_per_ingest_gb"), 1), num(r["mb_per_stream_viewers"], 2), pct(r["cpu_viewers"]), quality,
                     f"{r['failed']}, {r['windows_behind']}"])
    return table(header, rows)


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
        "- Viewers: " + ("like players (`--reads player`: woken on every arrival, reads of "
                         "32 KiB into a buffer)" if f.get("reads", "player") == "player" else
                         "kernel discard (`--reads kernel-discard`: woken per 32 KiB queued, "
                         "data dropped by the kernel with MSG_TRUNC)") + ".",
    ]
    if "corecast_config" in f:
        lines.append(
            f"- corecast {f['corecast_commit']}: `{f['corecast_command']}`; every other "
            f"setting is the default (send schedule {keys.get('viewer.send_schedule', '?')}, "
            f"merge window {keys.get('viewer.merge_window_ms', '?')} ms, "
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
                  fanout_table(ctx, "b"), ""]
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
    if "e" in a.only:
        lines += ["### e. HLS players of the 720p source", "",
                  fanout_table(ctx, "e"), "",
                  "HLS players start three segments back and fetch each segment once. corecast "
                  "serves segments from memory (muxed once on the stream's owner); nginx-rtmp "
                  "(`hls on`, 2 s fragments, a 12 s playlist) writes them to disk, and nginx "
                  "serves the files with sendfile from the page cache. Its CPU is the worker's, "
                  "which does both. Healthy here: every player connected and none failed, no "
                  "HLS stall (no new segment for too long), no 404 and no failed request. "
                  "Latency is the probes' publisher-to-player time, which for HLS includes "
                  "the segments a player starts behind: not comparable with the RTMP rows.", ""]
    if "f" in a.only:
        lines += ["### f. Many channels", "", channels_table(ctx), "",
                  "Synthetic streams (25 fps, 2 s GOP) published at once, 15 s alone, then "
                  "15 s with the viewers. RSS per stream: (RSS then - RSS idle) / streams; "
                  "corecast: the process, nginx: the worker (with HLS, plus its files in the "
                  "tmpfs). CPU: the process's (nginx: the "
                  "worker's) utime + stime, as % of one core, from 5 s in (publishers) and "
                  "from 3 s after the viewers joined. CPU-s per ingested GB: the publishers' "
                  "window's CPU over the bytes the server's connections received in it "
                  "(`ss`). corecast makes HLS while it is "
                  "requested; nginx-rtmp with `hls on` writes every stream's HLS (to a tmpfs) "
                  "and serves it with its HTTP server.", ""]
    return "\n".join(lines)
