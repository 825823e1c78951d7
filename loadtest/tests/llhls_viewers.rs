//! LL-HLS viewers against an in-process corecast (1 s segments, 250 ms parts): a publisher
//! replays the fixture (1 s GOPs) for twelve seconds, 50 viewers and 2 probes play the live
//! playlist with blocking reloads until the stream ends, and each of them is released by
//! `EXT-X-ENDLIST`; then viewers of a protected stream, with a play token.

mod common;

use common::server_with;
use corecast_load::llhls::{self, LlOptions, LlStats};
use corecast_load::publish;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 250 ms parts (1 s segments are the common server's), every segment of the run kept; a
/// stream ends 1.5 s after its publisher left (the default republish grace of 10 s would
/// hold the viewers' last blocking reloads past their three target durations: 503s).
const LL: &str =
    "part_target_ms = 250\nwindow_segments = 20\n[stream]\nrepublish_grace_ms = 1500\n";

/// The counters of `s`, for assertion messages (the histograms only by their counts).
fn brief(s: &LlStats) -> String {
    format!(
        "playlists {} reloads {} parts {} (joined {}) maps {} bytes {} 404 {} 503 {} errors {} \
         invalid {} unreadable {} stalls {} resyncs {} ended {}",
        s.playlists,
        s.reload.len(),
        s.parts,
        s.joined_parts,
        s.maps,
        s.bytes,
        s.not_found,
        s.unavailable,
        s.errors,
        s.invalid_playlists,
        s.unreadable,
        s.stalls,
        s.resyncs,
        s.ended
    )
}

/// What one viewer did: whether it started, its stats, the part bytes it counted, and how
/// long it ran.
struct Viewed {
    started: bool,
    stats: LlStats,
    bytes: u64,
    ran: Duration,
}

/// `viewers` LL-HLS viewers of `live/{stream}` (the first `probes` of them probes), each
/// with its own stats, until the stream ends or `seconds` pass.
fn run_viewers(
    addr: SocketAddr,
    stream: &'static str,
    viewers: usize,
    probes: usize,
    query: Option<String>,
    seconds: u64,
) -> Vec<Viewed> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let tasks: Vec<_> = (0..viewers)
                .map(|i| {
                    let options = LlOptions {
                        stall: Duration::from_secs(2),
                        probe: i < probes,
                        query: query.clone(),
                    };
                    glommio::spawn_local(async move {
                        let stats = RefCell::new(LlStats::default());
                        let bytes = Cell::new(0u64);
                        let count = |n: usize| bytes.set(bytes.get() + n as u64);
                        let started = Instant::now();
                        let result =
                            llhls::view(addr, "live", stream, &options, deadline, &count, &stats)
                                .await;
                        Viewed {
                            started: result.is_ok(),
                            stats: stats.into_inner(),
                            bytes: bytes.get(),
                            ran: started.elapsed(),
                        }
                    })
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await);
            }
            out
        })
        .expect("executor")
        .join()
        .expect("run")
}

/// The fixture's tags.
fn clip() -> Vec<corecast::flv::reader::FlvTag> {
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/clip.flv");
    corecast::flv::reader::read_file(clip).expect("fixture").1
}

/// Waits until `path` answers 200 (the first request starts the stream's LL-HLS).
fn wait_ready(addr: SocketAddr, path: &str) {
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            common::get(addr, path).0.starts_with("HTTP/1.1 200")
        }),
        "no LL-HLS playlist at {path}"
    );
}

