//! The Prometheus endpoint, read with a small exposition parser, while a stream plays.

mod common;

use common::*;
use corecast::metrics::Stage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

/// One sample: metric name, labels (sorted `k="v"` text), value.
type Sample = (String, String, f64);

/// Parses Prometheus text exposition; panics on any line that is not valid.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some(), "HELP without text: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(["counter", "gauge", "summary"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {name}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line: {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (name.starts_with("corecast_") || name.starts_with("process_")),
            "bad metric name: {name}"
        );
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            let (k, v) = label.split_once('=').expect("label k=v");
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
        }
        let family = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.get(*f).is_some_and(|k| k == "summary"))
            .unwrap_or(name);
        let kind = typed
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {name}");
        }
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let Response { status, head, body } = http_get(addr, "/metrics");
    assert!(
        status == 200 && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    parse(&String::from_utf8(body).expect("UTF-8 metrics"))
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.0 == name).map(|s| s.2).sum()
}

fn quantiles(samples: &[Sample], name: &str, labels: &str) -> Vec<f64> {
    ["0.5", "0.9", "0.99", "0.999"]
        .iter()
        .map(|q| {
            let want = if labels.is_empty() {
                format!("quantile=\"{q}\"")
            } else {
                format!("{labels},quantile=\"{q}\"")
            };
            samples
                .iter()
                .find(|s| s.0 == name && s.1 == want)
                .unwrap_or_else(|| panic!("{name} {want} missing"))
                .2
        })
        .collect()
}

#[test]
fn metrics_are_valid_and_move_while_a_stream_plays() {
    let server = start("");
    let http = server.http_addr();
    let before = scrape(http);
    let publishing = publish_in_background(&server, "metered", 2, 2.0);
    wait_live(&server, "/live/metered.flv");
    let mut viewer = FlvViewer::open(http, "/live/metered.flv");
    let reader = thread::spawn(move || viewer.read_all(Duration::from_secs(20)).len());
    let moving = [
        "corecast_bytes_in_total",
        "corecast_flv_bytes_out_total",
        "corecast_flv_viewers_started_total",
    ];
    let mut during = Vec::new();
    assert!(
        wait_until(WAIT, || {
            during = scrape(http);
            moving
                .iter()
                .all(|name| sum(&during, name) > sum(&before, name))
                && sum(&during, "corecast_flv_viewers") == 1.0
        }),
        "the metrics moved while the stream played"
    );
    for name in moving {
        assert!(
            sum(&during, name) > sum(&before, name),
            "{name} did not increase"
        );
    }
    assert_eq!(sum(&during, "corecast_flv_viewers"), 1.0);
    publishing.join().unwrap();
    assert!(reader.join().unwrap() > 100);
    // Histograms are published once a second: wait for one with the stream's deliveries.
    let flv_count = |samples: &[Sample]| {
        samples
            .iter()
            .find(|s| s.0 == "corecast_relay_latency_seconds_count" && s.1 == "protocol=\"flv\"")
            .map_or(0.0, |s| s.2)
    };
    let mut after = Vec::new();
    assert!(
        wait_until(WAIT, || {
            after = scrape(http);
            flv_count(&after) > 100.0
        }),
        "the relay latency histogram was published"
    );
    let relay = quantiles(&after, "corecast_relay_latency_seconds", "protocol=\"flv\"");
    let max = sum(&after, "corecast_relay_latency_max_seconds");
    assert!(
        relay.windows(2).all(|w| w[0] <= w[1]) && relay[3] <= max,
        "{relay:?} max {max}"
    );
    assert!(relay[0] > 0.0);
    let count = after
        .iter()
        .find(|s| s.0 == "corecast_relay_latency_seconds_count" && s.1 == "protocol=\"flv\"")
        .unwrap()
        .2;
    assert!(count > 100.0, "one sample per unit delivered: {count}");
    let ingest = quantiles(&after, "corecast_ingest_to_ring_seconds", "");
    assert!(ingest.windows(2).all(|w| w[0] <= w[1]));
    // The merge is the sum of the shards.
    let merged = server.histograms().merged();
    let by_shard: u64 = (0..2)
        .map(|id| server.histograms().shard(id).get(Stage::IngestToRing).len())
        .sum();
    assert_eq!(merged.get(Stage::IngestToRing).len(), by_shard);
    assert!(by_shard > 100);
    server.stop();
}

