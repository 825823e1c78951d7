//! Access control end to end: publish keys, play tokens on every protocol (RTMP, HTTP-FLV,
//! HLS playlists and their segments), clear refusals, and counters.

mod common;

use common::*;
use corecast::auth::{self, Action};
use corecast_testkit::client::{PlayEvent, Player, Publisher};
use std::time::Duration;

const SECRET: &str = "a-test-secret-of-some-length";

const CONFIG: &str = r#"
[hls]
target_duration_ms = 1000
[auth]
secret = "a-test-secret-of-some-length"
[auth.apps.live]
publish = "key"
play = "token"
publish_keys = { "*" = "pk-any", "studio" = "pk-studio" }
"#;

#[test]
fn publish_keys_and_play_tokens_guard_every_protocol() {
    let server = start(CONFIG);
    let (rtmp, http) = (server.rtmp_addr(), server.http_addr());
    let timeout = Duration::from_secs(5);

    // Publishing: no key, a wrong key, another stream's key: refused, clearly.
    for name in ["cam", "cam?key=nope", "studio?key=pk-any"] {
        let code = rejected_code(Publisher::connect(rtmp, "live", name, timeout));
        assert_eq!(code, "NetStream.Publish.Unauthorized", "{name}");
    }
    // Apps without a policy of their own keep the default: open.
    drop(Publisher::connect(rtmp, "open", "cam", timeout).expect("open app"));

    let publisher = Publisher::connect(rtmp, "live", "cam?key=pk-any", timeout).unwrap();
    let publishing = replay_in_background(publisher, 1, 1.0);

    let now = auth::unix_now();
    let token = auth::mint(SECRET, Action::Play, "live", "cam", now + 600);
    let expired = auth::mint(SECRET, Action::Play, "live", "cam", now - 1);
    let other_stream = auth::mint(SECRET, Action::Play, "live", "other", now + 600);
    let publish_token = auth::mint(SECRET, Action::Publish, "live", "cam", now + 600);

    // HTTP-FLV: 401 without credentials, 403 with wrong ones, 200 with the token.
    assert!(wait_until(Duration::from_secs(5), || server
        .stats()
        .iter()
        .any(|s| corecast::stats::get(&s.streams) > 0)));
    assert_eq!(http_get(http, "/live/cam.flv").status, 401);
    for bad in [&expired, &other_stream, &publish_token, &"1.00".to_string()] {
        assert_eq!(
            http_get(http, &format!("/live/cam.flv?token={bad}")).status,
            403,
            "{bad}"
        );
    }
    let mut viewer = FlvViewer::open(http, &format!("/live/cam.flv?token={token}"));
    assert_eq!(viewer.status, 200);
    assert!(viewer.next_tag().is_some(), "the viewer with a token plays");
    drop(viewer);

    // RTMP play: refused without a token, plays with one.
    let code = rejected_code(Player::connect(rtmp, "live", "cam", timeout));
    assert_eq!(code, "NetStream.Play.Unauthorized");
    let mut player = Player::connect(rtmp, "live", &format!("cam?token={token}"), timeout).unwrap();
    let got_video =
        (0..200).any(|_| matches!(player.next_event(), Ok(Some(PlayEvent::Video { .. }))));
    assert!(got_video, "the RTMP player with a token gets video");
    drop(player);

    // HLS: the playlist needs the token and hands it to every segment URI; a segment
    // without it is refused.
    let mut playlist = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = http_get(http, &format!("/live/cam.m3u8?token={token}"));
            playlist = String::from_utf8_lossy(&r.body).to_string();
            r.status == 200 && playlist.contains(".ts?token=")
        }),
        "{playlist}"
    );
    assert_eq!(http_get(http, "/live/cam.m3u8").status, 401);
    assert_eq!(
        http_get(http, &format!("/live/cam.m3u8?token={expired}")).status,
        403
    );
    let uri = playlist
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a segment");
    assert!(uri.ends_with(&format!("?token={token}")), "{uri}");
    let segment = http_get(http, &format!("/live/{uri}"));
    assert_eq!(segment.status, 200);
    // Protected responses are for the viewer's own cache only: a shared cache (a CDN)
    // would serve them without credentials, and the playlist carries the token. Segments
    // are kept for as long as a playlist can list them: (6 + 1) x 1 s.
    assert!(
        segment
            .head
            .contains("\r\nCache-Control: private, max-age=7, immutable\r\n"),
        "{}",
        segment.head
    );
    let listing = http_get(http, &format!("/live/cam.m3u8?token={token}"));
    assert!(
        listing
            .head
            .contains("\r\nCache-Control: private, no-cache\r\n"),
        "{}",
        listing.head
    );
    let bare = uri.split('?').next().unwrap();
    assert_eq!(http_get(http, &format!("/live/{bare}")).status, 401);
    assert_eq!(
        http_get(http, &format!("/live/{bare}?token={other_stream}")).status,
        403
    );

    publishing.join().unwrap();
    let total =
        |f: fn(&corecast::stats::ShardStats) -> &std::sync::atomic::AtomicU64| total(&server, f);
    assert_eq!(total(|s| &s.auth_rejected_publish), 3);
    // FLV: 1 + 4; RTMP: 1; HLS: 2 playlists + 2 segments.
    assert_eq!(total(|s| &s.auth_rejected_play), 10);
    server.stop();
}

