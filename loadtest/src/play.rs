//! Cheap viewers: they join at a given rate, drain their stream and count bytes. One glommio
//! executor runs them all; a progress line per second and a summary at the end.

use corecast::client::cheap::{self, Protocol};
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
    let started = Instant::now();
    let deadline = started + plan.duration;
    let spawner = {
        let (plan, viewers) = (plan.clone(), viewers.clone());
        glommio::spawn_local(async move {
            let gap = Duration::from_secs_f64(1.0 / plan.join_rate.max(0.001));
            for i in 0..plan.viewers {
                if Instant::now() >= deadline {
                    break;
                }
                let viewer = Rc::new(Viewer::default());
                viewers.borrow_mut().push(viewer.clone());
                let plan = plan.clone();
                glommio::spawn_local(async move {
                    match cheap::start(plan.target, plan.protocol, &plan.app, &plan.stream).await {
                        Ok(mut s) => {
                            viewer.started.set(true);
                            let _ = cheap::drain(&mut s, |n| {
                                viewer.bytes.set(viewer.bytes.get() + n as u64)
                            })
                            .await;
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
    summarize(plan.viewers, &all, started.elapsed())
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
