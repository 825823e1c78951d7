//! Cheap viewers: they join at a given rate, drain their stream and count bytes. One glommio
//! executor runs them all; a progress line per second and a summary at the end.

use crate::sei;
use corecast::client::cheap::{self, Protocol};
use corecast::flv::reader::{FlvReader, TagKind};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What to play.
#[derive(Debug, Clone)]
pub struct PlayPlan {
    /// Server address (HTTP port for FLV, RTMP port for RTMP).
    pub target: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Viewers to open.
    pub viewers: usize,
    /// Viewers opened per second.
    pub join_rate: f64,
    /// Length of the run.
    pub duration: Duration,
    /// How many of the viewers are probes (HTTP-FLV only): they parse the stream and
    /// measure latency from the SEI send-time stamps and their startup time.
    pub probes: usize,
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlaySummary {
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers that started playing.
    pub connected: usize,
    /// Viewers that could not start.
    pub failed: usize,
    /// Viewers whose connection ended before the run did.
    pub ended_early: usize,
    /// Bytes received by all viewers.
    pub bytes: u64,
    /// Mean throughput over the run, Gbit/s.
    pub gbit_per_s: f64,
    /// Bytes of the viewer that received least, as a fraction of the median viewer's.
    pub slowest_fraction: f64,
    /// Seconds the run lasted.
    pub seconds: f64,
    /// Probes: send time (SEI stamp) to frame received, over all stamped video frames.
    pub latency: Percentiles,
    /// Probes: request sent to first keyframe received.
    pub startup: Percentiles,
    /// Probes: gaps of more than a second between video frames.
    pub stalls: u64,
}

/// What probes measure, shared by the probe tasks.
struct Probed {
    latency: Histogram<u64>,
    startup: Histogram<u64>,
    stalls: u64,
}

impl Default for Probed {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("bounds");
        Probed {
            latency: h(),
            startup: h(),
            stalls: 0,
        }
    }
}

/// One viewer's counters.
#[derive(Default)]
struct Viewer {
    bytes: Cell<u64>,
    started: Cell<bool>,
    ended: Cell<bool>,
    failed: Cell<bool>,
}

/// Runs the plan on the current glommio executor; `progress` gets one line per second.
pub async fn run(plan: PlayPlan, mut progress: impl FnMut(&str)) -> PlaySummary {
    let viewers: Rc<RefCell<Vec<Rc<Viewer>>>> = Rc::default();
    let probed: Rc<RefCell<Probed>> = Rc::default();
    let started = Instant::now();
    let deadline = started + plan.duration;
    let spawner = {
        let (plan, viewers, probed) = (plan.clone(), viewers.clone(), probed.clone());
        glommio::spawn_local(async move {
            let gap = Duration::from_secs_f64(1.0 / plan.join_rate.max(0.001));
            for i in 0..plan.viewers {
                if Instant::now() >= deadline {
                    break;
                }
                let viewer = Rc::new(Viewer::default());
                viewers.borrow_mut().push(viewer.clone());
                let plan = plan.clone();
                let probe =
                    (i < plan.probes && plan.protocol == Protocol::Flv).then(|| probed.clone());
                glommio::spawn_local(async move {
                    let asked = Instant::now();
                    match cheap::start(plan.target, plan.protocol, &plan.app, &plan.stream).await {
                        Ok(mut s) => {
                            viewer.started.set(true);
                            match probe {
                                Some(probed) => {
                                    let mut parser = FlvProbe::new(asked);
                                    let _ = cheap::drain_bytes(&mut s, |chunk| {
                                        viewer.bytes.set(viewer.bytes.get() + chunk.len() as u64);
                                        parser.feed(chunk, &mut probed.borrow_mut());
                                    })
                                    .await;
                                }
                                None => {
                                    let _ = cheap::drain(&mut s, |n| {
                                        viewer.bytes.set(viewer.bytes.get() + n as u64)
                                    })
                                    .await;
                                }
                            }
                            viewer.ended.set(true);
                        }
                        Err(_) => viewer.failed.set(true),
                    }
                })
                .detach();
                let next = started + gap.mul_f64(i as f64 + 1.0);
                glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
            }
        })
    };
    let mut last_bytes = 0;
    while Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
        let all = viewers.borrow();
        let bytes: u64 = all.iter().map(|v| v.bytes.get()).sum();
        let playing = all
            .iter()
            .filter(|v| v.started.get() && !v.ended.get())
            .count();
        let errors = all.iter().filter(|v| v.failed.get()).count();
        progress(&format!(
            "t={:>4.0}s viewers={playing}/{} Gbit/s={:.3} errors={errors}",
            started.elapsed().as_secs_f64(),
            plan.viewers,
            (bytes - last_bytes) as f64 * 8.0 / 1e9,
        ));
        last_bytes = bytes;
    }
    drop(spawner);
    let all = viewers.borrow();
    let mut summary = summarize(plan.viewers, &all, started.elapsed());
    let probed = probed.borrow();
    summary.latency = Percentiles::of(&probed.latency);
    summary.startup = Percentiles::of(&probed.startup);
    summary.stalls = probed.stalls;
    summary
}

