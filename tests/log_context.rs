//! Log lines about a connection, as a log pipeline sees them: the binary with ECS lines at
//! debug level, a publisher, an HTTP-FLV viewer and an RTMP player. Every line about a
//! connection carries the same fields (connection id, protocol, shard, peer, and the stream
//! once there is one), and the lines that record something happening name it in
//! `event.action`: one connection's history is one filter.

mod common;

use common::logged::Logged;
use common::{replay_in_background, wait_live_at, wait_until, FlvViewer};
use corecast_testkit::client::{Player, Publisher};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Publishes `live/name` for about 3 s while an HTTP-FLV viewer and an RTMP player watch,
/// and waits until the server has logged the end of all three.
fn traffic(server: &Logged, name: &str) {
    let publisher =
        Publisher::connect(server.rtmp, "live", name, Duration::from_secs(5)).expect("publish");
    let publishing = replay_in_background(publisher, 1, 2.0);
    wait_live_at(server.http, &format!("/live/{name}.flv"));
    let mut viewer = FlvViewer::open(server.http, &format!("/live/{name}.flv"));
    let player = Player::connect(server.rtmp, "live", name, Duration::from_secs(5)).expect("play");
    assert!(viewer.next_tag().is_some());
    drop(viewer);
    drop(player);
    publishing.join().unwrap();
    // ECS names it `event.action`, the JSON format `action`.
    let ended = |what: &str| {
        server
            .parsed()
            .iter()
            .filter(|l| l.get("event.action").or(l.get("action")) == Some(&Value::from(what)))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || ended("publish-stop") >= 1
            && ended("play-stop") >= 2),
        "the ends of the publish and of both plays were logged"
    );
}

#[test]
fn every_line_about_a_connection_carries_its_fields() {
    let server = Logged::start("context-ecs", "ecs", "");
    traffic(&server, "context");
    // The publisher's connection closes after its publish stops: wait for its last line.
    let publisher_closed = |lines: &[Value]| {
        let id = lines
            .iter()
            .find(|l| l["event.action"] == "publish-start")
            .map(|l| l["corecast.connection"].clone());
        lines.iter().any(|l| {
            l["event.action"] == "connection-close"
                && Some(&l["corecast.connection"]) == id.as_ref()
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || publisher_closed(
            &server.parsed()
        )),
        "the publisher's close was logged"
    );
    let lines = server.parsed();
    let connection_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("corecast.connection").is_some())
        .collect();
    assert!(connection_lines.len() >= 10, "{lines:#?}");
    // Each line about a connection has the same fields.
    for line in &connection_lines {
        for key in [
            "network.protocol",
            "corecast.shard",
            "client.ip",
            "client.port",
            "client.address",
        ] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
        assert_eq!(line["client.ip"], "127.0.0.1", "{line}");
    }
    // One history per connection id.
    let mut histories: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for line in &connection_lines {
        let id = line["corecast.connection"].as_u64().expect("a numeric id");
        histories.entry(id).or_default().push(line);
    }
    let actions = |history: &[&Value]| -> Vec<String> {
        history
            .iter()
            .filter_map(|l| l["event.action"].as_str().map(str::to_owned))
            .collect()
    };
    let with = |action: &str| -> Vec<&Vec<&Value>> {
        histories
            .values()
            .filter(|h| actions(h).iter().any(|a| a == action))
            .collect()
    };
    // The publisher: opened, published, stopped and closed, under one id, on RTMP; from
    // its publish on, every line names the stream.
    let publishers = with("publish-start");
    assert_eq!(publishers.len(), 1, "{histories:#?}");
    let publisher = publishers[0];
    let seen = actions(publisher);
    for action in [
        "connection-open",
        "publish-start",
        "publish-stop",
        "connection-close",
    ] {
        assert!(seen.iter().any(|a| a == action), "{action} not in {seen:?}");
    }
    assert!(publisher.iter().all(|l| l["network.protocol"] == "rtmp"));
    let start = publisher
        .iter()
        .position(|l| l["event.action"] == "publish-start")
        .unwrap();
    for line in &publisher[start..] {
        assert_eq!(line["corecast.stream"], "live/context", "{line}");
    }
    // The publisher was handed to the owner shard if another shard accepted it: its lines
    // on both shards are one history.
    let shards: Vec<u64> = publisher
        .iter()
        .filter_map(|l| l["corecast.shard"].as_u64())
        .collect();
    if seen.iter().any(|a| a == "connection-handoff") {
        assert!(shards.contains(&0) && shards.contains(&1), "{shards:?}");
    }
    // The viewers (the RTMP player, the HTTP-FLV viewer, and those `wait_live_at` opened):
    // each started and stopped playing.
    let players = with("play-start");
    let protocol = |h: &Vec<&Value>| h[0]["network.protocol"].as_str().unwrap().to_owned();
    let rtmp = players.iter().filter(|h| protocol(h) == "rtmp").count();
    let http = players.iter().filter(|h| protocol(h) == "http").count();
    assert!(rtmp == 1 && http >= 1, "{histories:#?}");
    for history in players {
        assert!(actions(history).iter().any(|a| a == "play-stop"));
        let start = history
            .iter()
            .position(|l| l["event.action"] == "play-start")
            .unwrap();
        for line in &history[start..] {
            assert_eq!(line["corecast.stream"], "live/context", "{line}");
        }
    }
    drop(server.child);
}

#[test]
fn json_lines_carry_the_connection_under_span() {
    let server = Logged::start("context-json", "json", "");
    traffic(&server, "spanned");
    let lines = server.parsed();
    let start = lines
        .iter()
        .find(|l| l["action"] == "publish-start")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let span = &start["span"];
    assert_eq!(span["name"], "conn", "{start}");
    assert_eq!(span["protocol"], "rtmp");
    assert_eq!(span["stream"], "live/spanned");
    assert!(span["conn"].is_u64() && span["shard"].is_u64(), "{start}");
    assert!(span["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    drop(server.child);
}