#[test]
fn histogram_log_counts_match_and_corecast_hist_reads_it() {
    let dir = std::env::temp_dir().join(format!("corecast-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("latency.hlog");
    let server = start(&format!(
        "[metrics]\nhistogram_log = \"{}\"\nhistogram_log_interval_ms = 1000\n",
        log.display()
    ));
    let publishing = publish_in_background(&server, "logged", 1, 2.0);
    wait_live(&server, "/live/logged.flv");
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/logged.flv");
    let got = viewer.read_all(Duration::from_secs(15)).len();
    publishing.join().unwrap();
    assert!(got > 50);
    let histograms = server.histograms();
    server.stop();
    // The log's intervals add up to exactly what the shards recorded.
    let merged = histograms.merged();
    let totals = corecast::metrics::log::read(&log, 0.0, f64::INFINITY).unwrap();
    for stage in [Stage::IngestToRing, Stage::RelayFlv, Stage::ViewerLag] {
        let logged = totals.get(stage.tag()).map_or(0, |h| h.len());
        assert_eq!(logged, merged.get(stage).len(), "{}", stage.tag());
        assert!(logged > 0, "{}", stage.tag());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
        .arg("hist")
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let relay = table
        .lines()
        .find(|l| l.starts_with("relay_latency_flv"))
        .unwrap_or_else(|| panic!("{table}"));
    let fields: Vec<&str> = relay.split_whitespace().collect();
    assert_eq!(
        fields[1].parse::<u64>().unwrap(),
        merged.get(Stage::RelayFlv).len()
    );
    let p50_ms: f64 = fields[3].parse().unwrap();
    let expected = merged.get(Stage::RelayFlv).value_at_quantile(0.5) as f64 / 1e6;
    assert!((p50_ms - expected).abs() < 0.001, "{p50_ms} vs {expected}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn api_describes_a_live_stream() {
    let server = start("");
    let http = server.http_addr();
    let publishing = publish_in_background(&server, "described", 2, 1.0);
    wait_live(&server, "/live/described.flv");
    let mut viewers: Vec<_> = (0..3)
        .map(|_| FlvViewer::open(http, "/live/described.flv"))
        .collect();
    let player = corecast_testkit::client::Player::connect(
        server.rtmp_addr(),
        "live",
        "described",
        Duration::from_secs(5),
    )
    .unwrap();
    for v in &mut viewers {
        assert!(v.next_tag().is_some());
    }
    let get = |path: &str| -> (String, serde_json::Value) {
        let Response { head, body, .. } = http_get(http, path);
        (head, serde_json::from_slice(&body).expect("JSON body"))
    };
    // Reports are published once a second: wait for one that counts every viewer, a
    // whole second of input and a whole GOP.
    let (mut head, mut stream) = (String::new(), serde_json::Value::Null);
    let reported = wait_until(WAIT, || {
        (head, stream) = get("/api/v1/streams/live/described");
        let per_shard: Option<u64> = stream["viewers_per_shard"].as_array().map(|shards| {
            shards
                .iter()
                .map(|s| s["flv"].as_u64().unwrap_or(0) + s["rtmp"].as_u64().unwrap_or(0))
                .sum()
        });
        stream["viewers"]["flv"] == 3
            && stream["viewers"]["rtmp"] == 1
            && stream["gop_ms"].is_u64()
            && per_shard == Some(4)
            && stream["bitrate_in_kbps"]
                .as_f64()
                .is_some_and(|kbps| (100.0..1000.0).contains(&kbps))
            && get("/api/v1/stats").1["viewers"]["flv"] == 3
    });
    assert!(reported, "the report: {stream}");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("application/json"),
        "{head}"
    );
    assert_eq!(stream["name"], "live/described");
    assert_eq!(
        stream["owner_shard"],
        corecast::hub::owner_of("live/described", 2)
    );
    assert_eq!(stream["video_codec"], "h264");
    assert_eq!(stream["audio_codec"], "aac");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(stream["gop_ms"], 1000);
    assert_eq!(stream["viewers"]["flv"], 3);
    assert_eq!(stream["viewers"]["rtmp"], 1);
    assert!(stream["publisher"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let kbps = stream["bitrate_in_kbps"].as_f64().unwrap();
    assert!(
        (100.0..1000.0).contains(&kbps),
        "bitrate in {kbps} kbit/s (fixture: ~270)"
    );
    let per_shard: u64 = stream["viewers_per_shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flv"].as_u64().unwrap() + s["rtmp"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, 4);
    let (_, all) = get("/api/v1/streams");
    assert_eq!(all["streams"].as_array().unwrap().len(), 1);
    let (_, stats) = get("/api/v1/stats");
    assert_eq!(stats["shards"], 2);
    assert_eq!(stats["viewers"]["flv"], 3);
    assert_eq!(stats["per_shard"].as_array().unwrap().len(), 2);
    assert_eq!(stats["listeners"]["http"], http.to_string());
    assert_eq!(stats["listeners"]["rtmp"], server.rtmp_addr().to_string());
    assert_eq!(stats["latency_window_s"], 60);
    // The viewers have been receiving for a while: the relay latency of the last minute
    // has values, in order.
    assert!(
        wait_until(WAIT, || get("/api/v1/stats").1["latency"]
            ["relay_latency_flv"]["count"]
            .as_u64()
            .is_some_and(|n| n > 0)),
        "relay latency in the API"
    );
    let (_, stats) = get("/api/v1/stats");
    let relay = &stats["latency"]["relay_latency_flv"];
    let figures: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .map(|key| relay[key].as_f64().unwrap())
        .collect();
    assert!(
        figures[0] > 0.0 && figures.windows(2).all(|w| w[0] <= w[1]),
        "{relay}"
    );
    let (head, _) = get("/api/v1/streams/live/none");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    drop(player);
    drop(viewers);
    publishing.join().unwrap();
    server.stop();
}

#[test]
fn admin_listener_is_separate_and_token_protected() {
    let server = start("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n");
    let admin = server.admin_addr().expect("admin listener");
    let status = |addr: SocketAddr, path: &str, auth: &str| -> u16 {
        http_request(
            addr,
            &format!("GET {path} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"),
        )
        .status
    };
    let bearer = "Authorization: Bearer s3cret\r\n";
    assert_eq!(status(admin, "/metrics", bearer), 200);
    assert_eq!(status(admin, "/api/v1/stats", bearer), 200);
    assert_eq!(status(admin, "/metrics", ""), 401);
    assert_eq!(
        status(admin, "/metrics", "Authorization: Bearer wrong1\r\n"),
        401
    );
    // Not on the public listener, and no media on the admin one.
    assert_eq!(status(server.http_addr(), "/metrics", bearer), 404);
    assert_eq!(status(admin, "/live/x.flv", bearer), 404);
    server.stop();
}