#[test]
fn a_silent_publisher_is_taken_over_by_a_new_one_with_credentials() {
    let server = start(
        "[auth]\ntakeover_after_ms = 800\n[auth.apps.live]\npublish = \"key\"\n\
         publish_keys = { \"*\" = \"pk\" }\n",
    );
    let rtmp = server.rtmp_addr();
    let timeout = Duration::from_secs(5);
    let tags = fixture_tags();
    let mut stale = Publisher::connect(rtmp, "live", "cam?key=pk", timeout).unwrap();
    for tag in tags.iter().take(20) {
        stale.send_tag(tag).unwrap();
    }
    // While the first publisher is fresh, a second one is refused as before.
    let code = rejected_code(Publisher::connect(rtmp, "live", "cam?key=pk", timeout));
    assert_eq!(code, "NetStream.Publish.BadName");
    // Without credentials, no takeover at all. The first publisher's silence (longer than
    // takeover_after_ms) is the test.
    std::thread::sleep(Duration::from_millis(1000));
    let code = rejected_code(Publisher::connect(rtmp, "live", "cam", timeout));
    assert_eq!(code, "NetStream.Publish.Unauthorized");
    // Silent for longer than takeover_after_ms: a publisher with the key replaces it.
    let mut fresh = Publisher::connect(rtmp, "live", "cam?key=pk", timeout).unwrap();
    assert_eq!(total(&server, |s| &s.publishers_taken_over), 1);
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/cam.flv");
    for tag in tags.iter().take(60) {
        fresh.send_tag(tag).unwrap();
    }
    assert!(
        viewer.next_tag().is_some(),
        "viewers get the new publisher's stream"
    );
    // The old publisher's next media closes its connection.
    let closed = wait_until(Duration::from_secs(2), || {
        tags.iter().take(5).any(|t| stale.send_tag(t).is_err())
    });
    assert!(closed, "the replaced publisher is disconnected");
    assert_eq!(total(&server, |s| &s.publishers), 1);
    server.stop();
}

/// The name rule closes the gap between applications: `premium` + `a/b` and `premium/a` +
/// `b` would share the key `premium/a/b`, and `premium/a` has no policy of its own (open).
/// Both halves are refused before access control, and HTTP's percent-encoded spellings
/// name the same streams as RTMP.
#[test]
fn names_cannot_cross_applications() {
    let server = start(
        "[auth]\nsecret = \"a-test-secret-of-some-length\"\n[auth.apps.premium]\n\
         publish = \"key\"\nplay = \"token\"\npublish_keys = { \"*\" = \"pk\" }\n",
    );
    let (rtmp, http) = (server.rtmp_addr(), server.http_addr());
    let timeout = Duration::from_secs(5);

    // Refused at publish, even with the right key.
    let code = rejected_code(Publisher::connect(rtmp, "premium", "a/b?key=pk", timeout));
    assert_eq!(code, "NetStream.Publish.BadName");
    // And the other half: an application name with a `/` is refused at connect.
    let code = rejected_code(Player::connect(rtmp, "premium/a", "b", timeout));
    assert_eq!(code, "NetConnection.Connect.Rejected");
    let code = rejected_code(Publisher::connect(rtmp, "premium/a", "b", timeout));
    assert_eq!(code, "NetConnection.Connect.Rejected");
    // HTTP: `%2F` does not add a level, in the application or in the stream name.
    for path in [
        "/premium%2Fa/b.flv",
        "/premium/a%2Fb.flv",
        "/premium/a%2fb.m3u8",
    ] {
        assert_eq!(http_get(http, path).status, 400, "{path}");
    }
    assert_eq!(total(&server, |s| &s.names_rejected), 6);
    // Validation comes before access control: none of these reached it.
    assert_eq!(total(&server, |s| &s.auth_rejected_publish), 0);
    assert_eq!(total(&server, |s| &s.auth_rejected_play), 0);

    // `show%31` is `show1`, with the policy and the token of `premium/show1`.
    let publisher = Publisher::connect(rtmp, "premium", "show1?key=pk", timeout).unwrap();
    let publishing = replay_in_background(publisher, 1, 1.0);
    assert!(wait_until(Duration::from_secs(5), || total(&server, |s| {
        &s.streams
    }) > 0));
    let token = auth::mint(
        SECRET,
        Action::Play,
        "premium",
        "show1",
        auth::unix_now() + 600,
    );
    assert_eq!(http_get(http, "/premium/show%31.flv").status, 401);
    let mut viewer = FlvViewer::open(http, &format!("/prem%69um/show%31.flv?token={token}"));
    assert_eq!(viewer.status, 200);
    assert!(
        viewer.next_tag().is_some(),
        "the decoded name plays the stream"
    );
    drop(viewer);
    publishing.join().unwrap();
    server.stop();
}
