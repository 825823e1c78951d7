//! RTMP publishers: each replays an FLV file in real time, looped with increasing
//! timestamps, until the run's deadline. Every video frame carries its send time in an SEI
//! stamp ([`crate::sei`]).

use crate::sei;
use bytes::Bytes;
use corecast::flv::reader::{FlvTag, TagKind};
use corecast_testkit::client::{ClientError, Publisher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one publisher did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PublishReport {
    /// Stream name.
    pub stream: String,
    /// Times the file was played through.
    pub loops: u64,
    /// The error that ended it early, if any.
    pub error: Option<String>,
}

/// Publishers started by [`spawn`].
pub struct Publishers {
    /// One per stream, in order.
    pub streams: Vec<Publishing>,
}

/// One publisher thread.
pub struct Publishing {
    /// `app/name`.
    pub path: String,
    /// Media payload bytes sent so far (FLV tag bodies, stamps included): what every viewer
    /// of the stream should receive, before protocol framing.
    pub sent: Arc<AtomicU64>,
    thread: JoinHandle<PublishReport>,
}

impl Publishers {
    /// Every stream's path and payload-byte counter.
    pub fn counters(&self) -> Vec<(String, Arc<AtomicU64>)> {
        self.streams
            .iter()
            .map(|p| (p.path.clone(), p.sent.clone()))
            .collect()
    }

    /// Waits for every publisher to reach the deadline (or fail).
    pub fn join(self) -> Vec<PublishReport> {
        self.streams
            .into_iter()
            .map(|p| {
                p.thread.join().unwrap_or_else(|_| PublishReport {
                    stream: p.path,
                    error: Some("publisher thread panicked".into()),
                    ..PublishReport::default()
                })
            })
            .collect()
    }
}

/// Starts `count` publishers of `app/{prefix}{i}` (i from 0), each on a thread of its own.
pub fn spawn(
    target: SocketAddr,
    app: &str,
    prefix: &str,
    count: usize,
    tags: Arc<Vec<FlvTag>>,
    duration: Duration,
) -> Publishers {
    let deadline = Instant::now() + duration;
    let streams = (0..count)
        .map(|i| {
            let (app, stream, tags) = (app.to_string(), format!("{prefix}{i}"), tags.clone());
            let sent = Arc::new(AtomicU64::new(0));
            let path = format!("{app}/{stream}");
            let counter = sent.clone();
            let thread = std::thread::spawn(move || {
                let mut report = PublishReport {
                    stream: stream.clone(),
                    ..PublishReport::default()
                };
                if let Err(err) = run(
                    target,
                    &app,
                    &stream,
                    &tags,
                    deadline,
                    &counter,
                    &mut report,
                ) {
                    report.error = Some(err.to_string());
                }
                report
            });
            Publishing { path, sent, thread }
        })
        .collect();
    Publishers { streams }
}

fn run(
    target: SocketAddr,
    app: &str,
    stream: &str,
    tags: &[FlvTag],
    deadline: Instant,
    sent: &AtomicU64,
    report: &mut PublishReport,
) -> Result<(), ClientError> {
    let mut publisher = Publisher::connect(target, app, stream, Duration::from_secs(10))?;
    let started = Instant::now();
    let mut offset = 0u32;
    loop {
        let mut last = offset;
        for tag in tags {
            let ts = tag.timestamp.wrapping_add(offset);
            // Real time: tag `ts` goes out `ts` ms after the start.
            let due = started + Duration::from_millis(u64::from(ts));
            if due >= deadline {
                return publisher.finish();
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            match tag.kind {
                TagKind::Video => {
                    // Every frame carries its send time, for probes downstream.
                    let body = sei::stamp_flv_video(&tag.data, sei::now_unix_ns());
                    let len = body.len() as u64;
                    publisher.send_video(ts, Bytes::from(body))?;
                    sent.fetch_add(len, Ordering::Relaxed);
                }
                _ => {
                    publisher.send_tag(&FlvTag {
                        timestamp: ts,
                        ..tag.clone()
                    })?;
                    sent.fetch_add(tag.data.len() as u64, Ordering::Relaxed);
                }
            }
            last = ts;
        }
        report.loops += 1;
        offset = last.wrapping_add(40);
    }
}

/// A synthetic H.264/AAC-shaped source of `kbps` (video and audio together), `fps` frames a
/// second and a keyframe every `gop_frames`: `seconds` of tags, looped by the publishers.
/// The payloads are filler (no decoder can show them); their sizes, timing and structure
/// (sequence headers, keyframes four times an average frame) are those of a real encode,
/// which is what a relay's cost depends on.
pub fn synthetic(kbps: u64, fps: u32, gop_frames: u32, seconds: u32) -> Vec<FlvTag> {
    const AUDIO_FPS: f64 = 44_100.0 / 1024.0;
    const AUDIO_BYTES: usize = 256;
    let audio_kbps = AUDIO_FPS * AUDIO_BYTES as f64 * 8.0 / 1000.0;
    let fps = fps.max(1);
    let gop = gop_frames.max(1);
    let frame_bytes =
        ((kbps as f64 - audio_kbps).max(8.0) * 1000.0 / 8.0 / f64::from(fps)) as usize;
    // Keyframes are 4 average frames; the others share the rest of a GOP's budget.
    let key_bytes = frame_bytes * 4;
    let inter_bytes =
        (frame_bytes * gop as usize).saturating_sub(key_bytes) / (gop as usize - 1).max(1);
    let tag = |kind, timestamp, data: Vec<u8>| FlvTag {
        kind,
        timestamp,
        data: Bytes::from(data),
    };
    let mut tags = vec![
        tag(
            TagKind::Video,
            0,
            vec![
                0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2,
                0x68, 0xee,
            ],
        ),
        tag(TagKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]),
    ];
    let (mut video, mut audio) = (0u32, 0u32);
    loop {
        let video_ms = u64::from(video) * 1000 / u64::from(fps);
        let audio_ms = (f64::from(audio) * 1000.0 / AUDIO_FPS) as u64;
        if video_ms.min(audio_ms) >= u64::from(seconds) * 1000 {
            return tags;
        }
        if video_ms <= audio_ms {
            let key = video % gop == 0;
            let len = if key { key_bytes } else { inter_bytes }.max(16);
            let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&((len - 9) as u32).to_be_bytes());
            body.push(if key { 0x65 } else { 0x41 });
            body.resize(len, 0x5a);
            tags.push(tag(TagKind::Video, video_ms as u32, body));
            video += 1;
        } else {
            let mut body = vec![0xaf, 1];
            body.resize(AUDIO_BYTES, 0x21);
            tags.push(tag(TagKind::Audio, audio_ms as u32, body));
            audio += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_source_has_the_asked_bitrate_and_gop() {
        let tags = synthetic(2600, 30, 60, 10);
        let bytes: usize = tags.iter().map(|t| t.data.len()).sum();
        let kbps = bytes as f64 * 8.0 / 1000.0 / 10.0;
        assert!((2500.0..2700.0).contains(&kbps), "{kbps} kbit/s");
        let keys: Vec<u32> = tags
            .iter()
            .filter(|t| t.is_video_keyframe() && !t.is_sequence_header())
            .map(|t| t.timestamp)
            .collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(keys[1] - keys[0], 2000);
        assert!(tags.windows(2).all(|w| w[1].timestamp >= w[0].timestamp));
    }
}
