//! What a shard reports: its latency histograms, its per-stream report for the JSON API,
//! the server-wide figures of `/api/v1/stats`, and the Prometheus exposition, all read from
//! the slots and counters every shard shares ([`Observed`]).

use super::Shard;
use crate::flv::codec::{AudioCodec, VideoCodec};
use crate::hub::budget::MediaBudget;
use crate::limits::PublishLimits;
use crate::media::now_ns;
use crate::metrics::api::{OriginReport, ShardReport, StreamReport};
use crate::metrics::{Published, Stage};
use crate::stats::{self, ShardStats};
use std::sync::Arc;

/// The memory gauges of what corecast holds, by part: the API's `memory_bytes`.
const MEMORY: [(&str, stats::Field); 6] = [
    ("ring", |s| &s.ring_bytes),
    ("gop_cache", |s| &s.gop_cache_bytes),
    ("hls", |s| &s.hls_bytes),
    ("connection_buffers", |s| &s.connection_buffer_bytes),
    ("mesh_queues", |s| &s.mesh_queue_bytes),
    ("histograms", |s| &s.histogram_bytes),
];

/// One shard's memory gauges, by part.
fn memory(s: &ShardStats) -> serde_json::Value {
    let parts: serde_json::Map<String, serde_json::Value> = MEMORY
        .iter()
        .map(|(name, field)| (name.to_string(), stats::get(field(s)).into()))
        .collect();
    serde_json::Value::Object(parts)
}

/// What every shard can read of every other: counters and exported histograms.
#[derive(Clone)]
pub struct Observed {
    /// Counters, by shard.
    pub all_stats: Arc<[Arc<ShardStats>]>,
    /// Histogram slots, by shard.
    pub histograms: Arc<Published>,
    /// API report slots, by shard.
    pub reports: Arc<crate::metrics::api::Reports>,
    /// Connection and viewer limits, shared by every shard.
    pub admission: Arc<crate::limits::Admission>,
    /// Per-address publish limits, shared by every shard.
    pub publish_limits: Arc<PublishLimits>,
    /// The media memory every ring and HLS window counts against.
    pub media_budget: Arc<MediaBudget>,
    /// Every shard's heartbeat, the start and the stop (`/readyz`, the systemd watchdog).
    pub health: Arc<crate::server::health::Health>,
    /// The configuration every shard runs, replaced by reloads.
    pub reloads: Arc<crate::server::reload::Reloads>,
    /// Where the media listeners are bound.
    pub bound: Bound,
    /// This server's id in the lists of servers pulls went through
    /// ([`crate::upstream::Via`]): random, drawn at its start.
    pub node_id: u64,
}

/// The addresses the media listeners are bound to (with the actual port when port 0 was
/// configured), for the API's clients (the console builds its player URLs from them).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// `server.rtmp_listen`.
    pub rtmp: std::net::SocketAddr,
    /// `server.http_listen`.
    pub http: std::net::SocketAddr,
}

impl Shard {
    /// Every shard's heartbeat, the start and the stop.
    pub fn health(&self) -> &crate::server::health::Health {
        &self.observed.health
    }

    /// The configuration reloads (the API asks for them; the main thread makes them).
    pub fn reloads(&self) -> &crate::server::reload::Reloads {
        &self.observed.reloads
    }

    /// Records a latency sample (ns) in this shard's histograms.
    #[inline]
    pub fn record(&self, stage: Stage, ns: u64) {
        self.hist.borrow_mut().record(stage, ns);
    }

    /// Where the media listeners are bound (the console's player reads from them).
    pub fn bound(&self) -> Bound {
        self.observed.bound
    }

    /// Adds what this shard recorded since the last call to its export slot and starts the
    /// next interval (see [`crate::metrics`]).
    pub fn publish_histograms(&self) {
        let mut interval = self.hist.borrow_mut();
        self.observed
            .histograms
            .publish(self.id, now_ns(), &interval);
        interval.reset();
    }

