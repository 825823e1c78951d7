//! Per-shard counters and gauges.
//!
//! Each shard writes only its own [`ShardStats`] (relaxed atomics on a cache line no other
//! shard writes), and readers (the server handle, tests, later the metrics endpoint) sum
//! over shards.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one shard. Gauges are marked as such; everything else only increases.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// RTMP connections accepted.
    pub rtmp_accepted: AtomicU64,
    /// HTTP connections accepted.
    pub http_accepted: AtomicU64,
    /// Gauge: streams owned by this shard (live or in their grace period).
    pub streams: AtomicU64,
    /// Gauge: publishers currently publishing on this shard.
    pub publishers: AtomicU64,
    /// Publish requests refused (stream already published).
    pub publish_rejected: AtomicU64,
    /// Publishers accepted here and handed to the owner shard.
    pub handoffs_sent: AtomicU64,
    /// Publishers received from another shard.
    pub handoffs_received: AtomicU64,
    /// Gauge: HTTP-FLV viewers connected to this shard.
    pub flv_viewers: AtomicU64,
    /// HTTP-FLV viewers ever started on this shard.
    pub flv_viewers_total: AtomicU64,
    /// Gauge: RTMP players connected to this shard.
    pub rtmp_players: AtomicU64,
    /// RTMP players ever started on this shard.
    pub rtmp_players_total: AtomicU64,
    /// Bytes sent to RTMP players (media and their sessions' control messages).
    pub rtmp_bytes_out: AtomicU64,
    /// Send system calls made for RTMP players.
    pub rtmp_sends: AtomicU64,
    /// Play requests refused (unknown stream, bad request).
    pub play_rejected: AtomicU64,
    /// Viewers (any protocol) whose stream ended while they watched.
    pub viewers_ended_with_stream: AtomicU64,
    /// Viewers (any protocol) that stopped or went away themselves.
    pub viewers_left: AtomicU64,
    /// HLS segments published (owner shard).
    pub hls_segments: AtomicU64,
    /// Sum over published segments of the time from the keyframe that closed the segment to
    /// the playlist listing it handed to every shard, in ns (mean = this / hls_segments).
    pub hls_publish_ns_total: AtomicU64,
    /// Units the HLS muxer could not use (bad sequence header, truncated frame).
    pub hls_errors: AtomicU64,
    /// Bytes of HLS responses (playlists and segments, heads included).
    pub hls_bytes_out: AtomicU64,
    /// HLS requests answered (playlists and segments).
    pub hls_requests: AtomicU64,
    /// Sum of HLS request service times (request parsed -> response handed to the kernel), ns.
    pub hls_service_ns_total: AtomicU64,
    /// Units jumped over by slow viewers.
    pub frames_skipped: AtomicU64,
    /// Gauge: media bytes of the streams this shard owns beyond their GOP caches (the
    /// backlog kept for viewers that are behind, and units being sent), on any shard.
    pub ring_bytes: AtomicU64,
    /// Gauge: media bytes in the GOP caches of the streams this shard owns.
    pub gop_cache_bytes: AtomicU64,
    /// Gauge: HLS segments held by the streams this shard owns (both renditions).
    pub hls_bytes: AtomicU64,
    /// Gauge: Low-Latency HLS requests this shard holds until their part exists, sampled
    /// once a second.
    pub hls_held_reloads: AtomicU64,
    /// Low-Latency HLS requests answered without being held because this shard held
    /// `hls.max_held_reloads` already (a playlist at once, a part `404`).
    pub hls_held_full: AtomicU64,
    /// Low-Latency HLS requests held until their deadline without their part coming (`503`
    /// for a playlist, `404` for a part).
    pub hls_held_timeouts: AtomicU64,
    /// Gauge: connection buffers on this shard: RTMP read buffers, the part of a message
    /// received so far, output not yet written, and HTTP request heads being read.
    pub connection_buffer_bytes: AtomicU64,
    /// Gauge: the slots of the inter-shard channels this shard receives on, and the
    /// messages waiting in its outboxes (see `shard::mesh`), sampled once a second.
    pub mesh_queue_bytes: AtomicU64,
    /// Gauge: this shard's latency histograms (recording, totals and window).
    pub histogram_bytes: AtomicU64,
    /// Viewers (any protocol) disconnected for being too slow.
    pub viewers_disconnected_slow: AtomicU64,
    /// Units not forwarded to a shard because its queue was full, or because control
    /// messages were waiting for room before them (`shard::mesh::Outbox`).
    pub mesh_units_dropped: AtomicU64,
    /// Requests to another shard refused because its outbox was full
    /// (`shard::mesh::OUTBOX_REQUESTS`): publishers not handed off (their connection closed)
    /// and viewers whose shard could not subscribe (answered as for a missing stream).
    pub mesh_control_refused: AtomicU64,
    /// Media bytes received from publishers.
    pub bytes_in: AtomicU64,
    /// Bytes sent to HTTP-FLV viewers.
    pub flv_bytes_out: AtomicU64,
    /// Send system calls made for HTTP-FLV viewers (bytes / sends = batching achieved).
    pub flv_sends: AtomicU64,
    /// RTMP connections closed for protocol errors or bad input.
    pub rtmp_bad_input: AtomicU64,
    /// RTMP connections whose input made rml_rtmp panic (contained, and also counted in
    /// `rtmp_bad_input`).
    pub rtmp_session_panics: AtomicU64,
    /// RTMP connections closed for exceeding an input limit (`rtmp.max_message_bytes`, the
    /// 64 KiB message limit before publishing, `rtmp.max_chunk_size`, chunk streams).
    pub rtmp_limits_hit: AtomicU64,
    /// Silent publishers replaced by a new one (`auth.takeover_after_ms`).
    pub publishers_taken_over: AtomicU64,
    /// Connections closed at accept: a connection limit was reached.
    pub connections_refused: AtomicU64,
    /// Accepts that failed (e.g. EMFILE: out of file descriptors); the listener backs off
    /// and retries.
    pub accept_errors: AtomicU64,
    /// Publish requests refused by access control.
    pub auth_rejected_publish: AtomicU64,
    /// Play requests (RTMP, HTTP-FLV, HLS) refused by access control.
    pub auth_rejected_play: AtomicU64,
    /// HTTP connections closed for bad requests.
    pub http_bad_input: AtomicU64,
    /// Requests refused for an invalid application or stream name (RTMP connect, publish
    /// and play; HTTP media and API paths), see [`crate::hub::validate_name`].
    pub names_rejected: AtomicU64,
    /// Connections closed because they timed out (handshake, header, idle).
    pub timeouts: AtomicU64,
    /// Gauge: streams being pushed to `[[forward]]` targets now.
    pub forwards_active: AtomicU64,
    /// Publish sessions established with `[[forward]]` targets.
    pub forward_sessions: AtomicU64,
    /// `[[forward]]` targets that failed or dropped (each is tried again).
    pub forward_failures: AtomicU64,
    /// Gauge: `[[forward]]` targets waiting to be tried again after a failure.
    pub forwards_waiting: AtomicU64,
    /// Gauge: streams being pulled from `[[upstream]]` origins now (on their owner shard).
    pub upstream_pulls: AtomicU64,
    /// Pull sessions that delivered a stream from an origin.
    pub upstream_sessions: AtomicU64,
    /// Origins that failed, refused or dropped a pulled stream (the next one is tried).
    pub upstream_failures: AtomicU64,
    /// Bytes received from origins.
    pub upstream_bytes: AtomicU64,
    /// Play requests refused because they would make a pull loop (`corecast_via`).
    pub upstream_loops_refused: AtomicU64,
    /// Connections closed for their PROXY protocol header: missing or malformed from a
    /// trusted proxy, or sent from an untrusted address (`server.proxy_protocol`).
    pub proxy_refused: AtomicU64,
}

