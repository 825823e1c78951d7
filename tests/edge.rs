//! Edges (`[[upstream]]`): corecast servers that pull a stream from an origin when a viewer
//! asks for it. Over RTMP and HTTP-FLV from a corecast origin, one pull per stream whatever
//! the viewers, byte for byte; failover to the next origin while viewers stay; the pull
//! stopping after its last viewer; a stream no origin has; loops refused.

mod common;

use common::watch::{assert_never_back, media_of, Watch};
use common::*;
use corecast_testkit::client::Pace;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An edge's configuration: `origins` for application `live`, short timeouts.
fn edge_config(origins: &[String]) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        "[[upstream]]\napp = \"live\"\norigins = [{}]\n\
         [edge]\nconnect_timeout_ms = 2000\nstart_timeout_ms = 4000\nidle_timeout_ms = 1000\n",
        list.join(", ")
    )
}

/// The RTMP origin URL of a server.
fn rtmp_origin(server: &corecast::Server) -> String {
    format!("rtmp://{}/live/{{stream}}", server.rtmp_addr())
}

/// The HTTP-FLV origin URL of a server.
fn flv_origin(server: &corecast::Server) -> String {
    format!("http://{}/live/{{stream}}.flv", server.http_addr())
}

/// The API's view of `live/{name}` on the server at `http` (`Null` when it has no such
/// stream).
fn stream_view(http: SocketAddr, name: &str) -> serde_json::Value {
    let response = http_get(http, &format!("/api/v1/streams/live/{name}"));
    serde_json::from_slice(&response.body).unwrap_or_default()
}

/// Waits until the API's view of `live/{name}` satisfies `cond` (the API's reports are
/// made once a second); the last view.
fn view_when(
    http: SocketAddr,
    name: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut view = serde_json::Value::Null;
    let held = wait_until(WAIT, || {
        view = stream_view(http, name);
        cond(&view)
    });
    assert!(held, "live/{name}: {view}");
    view
}

