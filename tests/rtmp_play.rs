//! RTMP play end to end, with the project's RTMP player over 127.0.0.1 and two shards.

mod common;

use bytes::Bytes;
use common::raw_rtmp::RawClient;
use common::slow::SlowReader;
use common::watch::{Sent, Watch};
use common::*;
use corecast::flv::codec;
use corecast::flv::reader::TagKind;
use corecast_testkit::client::{Pace, PlayEvent, Player, Publisher};
use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

fn player(server: &corecast::Server, name: &str) -> Player {
    Player::connect(server.rtmp_addr(), "live", name, Duration::from_secs(10)).expect("play")
}

/// What a player received: media messages until the server ended its connection, which it
/// must do cleanly, after reporting the end of the stream.
fn play_to_end(watch: Watch) -> Vec<Sent> {
    let (got, ending) = watch.finish(Duration::from_secs(60));
    assert!(ending.closed && ending.stream_ended, "{ending:?}");
    got
}

fn is_sequence_header(kind: TagKind, body: &[u8]) -> bool {
    match kind {
        TagKind::Video => codec::video(body).is_some_and(|v| v.header),
        _ => codec::audio(body).is_some_and(|a| a.header),
    }
}

/// Sequence headers first, then a keyframe as the first video frame; time never goes back.
fn assert_decodable(got: &[Sent]) {
    assert!(got.len() > 2, "received {} messages", got.len());
    let headers: Vec<_> = got[..2]
        .iter()
        .map(|s| (s.kind, is_sequence_header(s.kind, &s.data)))
        .collect();
    assert!(headers.contains(&(TagKind::Video, true)), "{headers:?}");
    assert!(headers.contains(&(TagKind::Audio, true)), "{headers:?}");
    let first_video = got[2..]
        .iter()
        .find(|s| s.kind == TagKind::Video)
        .expect("video");
    assert!(
        codec::video(&first_video.data).is_some_and(|v| v.keyframe),
        "starts at a keyframe"
    );
    for pair in got.windows(2) {
        assert!(
            pair[1].ts >= pair[0].ts,
            "time went back: {} -> {}",
            pair[0].ts,
            pair[1].ts
        );
    }
}

fn payloads(got: &[Sent]) -> Vec<Bytes> {
    got.iter()
        .filter(|s| !is_sequence_header(s.kind, &s.data))
        .map(|s| s.data.clone())
        .collect()
}

#[test]
fn players_joining_at_different_times_get_identical_payloads_from_a_keyframe() {
    let server = start("");
    let publishing = publish_in_background(&server, "rtmp?token=t", 4, 4.0);
    wait_live(&server, "/live/rtmp.flv");
    let per_shard = || -> Vec<u64> {
        server
            .stats()
            .iter()
            .map(|s| corecast::stats::get(&s.rtmp_players_total))
            .collect()
    };
    // Joining at different times is the test: one player every 250 ms of real time, at
    // least six, until every shard has one (the kernel picks the shard of a connection).
    let mut players = Vec::new();
    while players.len() < 6 || (players.len() < 16 && per_shard().contains(&0)) {
        let p = player(&server, "rtmp?token=viewer");
        players.push(Watch::player(format!("player {}", players.len()), p));
        thread::sleep(Duration::from_millis(250));
    }
    let per_shard = per_shard();
    let sent = publishing.join().unwrap();
    for watch in players {
        let got = play_to_end(watch);
        assert_decodable(&got);
        let received = payloads(&got);
        assert!(
            received.len() > 50,
            "received {} media messages",
            received.len()
        );
        assert!(
            is_contiguous_run(&sent, &received),
            "payloads byte-identical, in order"
        );
        assert_eq!(received.last(), sent.last(), "played to the end");
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "players per shard: {per_shard:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.rtmp_players
    }) == 0));
    server.stop();
}

#[test]
fn slow_rtmp_player_is_skipped_then_disconnected_while_fast_player_flows() {
    let server = start(
        "[viewer]\nskip_after_ms = 300\ndisconnect_after_ms = 1500\nnotsent_lowat_bytes = 4096\n\
         [stream]\nring_max_duration_ms = 2000\n",
    );
    let publishing = publish_in_background(&server, "slowrtmp", 3, 2.0);
    wait_live(&server, "/live/slowrtmp.flv");
    let slow = Player::connect_with(
        server.rtmp_addr(),
        "live",
        "slowrtmp",
        Duration::from_secs(10),
        Some(4096),
    )
    .unwrap();
    let fast = Watch::rtmp(&server, "slowrtmp");
    // Read the slow player's socket directly, 1 KB every 100 ms.
    let socket = slow.socket().try_clone().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let closed = SlowReader {
        chunk: 1024,
        every: Duration::from_millis(100),
    }
    .until_closed(&socket, Duration::from_secs(15));
    assert!(closed.is_some(), "the slow player was disconnected");
    assert!(
        total(&server, |s| &s.frames_skipped) > 0,
        "frames were skipped first"
    );
    assert_eq!(total(&server, |s| &s.viewers_disconnected_slow), 1);
    let (got, ending, gap) = fast.finish_timed(WAIT);
    assert!(ending.error.is_none(), "fast player: {ending:?}");
    publishing.join().unwrap();
    assert_decodable(&got);
    assert!(
        gap < Duration::from_millis(1000),
        "fast player stalled for {gap:?}"
    );
    server.stop();
}

