//! End-to-end relay tests over 127.0.0.1 with two shards: RTMP in (the project's client),
//! HTTP-FLV out (a blocking reader that parses every tag).

mod common;

use common::slow::SlowReader;
use common::watch::Watch;
use common::*;
use corecast::flv::reader::TagKind;
use std::time::{Duration, Instant};

#[test]
fn flv_viewer_gets_headers_gop_and_identical_payloads() {
    identical_payloads("");
}

/// The same with every message read as it arrives (through an io_uring poll per message)
/// rather than once per tick of the shard's epoll set.
#[test]
fn flv_viewer_gets_identical_payloads_from_a_publisher_read_at_once() {
    identical_payloads("[rtmp]\ninput_poll_us = 0\n");
}

fn identical_payloads(extra_config: &str) {
    let server = start(extra_config);
    // The query string is not part of the stream's name.
    let publishing = publish_in_background(&server, "identity?token=kept", 2, 4.0);
    wait_live(&server, "/live/identity.flv");
    let http = server.http_addr();
    // The viewer joins mid-stream: once the GOP cache starts at a later keyframe than the
    // stream's first (at 0 ms).
    assert!(
        wait_until(WAIT, || {
            let mut probe = FlvViewer::open(http, "/live/identity.flv");
            probe.status == 200
                && std::iter::from_fn(|| probe.next_tag())
                    .find(|t| t.is_video_keyframe() && !t.is_sequence_header())
                    .is_some_and(|key| key.timestamp > 0)
        }),
        "the stream went past its first GOP"
    );
    let mut viewer = FlvViewer::open(http, "/live/identity.flv");
    assert_eq!(viewer.status, 200);
    let tags = viewer.read_all(Duration::from_secs(20));
    let sent = publishing.join().unwrap();

    assert_decodable_start(&tags);
    let received: Vec<_> = tags
        .iter()
        .filter(|t| is_media(t))
        .map(|t| t.data.clone())
        .collect();
    assert!(
        received.len() > 100,
        "received {} media tags",
        received.len()
    );
    assert!(
        is_contiguous_run(&sent, &received),
        "payloads are byte-identical and in order"
    );
    assert_eq!(
        received.last(),
        sent.last(),
        "the viewer got the stream to its end"
    );
    server.stop();
}

#[test]
fn viewers_on_every_shard_receive_the_stream() {
    let server = start("");
    let publishing = publish_in_background(&server, "wide", 2, 2.0);
    wait_live(&server, "/live/wide.flv");
    let http = server.http_addr();
    let mut viewers: Vec<_> = (0..16)
        .map(|_| FlvViewer::open(http, "/live/wide.flv"))
        .collect();
    assert!(wait_until(Duration::from_secs(2), || server
        .stats()
        .iter()
        .all(|s| corecast::stats::get(&s.flv_viewers) > 0)));
    let per_shard: Vec<u64> = server
        .stats()
        .iter()
        .map(|s| corecast::stats::get(&s.flv_viewers))
        .collect();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "viewers per shard: {per_shard:?}"
    );
    for viewer in &mut viewers {
        let tags: Vec<_> = (0..40).map_while(|_| viewer.next_tag()).collect();
        assert_decodable_start(&tags);
    }
    drop(viewers);
    publishing.join().unwrap();
    server.stop();
}

#[test]
fn publishers_landing_on_another_shard_are_handed_to_the_owner() {
    let server = start("");
    let tags = fixture_tags();
    let head: Vec<_> = tags.iter().take(30).cloned().collect();
    let mut publishers = Vec::new();
    // Each connection lands on a shard chosen by the kernel; with 16 streams, at least one
    // lands away from its owner (all landing at home has probability 2^-16).
    for i in 0..16 {
        let mut p = publisher(&server, &format!("handoff{i}"));
        for tag in &head {
            p.send_tag(tag).unwrap();
        }
        publishers.push(p);
    }
    let sent = total(&server, |s| &s.handoffs_sent);
    assert!(sent > 0, "no publisher needed a handoff");
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.handoffs_received
    }) == sent));
    assert_eq!(total(&server, |s| &s.publishers), 16);
    // Every stream, handed over or not, plays from its owner.
    for i in 0..16 {
        let mut viewer = FlvViewer::open(server.http_addr(), &format!("/live/handoff{i}.flv"));
        assert_eq!(viewer.status, 200);
        let got: Vec<_> = (0..6).map_while(|_| viewer.next_tag()).collect();
        assert_decodable_start(&got);
    }
    // Media sent after the handoff keeps flowing.
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/handoff3.flv");
    let before = (0..5).map_while(|_| viewer.next_tag()).count();
    for tag in tags.iter().skip(30).take(20) {
        publishers[3].send_tag(tag).unwrap();
    }
    let after = (0..5).map_while(|_| viewer.next_tag()).count();
    assert_eq!((before, after), (5, 5));
    server.stop();
}