/// Whether `server` has stream `live/{name}` (published, pulled, or in its grace).
/// (A HEAD request: it never starts a pull.)
fn edge_knows(server: &corecast::Server, name: &str) -> bool {
    let head = format!("HEAD /live/{name}.flv HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    http_request(server.http_addr(), &head).status != 404
}

/// The media payloads a viewer received, as [`replay`] counts them (sequence headers
/// left out).
fn payloads(watch: &[common::watch::Sent]) -> Vec<bytes::Bytes> {
    watch
        .iter()
        .map(|s| s.to_tag())
        .filter(is_media)
        .map(|t| t.data)
        .collect()
}

#[test]
fn edges_pull_from_a_corecast_origin_over_rtmp_and_http_flv() {
    let origin = start("");
    let publishing = publish_in_background(&origin, "cam", 3, 1.0);
    wait_live(&origin, "/live/cam.flv");
    let edges = [
        ("RTMP", start(&edge_config(&[rtmp_origin(&origin)]))),
        ("HTTP-FLV", start(&edge_config(&[flv_origin(&origin)]))),
    ];
    // Two viewers of each kind on each edge: the first asks for the pull, the others find
    // it under way or done.
    let mut watches = Vec::new();
    for (how, edge) in &edges {
        for _ in 0..2 {
            watches.push((*how, Watch::flv(edge, "cam")));
            watches.push((*how, Watch::rtmp(edge, "cam")));
        }
    }
    for (how, edge) in &edges {
        let view = view_when(edge.http_addr(), "cam", |v| {
            v["upstream"]["state"] == "pulling" && v["viewers"]["total"] == 4
        });
        let upstream = &view["upstream"];
        let scheme = if *how == "RTMP" { "rtmp://" } else { "http://" };
        assert!(
            upstream["origin"]
                .as_str()
                .is_some_and(|o| o.starts_with(scheme) && !o.contains("corecast_via")),
            "{how} edge: {view}"
        );
        assert_eq!(upstream["sessions"], 1, "{how} edge: {view}");
        assert_eq!(total(edge, |s| &s.upstream_pulls), 1, "{how} edge");
    }
    // One pull per stream per edge: the origin has one viewer of each kind.
    view_when(origin.http_addr(), "cam", |view| {
        view["viewers"]["rtmp"] == 1 && view["viewers"]["flv"] == 1
    });
    let sent = publishing.join().expect("publisher");
    for (how, watch) in watches {
        let who = format!("{} on the {how} edge", watch.who);
        let (got, ending) = watch.finish(WAIT);
        assert!(
            ending.closed || ending.stream_ended,
            "{who}: the stream did not end: {ending:?}"
        );
        assert_never_back(&who, &got);
        let media = payloads(&got);
        assert!(media.len() > 100, "{who}: {} media messages", media.len());
        // What the edge's viewers got is what was published, in order, nothing lost.
        assert!(
            is_contiguous_run(&sent, &media),
            "{who}: not a run of the published media"
        );
    }
    // The stream ended at the origin; the edges' pulls stop.
    for (how, edge) in &edges {
        assert!(
            wait_until(WAIT, || total(edge, |s| &s.upstream_pulls) == 0),
            "{how} edge still pulls"
        );
        assert!(total(edge, |s| &s.upstream_bytes) > 100_000, "{how} edge");
    }
}

#[test]
fn an_edge_fails_over_to_the_next_origin_and_its_viewers_stay() {
    let main = start("");
    let backup = start("");
    // The main origin's publisher loses its server mid-stream: its end is no error here.
    let mut on_main = publisher(&main, "cam");
    std::thread::spawn(move || {
        let tags = fixture_tags();
        let mut offset = 0;
        while let Ok(end) = on_main.replay(&tags, Pace::RealTime { speed: 1.0 }, offset) {
            offset = end + 40;
        }
    });
    let on_backup = publish_in_background(&backup, "cam", 6, 1.0);
    wait_live(&main, "/live/cam.flv");
    wait_live(&backup, "/live/cam.flv");
    let edge = start(&edge_config(&[rtmp_origin(&main), flv_origin(&backup)]));
    let mut flv = Watch::flv(&edge, "cam");
    let mut rtmp = Watch::rtmp(&edge, "cam");
    for watch in [&mut flv, &mut rtmp] {
        watch.expect(WAIT, "media from the main origin", |got| {
            media_of(got).len() > 50
        });
    }
    let before = [media_of(&flv.got).len(), media_of(&rtmp.got).len()];
    // The main origin goes away (its streams end, its connections close).
    let killed = Instant::now();
    main.stop();
    let mut gaps = Vec::new();
    for (watch, before) in [&mut flv, &mut rtmp].into_iter().zip(before) {
        watch.expect(WAIT, "media from the backup origin", |got| {
            media_of(got).len() > before
        });
        gaps.push(killed.elapsed());
    }
    for (watch, before) in [&mut flv, &mut rtmp].into_iter().zip(before) {
        watch.expect(WAIT, "the stream going on from the backup", |got| {
            media_of(got).len() > before + 100
        });
    }
    eprintln!("media again from the backup {gaps:?} after the main origin stopped");
    assert!(
        gaps.iter().all(|gap| *gap < Duration::from_secs(6)),
        "{gaps:?}"
    );
    let view = view_when(edge.http_addr(), "cam", |v| v["upstream"]["sessions"] == 2);
    let upstream = &view["upstream"];
    assert_eq!(upstream["state"], "pulling", "{view}");
    assert!(upstream["failures"].as_u64() >= Some(1), "{view}");
    assert!(
        upstream["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with(&format!("http://{}", backup.http_addr()))),
        "{view}"
    );
    on_backup.join().expect("backup publisher");
    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, _) = watch.finish(WAIT);
        // Across the switch, timestamps go on (the republish rules).
        assert_never_back(&who, &got);
    }
}