/// Parses an HTTP-FLV response as it arrives and records what probes measure.
struct FlvProbe {
    asked: Instant,
    head_done: bool,
    head: Vec<u8>,
    reader: FlvReader,
    started: bool,
    last_video: Option<Instant>,
}

impl FlvProbe {
    fn new(asked: Instant) -> Self {
        FlvProbe {
            asked,
            head_done: false,
            head: Vec::new(),
            reader: FlvReader::new(),
            started: false,
            last_video: None,
        }
    }

    fn feed(&mut self, mut chunk: &[u8], probed: &mut Probed) {
        if !self.head_done {
            self.head.extend_from_slice(chunk);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.head_done = true;
            let body = self.head.split_off(end + 4);
            self.reader.push(&body);
            chunk = &[];
        }
        self.reader.push(chunk);
        while let Ok(Some(tag)) = self.reader.next_tag() {
            if tag.kind != TagKind::Video || tag.is_sequence_header() {
                continue;
            }
            let now = Instant::now();
            if !self.started && tag.is_video_keyframe() {
                self.started = true;
                probed
                    .startup
                    .saturating_record(now.duration_since(self.asked).as_nanos() as u64);
            }
            if let Some(last) = self.last_video.replace(now) {
                if now.duration_since(last) > Duration::from_secs(1) {
                    probed.stalls += 1;
                }
            }
            if let Some(stamp) = sei::find_in_flv_video(&tag.data) {
                probed
                    .latency
                    .saturating_record(sei::now_unix_ns().saturating_sub(stamp).max(1_000));
            }
        }
    }
}

fn summarize(asked: usize, all: &[Rc<Viewer>], elapsed: Duration) -> PlaySummary {
    let mut per_viewer: Vec<u64> = all
        .iter()
        .filter(|v| v.started.get())
        .map(|v| v.bytes.get())
        .collect();
    per_viewer.sort_unstable();
    let median = per_viewer.get(per_viewer.len() / 2).copied().unwrap_or(0);
    let bytes: u64 = per_viewer.iter().sum();
    let seconds = elapsed.as_secs_f64();
    PlaySummary {
        viewers: asked,
        connected: per_viewer.len(),
        failed: all.iter().filter(|v| v.failed.get()).count(),
        ended_early: all.iter().filter(|v| v.ended.get()).count(),
        bytes,
        gbit_per_s: bytes as f64 * 8.0 / 1e9 / seconds.max(1e-3),
        latency: Percentiles::default(),
        startup: Percentiles::default(),
        stalls: 0,
        slowest_fraction: match (per_viewer.first(), median) {
            (Some(&least), m) if m > 0 => least as f64 / m as f64,
            _ => 0.0,
        },
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_slowest_fraction() {
        let make = |bytes: u64, started: bool, failed: bool, ended: bool| {
            let v = Viewer::default();
            v.bytes.set(bytes);
            v.started.set(started);
            v.failed.set(failed);
            v.ended.set(ended);
            Rc::new(v)
        };
        let all = vec![
            make(100, true, false, false),
            make(50, true, false, true),
            make(200, true, false, false),
            make(0, false, true, false),
        ];
        let s = summarize(5, &all, Duration::from_secs(2));
        assert_eq!(
            (s.viewers, s.connected, s.failed, s.ended_early),
            (5, 3, 1, 1)
        );
        assert_eq!(s.bytes, 350);
        assert!((s.slowest_fraction - 0.5).abs() < 1e-9);
        assert!((s.gbit_per_s - 350.0 * 8.0 / 1e9 / 2.0).abs() < 1e-12);
    }
}
