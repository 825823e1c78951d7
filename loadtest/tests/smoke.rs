//! A short run against an in-process corecast: publishers and a few hundred cheap viewers of
//! each protocol, with no errors and every viewer receiving the stream.

use corecast::client::cheap::Protocol;
use corecast_load::play::{self, PlayPlan};
use corecast_load::publish;
use glommio::{LocalExecutorBuilder, Placement};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn server() -> corecast::Server {
    let config = corecast::Config::overlay(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"\"\n",
        "smoke",
    )
    .expect("config");
    corecast::Server::start(config).expect("server")
}

fn run_viewers(plan: PlayPlan) -> play::PlaySummary {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || play::run(plan, |_| {}))
        .expect("executor")
        .join()
        .expect("run")
}

#[test]
fn short_run_has_no_errors_and_full_delivery() {
    let server = server();
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/clip.flv");
    let (_, tags) = corecast::flv::reader::read_file(clip).expect("fixture");
    let publishers = publish::spawn(
        server.rtmp_addr(),
        "live",
        "smoke",
        2,
        Arc::new(tags),
        Duration::from_secs(7),
    );
    std::thread::sleep(Duration::from_millis(700));
    for (protocol, target) in [
        (Protocol::Flv, server.http_addr()),
        (Protocol::Rtmp, server.rtmp_addr()),
    ] {
        let summary = run_viewers(PlayPlan {
            target,
            protocol,
            app: "live".into(),
            stream: "smoke0".into(),
            viewers: 200,
            join_rate: 1000.0,
            duration: Duration::from_secs(2),
            probes: 20,
        });
        assert_eq!(summary.connected, 200, "{protocol:?}: {summary:?}");
        assert_eq!((summary.failed, summary.ended_early), (0, 0), "{summary:?}");
        // Every viewer got the GOP cache and live data: at 250 kbit/s, 2 s is about 60 KB.
        assert!(summary.slowest_fraction > 0.5, "{protocol:?}: {summary:?}");
        assert!(summary.bytes > 200 * 20_000, "{protocol:?}: {summary:?}");
        if protocol == Protocol::Flv {
            // Probes saw stamped frames, with a finite latency, and started at a keyframe.
            assert!(summary.latency.count > 100, "{summary:?}");
            assert!(
                summary.latency.max_ms > 0.0 && summary.latency.max_ms < 5_000.0,
                "{summary:?}"
            );
            assert_eq!(summary.startup.count, 20, "{summary:?}");
            assert_eq!(summary.stalls, 0, "{summary:?}");
        }
    }
    for handle in publishers {
        let report = handle.join().unwrap();
        assert!(report.error.is_none(), "{report:?}");
        assert!(report.loops >= 1, "{report:?}");
    }
    server.stop();
}