#[test]
fn a_pull_stops_after_its_last_viewer_and_a_stream_no_origin_has_is_not_found() {
    let origin = start("");
    let _publishing = publish_in_background(&origin, "cam", 4, 1.0);
    wait_live(&origin, "/live/cam.flv");
    let edge = start(&edge_config(&[rtmp_origin(&origin)]));
    let mut watch = Watch::flv(&edge, "cam");
    watch.expect(WAIT, "media", |got| media_of(got).len() > 20);
    drop(watch);
    // edge.idle_timeout_ms (1 s) after the viewer left, the pull stops and the stream ends
    // on the edge; the origin has no viewer left.
    let started = Instant::now();
    assert!(
        wait_until(WAIT, || total(&edge, |s| &s.upstream_pulls) == 0
            && !edge_knows(&edge, "cam")),
        "the pull did not stop"
    );
    let stopped = started.elapsed();
    view_when(origin.http_addr(), "cam", |view| {
        view["viewers"]["rtmp"] == 0
    });
    eprintln!("pull stopped {stopped:?} after the last viewer left");
    assert!(stopped >= Duration::from_millis(900), "{stopped:?}");

    // A stream no origin has: its viewer gets a 404 once the pull gave up (within
    // edge.start_timeout_ms), an RTMP player StreamNotFound.
    let asked = Instant::now();
    let response = http_get(edge.http_addr(), "/live/missing.flv");
    assert_eq!(response.status, 404);
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
    let player =
        corecast_testkit::client::Player::connect(edge.rtmp_addr(), "live", "missing", WAIT);
    assert_eq!(rejected_code(player), "NetStream.Play.StreamNotFound");
    assert!(total(&edge, |s| &s.upstream_failures) >= 2);
    assert!(wait_until(WAIT, || total(&edge, |s| &s.upstream_pulls) == 0));
    // Applications without a rule are not pulled.
    assert_eq!(http_get(edge.http_addr(), "/other/cam.flv").status, 404);
}

#[test]
fn an_hls_playlist_starts_a_pull_too() {
    let origin = start("");
    let _publishing = publish_in_background(&origin, "cam", 3, 1.0);
    wait_live(&origin, "/live/cam.flv");
    let edge = start(&edge_config(&[flv_origin(&origin)]));
    // The first request of the stream on the edge is a playlist: the pull brings the
    // stream, then its HLS starts from the ring.
    for path in ["/live/cam.m3u8", "/live/cam/ll.m3u8"] {
        let response = http_get(edge.http_addr(), path);
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, 200, "{path}: {text}");
        assert!(text.contains("#EXTINF:"), "{path}: {text}");
    }
    assert_eq!(total(&edge, |s| &s.upstream_sessions), 1);
}

#[test]
fn pull_loops_are_refused() {
    // Two edges, each the other's origin.
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let listen = |rtmp: u16, http: u16| {
        format!(
            "[server]\nrtmp_listen = \"127.0.0.1:{rtmp}\"\nhttp_listen = \"127.0.0.1:{http}\"\n"
        )
    };
    let origin_at = |http: u16| format!("http://127.0.0.1:{http}/live/{{stream}}.flv");
    let first = start(&format!(
        "{}{}",
        edge_config(&[origin_at(ports[3])]),
        listen(ports[0], ports[1])
    ));
    let second = start(&format!(
        "{}{}",
        edge_config(&[origin_at(ports[1])]),
        listen(ports[2], ports[3])
    ));
    let response = http_get(first.http_addr(), "/live/x.flv");
    assert_eq!(response.status, 404);
    // The second edge's pull came back to the first, which refused it.
    assert!(total(&first, |s| &s.upstream_loops_refused) >= 1);
    assert!(wait_until(WAIT, || {
        total(&first, |s| &s.upstream_pulls) + total(&second, |s| &s.upstream_pulls) == 0
    }));
    // A pull request that names the server it reaches is refused at once, with 508.
    let me = http_get(
        first.http_addr(),
        "/live/y.flv?corecast_via=1,2,3,4,5,6,7,8,9",
    );
    assert_eq!(me.status, 508, "{}", String::from_utf8_lossy(&me.body));
    // An edge whose origin is itself.
    let port = free_port();
    let http = free_port();
    let own = start(&format!(
        "{}{}",
        edge_config(&[origin_at(http)]),
        listen(port, http)
    ));
    assert_eq!(http_get(own.http_addr(), "/live/z.flv").status, 404);
    assert!(total(&own, |s| &s.upstream_loops_refused) >= 1);
}

