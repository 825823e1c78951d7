//! A viewer group spread over several servers (the edges of one origin): viewers go to each
//! in turn, and every one plays.

mod common;

use common::server;
use corecast::stats;
use corecast_load::play::{Interval, Observer};
use corecast_load::publish;
use corecast_load::scenario::Scenario;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;

impl Observer for Quiet {
    fn progress(&mut self, _: &str) {}
    fn interval(&mut self, _: Instant, _: Instant, _: &[Interval<'_>]) {}
}

#[test]
fn viewers_are_spread_over_the_targets_in_turn() {
    let (first, second) = (server(), server());
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd");
    // The scenario publishes to the first; the second gets the same stream from here.
    let clip = std::path::PathBuf::from("../tests/fixtures/clip.flv");
    let (_, tags) = corecast::flv::reader::read_file(&clip).expect("fixture");
    let _second_publisher = publish::spawn(
        second.rtmp_addr(),
        "live",
        "edge",
        1,
        Arc::new(tags),
        Duration::from_secs(8),
    );
    let text = format!(
        "duration = \"4s\"\n[generator]\nwarmup = \"1s\"\n\
         [[publish]]\napp = \"live\"\nprefix = \"edge\"\nstreams = 1\n\
         file = \"../tests/fixtures/clip.flv\"\n\
         [[viewers]]\nprotocol = \"flv\"\nstream = \"live/edge0\"\n\
         targets = [\"{}\", \"{}\"]\n\
         steps = [ {{ at = \"0s\", viewers = 20, rate = 200 }} ]\n",
        first.http_addr(),
        second.http_addr()
    );
    let mut scenario = Scenario::parse(&text).expect("scenario");
    scenario.target.rtmp = first.rtmp_addr();
    scenario.target.http = first.http_addr();
    let prepared = scenario.prepare(false).expect("prepare");
    let (summary, _, _) = prepared.run(Quiet).expect("run");
    let started =
        |server: &corecast::Server| stats::total(server.stats(), |s| &s.flv_viewers_total);
    let group = &summary.groups[0];
    assert_eq!(group.connected, 20, "{group:?}");
    assert_eq!((group.failed, group.ended_early), (0, 0), "{group:?}");
    // Ten each, in turn.
    assert_eq!((started(&first), started(&second)), (10, 10));
    first.stop();
    second.stop();
}
