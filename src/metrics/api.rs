//! The JSON API (`/api/v1/streams`, `/api/v1/streams/{app}/{stream}`, `/api/v1/stats`).
//!
//! Every shard publishes a [`ShardReport`] once per [`super::PUBLISH_INTERVAL`] (what it
//! knows of each stream: its viewers, and on the owner the publisher and codecs); any shard
//! answers a request by merging the latest reports, without asking the others.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one shard knows of one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    /// `app/stream`.
    pub name: String,
    /// The owner shard.
    pub owner_shard: usize,
    /// HTTP-FLV viewers on this shard.
    pub flv_viewers: u64,
    /// RTMP players on this shard.
    pub rtmp_players: u64,
    /// Outgoing bitrate to this shard's viewers, kbit/s (over the last interval).
    pub bitrate_out_kbps: f64,
    /// Filled by the owner only.
    pub origin: Option<OriginReport>,
}

/// What the owner knows of a stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OriginReport {
    /// The publisher's address, while one publishes (`None` in the grace period).
    pub publisher: Option<String>,
    /// Seconds since the current publisher started.
    pub publishing_seconds: Option<f64>,
    /// Video codec (`h264`, `hevc`, or the FLV codec id).
    pub video_codec: Option<String>,
    /// Audio codec (`aac`, `mp3`, or the FLV sound format).
    pub audio_codec: Option<String>,
    /// Announced width.
    pub width: Option<u32>,
    /// Announced height.
    pub height: Option<u32>,
    /// Announced frame rate.
    pub frame_rate: Option<f32>,
    /// Distance between the last two keyframes, ms.
    pub gop_ms: Option<u64>,
    /// Incoming bitrate, kbit/s (over the last interval).
    pub bitrate_in_kbps: f64,
    /// Its `[[forward]]` targets.
    pub forwards: Vec<ForwardReport>,
    /// Its pull from an origin, when an `[[upstream]]` rule brought it here.
    pub upstream: Option<UpstreamReport>,
}

/// The pull of a stream from its origins (see [`crate::upstream`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamReport {
    /// The origin pulled from (or tried) now, without its query.
    pub origin: String,
    /// `connecting`, `pulling`, or `waiting` (every origin failed; the next round waits).
    pub state: &'static str,
    /// Seconds in that state.
    pub state_seconds: f64,
    /// Sessions that delivered the stream.
    pub sessions: u64,
    /// Tries that failed and sessions that were lost.
    pub failures: u64,
    /// Bytes received from origins.
    pub bytes: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

/// A `[[forward]]` target of a stream (see [`crate::forward`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardReport {
    /// The target's URL, without its query (which may hold a stream key).
    pub target: String,
    /// `connecting`, `publishing`, or `waiting` (to be tried again after a failure).
    pub state: &'static str,
    /// Seconds in that state.
    pub state_seconds: f64,
    /// Publish sessions established.
    pub sessions: u64,
    /// Tries that failed and sessions that were lost.
    pub failures: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

/// One shard's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardReport {
    /// The shard.
    pub shard: usize,
    /// Fraction of the last interval the shard spent running tasks (0..1).
    pub busy: f64,
    /// The longest a picture waits at the report, ms (0: pictures go out at once; see
    /// [`crate::shard::schedule`]).
    pub send_window_ms: f64,
    /// Pictures per send of an adaptive schedule at the report (1: frames; 0: a fixed
    /// window).
    pub pictures_per_send: u32,
    /// The streams this shard knows.
    pub streams: Vec<StreamReport>,
}

/// Every shard's latest report.
#[derive(Debug, Default)]
pub struct Reports {
    slots: Vec<Mutex<ShardReport>>,
}

/// A stream as the API shows it: the owner's facts plus viewers summed over shards.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    /// `app/stream`.
    pub name: String,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Owner shard.
    pub owner_shard: usize,
    /// Owner's facts (publisher, codecs, resolution, bitrate in, GOP).
    #[serde(flatten)]
    pub origin: OriginReport,
    /// Total outgoing bitrate, kbit/s.
    pub bitrate_out_kbps: f64,
    /// Viewers by protocol.
    pub viewers: Viewers,
    /// Viewers by shard.
    pub viewers_per_shard: Vec<ShardViewers>,
}