#[test]
fn an_edge_pulls_over_https_by_name_and_verifies_the_origin() {
    use corecast_testkit::nginx::{tls_proxy, NGINX};
    if !common::peers::have("nginx", std::path::Path::new(NGINX).exists()) {
        return;
    }
    let origin = start("");
    let publishing = publish_in_background(&origin, "cam", 3, 1.0);
    wait_live(&origin, "/live/cam.flv");
    let dir = common::peers::TempDir::new("https-origin");
    let [ca, cert, key, stranger, stranger_key] = common::tls::test_certificates(&dir);
    // Two TLS proxies in front of the origin's HTTP listener: one with a certificate of the
    // test CA for `localhost`, one with a self-signed certificate.
    let (good_dir, bad_dir) = (dir.join("good"), dir.join("bad"));
    for d in [&good_dir, &bad_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let nginx = std::path::Path::new(NGINX);
    let good = tls_proxy(nginx, origin.http_addr(), &good_dir, &cert, &key);
    let bad = tls_proxy(
        nginx,
        origin.http_addr(),
        &bad_dir,
        &stranger,
        &stranger_key,
    );
    let (good_port, bad_port) = (good.addr.port(), bad.addr.port());
    // A server that takes connections and never says a word: the TLS handshake waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    // Tried in order: a server that never answers the handshake; a certificate no root
    // vouches for; the right certificate, but asked for by an address it does not name;
    // then the right one by name.
    let origins = [
        format!("https://localhost:{silent_port}/live/{{stream}}.flv"),
        format!("https://localhost:{bad_port}/live/{{stream}}.flv"),
        format!("https://127.0.0.1:{good_port}/live/{{stream}}.flv"),
        format!("https://localhost:{good_port}/live/{{stream}}.flv"),
    ];
    let config = format!("{}ca_file = \"{}\"\n", edge_config(&origins), ca.display());
    let edge = start(&config);
    let asked = Instant::now();
    let watch = Watch::flv(&edge, "cam");
    let view = view_when(edge.http_addr(), "cam", |v| {
        v["upstream"]["state"] == "pulling"
    });
    // The silent one had `edge.connect_timeout_ms` (2 s) in all, the others failed at once
    // (the viewer, who waits `edge.start_timeout_ms` = 4 s, got the stream; the API reports
    // once a second).
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "pulling {took:?} after the first request: {view}"
    );
    let upstream = &view["upstream"];
    eprintln!("the https edge's pull: {upstream}");
    assert_eq!(
        upstream["origin"],
        format!("https://localhost:{good_port}/live/cam.flv"),
        "{view}"
    );
    assert_eq!(upstream["sessions"], 1, "{view}");
    assert_eq!(upstream["failures"], 3, "{view}");
    let last_error = upstream["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("certificate") && last_error.contains("127.0.0.1"),
        "the certificate does not name the address: {view}"
    );
    let sent = publishing.join().expect("publisher");
    let (got, ending) = watch.finish(WAIT);
    assert!(ending.closed || ending.stream_ended, "{ending:?}");
    assert_never_back("the https edge's viewer", &got);
    let media = payloads(&got);
    assert!(media.len() > 100, "{} media messages", media.len());
    assert!(
        is_contiguous_run(&sent, &media),
        "not a run of the published media"
    );
    // What the origin's proxy saw: the name as SNI and Host, one request for the stream
    // with the loop marker, over TLS (1.2 or 1.3: nginx's choice); nothing of the attempt
    // by address (refused in the handshake). After the stream ended at the origin, the pull
    // asked again (404) before the edge ended the stream too.
    let log = std::fs::read_to_string(good_dir.join("access.log")).unwrap_or_default();
    let prefix = format!("localhost localhost:{good_port} \"GET /live/cam.flv?corecast_via=");
    let statuses: Vec<&str> = log
        .lines()
        .map(|line| {
            assert!(line.starts_with(&prefix), "{log}");
            let (request, rest) = line.rsplit_once("\" ").expect("a logged request");
            assert!(request.ends_with(" HTTP/1.1"), "{log}");
            let (status, protocol) = rest.split_once(' ').expect("status and protocol");
            assert!(["TLSv1.2", "TLSv1.3"].contains(&protocol), "{log}");
            status
        })
        .collect();
    assert_eq!(statuses.first(), Some(&"200"), "{log}");
    assert!(statuses[1..].iter().all(|s| *s == "404"), "{log}");
    let refused = std::fs::read_to_string(bad_dir.join("access.log")).unwrap_or_default();
    assert_eq!(
        refused, "",
        "the untrusted origin was never asked for the stream"
    );
}
