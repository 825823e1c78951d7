//! Restreaming (`[[forward]]`): a stream published to one corecast is pushed to another, whose
//! viewers get a decodable stream; a target that cannot be reached is retried and costs the
//! local stream nothing.

mod common;

use common::{
    assert_decodable_start, free_port, http_get, publish_in_background, start, total, wait_live,
    wait_live_at, wait_until, FlvViewer, WAIT,
};
use std::time::Duration;

/// A `[[forward]]` rule to the RTMP server at `rtmp` (an address, or a name and port).
fn forward_to(rtmp: impl std::fmt::Display) -> String {
    format!("[[forward]]\napp = \"live\"\nurl = \"rtmp://{rtmp}/relayed/{{stream}}?key=s3cret\"\n")
}

/// The stream's one `[[forward]]` target as the API shows it (`Null` before the report).
fn forward_state(server: &corecast::Server, name: &str) -> serde_json::Value {
    let body = http_get(server.http_addr(), &format!("/api/v1/streams/live/{name}")).body;
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let forwards = view["forwards"].as_array().cloned().unwrap_or_default();
    assert!(forwards.len() <= 1, "{forwards:?}");
    forwards.into_iter().next().unwrap_or_default()
}

#[test]
fn a_published_stream_is_pushed_to_the_target_and_plays_there() {
    let target = start("");
    // The target by name: resolved when the push connects.
    let by_name = format!("localhost:{}", target.rtmp_addr().port());
    let origin = start(&forward_to(&by_name));
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
    // The API shows the target publishing, its URL without the key.
    let shown = format!("rtmp://{by_name}/relayed/fwd");
    assert!(
        wait_until(WAIT, || forward_state(&origin, "fwd")["state"]
            == "publishing"),
        "{}",
        forward_state(&origin, "fwd")
    );
    let state = forward_state(&origin, "fwd");
    assert_eq!(state["target"], shown.as_str(), "{state}");
    assert_eq!(state["sessions"], 1, "{state}");
    assert_eq!(state["failures"], 0, "{state}");
    assert!(state["last_error"].is_null(), "{state}");
    assert!(!state.to_string().contains("s3cret"), "{state}");
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
    // Between tries it waits, which the gauge counts and the API explains.
    assert!(wait_until(WAIT, || total(&origin, |s| &s.forwards_waiting) == 1));
    assert!(
        wait_until(WAIT, || {
            let state = forward_state(&origin, "alone");
            state["state"] == "waiting" && state["failures"].as_u64() >= Some(2)
        }),
        "{}",
        forward_state(&origin, "alone")
    );
    let state = forward_state(&origin, "alone");
    assert_eq!(state["sessions"], 0, "{state}");
    let error = state["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("refused"), "{state}");
    publishing.join().unwrap();
    origin.stop();
}
