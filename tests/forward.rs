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

/// The shipped RTMPS tunnel (`deploy/haproxy/rtmps-forward.cfg`) in front of an RTMPS
/// ingest: the file as shipped, its listening port and its server line (address, CA file,
/// name) pointed at a local RTMPS server, which another frontend of the same haproxy plays
/// (TLS in front of `ingest`'s RTMP port, with a certificate of the test CA when `trusted`,
/// else a self-signed one). The tunnel's port, and haproxy (killed when dropped).
fn rtmps_tunnel(
    ingest: std::net::SocketAddr,
    dir: &common::peers::TempDir,
    trusted: bool,
) -> (std::net::SocketAddr, common::Killed) {
    let [ca, good_cert, good_key, stranger, stranger_key] = common::tls::test_certificates(dir);
    let (cert, key) = match trusted {
        true => (good_cert, good_key),
        false => (stranger, stranger_key),
    };
    // haproxy takes the certificate and its key in one file.
    let combined = dir.join("ingest.pem");
    let pem = [&cert, &key].map(|p| std::fs::read_to_string(p).expect("pem"));
    std::fs::write(&combined, pem.concat()).expect("write");
    let (tunnel, tls) = (free_port(), free_port());
    let shipped = include_str!("../deploy/haproxy/rtmps-forward.cfg");
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "{from} is not in rtmps-forward.cfg");
        text.replace(from, to)
    };
    let conf = replace(
        shipped.to_string(),
        "bind 127.0.0.1:19360",
        &format!("bind 127.0.0.1:{tunnel}"),
    );
    let conf = replace(
        conf,
        "live-api-s.facebook.com:443",
        &format!("127.0.0.1:{tls}"),
    );
    let conf = replace(conf, "live-api-s.facebook.com", "localhost");
    let conf = replace(
        conf,
        "/etc/ssl/certs/ca-certificates.crt",
        &ca.display().to_string(),
    );
    // The platform's side: RTMPS in, RTMP to the ingest corecast.
    let conf = format!(
        "{conf}\nfrontend platform\n    bind 127.0.0.1:{tls} ssl crt {}\n    \
         default_backend platform_rtmp\n\nbackend platform_rtmp\n    server rtmp {ingest}\n",
        combined.display()
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, conf).expect("write");
    let haproxy = common::Killed(
        std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start haproxy"),
    );
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], tunnel));
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(at)
            .is_ok()),
        "haproxy listens"
    );
    (at, haproxy)
}

#[test]
fn a_stream_is_pushed_over_rtmps_through_the_shipped_haproxy_tunnel() {
    if !common::have_tool("haproxy") {
        return;
    }
    let ingest = start("");
    let dir = common::peers::TempDir::new("rtmps-forward");
    let (tunnel, _haproxy) = rtmps_tunnel(ingest.rtmp_addr(), &dir, true);
    let origin = start(&forward_to(tunnel));
    let publishing = publish_in_background(&origin, "fwd", 2, 1.0);
    wait_live(&origin, "/live/fwd.flv");
    // The stream crossed the tunnel and TLS, and plays at the far end from a keyframe.
    wait_live_at(ingest.http_addr(), "/relayed/fwd.flv");
    let mut viewer = FlvViewer::open(ingest.http_addr(), "/relayed/fwd.flv");
    let tags = viewer.read_all(Duration::from_secs(3));
    assert!(tags.len() > 30, "{} tags through the tunnel", tags.len());
    assert_decodable_start(&tags);
    assert!(
        wait_until(WAIT, || forward_state(&origin, "fwd")["state"]
            == "publishing"),
        "{}",
        forward_state(&origin, "fwd")
    );
    assert_eq!(total(&origin, |s| &s.forward_failures), 0);
    publishing.join().unwrap();
    origin.stop();
    ingest.stop();
}

#[test]
fn the_rtmps_tunnel_refuses_an_ingest_it_cannot_verify() {
    if !common::have_tool("haproxy") {
        return;
    }
    let ingest = start("");
    let dir = common::peers::TempDir::new("rtmps-untrusted");
    let (tunnel, _haproxy) = rtmps_tunnel(ingest.rtmp_addr(), &dir, false);
    let origin = start(&forward_to(tunnel));
    let publishing = publish_in_background(&origin, "fwd", 1, 1.0);
    wait_live(&origin, "/live/fwd.flv");
    // haproxy closes the connection after the failed handshake: a failed target, tried again.
    assert!(
        wait_until(WAIT, || total(&origin, |s| &s.forward_failures) >= 2),
        "{}",
        forward_state(&origin, "fwd")
    );
    assert_eq!(total(&origin, |s| &s.forward_sessions), 0);
    let head = http_get(ingest.http_addr(), "/relayed/fwd.flv");
    assert_eq!(head.status, 404, "nothing reached the ingest");
    publishing.join().unwrap();
    origin.stop();
    ingest.stop();
}
