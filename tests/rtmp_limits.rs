//! RTMP input limits and timeouts: message size before and after publishing
//! (`rtmp.max_message_bytes`), accepted chunk size (`rtmp.max_chunk_size`), the setup deadline
//! (`rtmp.handshake_timeout_ms`) and the idle publisher timeout (`rtmp.idle_timeout_ms`,
//! media only). Over a limit, the connection is closed and counted; other streams flow on.

mod common;

use bytes::Bytes;
use common::raw_rtmp::RawClient;
use common::*;
use corecast::flv::reader::TagKind;
use corecast::Server;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use std::time::{Duration, Instant};

fn limits_hit(server: &Server) -> u64 {
    total(server, |s| &s.rtmp_limits_hit)
}

/// The first video frame of at least 1 KiB an HTTP-FLV viewer of `name` receives.
fn big_frame_seen(server: &Server, name: &str) -> usize {
    wait_live(server, &format!("/live/{name}.flv"));
    let mut viewer = FlvViewer::open(server.http_addr(), &format!("/live/{name}.flv"));
    assert_eq!(viewer.status, 200);
    loop {
        let tag = viewer.next_tag().expect("the viewer gets the keyframe");
        if tag.kind == TagKind::Video && tag.data.len() >= 1024 {
            return tag.data.len();
        }
    }
}

#[test]
fn long_messages_are_refused_before_publishing() {
    let server = start("");
    let witness = publish_in_background(&server, "witness", 1, 1.0);
    wait_live(&server, "/live/witness.flv");
    let mut client = RawClient::connect(server.rtmp_addr());
    // A command of 100 KB (over the 64 KiB allowed before publishing): refused at its header.
    let mut bytes = client.connect_app();
    let mut header = vec![0x03, 0, 0, 0];
    header.extend_from_slice(&100_000u32.to_be_bytes()[1..]);
    header.extend_from_slice(&[0x14, 0, 0, 0, 0]);
    bytes.extend(header);
    bytes.extend_from_slice(&[0x02; 1000]);
    client.send(&bytes);
    client.wait_closed(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || limits_hit(&server) == 1));
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 0);
    // A player may not send long messages either.
    let mut player = RawClient::connect(server.rtmp_addr());
    let mut bytes = player.connect_app();
    bytes.extend(player.command("createStream", 2.0, 0, Vec::new()));
    bytes.extend(player.command(
        "play",
        3.0,
        1,
        vec![Amf0Value::Utf8String("witness".into())],
    ));
    player.send(&bytes);
    assert!(
        player.stays_open(Duration::from_millis(300)),
        "the player plays"
    );
    let long = player.message(
        RtmpMessage::VideoData {
            data: vec![0u8; 70_000].into(),
        },
        1,
        0,
    );
    player.send(&long);
    player.wait_closed(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || limits_hit(&server) == 2));
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/witness.flv");
    assert!(
        viewer.read_all(Duration::from_secs(1)).len() > 5,
        "the witness flows"
    );
    witness.join().unwrap();
    server.stop();
}

#[test]
fn publishers_may_send_frames_up_to_max_message_bytes() {
    let server = start("[rtmp]\nmax_message_bytes = 200000\n");
    let mut publisher = publisher(&server, "big");
    let header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]);
    publisher.send_video(0, header).unwrap();
    let mut frame = vec![0x17, 1, 0, 0, 0];
    frame.resize(150_000, 0x65);
    publisher.send_video(40, frame.into()).unwrap();
    assert_eq!(big_frame_seen(&server, "big"), 150_000);
    assert_eq!(limits_hit(&server), 0);
    // Over the limit: the publisher is closed, and counted.
    let mut frame = vec![0x17, 1, 0, 0, 0];
    frame.resize(250_000, 0x65);
    let _ = publisher.send_video(80, frame.into());
    assert!(wait_until(Duration::from_secs(3), || limits_hit(&server) == 1));
    assert!(wait_until(Duration::from_secs(3), || total(&server, |s| {
        &s.publishers
    }) == 0));
    server.stop();
}

/// An encoder that sends its first keyframe right behind `publish`, without waiting for the
/// answer: the publisher's limit applies from the message after the accepted `publish`, on
/// the accepting shard and after a handoff to the stream's owner.
#[test]
fn pipelined_publish_with_a_long_keyframe_is_accepted() {
    let server = start("");
    let mut n = 0;
    while total(&server, |s| &s.handoffs_sent) == 0 || n < 2 {
        assert!(n < 40, "no publisher was handed to another shard");
        let name = format!("pipelined{n}");
        let mut client = RawClient::connect(server.rtmp_addr());
        let mut bytes = client.publish_commands(&name);
        bytes.extend(client.keyframe(300_000));
        client.send(&bytes);
        assert_eq!(big_frame_seen(&server, &name), 300_000, "{name}");
        n += 1;
    }
    assert_eq!(limits_hit(&server), 0);
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 0);
    server.stop();
}

#[test]
fn chunk_sizes_above_max_chunk_size_are_refused() {
    let server = start("");
    // 65536 (the default maximum): a keyframe in two chunks arrives whole.
    let mut client = RawClient::connect(server.rtmp_addr());
    let mut bytes = client.set_chunk_size(65536);
    bytes.extend(client.publish_commands("chunky"));
    bytes.extend(client.keyframe(100_000));
    client.send(&bytes);
    assert_eq!(big_frame_seen(&server, "chunky"), 100_000);
    // 1 MiB: refused.
    let mut client = RawClient::connect(server.rtmp_addr());
    let bytes = client.set_chunk_size(1 << 20);
    client.send(&bytes);
    client.wait_closed(Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || limits_hit(&server) == 1));
    server.stop();
}

/// A connection must publish or play within `rtmp.handshake_timeout_ms` of connecting,
/// whatever else it sends meanwhile.
#[test]
fn connections_that_neither_publish_nor_play_are_closed_by_the_setup_deadline() {
    let server = start("[rtmp]\nhandshake_timeout_ms = 1000\n");
    let started = Instant::now();
    let mut client = RawClient::connect(server.rtmp_addr());
    let bytes = client.connect_app();
    client.send(&bytes);
    client.keep_talking_until_closed(started);
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.timeouts
    }) == 1));
    server.stop();
}

/// A publisher that stops sending media is closed after `rtmp.idle_timeout_ms`, even while it
/// keeps sending control messages, and its stream is free for a new publisher; one that
/// sends media stays.
#[test]
fn publishers_without_media_are_closed_by_the_idle_timeout() {
    let server = start("[rtmp]\nidle_timeout_ms = 1000\n");
    let live = publish_in_background(&server, "live", 1, 1.0);
    let started = Instant::now();
    let mut silent = RawClient::connect(server.rtmp_addr());
    let bytes = silent.publish_commands("silent");
    silent.send(&bytes);
    silent.keep_talking_until_closed(started);
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.timeouts
    }) == 1));
    // The stream is free again.
    let mut again = publisher(&server, "silent");
    for tag in fixture_tags().iter().take(5) {
        again.send_tag(tag).unwrap();
    }
    again.finish().unwrap();
    // The publisher that sends media runs on for its 6 s, untouched.
    live.join().unwrap();
    assert_eq!(total(&server, |s| &s.timeouts), 1);
    server.stop();
}
