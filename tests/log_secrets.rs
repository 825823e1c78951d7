//! Logs at every level, with credentials in use on every protocol: no key or token reaches
//! a log line, and client-supplied names cannot forge lines. (Its own test binary: it
//! installs the process-wide log subscriber.)

mod common;

use common::*;
use corecast::auth::{self, Action};
use corecast_testkit::client::{ClientError, PlayEvent, Player, Publisher};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "log-test-secret-0123456789";
const PUBLISH_KEY: &str = "pk-7f3a9c2e51";
const PLAY_KEY: &str = "vk-d41d8cd98f";

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn credentials_never_reach_the_logs() {
    let logs = Capture::default();
    let writer = logs.clone();
    // Everything the server logs, down to trace (the test's own RTMP clients excepted: they
    // are not the server, and log what the server sends them).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,corecast_testkit::client=off",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let server = start(&format!(
        "[hls]\ntarget_duration_ms = 1000\n[auth]\nsecret = \"{SECRET}\"\n\
         [auth.apps.live]\npublish = \"key\"\nplay = \"key_or_token\"\n\
         publish_keys = {{ \"*\" = \"{PUBLISH_KEY}\" }}\nplay_keys = {{ \"*\" = \"{PLAY_KEY}\" }}\n"
    ));
    let (rtmp, http) = (server.rtmp_addr(), server.http_addr());
    let timeout = Duration::from_secs(5);
    let token = auth::mint(SECRET, Action::Play, "live", "cam", auth::unix_now() + 600);
    let mac = token.split_once('.').expect("EXPIRY.MAC").1.to_string();

    let publisher =
        Publisher::connect(rtmp, "live", &format!("cam?key={PUBLISH_KEY}"), timeout).unwrap();
    let publishing = replay_in_background(publisher, 1, 1.0);
    assert!(wait_until(Duration::from_secs(5), || total(&server, |s| {
        &s.streams
    }) > 0));

    // Accepted: RTMP play with a token and with a key, HTTP-FLV, HLS playlist and segment.
    for query in [format!("token={token}"), format!("key={PLAY_KEY}")] {
        let mut player = Player::connect(rtmp, "live", &format!("cam?{query}"), timeout).unwrap();
        let video =
            (0..200).any(|_| matches!(player.next_event(), Ok(Some(PlayEvent::Video { .. }))));
        assert!(video, "the player with {query} plays");
    }
    let mut viewer = FlvViewer::open(http, &format!("/live/cam.flv?token={token}"));
    assert!(viewer.next_tag().is_some());
    drop(viewer);
    let mut segment = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let r = http_get(http, &format!("/live/cam.m3u8?token={token}"));
        let playlist = String::from_utf8_lossy(&r.body).to_string();
        segment = playlist
            .lines()
            .find(|l| l.ends_with(&format!(".ts?token={token}")))
            .map(str::to_string);
        segment.is_some()
    }));
    let segment = segment.expect("a segment URI");
    assert_eq!(http_get(http, &format!("/live/{segment}")).status, 200);

    // Refused: wrong credentials, and names that carry credentials and line breaks.
    let wrong = format!("{}.{mac}", auth::unix_now() + 1);
    let refused = [
        ("live", format!("cam?token={wrong}")),
        ("live", format!("cam?key={PUBLISH_KEY}x")),
        ("live", format!("a\nFORGED line?key={PLAY_KEY}")),
        ("live", format!("a/b?token={token}")),
    ];
    for (app, name) in &refused {
        let result = Player::connect(rtmp, app, name, timeout);
        assert!(
            matches!(result, Err(ClientError::Rejected { .. })),
            "{name:?}"
        );
    }
    let result = Publisher::connect(
        rtmp,
        "live",
        &format!("x\nFORGED?key={PUBLISH_KEY}"),
        timeout,
    );
    assert!(matches!(result, Err(ClientError::Rejected { .. })));
    assert_eq!(
        http_get(http, &format!("/live/a%0AFORGED.flv?key={PLAY_KEY}")).status,
        400
    );
    assert_eq!(
        http_get(http, &format!("/live/cam.flv?token={wrong}")).status,
        403
    );

    publishing.join().unwrap();
    server.stop();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    // The capture works at debug level, and the refusals were logged.
    assert!(text.contains("rtmp player start"), "{text}");
    assert!(text.contains("invalid name refused"), "{text}");
    assert!(text.contains("reason=\"bad_token\""), "{text}");
    for secret in [SECRET, PUBLISH_KEY, PLAY_KEY, mac.as_str()] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "a name forged a line:\n{text}"
    );
}
