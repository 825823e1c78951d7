//! Configuration reloads of the running binary: `SIGHUP` and `POST /api/v1/reload` apply a
//! changed file without a gap for the viewers of a live stream, refuse what needs a
//! restart, and leave a bad file without effect.

mod common;

use bytes::Bytes;
use common::{config_file, is_contiguous_run, is_media, replay_in_background, serve_file};
use common::{FlvViewer, Serving};
use corecast_testkit::client::Publisher;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const VIEWERS: usize = 300;
const RELOADS: u64 = 10;

/// The test's configuration: two shards on free ports, `extra` appended. The slow-viewer
/// policy gives 300 viewer threads on a busy machine time to keep up: what is checked is
/// that the reloads make no gap.
fn config(extra: &str) -> String {
    format!(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[stream]\nrepublish_grace_ms = 500\n{extra}"
    )
}

/// The viewer settings of each reload: the send window alternates (applied at once), the
/// slow-viewer policy is generous.
fn viewer(merge_window_ms: u64) -> String {
    format!(
        "[viewer]\nmerge_window_ms = {merge_window_ms}\nskip_after_ms = 8000\n\
         disconnect_after_ms = 15000\n"
    )
}

/// Rewrites the configuration file in one step (a reload never reads half a file).
fn rewrite(file: &Path, text: &str) {
    let staged = file.with_extension("new");
    std::fs::write(&staged, format!("[log]\nformat = \"json\"\n{text}")).unwrap();
    std::fs::rename(&staged, file).unwrap();
}

/// The sum of the `/metrics` samples whose series starts with `series` (e.g.
/// `corecast_config_reloads_total{result="applied"}`), asked with the admin `token` if any.
fn metric(serving: &Serving, series: &str, token: Option<&str>) -> u64 {
    let values = common::samples(serving.admin, token, series);
    values.iter().map(|(_, value)| *value as u64).sum()
}

/// A viewer reading `/live/{name}.flv` on its own thread until the response ends; returns
/// the media payloads it got and the longest time between two of them.
fn view(http: std::net::SocketAddr, name: &str) -> JoinHandle<(Vec<Bytes>, Duration)> {
    let path = format!("/live/{name}.flv");
    let mut viewer = FlvViewer::open(http, &path);
    assert_eq!(viewer.status, 200, "GET {path}");
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let (mut last, mut longest) = (None::<Instant>, Duration::ZERO);
        while let Some(tag) = viewer.next_tag() {
            if is_media(&tag) {
                let now = Instant::now();
                if let Some(last) = last {
                    longest = longest.max(now - last);
                }
                last = Some(now);
                got.push(tag.data);
            }
        }
        (got, longest)
    })
}

#[test]
fn viewers_see_no_gap_through_ten_reloads_and_a_changed_key_applies_to_the_next_publisher() {
    let file = config_file("reload", &config(&viewer(20)));
    let (child, serving) = serve_file(&file, &[]).expect("serves");
    let pid = child.0.id().to_string();

    let publisher =
        Publisher::connect(serving.rtmp, "live", "show", Duration::from_secs(5)).expect("publish");
    let sent = replay_in_background(publisher, 2, 1.0);
    common::wait_live_at(serving.http, "/live/show.flv");
    let viewers: Vec<_> = (0..VIEWERS).map(|_| view(serving.http, "show")).collect();

    // Ten reloads by SIGHUP, half a second apart, each changing a key that applies at once
    // (the send schedule); the last also requires a key of publishers.
    for i in 1..=RELOADS {
        let mut extra = viewer(20 + 10 * (i % 2));
        if i == RELOADS {
            extra.push_str(
                "[auth]\npublish = \"key\"\npublish_keys = { \"*\" = \"k-0123456789\" }\n",
            );
        }
        rewrite(&file, &config(&extra));
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
        let applied = "corecast_config_reloads_total{result=\"applied\"}";
        assert!(
            common::wait_until(Duration::from_secs(5), || metric(&serving, applied, None)
                == i),
            "reload {i} not applied"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The next publisher needs the key now; the running one goes on.
    let refused = Publisher::connect(serving.rtmp, "live", "other", Duration::from_secs(5));
    assert!(refused.is_err(), "a publisher without the key was accepted");
    let keyed = Publisher::connect(
        serving.rtmp,
        "live",
        "other?key=k-0123456789",
        Duration::from_secs(5),
    );
    keyed.expect("a publisher with the key").finish().unwrap();

    let sent = sent.join().expect("the publisher");
    for (i, viewer) in viewers.into_iter().enumerate() {
        let (got, longest) = viewer.join().expect("a viewer");
        assert!(got.len() > 100, "viewer {i} got {} frames", got.len());
        assert!(
            is_contiguous_run(&sent, &got),
            "viewer {i}: {} frames, not a contiguous run of the {} sent",
            got.len(),
            sent.len()
        );
        assert!(
            longest < Duration::from_millis(1_000),
            "viewer {i} waited {longest:?} between two frames"
        );
    }
    assert_eq!(metric(&serving, "corecast_frames_skipped_total", None), 0);
    assert_eq!(
        metric(&serving, "corecast_viewers_disconnected_slow_total", None),
        0
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn the_api_reloads_and_refuses_restarts_and_bad_files_without_effect() {
    let token = "admin-token-0123456789";
    let text = |extra: &str| {
        format!(
            "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n{extra}"
        )
    };
    let file = config_file("api-reload", &text(""));
    let (_child, serving) = serve_file(&file, &[]).expect("serves");
    let post = |auth: bool| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(serving.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let header = if auth {
            format!("Authorization: Bearer {token}\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "POST /api/v1/reload HTTP/1.1\r\nHost: t\r\n{header}Content-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(
        post(false).starts_with("HTTP/1.1 401"),
        "a reload without the token"
    );

    rewrite(&file, &text("[limits]\nmax_streams = 7\n"));
    let applied = post(true);
    assert!(applied.starts_with("HTTP/1.1 200 OK"), "{applied}");
    assert!(applied.contains("\"result\":\"applied\""), "{applied}");

    rewrite(
        &file,
        &text("[limits]\nmax_streams = 7\n").replace("shards = 2", "shards = 1"),
    );
    let refused = post(true);
    assert!(refused.starts_with("HTTP/1.1 409 Conflict"), "{refused}");
    assert!(
        refused.contains("server.shards cannot change without a restart"),
        "{refused}"
    );

    rewrite(&file, "[limits]\nmax_streams = \"many\"\n");
    let invalid = post(true);
    assert!(invalid.starts_with("HTTP/1.1 400 Bad Request"), "{invalid}");
    assert!(invalid.contains("limits.max_streams"), "{invalid}");

    let counts = [("applied", 1), ("refused", 1), ("invalid", 1)];
    for (result, n) in counts {
        let series = format!("corecast_config_reloads_total{{result=\"{result}\"}}");
        assert_eq!(metric(&serving, &series, Some(token)), n, "{series}");
    }
    std::fs::remove_file(&file).unwrap();
}