    /// This shard's report for the API: every stream it knows, with bitrates over the last
    /// `interval_s` seconds.
    pub fn report(&self, interval_s: f64, busy: f64) -> ShardReport {
        let kbps = |bytes: u64| bytes as f64 * 8.0 / 1000.0 / interval_s.max(1e-3);
        let now = now_ns();
        let mut streams = self.streams.borrow_mut();
        let reports = streams
            .iter_mut()
            .map(|(key, stream)| {
                let (flv_viewers, rtmp_players, bitrate_out_kbps) = match &stream.feed {
                    Some(feed) => {
                        let f = feed.borrow();
                        let out = f.bytes_out.get();
                        let delta = out - f.reported_bytes_out.replace(out);
                        (f.viewers[0] as u64, f.viewers[1] as u64, kbps(delta))
                    }
                    None => (0, 0, 0.0),
                };
                let origin = stream.origin.as_mut().map(|o| {
                    let bytes_in = o.take_bytes_in();
                    let meta = o.metadata.as_ref();
                    OriginReport {
                        publisher: o.publisher.as_ref().map(|p| p.peer.to_string()),
                        publishing_seconds: o
                            .publisher
                            .as_ref()
                            .map(|p| now.saturating_sub(p.since_ns) as f64 / 1e9),
                        video_codec: o.video_codec.map(VideoCodec::name),
                        audio_codec: o.audio_codec.map(AudioCodec::name),
                        width: meta.and_then(|m| m.video_width),
                        height: meta.and_then(|m| m.video_height),
                        frame_rate: meta.and_then(|m| m.video_frame_rate),
                        gop_ms: o.gop_ms,
                        bitrate_in_kbps: kbps(bytes_in),
                        forwards: o.forwards.iter().map(|f| f.borrow().report(now)).collect(),
                        upstream: self.pull_report(key, now),
                    }
                });
                StreamReport {
                    name: key.to_string(),
                    owner_shard: self.owner(key),
                    flv_viewers,
                    rtmp_players,
                    bitrate_out_kbps,
                    origin,
                }
            })
            .collect();
        ShardReport {
            shard: self.id,
            busy,
            send_window_ms: self.send_window().as_secs_f64() * 1000.0,
            pictures_per_send: self.schedule.borrow().pictures_per_send(),
            streams: reports,
        }
    }

    /// Publishes this shard's report (see [`crate::metrics::api`]) and memory gauges.
    pub fn publish_report(&self, interval_s: f64, busy: f64) {
        let report = self.report(interval_s, busy);
        self.observed.reports.publish(report);
        self.publish_memory();
    }

    /// Sets the memory gauges sampled once a second: the streams this shard owns (their GOP
    /// caches, the rest of their units alive on any shard, their HLS windows), its mesh
    /// queues and its histograms. (Connection buffers are counted as they change.)
    fn publish_memory(&self) {
        let (mut gop_cache, mut hls) = (0, 0);
        for stream in self.streams.borrow().values() {
            if let (Some(feed), Some(origin)) = (&stream.feed, &stream.origin) {
                gop_cache += feed.borrow().ring.gop_cache_bytes();
                hls += origin.hls_bytes_held();
            }
        }
        let units = self.units.held();
        let gauge = |g: &std::sync::atomic::AtomicU64, v: usize| stats::set(g, v as u64);
        gauge(&self.stats.ring_bytes, units.saturating_sub(gop_cache));
        gauge(&self.stats.gop_cache_bytes, gop_cache);
        gauge(&self.stats.hls_bytes, hls);
        gauge(&self.stats.hls_held_reloads, self.held_reloads());
        let channels =
            super::mesh::receiving_bytes(self.count, self.config().server.mesh_queue_units);
        stats::set(
            &self.stats.mesh_queue_bytes,
            channels + self.mesh.waiting_bytes(),
        );
        let histograms =
            self.hist.borrow().memory_bytes() + self.observed.histograms.memory_bytes(self.id);
        stats::set(&self.stats.histogram_bytes, histograms);
    }

    /// The API's view of every stream, or of one.
    pub fn api_streams(&self) -> Vec<crate::metrics::api::StreamView> {
        self.observed.reports.streams()
    }

