//! Prometheus text exposition (version 0.0.4) of the counters and histograms.

use super::Stage;
use crate::shard::Observed;
use crate::stats::{self, ShardStats};
use std::fmt::Write;
use std::sync::atomic::AtomicU64;

/// Whether a metric only increases or goes up and down.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

type Field = fn(&ShardStats) -> &AtomicU64;

/// Every exported per-shard value: name, help, kind, field.
const METRICS: &[(&str, &str, Kind, Field)] = &[
    (
        "corecast_rtmp_connections_total",
        "RTMP connections accepted",
        Kind::Counter,
        |s| &s.rtmp_accepted,
    ),
    (
        "corecast_http_connections_total",
        "HTTP connections accepted",
        Kind::Counter,
        |s| &s.http_accepted,
    ),
    (
        "corecast_streams",
        "Streams owned (live or in their grace period)",
        Kind::Gauge,
        |s| &s.streams,
    ),
    (
        "corecast_publishers",
        "Publishers publishing",
        Kind::Gauge,
        |s| &s.publishers,
    ),
    (
        "corecast_publish_rejections_total",
        "Publish requests refused",
        Kind::Counter,
        |s| &s.publish_rejected,
    ),
    (
        "corecast_publisher_handoffs_total",
        "Publishers handed to their stream's owner shard",
        Kind::Counter,
        |s| &s.handoffs_sent,
    ),
    (
        "corecast_publisher_handoffs_received_total",
        "Publishers received from another shard",
        Kind::Counter,
        |s| &s.handoffs_received,
    ),
    (
        "corecast_flv_viewers",
        "HTTP-FLV viewers connected",
        Kind::Gauge,
        |s| &s.flv_viewers,
    ),
    (
        "corecast_flv_viewers_started_total",
        "HTTP-FLV viewers started",
        Kind::Counter,
        |s| &s.flv_viewers_total,
    ),
    (
        "corecast_rtmp_players",
        "RTMP players connected",
        Kind::Gauge,
        |s| &s.rtmp_players,
    ),
    (
        "corecast_rtmp_players_started_total",
        "RTMP players started",
        Kind::Counter,
        |s| &s.rtmp_players_total,
    ),
    (
        "corecast_play_rejections_total",
        "Play requests refused",
        Kind::Counter,
        |s| &s.play_rejected,
    ),
    (
        "corecast_bytes_in_total",
        "Media bytes received from publishers",
        Kind::Counter,
        |s| &s.bytes_in,
    ),
    (
        "corecast_flv_bytes_out_total",
        "Bytes sent to HTTP-FLV viewers",
        Kind::Counter,
        |s| &s.flv_bytes_out,
    ),
    (
        "corecast_rtmp_bytes_out_total",
        "Bytes sent to RTMP players",
        Kind::Counter,
        |s| &s.rtmp_bytes_out,
    ),
    (
        "corecast_hls_bytes_out_total",
        "Bytes of HLS responses",
        Kind::Counter,
        |s| &s.hls_bytes_out,
    ),
    (
        "corecast_flv_sends_total",
        "Send system calls for HTTP-FLV viewers",
        Kind::Counter,
        |s| &s.flv_sends,
    ),
    (
        "corecast_rtmp_sends_total",
        "Send system calls for RTMP players",
        Kind::Counter,
        |s| &s.rtmp_sends,
    ),
    (
        "corecast_frames_skipped_total",
        "Units jumped over by slow viewers",
        Kind::Counter,
        |s| &s.frames_skipped,
    ),
    (
        "corecast_viewers_disconnected_slow_total",
        "Viewers disconnected for being too slow",
        Kind::Counter,
        |s| &s.viewers_disconnected_slow,
    ),
    (
        "corecast_viewers_ended_with_stream_total",
        "Viewers whose stream ended",
        Kind::Counter,
        |s| &s.viewers_ended_with_stream,
    ),
    (
        "corecast_viewers_left_total",
        "Viewers that stopped or went away",
        Kind::Counter,
        |s| &s.viewers_left,
    ),
    (
        "corecast_mesh_units_dropped_total",
        "Units not forwarded to a shard whose queue was full",
        Kind::Counter,
        |s| &s.mesh_units_dropped,
    ),
    (
        "corecast_mesh_control_refused_total",
        "Requests to another shard refused because its outbox was full",
        Kind::Counter,
        |s| &s.mesh_control_refused,
    ),
    (
        "corecast_rtmp_bad_input_total",
        "RTMP connections closed for bad input",
        Kind::Counter,
        |s| &s.rtmp_bad_input,
    ),
    (
        "corecast_rtmp_session_panics_total",
        "RTMP connections closed because their input made the RTMP library panic",
        Kind::Counter,
        |s| &s.rtmp_session_panics,
    ),
    (
        "corecast_rtmp_limits_hit_total",
        "RTMP connections closed for exceeding a message size, chunk size or chunk stream limit",
        Kind::Counter,
        |s| &s.rtmp_limits_hit,
    ),
    (
        "corecast_publishers_taken_over_total",
        "Silent publishers replaced by a new publisher (auth.takeover_after_ms)",
        Kind::Counter,
        |s| &s.publishers_taken_over,
    ),
    (
        "corecast_connections_refused_total",
        "Connections closed at accept because a connection limit was reached",
        Kind::Counter,
        |s| &s.connections_refused,
    ),
    (
        "corecast_accept_errors_total",
        "Accepts that failed (e.g. out of file descriptors) and were retried after a pause",
        Kind::Counter,
        |s| &s.accept_errors,
    ),
    (
        "corecast_auth_rejected_publish_total",
        "Publish requests refused by access control",
        Kind::Counter,
        |s| &s.auth_rejected_publish,
    ),
    (
        "corecast_auth_rejected_play_total",
        "Play requests (RTMP, HTTP-FLV, HLS playlists and segments) refused by access control",
        Kind::Counter,
        |s| &s.auth_rejected_play,
    ),
    (
        "corecast_http_bad_input_total",
        "HTTP connections closed for bad requests",
        Kind::Counter,
        |s| &s.http_bad_input,
    ),
    (
        "corecast_names_rejected_total",
        "Requests refused for an invalid application or stream name (RTMP and HTTP)",
        Kind::Counter,
        |s| &s.names_rejected,
    ),
    (
        "corecast_timeouts_total",
        "Connections closed by a timeout",
        Kind::Counter,
        |s| &s.timeouts,
    ),
    (
        "corecast_hls_segments_total",
        "HLS segments published",
        Kind::Counter,
        |s| &s.hls_segments,
    ),
    (
        "corecast_hls_errors_total",
        "Units the HLS muxer could not use",
        Kind::Counter,
        |s| &s.hls_errors,
    ),
    (
        "corecast_hls_requests_total",
        "HLS requests answered",
        Kind::Counter,
        |s| &s.hls_requests,
    ),
    (
        "corecast_ring_bytes",
        "Media bytes of the streams this shard owns beyond their GOP caches: backlog kept \
         for viewers that are behind, and units being sent (counted once, on the owner)",
        Kind::Gauge,
        |s| &s.ring_bytes,
    ),
    (
        "corecast_gop_cache_bytes",
        "Media bytes in the GOP caches (from the newest keyframe on) of the streams this shard \
         owns",
        Kind::Gauge,
        |s| &s.gop_cache_bytes,
    ),
    (
        "corecast_hls_bytes",
        "HLS segments and parts held by the streams this shard owns (MPEG-TS and Low-Latency)",
        Kind::Gauge,
        |s| &s.hls_bytes,
    ),
    (
        "corecast_hls_held_reloads",
        "Low-Latency HLS requests this shard holds until their part exists (blocking playlist \
         reloads, requests for the next part)",
        Kind::Gauge,
        |s| &s.hls_held_reloads,
    ),
    (
        "corecast_hls_held_full_total",
        "Low-Latency HLS requests answered without being held because the shard held \
         hls.max_held_reloads already (the current playlist at once, a part 404)",
        Kind::Counter,
        |s| &s.hls_held_full,
    ),
    (
        "corecast_hls_held_timeouts_total",
        "Low-Latency HLS requests held until their deadline (three target durations) without \
         their part coming (503 for a playlist, 404 for a part)",
        Kind::Counter,
        |s| &s.hls_held_timeouts,
    ),
    (
        "corecast_forwards",
        "Streams being pushed to [[forward]] targets now",
        Kind::Gauge,
        |s| &s.forwards_active,
    ),
    (
        "corecast_forward_sessions_total",
        "Publish sessions established with [[forward]] targets",
        Kind::Counter,
        |s| &s.forward_sessions,
    ),
    (
        "corecast_forward_failures_total",
        "[[forward]] targets that failed or dropped (each is tried again)",
        Kind::Counter,
        |s| &s.forward_failures,
    ),
    (
        "corecast_forwards_waiting",
        "[[forward]] targets waiting to be tried again after a failure (the API's streams \
         show which, and why)",
        Kind::Gauge,
        |s| &s.forwards_waiting,
    ),
    (
        "corecast_upstream_pulls",
        "Streams being pulled from [[upstream]] origins now (on their owner shard; the API's \
         streams show the origin, state and last error)",
        Kind::Gauge,
        |s| &s.upstream_pulls,
    ),
    (
        "corecast_upstream_sessions_total",
        "Pull sessions that delivered a stream from an origin",
        Kind::Counter,
        |s| &s.upstream_sessions,
    ),
    (
        "corecast_upstream_failures_total",
        "Origins that failed, refused or dropped a pulled stream (the next one is tried)",
        Kind::Counter,
        |s| &s.upstream_failures,
    ),
    (
        "corecast_upstream_bytes_total",
        "Bytes received from origins",
        Kind::Counter,
        |s| &s.upstream_bytes,
    ),
    (
        "corecast_upstream_loops_refused_total",
        "Play requests refused because they would make a pull loop (corecast_via)",
        Kind::Counter,
        |s| &s.upstream_loops_refused,
    ),
    (
        "corecast_proxy_refused_total",
        "Connections closed for their PROXY protocol header: missing or malformed from a \
         trusted proxy, or sent from an untrusted address",
        Kind::Counter,
        |s| &s.proxy_refused,
    ),
    (
        "corecast_connection_buffer_bytes",
        "Connection buffers on this shard: RTMP read buffers, partial messages and pending \
         output, HTTP request heads",
        Kind::Gauge,
        |s| &s.connection_buffer_bytes,
    ),
    (
        "corecast_mesh_queue_bytes",
        "Slots of the inter-shard channels this shard receives on, and messages waiting in \
         its outboxes",
        Kind::Gauge,
        |s| &s.mesh_queue_bytes,
    ),
    (
        "corecast_histogram_bytes",
        "This shard's latency histograms (recording, totals and last-minute window)",
        Kind::Gauge,
        |s| &s.histogram_bytes,
    ),
];

