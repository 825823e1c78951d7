//! Restreaming (`[[forward]]`): a stream published to one corecast is pushed to another, whose
//! viewers get a decodable stream; a target that cannot be reached is retried and costs the
//! local stream nothing.

mod common;

use common::{
    assert_decodable_start, free_port, publish_in_background, start, total, wait_live,
    wait_live_at, wait_until, FlvViewer, WAIT,
};
use std::time::Duration;

fn forward_to(rtmp: std::net::SocketAddr) -> String {
    format!("[[forward]]\napp = \"live\"\nurl = \"rtmp://{rtmp}/relayed/{{stream}}\"\n")
}

#[test]
fn a_published_stream_is_pushed_to_the_target_and_plays_there() {
    let target = start("");
    let origin = start(&forward_to(target.rtmp_addr()));
    let publishing = publish_in_background(&origin, "fwd", 2, 1.0);
    wait_live(&origin, "/live/fwd.flv");
    // The stream reached the target under its mapped name, from a keyframe on.
    wait_live_at(target.http_addr(), "/relayed/fwd.flv");
    let mut viewer = FlvViewer::open(target.http_addr(), "/relayed/fwd.flv");
    let tags = viewer.read_all(Duration::from_secs(3));
    assert!(tags.len() > 30, "{} tags through the forward", tags.len());
    assert_decodable_start(&tags);
    assert_eq!(total(&origin, |s| &s.forward_sessions), 1);
    assert_eq!(total(&origin, |s| &s.forwards_active), 1);
    assert_eq!(total(&origin, |s| &s.forward_failures), 0);
    publishing.join().unwrap();
    // The stream ended at the origin: the push ends with it.
    assert!(wait_until(WAIT, || total(&origin, |s| &s.forwards_active) == 0));
    origin.stop();
    target.stop();
}

#[test]
fn an_unreachable_target_is_retried_and_the_stream_plays_on() {
    // Nothing listens there.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let origin = start(&forward_to(dead));
    let publishing = publish_in_background(&origin, "alone", 2, 1.0);
    wait_live(&origin, "/live/alone.flv");
    let mut viewer = FlvViewer::open(origin.http_addr(), "/live/alone.flv");
    let tags = viewer.read_all(Duration::from_secs(4));
    assert!(tags.len() > 60, "{} tags", tags.len());
    assert_decodable_start(&tags);
    // Tried at once, then after 1 s and 2 s.
    assert!(wait_until(WAIT, || total(&origin, |s| &s.forward_failures) >= 2));
    assert_eq!(total(&origin, |s| &s.forward_sessions), 0);
    publishing.join().unwrap();
    origin.stop();
}