#[test]
fn second_publisher_is_refused_and_first_keeps_publishing() {
    let server = start("");
    let tags = fixture_tags();
    let mut first = publisher(&server, "dup");
    for tag in tags.iter().take(20) {
        first.send_tag(tag).unwrap();
    }
    let second = corecast_testkit::client::Publisher::connect(
        server.rtmp_addr(),
        "live",
        "dup",
        Duration::from_secs(5),
    );
    assert_eq!(rejected_code(second), "NetStream.Publish.BadName");
    assert_eq!(total(&server, |s| &s.publish_rejected), 1);
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/dup.flv");
    let start: Vec<_> = (0..3).map_while(|_| viewer.next_tag()).collect();
    assert_eq!(start.len(), 3);
    for tag in tags.iter().skip(20).take(40) {
        first.send_tag(tag).unwrap();
    }
    let more: Vec<_> = (0..10).map_while(|_| viewer.next_tag()).collect();
    assert_eq!(more.len(), 10, "the first publisher still reaches viewers");
    server.stop();
}

#[test]
fn republish_within_grace_keeps_viewers_and_time_moving_forward() {
    let server = start("[stream]\nrepublish_grace_ms = 3000\n");
    let tags = fixture_tags();
    let mut p1 = publisher(&server, "again");
    for tag in tags.iter().take(60) {
        p1.send_tag(tag).unwrap();
    }
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/again.flv");
    let mut seen: Vec<_> = (0..10).map_while(|_| viewer.next_tag()).collect();
    p1.finish().unwrap();
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.publishers) == 0),
        "the server saw the first publisher leave"
    );
    // The same clip again from timestamp 0: viewers must not see time jump back.
    let mut p2 = publisher(&server, "again");
    for tag in tags.iter().take(60) {
        p2.send_tag(tag).unwrap();
    }
    p2.finish().unwrap();
    // The grace period then runs out and the response ends cleanly.
    let started = Instant::now();
    seen.extend(viewer.read_all(Duration::from_secs(10)));
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "response ended after grace"
    );
    assert_monotonic(&seen);
    let media = seen.iter().filter(|t| is_media(t)).count();
    assert!(
        media > 60,
        "viewer received both publishes ({media} media tags)"
    );
    let republished_key = seen
        .iter()
        .filter(|t| t.kind == TagKind::Video && t.is_video_keyframe() && !t.is_sequence_header())
        .count();
    assert!(republished_key >= 2, "keyframes from both publishers");
    server.stop();
}

#[test]
fn slow_viewer_is_skipped_then_disconnected_while_fast_viewer_flows() {
    let server = start(
        "[viewer]\nskip_after_ms = 300\ndisconnect_after_ms = 1500\nnotsent_lowat_bytes = 4096\n\
         [stream]\nring_max_duration_ms = 2000\n",
    );
    let publishing = publish_in_background(&server, "slow", 3, 2.0);
    wait_live(&server, "/live/slow.flv");
    let http = server.http_addr();
    let slow = FlvViewer::open_with(http, "/live/slow.flv", Some(4096));
    let fast = Watch::flv(&server, "slow");
    // The slow viewer reads 1 KB every 100 ms (about a third of the stream's rate).
    let slow_closed = SlowReader {
        chunk: 1024,
        every: Duration::from_millis(100),
    }
    .until_closed(&slow.stream, Duration::from_secs(15));
    assert!(slow_closed.is_some(), "the slow viewer was disconnected");
    assert!(
        total(&server, |s| &s.frames_skipped) > 0,
        "frames were skipped first"
    );
    assert_eq!(total(&server, |s| &s.viewers_disconnected_slow), 1);
    let (got, ending, max_gap) = fast.finish_timed(WAIT);
    assert!(ending.closed, "{ending:?}");
    let tags: Vec<_> = got.iter().map(|s| s.to_tag()).collect();
    publishing.join().unwrap();
    assert_decodable_start(&tags);
    assert!(
        max_gap < Duration::from_millis(1000),
        "fast viewer stalled for {max_gap:?}"
    );
    assert!(tags.iter().filter(|t| is_media(t)).count() > 500);
    server.stop();
}