/// Adds to a counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Increments a counter.
#[inline]
pub fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

/// Decrements a gauge.
#[inline]
pub fn dec(gauge: &AtomicU64) {
    gauge.fetch_sub(1, Ordering::Relaxed);
}

/// Sets a gauge.
#[inline]
pub fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

/// Reads a counter.
#[inline]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One field of [`ShardStats`].
pub type Field = fn(&ShardStats) -> &AtomicU64;

/// Bytes that one holder (a connection's buffers) counts in a gauge of its shard: the
/// holder says how much it holds now, and gives it all back when dropped.
pub struct Held {
    stats: std::sync::Arc<ShardStats>,
    gauge: Field,
    bytes: u64,
}

impl Held {
    /// Nothing held yet, in `gauge` of `stats`.
    pub fn new(stats: std::sync::Arc<ShardStats>, gauge: Field) -> Self {
        Held {
            stats,
            gauge,
            bytes: 0,
        }
    }

    /// Now holds `bytes` (one atomic add when it changed, none otherwise).
    #[inline]
    pub fn set(&mut self, bytes: u64) {
        if bytes == self.bytes {
            return;
        }
        let gauge = (self.gauge)(&self.stats);
        if bytes > self.bytes {
            add(gauge, bytes - self.bytes);
        } else {
            gauge.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// One counter or gauge summed over every shard's `stats`.
pub fn total(all: &[std::sync::Arc<ShardStats>], field: Field) -> u64 {
    all.iter().map(|s| get(field(s))).sum()
}