/// Quantiles exported for every histogram.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// Renders every counter and gauge (one sample per shard), the media memory budget (one
/// sample for the server) and every histogram (merged over shards) as Prometheus text.
pub fn render(observed: &Observed) -> String {
    let (stats, budget) = (&observed.all_stats, &observed.media_budget);
    let published = &observed.histograms;
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    for (name, help, kind, field) in METRICS {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for (shard, s) in stats.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", stats::get(field(s)));
        }
    }
    let _ = writeln!(
        out,
        "# HELP corecast_media_memory_bytes Media memory held: units and HLS windows \
         (limits.max_media_memory_bytes).\n# TYPE corecast_media_memory_bytes gauge\n\
         corecast_media_memory_bytes {}\n\
         # HELP corecast_media_memory_limit_bytes The media memory budget.\n\
         # TYPE corecast_media_memory_limit_bytes gauge\n\
         corecast_media_memory_limit_bytes {}",
        budget.held(),
        budget.limit()
    );
    let _ = writeln!(
        out,
        "# HELP corecast_config_reloads_total Configuration reloads (SIGHUP, POST \
         /api/v1/reload) by result.\n# TYPE corecast_config_reloads_total counter"
    );
    for (result, n) in observed.reloads.counts() {
        let _ = writeln!(
            out,
            "corecast_config_reloads_total{{result=\"{result}\"}} {n}"
        );
    }
    shards(&mut out, observed);
    process(&mut out);
    allocator(&mut out);
    let _ = writeln!(
        out,
        "# HELP corecast_log_events_total Log lines written, by level and target.\n\
         # TYPE corecast_log_events_total counter"
    );
    for (level, target, n) in super::log_events::snapshot() {
        let level = super::log_events::label(level);
        let _ = writeln!(
            out,
            "corecast_log_events_total{{level=\"{level}\",target=\"{target}\"}} {n}"
        );
    }
    let (total, window) = (
        published.merged(),
        published.windowed(crate::media::now_ns()),
    );
    let mut described = Vec::new();
    for stage in Stage::ALL {
        let (name, labels) = stage.metric();
        let name = format!("{name}_seconds");
        if !described.contains(&name) {
            let _ = writeln!(
                out,
                "# HELP {name} {} (quantiles: the last minute).\n# TYPE {name} summary",
                stage.help()
            );
            described.push(name.clone());
        }
        let sep = if labels.is_empty() { "" } else { "," };
        for (q, text) in QUANTILES {
            let _ = writeln!(
                out,
                "{name}{{{labels}{sep}quantile=\"{text}\"}} {}",
                seconds(quantile(window.get(stage), q))
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(total.sum(stage)));
        let _ = writeln!(out, "{name}_count{braces} {}", total.get(stage).len());
    }
    for stage in Stage::ALL {
        let (name, labels) = stage.metric();
        let name = format!("{name}_max_seconds");
        if !described.contains(&name) {
            let _ = writeln!(
                out,
                "# HELP {name} Largest value recorded in the last minute.\n# TYPE {name} gauge"
            );
            described.push(name.clone());
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}{braces} {}", seconds(window.get(stage).max()));
    }
    out
}

