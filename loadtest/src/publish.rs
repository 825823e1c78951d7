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
