//! A whole topology on loopback, every server its own process: ffmpeg publishes to an
//! ingest corecast, whose `[[forward]]` rules feed a main and a backup origin; two corecast
//! edges pull from the origins (one over RTMP, one over HTTP-FLV); nginx-rtmp pulls from the
//! first edge; Debian's nginx caches the second edge's HLS. Players decode from every edge,
//! from nginx-rtmp and through the cache with ffmpeg. The main origin is killed mid-play:
//! the edges switch to the backup and every player goes on; then it comes back, and nothing
//! breaks.

mod common;

use common::peers::{nginx_rtmp, start_nginx, TempDir};
use common::*;
use corecast_testkit::nginx::{self, NGINX};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long each player plays.
const PLAY_SECONDS: u32 = 24;
/// When the main origin is killed, after the players start.
const KILL_AFTER: Duration = Duration::from_secs(7);
/// How long it stays away.
const AWAY: Duration = Duration::from_secs(6);

/// Listening addresses picked for one server (its RTMP and HTTP ports).
struct Ports {
    rtmp: SocketAddr,
    http: SocketAddr,
}

impl Ports {
    fn pick() -> Ports {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Ports {
            rtmp: at(free_port()),
            http: at(free_port()),
        }
    }

    /// The server's configuration with `extra` (TOML tables).
    fn config(&self, extra: &str) -> String {
        listening(
            &self.rtmp.to_string(),
            &self.http.to_string(),
            "",
            &format!("[stream]\nrepublish_grace_ms = 10000\n{extra}"),
        )
    }
}

/// `[[upstream]]` for application `live` with `origins`.
fn upstream(origins: &[String]) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        "[[upstream]]\napp = \"live\"\norigins = [{}]\n[edge]\nconnect_timeout_ms = 2000\n",
        list.join(", ")
    )
}

/// The API's view of `live/cam` at `http`.
fn view(http: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&http_get(http, "/api/v1/streams/live/cam").body).unwrap_or_default()
}

/// Starts a server process, or fails with what it said.
fn run(name: &str, config: &str) -> Killed {
    serve(name, config)
        .unwrap_or_else(|err| panic!("{name} did not start: {err}"))
        .0
}