#[test]
fn ll_hls_viewers_follow_the_live_edge_until_the_stream_ends() {
    const VIEWERS: usize = 52;
    const PROBES: usize = 2;
    let server = server_with(LL);
    let addr = server.http_addr();
    let publisher = publish::spawn(
        server.rtmp_addr(),
        "live",
        "ll",
        1,
        Arc::new(clip()),
        Duration::from_secs(12),
    );
    wait_ready(addr, "/live/ll0/ll.m3u8");

    // The stream ends about ten seconds from here (its publisher's twelve, and a grace for
    // a republish): far before the viewers' deadline.
    let limit = Duration::from_secs(40);
    let viewed = run_viewers(addr, "ll0", VIEWERS, PROBES, None, limit.as_secs());
    let reports = publisher.join();
    assert!(
        reports.iter().all(|r| r.error.is_none()),
        "publisher failed"
    );

    let mut all = LlStats::default();
    let mut probes = LlStats::default();
    for (i, v) in viewed.iter().enumerate() {
        let s = &v.stats;
        assert!(v.started, "viewer {i} could not start");
        // Released by EXT-X-ENDLIST, not by the deadline.
        assert_eq!(s.ended, 1, "viewer {i}: {}", brief(s));
        assert!(
            v.ran < limit - Duration::from_secs(5),
            "viewer {i} ran {:?}",
            v.ran
        );
        // Four parts a second for about eight seconds: at least half of that, even on a
        // slow machine; one map; no failure of any kind.
        assert!(s.parts >= 16, "viewer {i}: {} parts", s.parts);
        assert_eq!(s.maps, 1, "viewer {i}");
        assert_eq!(
            (s.errors, s.not_found, s.unavailable, s.invalid_playlists),
            (0, 0, 0, 0),
            "viewer {i}: {}",
            brief(s)
        );
        assert_eq!((s.unreadable, s.resyncs), (0, 0), "viewer {i}");
        assert_eq!(
            s.bytes, v.bytes,
            "viewer {i}: the bytes counted are the parts' and map's"
        );
        assert!(v.bytes > 100_000, "viewer {i}: {} bytes", v.bytes);
        // One blocking reload per part after the first playlist, give or take the ones that
        // brought two parts at once.
        assert!(s.reload.len() * 2 >= s.parts, "viewer {i}: {}", brief(s));
        all.merge(s);
        if i < PROBES {
            probes.merge(s);
        }
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    eprintln!(
        "{VIEWERS} LL-HLS viewers: {} parts, stalls {}; blocking reload p50 {:.0} ms p99 {:.0} ms \
         max {:.0} ms; latency by program dates p50 {:.0} ms p99 {:.0} ms; probes' part \
         latency (SEI) p50 {:.0} ms p99 {:.0} ms; startup p99 {:.0} ms",
        all.parts,
        all.stalls,
        ms(all.reload.value_at_quantile(0.5)),
        ms(all.reload.value_at_quantile(0.99)),
        ms(all.reload.max()),
        ms(all.date_latency.value_at_quantile(0.5)),
        ms(all.date_latency.value_at_quantile(0.99)),
        ms(probes.part_latency.value_at_quantile(0.5)),
        ms(probes.part_latency.value_at_quantile(0.99)),
        ms(all.startup.value_at_quantile(0.99)),
    );
    // A held reload is answered when the next part is complete: about a part (250 ms) after
    // the last one arrived. Lenient for a shared two-core machine.
    let reload_p50 = all.reload.value_at_quantile(0.5);
    assert!(
        reload_p50 > 20_000_000 && reload_p50 < 500_000_000,
        "blocking reload p50 {} ms",
        ms(reload_p50)
    );
    // Viewers fetch parts as they come: by the program dates (the server's clock, which is
    // ours), a part arrives well within a second of its end. The parts of a join (from the
    // segment's first part: up to a second old) are left out.
    assert!(all.joined_parts >= VIEWERS as u64, "{}", brief(&all));
    assert_eq!(all.date_latency.len(), all.parts - all.joined_parts);
    let date_p50 = all.date_latency.value_at_quantile(0.5);
    assert!(
        date_p50 < 1_000_000_000,
        "date latency p50 {} ms",
        ms(date_p50)
    );
    assert_eq!(all.startup.len(), VIEWERS as u64);
    assert!(
        all.startup.max() < 5_000_000_000,
        "startup {} ms",
        ms(all.startup.max())
    );
    // Probes read the publisher's stamp of every video frame: 25 a second, about six a part.
    assert!(
        probes.frame_latency.len() >= (probes.parts - probes.joined_parts) * 4,
        "{} stamps in {} parts",
        probes.frame_latency.len(),
        probes.parts
    );
    assert!(probes.part_latency.len() + 2 >= probes.parts - probes.joined_parts);
    let part_max = probes.part_latency.max();
    assert!(
        part_max > 0 && part_max < 5_000_000_000,
        "probes' part latency max {} ms",
        ms(part_max)
    );
    let others: u64 = viewed[PROBES..]
        .iter()
        .map(|v| v.stats.frame_latency.len())
        .sum();
    assert_eq!(others, 0, "only probes read the parts");
    server.stop();
}

#[test]
fn ll_hls_viewers_of_a_protected_stream_carry_the_token() {
    use corecast::auth::{self, Action};
    const SECRET: &str = "a-test-secret-of-some-length";
    let server = server_with(&format!(
        "{LL}[auth]\nsecret = \"{SECRET}\"\n[auth.apps.live]\nplay = \"token\"\n"
    ));
    let addr = server.http_addr();
    let _publisher = publish::spawn(
        server.rtmp_addr(),
        "live",
        "safe",
        1,
        Arc::new(clip()),
        Duration::from_secs(10),
    );
    let token = auth::mint(
        SECRET,
        Action::Play,
        "live",
        "safe0",
        auth::unix_now() + 600,
    );
    let query = format!("token={token}");
    wait_ready(addr, &format!("/live/safe0/ll.m3u8?{query}"));

    let viewed = run_viewers(addr, "safe0", 3, 1, Some(query), 4);
    for (i, v) in viewed.iter().enumerate() {
        let s = &v.stats;
        assert!(v.started, "viewer {i}");
        // The token went into every part, map and reload request: nothing was refused.
        assert!(
            s.parts >= 4 && s.reload.len() >= 4,
            "viewer {i}: {}",
            brief(s)
        );
        assert_eq!(s.maps, 1, "viewer {i}");
        assert_eq!(
            (s.errors, s.not_found, s.invalid_playlists),
            (0, 0, 0),
            "viewer {i}"
        );
    }
    assert!(
        !viewed[0].stats.frame_latency.is_empty(),
        "the probe read its parts"
    );
    // Without the token, a viewer cannot start (401), and records nothing.
    let refused = run_viewers(addr, "safe0", 1, 0, None, 4);
    assert!(!refused[0].started);
    assert_eq!(refused[0].stats.playlists, 0);
    server.stop();
}
