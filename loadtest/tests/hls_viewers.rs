//! HLS viewers against an in-process corecast: a publisher replays the fixture (1 s GOPs) into
//! 1 s segments, and a few viewers, two of them probes, play the live playlist for six
//! seconds with no errors, finite latency from the SEI stamps, and a recorded startup.

mod common;

use common::server;
use corecast_load::hls::{self, HlsOptions, HlsStart, HlsStats};
use corecast_load::publish;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIEWERS: usize = 5;
const PROBES: usize = 2;

/// The playlist's text (`None` unless 200).
fn playlist(addr: SocketAddr, path: &str) -> Option<String> {
    let (head, body) = common::get(addr, path);
    head.starts_with("HTTP/1.1 200").then_some(body)
}

/// Viewers of `live/hls0` for `seconds`: the stats of the probes and of the others, and the
/// segment bytes each viewer counted.
fn run_viewers(addr: SocketAddr, seconds: u64) -> (HlsStats, HlsStats, Vec<u64>) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let probes = Rc::new(RefCell::new(HlsStats::default()));
            let viewers = Rc::new(RefCell::new(HlsStats::default()));
            let tasks: Vec<_> = (0..VIEWERS)
                .map(|i| {
                    let probe = i < PROBES;
                    let stats = if probe { &probes } else { &viewers }.clone();
                    let options = HlsOptions {
                        start: if i % 2 == 0 {
                            HlsStart::default()
                        } else {
                            HlsStart::LiveEdge
                        },
                        stall: Duration::from_secs(4),
                        probe,
                    };
                    glommio::spawn_local(async move {
                        let bytes = Cell::new(0u64);
                        let count = |n: usize| bytes.set(bytes.get() + n as u64);
                        hls::view(addr, "live", "hls0", &options, deadline, &count, &stats)
                            .await
                            .expect("viewer starts");
                        bytes.get()
                    })
                })
                .collect();
            let mut bytes = Vec::new();
            for task in tasks {
                bytes.push(task.await);
            }
            let probes = probes.borrow().clone();
            let viewers = viewers.borrow().clone();
            (probes, viewers, bytes)
        })
        .expect("executor")
        .join()
        .expect("run")
}

#[test]
fn hls_viewers_play_the_live_playlist() {
    let server = server();
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/clip.flv");
    let (_, tags) = corecast::flv::reader::read_file(clip).expect("fixture");
    // Runs past the viewers; its thread ends on its own when the server stops.
    let _publisher = publish::spawn(
        server.rtmp_addr(),
        "live",
        "hls",
        1,
        Arc::new(tags),
        Duration::from_secs(14),
    );
    // Wait for three segments, so that every viewer starts where it asks to.
    let waited = Instant::now();
    while playlist(server.http_addr(), "/live/hls0.m3u8")
        .is_none_or(|p| p.matches("#EXTINF").count() < 3)
    {
        assert!(
            waited.elapsed() < Duration::from_secs(8),
            "no playlist with three segments"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (probes, viewers, bytes) = run_viewers(server.http_addr(), 6);
    let mut all = HlsStats::default();
    all.merge(&probes);
    all.merge(&viewers);

    // Every viewer got its start segments (three back for viewers 0, 2 and 4, one for the
    // others) and a new one about every second (the fixture's loop point makes a 2 s one):
    // at least two more each, even on a slow machine.
    assert!(
        all.segments >= 3 * 3 + 2 + 2 * 5,
        "segments {}",
        all.segments
    );
    assert!(bytes.iter().all(|&b| b > 10_000), "{bytes:?}");
    assert_eq!(
        (all.errors, all.not_found, all.stalls, all.skipped),
        (0, 0, 0, 0),
        "{all:?}"
    );
    // A reload a second (the target duration) for six seconds.
    assert!(all.playlists >= VIEWERS as u64 * 4, "{}", all.playlists);
    assert_eq!(all.request.len(), all.playlists + all.segments);
    assert_eq!(all.startup.len(), VIEWERS as u64);
    assert!(
        all.startup.max() < 5_000_000_000,
        "startup {} ns",
        all.startup.max()
    );

    // Probes read the stamps of every frame: 25 a second.
    assert!(
        probes.frame_latency.len() >= probes.segments * 20,
        "{} stamps in {} segments",
        probes.frame_latency.len(),
        probes.segments
    );
    assert_eq!(probes.segment_latency.len(), probes.segments);
    // A frame waits at most for its segment to close (1 s) and a reload (0.5 s) after a
    // live viewer joined; the start segments are older, by up to three segments.
    let latency_ms = probes.frame_latency.max() / 1_000_000;
    assert!(
        latency_ms > 0 && latency_ms < 10_000,
        "frame latency {latency_ms} ms"
    );
    assert!(
        probes.segment_latency.value_at_quantile(0.5) < 3_000_000_000,
        "median segment latency {} ns",
        probes.segment_latency.value_at_quantile(0.5)
    );
    assert!(viewers.frame_latency.is_empty(), "only probes parse");
    server.stop();
}