#[test]
fn origins_edges_nginx_and_a_cache_keep_playing_through_an_origin_failure() {
    if !have_tool("ffmpeg") {
        return;
    }
    let Some(nginx_setup) = nginx_rtmp() else {
        return;
    };
    if !Path::new(NGINX).exists() && !have_tool("nginx") {
        return;
    }
    let (main, backup, ingest, edge1, edge2) = (
        Ports::pick(),
        Ports::pick(),
        Ports::pick(),
        Ports::pick(),
        Ports::pick(),
    );
    let main_config = main.config("");
    let mut main_origin = Some(run("main", &main_config));
    let _backup = run("backup", &backup.config(""));
    let forward = |to: &Ports| {
        format!(
            "[[forward]]\napp = \"live\"\nurl = \"rtmp://{}/live/{{stream}}\"\n",
            to.rtmp
        )
    };
    let _ingest = run(
        "ingest",
        &ingest.config(&format!("{}{}", forward(&main), forward(&backup))),
    );
    let _edge1 = run(
        "edge1",
        &edge1.config(&upstream(&[
            format!("rtmp://{}/live/{{stream}}", main.rtmp),
            format!("rtmp://{}/live/{{stream}}", backup.rtmp),
        ])),
    );
    let _edge2 = run(
        "edge2",
        &edge2.config(&upstream(&[
            format!("http://{}/live/{{stream}}.flv", main.http),
            format!("http://{}/live/{{stream}}.flv", backup.http),
        ])),
    );
    let _publisher = ffmpeg_publish(ingest.rtmp, "cam");
    for origin in [&main, &backup] {
        wait_live_at(origin.http, "/live/cam.flv");
    }
    let dir = TempDir::new("topology");
    let nginx = start_nginx(&nginx_setup, edge1.rtmp, &dir);
    let cache_dir = TempDir::new("topology-cache");
    let cache = nginx::hls_cache(Path::new(NGINX), edge2.http, &cache_dir.0);

    // Arrivals of video at an HTTP-FLV viewer of the second edge, and their timestamps: the
    // gap the switch makes.
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (arrivals, stop) = (arrivals.clone(), stop.clone());
        let mut viewer = FlvViewer::open(edge2.http, "/live/cam.flv");
        assert_eq!(viewer.status, 200);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match viewer.next_tag() {
                    Some(tag) if tag.kind == corecast::flv::reader::TagKind::Video => arrivals
                        .lock()
                        .unwrap()
                        .push((Instant::now(), tag.timestamp)),
                    Some(_) => {}
                    None => return,
                }
            }
        })
    };
    let players = [
        (
            "HTTP-FLV from edge 1",
            format!("http://{}/live/cam.flv", edge1.http),
        ),
        (
            "RTMP from edge 2",
            format!("rtmp://{}/live/cam", edge2.rtmp),
        ),
        (
            "RTMP from nginx-rtmp pulling edge 1",
            format!("rtmp://127.0.0.1:{}/pull/cam", nginx.port),
        ),
        (
            "HLS through the cache",
            format!("http://{}/live/cam.m3u8", cache.addr),
        ),
    ]
    .map(|(who, url)| {
        let player = std::thread::spawn(move || ffmpeg_play(&url, PLAY_SECONDS));
        (who, player)
    });

    std::thread::sleep(KILL_AFTER);
    let killed = Instant::now();
    drop(main_origin.take());
    // Both edges go on with the backup.
    for edge in [&edge1, &edge2] {
        let backup_at = [backup.rtmp.to_string(), backup.http.to_string()];
        assert!(
            wait_until(Duration::from_secs(10), || {
                let upstream = &view(edge.http)["upstream"];
                upstream["state"] == "pulling"
                    && upstream["origin"]
                        .as_str()
                        .is_some_and(|o| backup_at.iter().any(|b| o.contains(b.as_str())))
            }),
            "edge {} did not switch: {}",
            edge.http,
            view(edge.http)
        );
    }
    let switched = killed.elapsed();
    std::thread::sleep(AWAY.saturating_sub(switched));
    // The main origin comes back on its ports; the ingest's forward finds it again.
    main_origin = Some(run("main-again", &main_config));
    assert!(
        wait_until(Duration::from_secs(20), || view(ingest.http)["forwards"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["state"] == "publishing"))),
        "the ingest did not push to the main origin again: {}",
        view(ingest.http)
    );

    for (who, player) in players {
        let (video, audio) = player
            .join()
            .unwrap_or_else(|_| panic!("{who}: ffmpeg reported errors (see above)"));
        eprintln!("{who}: {video} video and {audio} audio frames decoded");
        // 25 fps for 24 s of the stream's time (and ffmpeg's 44.1 kHz AAC, 43 a second).
        assert!(video >= 550, "{who}: {video} video frames");
        assert!(audio >= 950, "{who}: {audio} audio frames");
    }
    stop.store(true, Ordering::Relaxed);
    let arrivals = arrivals.lock().unwrap().clone();
    // Timestamps go on across the switch (the republish rules), without a leap.
    let leap = arrivals
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or_default();
    assert!(leap < 1000, "video timestamps leapt {leap} ms");
    let gap = arrivals
        .windows(2)
        .filter(|w| w[1].0 >= killed)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    eprintln!(
        "edges on the backup {switched:?} after the kill; longest gap between pictures at an \
         edge viewer since: {gap:?}; largest timestamp step: {leap} ms"
    );
    assert!(gap < Duration::from_secs(3), "{gap:?}");
    // The edges stay with the backup; their viewers were never cut off.
    for edge in [&edge1, &edge2] {
        let upstream = &view(edge.http)["upstream"];
        assert_eq!(upstream["state"], "pulling", "{upstream}");
        assert!(upstream["failures"].as_u64() >= Some(1), "{upstream}");
    }
    drop(watcher);
    drop(main_origin);
}
