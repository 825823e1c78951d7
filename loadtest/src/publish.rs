//! RTMP publishers: each replays an FLV file in real time, looped with increasing
//! timestamps, until the run's deadline. Every video frame carries its send time in an SEI
//! stamp ([`crate::sei`]).

use crate::sei;
use bytes::Bytes;
use corecast::client::{ClientError, Publisher};
use corecast::flv::reader::{FlvTag, TagKind};
use std::net::SocketAddr;
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

/// Starts `count` publishers of `app/{prefix}{i}` (i from 0), each on a thread of its own.
pub fn spawn(
    target: SocketAddr,
    app: &str,
    prefix: &str,
    count: usize,
    tags: Arc<Vec<FlvTag>>,
    duration: Duration,
) -> Vec<JoinHandle<PublishReport>> {
    let deadline = Instant::now() + duration;
    (0..count)
        .map(|i| {
            let (app, stream, tags) = (app.to_string(), format!("{prefix}{i}"), tags.clone());
            std::thread::spawn(move || {
                let mut report = PublishReport {
                    stream: stream.clone(),
                    ..PublishReport::default()
                };
                if let Err(err) = run(target, &app, &stream, &tags, deadline, &mut report) {
                    report.error = Some(err.to_string());
                }
                report
            })
        })
        .collect()
}

fn run(
    target: SocketAddr,
    app: &str,
    stream: &str,
    tags: &[FlvTag],
    deadline: Instant,
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
                    publisher.send_video(ts, Bytes::from(body))?;
                }
                _ => publisher.send_tag(&FlvTag {
                    timestamp: ts,
                    ..tag.clone()
                })?,
            }
            last = ts;
        }
        report.loops += 1;
        offset = last.wrapping_add(40);
    }
}