/// Each shard's load and heartbeat: what an alert on a stalled or saturated shard reads. A
/// stalled shard cannot answer a scrape itself; any other shard reports it.
fn shards(out: &mut String, observed: &Observed) {
    let _ = writeln!(
        out,
        "# HELP corecast_shard_busy_ratio Fraction of the last second the shard ran tasks.\n\
         # TYPE corecast_shard_busy_ratio gauge"
    );
    for report in observed.reports.all() {
        let _ = writeln!(
            out,
            "corecast_shard_busy_ratio{{shard=\"{}\"}} {:.3}",
            report.shard, report.busy
        );
    }
    let _ = writeln!(
        out,
        "# HELP corecast_shard_heartbeat_age_seconds Time since the shard last ran its \
         heartbeat task (every 50 ms while it runs).\n\
         # TYPE corecast_shard_heartbeat_age_seconds gauge"
    );
    let now = crate::media::now_ns();
    for (shard, age_ns) in observed.health.ages(now).into_iter().enumerate() {
        let age = age_ns.map_or("NaN".to_string(), seconds);
        let _ = writeln!(
            out,
            "corecast_shard_heartbeat_age_seconds{{shard=\"{shard}\"}} {age}"
        );
    }
}

/// The process's descriptors and resident memory, as Prometheus's client libraries name them.
fn process(out: &mut String) {
    let open = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count());
    let max = crate::net::soft_limit(libc::RLIMIT_NOFILE);
    let rss = crate::net::resident_bytes();
    let gauges = [
        (
            "process_open_fds",
            "Open file descriptors",
            open.ok().map(|n| n as u64),
        ),
        ("process_max_fds", "The open-file limit (soft)", max.ok()),
        ("process_resident_memory_bytes", "Resident memory", rss.ok()),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
}

/// mimalloc's figures of the process (see [`super::heap`]).
fn allocator(out: &mut String) {
    let figures = super::heap::allocator();
    let gauges = [
        (
            "corecast_allocator_committed_bytes",
            "Memory mimalloc has committed (backed and writable)",
            "gauge",
            figures.committed,
        ),
        (
            "corecast_allocator_committed_peak_bytes",
            "The most memory mimalloc has had committed",
            "gauge",
            figures.committed_peak,
        ),
        (
            "corecast_allocator_reserved_bytes",
            "Address space mimalloc has reserved",
            "gauge",
            figures.reserved,
        ),
        (
            "corecast_allocator_mmap_calls_total",
            "Calls mimalloc made to mmap",
            "counter",
            figures.mmap_calls,
        ),
    ];
    for (name, help, kind, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// The value at quantile `q`, 0 for an empty histogram (nothing recorded in the window).
pub fn quantile(hist: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    if hist.is_empty() {
        0
    } else {
        hist.value_at_quantile(q)
    }
}

fn seconds(ns: u64) -> String {
    format!("{:.9}", ns as f64 / 1e9)
}
