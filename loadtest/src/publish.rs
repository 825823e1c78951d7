//! RTMP publishers: each replays an FLV file in real time, looped with increasing
//! timestamps, until the run's deadline.

use corecast::client::{ClientError, Pace, Publisher};
use corecast::flv::reader::FlvTag;
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
    // Play the file through in slices so that the deadline is checked often.
    let slice = 25;
    let mut offset = 0;
    'outer: loop {
        let mut last = offset;
        for chunk in tags.chunks(slice) {
            if Instant::now() >= deadline {
                break 'outer;
            }
            last = publisher.replay(chunk, Pace::RealTime { speed: 1.0 }, offset)?;
        }
        report.loops += 1;
        offset = last.wrapping_add(40);
    }
    publisher.finish()
}
