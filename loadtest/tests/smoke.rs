//! A 10-second scenario against an in-process corecast: a publisher, a few hundred viewers
//! over HTTP-FLV, RTMP and HLS (with a ramp step), no errors, full delivery in every window
//! and finite latencies.

mod common;

use common::server;
use corecast_load::play::{Interval, Observer};
use corecast_load::scenario::Scenario;
use std::time::Instant;

#[derive(Default)]
struct Seen {
    lines: usize,
    intervals: usize,
}

impl Observer for Seen {
    fn progress(&mut self, _: &str) {
        self.lines += 1;
    }
    fn interval(&mut self, _: Instant, _: Instant, intervals: &[Interval<'_>]) {
        self.intervals += intervals.iter().filter(|i| !i.latency.is_empty()).count();
    }
}

const SCENARIO: &str = r#"
duration = "10s"
[generator]
window = "3s"
# Count every byte as it arrives. A window's count still moves with how far behind the
# viewer is at its two edges, which a busy test machine changes by tens of ms: 5% of slack.
rcvlowat = 1
window_share = 0.95
[[publish]]
app = "live"
prefix = "smoke"
streams = 1
file = "../tests/fixtures/clip.flv"
[[viewers]]
protocol = "flv"
stream = "live/smoke0"
probes = 10
steps = [ { at = "0s", viewers = 100, rate = 500 }, { at = "4s", viewers = 200, rate = 500 } ]
[[viewers]]
protocol = "rtmp"
stream = "live/smoke0"
probes = 10
steps = [ { at = "0s", viewers = 150, rate = 500 } ]
[[viewers]]
protocol = "hls"
stream = "live/smoke0"
probes = 2
steps = [ { at = "0s", viewers = 6, rate = 100 } ]
"#;

#[test]
fn ten_second_scenario_has_no_errors_and_full_delivery() {
    let server = server();
    let mut scenario = Scenario::parse(SCENARIO).expect("scenario");
    scenario.target.rtmp = server.rtmp_addr();
    scenario.target.http = server.http_addr();
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd");
    let prepared = scenario.prepare(false).expect("prepare");
    let (summary, seen, publishers) = prepared.run(Seen::default()).expect("run");
    server.stop();

    assert!(seen.lines >= 9, "a progress line a second: {}", seen.lines);
    assert!(
        seen.intervals >= 9,
        "interval histograms: {}",
        seen.intervals
    );
    for p in &publishers {
        assert!(p.error.is_none(), "{p:?}");
    }
    assert!(summary.generator_cpu > 0.0, "{summary:?}");
    for g in &summary.groups {
        let peak = if g.protocol == "flv" { 200 } else { g.viewers };
        assert_eq!(g.connected, peak, "{}: {g:?}", g.name);
        assert_eq!((g.failed, g.ended_early, g.left), (0, 0, 0), "{g:?}");
        assert_eq!(g.stalls, 0, "{g:?}");
        // A finite latency histogram from the probes' SEI stamps.
        assert!(g.latency.count > 0, "{g:?}");
        assert!(
            g.latency.max_ms > 0.0 && g.latency.max_ms < 10_000.0,
            "{g:?}"
        );
        assert!(g.startup.count > 0, "{g:?}");
        assert_eq!(g.timeline.len(), summary.seconds.round() as usize, "{g:?}");
        if g.protocol == "hls" {
            let hls = g.hls.as_ref().expect("hls figures");
            assert!(hls.segments >= 6, "{hls:?}");
            assert_eq!((hls.errors, hls.not_found), (0, 0), "{hls:?}");
        } else {
            // Full delivery: every viewer got all that was published in every window.
            assert!(g.windows >= 2, "{g:?}");
            assert_eq!(g.windows_behind, 0, "{g:?}");
            assert!(g.worst_window_share >= 0.95, "{g:?}");
            assert_eq!(g.gaps, 0, "{g:?}");
            assert!(g.latency.p99_ms < 1_000.0, "{g:?}");
        }
    }
}