    /// Server-wide figures and per-shard load, for `/api/v1/stats`.
    pub fn api_stats(&self) -> serde_json::Value {
        let all = &self.observed.all_stats;
        let total = |field| stats::total(all, field);
        let per_shard: Vec<serde_json::Value> = self
            .observed
            .reports
            .all()
            .iter()
            .map(|r| {
                let s = &all[r.shard];
                serde_json::json!({
                    "shard": r.shard,
                    "busy": r.busy,
                    "send_window_ms": r.send_window_ms,
                    "pictures_per_send": r.pictures_per_send,
                    "streams": r.streams.len(),
                    "publishers": stats::get(&s.publishers),
                    "flv_viewers": stats::get(&s.flv_viewers),
                    "rtmp_players": stats::get(&s.rtmp_players),
                    "bytes_out": stats::get(&s.flv_bytes_out) + stats::get(&s.rtmp_bytes_out),
                    "memory_bytes": memory(s),
                })
            })
            .collect();
        let window = self.observed.histograms.windowed(now_ns());
        let ms = |ns: u64| ns as f64 / 1e6;
        let latency: serde_json::Map<String, serde_json::Value> = Stage::ALL
            .iter()
            .map(|&stage| {
                let hist = window.get(stage);
                let q = |q| ms(crate::metrics::prometheus::quantile(hist, q));
                let figures = serde_json::json!({
                    "count": hist.len(),
                    "p50_ms": q(0.5),
                    "p90_ms": q(0.9),
                    "p99_ms": q(0.99),
                    "p999_ms": q(0.999),
                    "max_ms": ms(hist.max()),
                });
                (stage.tag().to_string(), figures)
            })
            .collect();
        serde_json::json!({
            "shards": all.len(),
            "listeners": {
                "rtmp": self.observed.bound.rtmp.to_string(),
                "http": self.observed.bound.http.to_string(),
            },
            "latency_window_s": crate::metrics::QUANTILE_WINDOW.as_secs(),
            "latency": latency,
            "streams": self.observed.reports.streams().len(),
            "publishers": total(|s| &s.publishers),
            "viewers": {
                "flv": total(|s| &s.flv_viewers),
                "rtmp": total(|s| &s.rtmp_players),
            },
            "bytes_in": total(|s| &s.bytes_in),
            "bytes_out": {
                "flv": total(|s| &s.flv_bytes_out),
                "rtmp": total(|s| &s.rtmp_bytes_out),
            },
            "hls_requests": total(|s| &s.hls_requests),
            "frames_skipped": total(|s| &s.frames_skipped),
            "viewers_disconnected_slow": total(|s| &s.viewers_disconnected_slow),
            "memory_bytes": self.memory_totals(crate::metrics::heap::allocator()),
            "per_shard": per_shard,
        })
    }

    /// The process's memory: what corecast's parts hold (summed over shards), their total,
    /// the resident memory and mimalloc's committed memory (`allocator`).
    fn memory_totals(&self, allocator: crate::metrics::heap::Allocator) -> serde_json::Value {
        let all = &self.observed.all_stats;
        let mut parts = serde_json::Map::new();
        let mut accounted = 0;
        for (name, field) in MEMORY {
            let bytes = stats::total(all, field);
            accounted += bytes;
            parts.insert(name.to_string(), bytes.into());
        }
        parts.insert("accounted".into(), accounted.into());
        let resident = crate::net::resident_bytes().unwrap_or(0);
        parts.insert("resident".into(), resident.into());
        parts.insert("allocator_committed".into(), allocator.committed.into());
        serde_json::Value::Object(parts)
    }

    /// `/debug/heap`: [`Shard::memory_totals`], each shard's parts, and mimalloc's own
    /// statistics (read once: the totals take their figures from the same document).
    pub fn heap_report(&self) -> serde_json::Value {
        use crate::metrics::heap::{self, Allocator};
        let mimalloc = heap::stats();
        let allocator = mimalloc
            .as_ref()
            .map_or_else(Allocator::default, Allocator::from_stats);
        let per_shard: Vec<serde_json::Value> = self
            .observed
            .all_stats
            .iter()
            .enumerate()
            .map(|(shard, s)| serde_json::json!({ "shard": shard, "memory_bytes": memory(s) }))
            .collect();
        serde_json::json!({
            "memory_bytes": self.memory_totals(allocator),
            "per_shard": per_shard,
            "mimalloc": mimalloc,
        })
    }

    /// The Prometheus exposition of every shard's counters and the merged histograms.
    pub fn prometheus(&self) -> String {
        crate::metrics::prometheus::render(&self.observed)
    }
}