#[test]
fn audio_only_stream_starts_and_announces_only_audio() {
    let server = start("");
    let tags = fixture_tags();
    let mut p = publisher(&server, "radio");
    let audio: Vec<_> = tags
        .iter()
        .filter(|t| t.kind != TagKind::Video)
        .cloned()
        .collect();
    for tag in audio.iter().take(40) {
        p.send_tag(tag).unwrap();
    }
    // The viewer comes once the server has taken the audio (publishers are read once per
    // `rtmp.input_poll_us`): its FLV header then says what the stream carries.
    let sent: usize = audio.iter().take(40).map(|t| t.data.len()).sum();
    assert!(wait_until(WAIT, || total(&server, |s| &s.bytes_in) >= sent as u64));
    let mut raw = std::net::TcpStream::connect(server.http_addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut raw, b"GET /live/radio.flv HTTP/1.1\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < 400 {
        match std::io::Read::read(&mut raw, &mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => panic!("read: {other:?}"),
        }
    }
    let body = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[body..body + 3], b"FLV");
    assert_eq!(got[body + 4], 0x04, "audio only");
    let mut reader = corecast::flv::reader::FlvReader::new();
    reader.push(&got[body..]);
    let first: Vec<_> = std::iter::from_fn(|| reader.next_tag().unwrap()).collect();
    assert!(first.len() >= 3);
    assert_eq!(first[0].kind, TagKind::Script);
    assert!(first[1].kind == TagKind::Audio && first[1].is_sequence_header());
    assert!(first[2..]
        .iter()
        .all(|t| t.kind == TagKind::Audio && !t.is_sequence_header()));
    server.stop();
}

/// Largest pause between two video tags reaching an HTTP-FLV viewer, after its start-up
/// burst, for a stream published in real time.
fn largest_video_pause(extra_config: &str) -> Duration {
    let server = start(extra_config);
    let publishing = publish_in_background(&server, "pace", 1, 1.0);
    wait_live(&server, "/live/pace.flv");
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/pace.flv");
    let opened = Instant::now();
    let mut last: Option<Instant> = None;
    let mut largest = Duration::ZERO;
    while let Some(tag) = viewer.next_tag() {
        if tag.kind != TagKind::Video || opened.elapsed() < Duration::from_millis(1500) {
            continue;
        }
        let now = Instant::now();
        if let Some(last) = last.replace(now) {
            largest = largest.max(now - last);
        }
    }
    publishing.join().unwrap();
    server.stop();
    largest
}

#[test]
fn flush_on_video_sends_each_frame_without_waiting_for_the_window() {
    // A one-second merge window: without flush_on_video, video arrives in bursts a window
    // apart; with it, frame by frame (the clip has 25 frames a second).
    let window = "[viewer]\nsend_schedule = \"fixed\"\nmerge_window_ms = 1000\n";
    let bursts = largest_video_pause(&format!("{window}flush_on_video = false\n"));
    let paced = largest_video_pause(&format!("{window}flush_on_video = true\n"));
    assert!(bursts > Duration::from_millis(600), "{bursts:?}");
    assert!(paced < Duration::from_millis(400), "{paced:?}");
}

#[test]
fn an_idle_shard_sends_at_once_whatever_its_largest_window() {
    // The adaptive schedule (the default) with a one-second largest window: a shard with
    // one viewer is idle, so frames go out as they come, not in bursts a window apart.
    let paced = largest_video_pause("[viewer]\nmerge_window_ms = 1000\n");
    assert!(paced < Duration::from_millis(400), "{paced:?}");
}

/// A viewer that joins a stream whose publisher has sent nothing yet waits for the first
/// keyframe; the headers that arrive meanwhile (and the audio it passes) must still reach it
/// before its first frame of each track, on every shard.
#[test]
fn viewers_joining_before_the_headers_get_them_before_the_first_frames() {
    let server = start("[stream]\nrepublish_grace_ms = 200\n");
    let tags = fixture_tags();
    let mut publisher = publisher(&server, "early");
    let http = server.http_addr();
    assert!(
        wait_until(WAIT, || FlvViewer::open(http, "/live/early.flv").status
            == 200),
        "the stream went live at its publish"
    );
    // One viewer per shard, at least: connections spread over the shards.
    let mut viewers: Vec<FlvViewer> = (0..4)
        .map(|_| FlvViewer::open(http, "/live/early.flv"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The audio header and some audio before any video, then the rest of the clip.
    let (audio, rest): (Vec<_>, Vec<_>) = tags
        .iter()
        .filter(|t| t.kind != TagKind::Script)
        .take(60)
        .partition(|t| t.kind == TagKind::Audio);
    for tag in audio
        .iter()
        .take(3)
        .chain(rest.iter())
        .chain(audio.iter().skip(3))
    {
        publisher.send_tag(tag).expect("send");
    }
    // The stream ends, and with it every viewer's response.
    publisher.finish().unwrap();
    for (i, viewer) in viewers.iter_mut().enumerate() {
        assert_eq!(viewer.status, 200);
        let got = viewer.read_all(WAIT);
        for kind in [TagKind::Audio, TagKind::Video] {
            let track: Vec<_> = got.iter().filter(|t| t.kind == kind).collect();
            let first_frame = track
                .iter()
                .position(|t| !t.is_sequence_header())
                .unwrap_or_else(|| panic!("viewer {i}: no {kind:?} frame"));
            assert!(
                track[..first_frame].iter().any(|t| t.is_sequence_header()),
                "viewer {i}: the first {kind:?} frame came without its sequence header"
            );
        }
    }
    server.stop();
}