/// Viewer counts by protocol.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Viewers {
    /// HTTP-FLV.
    pub flv: u64,
    /// RTMP.
    pub rtmp: u64,
    /// Both.
    pub total: u64,
}

/// Viewers of a stream on one shard.
#[derive(Debug, Clone, Serialize)]
pub struct ShardViewers {
    /// The shard.
    pub shard: usize,
    /// HTTP-FLV viewers.
    pub flv: u64,
    /// RTMP players.
    pub rtmp: u64,
}

impl Reports {
    /// Slots for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Reports {
            slots: (0..shards)
                .map(|shard| {
                    Mutex::new(ShardReport {
                        shard,
                        ..ShardReport::default()
                    })
                })
                .collect(),
        }
    }

    /// Replaces shard `report.shard`'s report.
    pub fn publish(&self, report: ShardReport) {
        if let Some(Ok(mut slot)) = self.slots.get(report.shard).map(|s| s.lock()) {
            *slot = report;
        }
    }

    /// Every shard's latest report.
    pub fn all(&self) -> Vec<ShardReport> {
        self.slots
            .iter()
            .filter_map(|s| s.lock().ok().map(|r| r.clone()))
            .collect()
    }

    /// Streams, merged over shards, by name. Only streams whose owner reported are shown.
    pub fn streams(&self) -> Vec<StreamView> {
        let mut views: BTreeMap<String, StreamView> = BTreeMap::new();
        let reports = self.all();
        for report in &reports {
            for s in &report.streams {
                if let Some(origin) = &s.origin {
                    let (app, stream) = s.name.split_once('/').unwrap_or(("", &s.name));
                    views.insert(
                        s.name.clone(),
                        StreamView {
                            name: s.name.clone(),
                            app: app.to_string(),
                            stream: stream.to_string(),
                            owner_shard: s.owner_shard,
                            origin: origin.clone(),
                            bitrate_out_kbps: 0.0,
                            viewers: Viewers::default(),
                            viewers_per_shard: Vec::new(),
                        },
                    );
                }
            }
        }
        for report in &reports {
            for s in &report.streams {
                let Some(view) = views.get_mut(&s.name) else {
                    continue;
                };
                view.bitrate_out_kbps += s.bitrate_out_kbps;
                view.viewers.flv += s.flv_viewers;
                view.viewers.rtmp += s.rtmp_players;
                view.viewers.total += s.flv_viewers + s.rtmp_players;
                view.viewers_per_shard.push(ShardViewers {
                    shard: report.shard,
                    flv: s.flv_viewers,
                    rtmp: s.rtmp_players,
                });
            }
        }
        views.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_are_summed_over_shards_and_owner_facts_kept() {
        let reports = Reports::new(2);
        reports.publish(ShardReport {
            shard: 0,
            busy: 0.1,
            send_window_ms: 0.0,
            pictures_per_send: 1,
            streams: vec![StreamReport {
                name: "live/a".into(),
                owner_shard: 1,
                flv_viewers: 3,
                rtmp_players: 1,
                bitrate_out_kbps: 100.0,
                origin: None,
            }],
        });
        reports.publish(ShardReport {
            shard: 1,
            busy: 0.2,
            send_window_ms: 50.0,
            pictures_per_send: 2,
            streams: vec![StreamReport {
                name: "live/a".into(),
                owner_shard: 1,
                flv_viewers: 2,
                rtmp_players: 0,
                bitrate_out_kbps: 50.0,
                origin: Some(OriginReport {
                    video_codec: Some("h264".into()),
                    ..OriginReport::default()
                }),
            }],
        });
        let streams = reports.streams();
        assert_eq!(streams.len(), 1);
        let s = &streams[0];
        assert_eq!((s.app.as_str(), s.stream.as_str()), ("live", "a"));
        assert_eq!((s.viewers.flv, s.viewers.rtmp, s.viewers.total), (5, 1, 6));
        assert_eq!(s.viewers_per_shard.len(), 2);
        assert_eq!(s.origin.video_codec.as_deref(), Some("h264"));
        assert!((s.bitrate_out_kbps - 150.0).abs() < 1e-9);
    }
}