#[test]
fn unknown_stream_is_refused_with_stream_not_found() {
    let server = start("");
    let code = rejected_code(Player::connect(
        server.rtmp_addr(),
        "live",
        "nothing",
        Duration::from_secs(5),
    ));
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert_eq!(total(&server, |s| &s.play_rejected), 1);
    server.stop();
}

/// True when the server closed the connection or answered with an error status (an
/// `_error` result or an `onStatus` of level `error`) within a few seconds.
fn refused(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
        let text = String::from_utf8_lossy(&got);
        if text.contains("_error") || text.contains("NetStream.Play.Failed") {
            return true;
        }
    }
    false
}

#[test]
fn malformed_play_requests_close_only_their_connection() {
    use rml_rtmp::rml_amf0::Amf0Value;
    let server = start("");
    let tags = fixture_tags();
    let mut publisher = publisher(&server, "steady");
    for tag in tags.iter().take(20) {
        publisher.send_tag(tag).unwrap();
    }
    let mut witness = player(&server, "steady");
    // Play on a stream that was never created.
    let mut no_stream = RawClient::connect(server.rtmp_addr());
    let mut bytes = no_stream.connect_app();
    bytes.extend(no_stream.command("play", 0.0, 7, vec![Amf0Value::Utf8String("steady".into())]));
    no_stream.send(&bytes);
    assert!(
        refused(no_stream.stream),
        "play without createStream is refused"
    );
    // A command whose AMF0 body is garbage.
    let mut garbage = RawClient::connect(server.rtmp_addr());
    let mut bytes = garbage.connect_app();
    bytes.extend_from_slice(&[
        0x03, 0, 0, 0, 0, 0, 12, 0x14, 0, 0, 0, 0, 0x02, 0, 4, b'p', b'l', b'a', b'y', 0x00, 0xff,
        0xff, 0xff, 0xff,
    ]);
    garbage.send(&bytes);
    assert!(refused(garbage.stream), "bad AMF is refused");
    // The stream and its player are unaffected.
    for tag in tags.iter().skip(20).take(30) {
        publisher.send_tag(tag).unwrap();
    }
    let mut media = 0;
    while media < 10 {
        match witness.next_event().unwrap() {
            Some(PlayEvent::Video { .. } | PlayEvent::Audio { .. }) => media += 1,
            Some(_) => {}
            None => panic!("witness player closed"),
        }
    }
    server.stop();
}

#[test]
fn stop_and_abrupt_disconnects_clean_up_players() {
    let server = start("");
    let tags = fixture_tags();
    let mut publisher = publisher(&server, "leave");
    for tag in tags.iter().take(40) {
        publisher.send_tag(tag).unwrap();
    }
    let polite = player(&server, "leave");
    let rude = player(&server, "leave");
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.rtmp_players
    }) == 2));
    polite.finish().unwrap();
    drop(rude);
    for tag in tags.iter().skip(40).take(40) {
        publisher.send_tag(tag).unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || total(&server, |s| {
        &s.rtmp_players
    }) == 0));
    assert_eq!(total(&server, |s| &s.viewers_left), 2);
    server.stop();
}

#[test]
fn video_only_stream_with_wrapping_timestamps_plays_forward() {
    let server = start("");
    let video: Vec<_> = fixture_tags()
        .into_iter()
        .filter(|t| t.kind != TagKind::Audio)
        .collect();
    let mut p =
        Publisher::connect(server.rtmp_addr(), "live", "wrap", Duration::from_secs(5)).unwrap();
    // Start 2 s before the 32-bit millisecond clock wraps.
    let offset = u32::MAX - 2_000;
    let half = video.len() / 2;
    p.replay(&video[..half], Pace::AsFastAsPossible, offset)
        .unwrap();
    let viewer = Watch::player("player of wrap".into(), player(&server, "wrap"));
    let last = p
        .replay(&video[half..], Pace::AsFastAsPossible, offset)
        .unwrap();
    assert!(last < offset, "the publisher's clock wrapped");
    p.finish().unwrap();
    let got = play_to_end(viewer);
    assert!(got.iter().all(|s| s.kind == TagKind::Video));
    assert!(got.len() > 10);
    for pair in got.windows(2) {
        assert!(
            pair[1].ts >= pair[0].ts,
            "time went back: {} -> {}",
            pair[0].ts,
            pair[1].ts
        );
    }
    server.stop();
}
