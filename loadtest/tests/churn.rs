//! Churn for a minute against an in-process corecast, in two rounds of 30 s: hundreds of
//! viewers joining and leaving over HTTP-FLV and RTMP while steady viewers watch. The steady
//! viewers are unaffected; after each round the viewers are gone from the server with their
//! descriptors, and the second round ends where the first did in memory (no growth per
//! round: what one round allocates is given back or reused).

mod common;

use common::{server, wait_until};
use corecast_load::play::{Interval, Observer};
use corecast_load::scenario::Scenario;
use std::time::{Duration, Instant};

struct Quiet;

impl Observer for Quiet {
    fn progress(&mut self, _: &str) {}
    fn interval(&mut self, _: Instant, _: Instant, _: &[Interval<'_>]) {}
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

const CHURN: &str = r#"
duration = "30s"
[generator]
window = "10s"
rcvlowat = 1
[[publish]]
prefix = "churn"
streams = 1
file = "../tests/fixtures/clip.flv"
[[viewers]]
name = "steady flv"
protocol = "flv"
stream = "live/churn0"
probes = 5
steps = [{ at = "0s", viewers = 50, rate = 500 }]
[[viewers]]
name = "steady rtmp"
protocol = "rtmp"
stream = "live/churn0"
probes = 5
steps = [{ at = "0s", viewers = 50, rate = 500 }]
[[viewers]]
name = "churn flv"
protocol = "flv"
stream = "live/churn0"
steps = [
    { at = "0s", viewers = 600, rate = 300 },
    { at = "6s", viewers = 100, rate = 300 },
    { at = "12s", viewers = 600, rate = 300 },
    { at = "18s", viewers = 100, rate = 300 },
    { at = "24s", viewers = 0, rate = 300 },
]
[[viewers]]
name = "churn rtmp"
protocol = "rtmp"
stream = "live/churn0"
steps = [
    { at = "3s", viewers = 400, rate = 200 },
    { at = "9s", viewers = 0, rate = 200 },
    { at = "15s", viewers = 400, rate = 200 },
    { at = "21s", viewers = 0, rate = 200 },
]
"#;

#[test]
fn a_minute_of_churn_leaves_steady_viewers_and_resources_alone() {
    let server = server();
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd");
    let fds_before = open_fds();
    let mut rss = Vec::new();
    for round in 0..2 {
        let mut scenario = Scenario::parse(CHURN).expect("scenario");
        scenario.prefix_streams(&format!("r{round}-"));
        scenario.target.rtmp = server.rtmp_addr();
        scenario.target.http = server.http_addr();
        let (summary, _, publishers) = scenario
            .prepare(false)
            .expect("prepare")
            .run(Quiet)
            .expect("run");
        for p in &publishers {
            assert!(p.error.is_none(), "{p:?}");
        }
        for g in &summary.groups {
            assert_eq!((g.failed, g.ended_early), (0, 0), "{g:?}");
            if g.name.starts_with("steady") {
                assert_eq!(g.windows_behind, 0, "{g:?}");
                assert!(g.windows >= 2, "{g:?}");
                assert_eq!((g.stalls, g.gaps), (0, 0), "{g:?}");
                assert!(g.latency.count > 0 && g.latency.p99_ms < 1_000.0, "{g:?}");
            } else {
                assert!(g.left >= 500, "viewers left during the churn: {g:?}");
            }
        }
        // Every viewer is gone from the server, and its descriptors with it.
        assert!(
            wait_until(Duration::from_secs(5), || {
                server
                    .stats()
                    .iter()
                    .map(|s| {
                        corecast::stats::get(&s.flv_viewers) + corecast::stats::get(&s.rtmp_players)
                    })
                    .sum::<u64>()
                    == 0
            }),
            "viewers left on the server after round {round}"
        );
        assert!(
            wait_until(Duration::from_secs(5), || open_fds() <= fds_before + 4),
            "descriptors after round {round}: {} (before: {fds_before})",
            open_fds()
        );
        rss.push(rss_kib());
    }
    eprintln!(
        "RSS after round 1: {} KiB, after round 2: {} KiB",
        rss[0], rss[1]
    );
    assert!(
        rss[1] < rss[0] + 16 * 1024,
        "memory grew from one round to the next: {} KiB -> {} KiB",
        rss[0],
        rss[1]
    );
    server.stop();
}
