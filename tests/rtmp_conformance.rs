//! RTMP conformance end to end (docs/ARCHITECTURE.md, "RTMP input"): what the specification
//! allows and encoders, media servers and restreaming services send, against a running
//! server, checked exactly as a viewer receives it.
//!
//! - A publisher that interleaves chunk streams at every chunk boundary (audio into video,
//!   metadata into both) at chunk sizes 128 and 4096 is relayed byte for byte to HTTP-FLV
//!   and RTMP viewers.
//! - An encoder that waits for acknowledgements at a window of 2.5 MB keeps publishing.
//! - A player that creates two message streams and plays on the second gets the stream on
//!   it.

mod common;

use bytes::Bytes;
use common::raw_rtmp::RawClient;
use common::watch::{assert_tail, media_of, Sent, Watch};
use common::*;
use corecast::flv::reader::TagKind;
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::{self, Amf0Value};
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// The message stream a raw client publishes and plays on (its first `createStream`).
const STREAM: u32 = 1;

/// Chunk streams of the interleaving publisher.
const CSID_AUDIO: u8 = 4;
const CSID_DATA: u8 = 5;
const CSID_VIDEO: u8 = 6;

/// Message types.
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const DATA: u8 = 18;
const ACKNOWLEDGEMENT: u8 = 3;

/// The chunks of one message at `chunk_size`, each with its header: a type 0 header first,
/// type 3 after (the timestamps here fit in 24 bits).
fn chunks(csid: u8, type_id: u8, ts: u32, body: &[u8], chunk_size: usize) -> Vec<Vec<u8>> {
    assert!(ts < 0x00ff_ffff);
    body.chunks(chunk_size)
        .enumerate()
        .map(|(i, piece)| {
            let mut chunk = if i == 0 {
                let mut header = vec![csid];
                header.extend_from_slice(&ts.to_be_bytes()[1..]);
                header.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
                header.push(type_id);
                header.extend_from_slice(&STREAM.to_le_bytes());
                header
            } else {
                vec![0xc0 | csid]
            };
            chunk.extend_from_slice(piece);
            chunk
        })
        .collect()
}

/// A body of `len` bytes after `prefix`, different for every `seed`.
fn body(prefix: &[u8], len: usize, seed: u32) -> Vec<u8> {
    let mut body = prefix.to_vec();
    body.extend((body.len()..len).map(|i| (i as u32 * 7 + seed * 13) as u8));
    body
}

/// An `@setDataFrame onMetaData` message body of more than `min_len` bytes (a long comment
/// pads it, so that it spans chunks too).
fn metadata(min_len: usize, width: f64) -> Vec<u8> {
    let properties = HashMap::from([
        ("width".to_string(), Amf0Value::Number(width)),
        ("height".to_string(), Amf0Value::Number(720.0)),
        ("videocodecid".to_string(), Amf0Value::Number(7.0)),
        ("audiocodecid".to_string(), Amf0Value::Number(10.0)),
        (
            "comment".to_string(),
            Amf0Value::Utf8String("x".repeat(min_len)),
        ),
    ]);
    rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("@setDataFrame".into()),
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(properties),
    ])
    .expect("metadata")
}

/// What the interleaving publisher sends, and what a viewer must receive of it.
struct Interleaved {
    bytes: Vec<u8>,
    /// Audio and video in the order they complete (which viewers get), with timestamps.
    media: Vec<Sent>,
}

/// The sequence headers, then `groups` groups of a video frame (four chunks or more), an
/// audio frame (two or more) and, in every other group, metadata (two or more), sent as
/// V0 A0 V1 D0 A1 V2 D1 V3...: the audio and the metadata complete inside the video, and
/// the metadata's chunks sit between the audio's. Each group is stamped 40 ms after the
/// previous one, so what completes first is never later.
fn interleaved(chunk_size: usize, groups: u32) -> Interleaved {
    let mut bytes = Vec::new();
    let mut media = Vec::new();
    let video_header = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff];
    let audio_header = vec![0xaf, 0, 0x12, 0x10];
    for chunk in chunks(CSID_VIDEO, VIDEO, 0, &video_header, chunk_size) {
        bytes.extend(chunk);
    }
    for chunk in chunks(CSID_AUDIO, AUDIO, 0, &audio_header, chunk_size) {
        bytes.extend(chunk);
    }
    media.push(Sent::new(TagKind::Video, 0, video_header.into()));
    media.push(Sent::new(TagKind::Audio, 0, audio_header.into()));
    for g in 0..groups {
        let ts = g * 40;
        let picture: &[u8] = if g == 0 {
            &[0x17, 1, 0, 0, 0]
        } else {
            &[0x27, 1, 0, 0, 0]
        };
        let video = body(picture, 3 * chunk_size + chunk_size / 2, g);
        let audio = body(&[0xaf, 1], chunk_size + chunk_size / 2, g);
        let data = metadata(chunk_size, 1280.0 + f64::from(g));
        let v = chunks(CSID_VIDEO, VIDEO, ts, &video, chunk_size);
        let a = chunks(CSID_AUDIO, AUDIO, ts, &audio, chunk_size);
        let d = chunks(CSID_DATA, DATA, ts, &data, chunk_size);
        assert_eq!((v.len(), a.len(), d.len()), (4, 2, 2));
        let order: &[(&[Vec<u8>], usize)] = if g % 2 == 0 {
            &[
                (&v, 0),
                (&a, 0),
                (&v, 1),
                (&d, 0),
                (&a, 1),
                (&v, 2),
                (&d, 1),
                (&v, 3),
            ]
        } else {
            &[(&v, 0), (&a, 0), (&v, 1), (&a, 1), (&v, 2), (&v, 3)]
        };
        for (message, i) in order {
            bytes.extend_from_slice(&message[*i]);
        }
        // Viewers start at the first keyframe: the audio that completes inside it comes
        // before it, and is not theirs.
        if g > 0 {
            media.push(Sent::new(TagKind::Audio, ts, audio.into()));
        }
        media.push(Sent::new(TagKind::Video, ts, video.into()));
    }
    Interleaved { bytes, media }
}

/// Connects, sets `chunk_size`, publishes `name` on message stream 1.
fn raw_publisher(server: &corecast::Server, name: &str, chunk_size: u32) -> RawClient {
    let mut client = RawClient::connect(server.rtmp_addr());
    let mut setup = client.set_chunk_size(chunk_size);
    setup.extend(client.publish_commands(name));
    client.send(&setup);
    assert_eq!(client.publish_status(), "NetStream.Publish.Start");
    client
}

#[test]
fn interleaved_chunk_streams_are_relayed_byte_for_byte() {
    let server = start("");
    // Paced: the headers and the first group come in small pieces, so the server reads them
    // in several reads while the viewers wait for their first keyframe; they get the
    // headers once (they once got them again at each read, and at times at once when the
    // reads fell that way unpaced).
    for (chunk_size, paced) in [(128usize, false), (4096, false), (128, true)] {
        let name = format!(
            "interleaved{chunk_size}{}",
            if paced { "paced" } else { "" }
        );
        let mut publisher = raw_publisher(&server, &name, chunk_size as u32);
        let flv = Watch::flv(&server, &name);
        let rtmp = Watch::rtmp(&server, &name);
        let sent = interleaved(chunk_size, 12);
        let first = if paced { 2048.min(sent.bytes.len()) } else { 0 };
        for piece in sent.bytes[..first].chunks(100) {
            publisher.send(piece);
            std::thread::sleep(Duration::from_millis(5));
        }
        publisher.send(&sent.bytes[first..]);
        // The end of the stream ends the viewers.
        let delete = publisher.command("deleteStream", 4.0, 0, vec![Amf0Value::Number(1.0)]);
        publisher.send(&delete);
        for watch in [flv, rtmp] {
            let who = watch.who.clone();
            let (got, ending) = watch.finish(WAIT);
            assert!(ending.error.is_none(), "{who}: {ending:?}");
            // Every message, nothing more, byte for byte and at its time.
            assert_eq!(
                media_of(&got).len(),
                sent.media.len(),
                "{who}: media messages"
            );
            assert_tail(&who, &got, &sent.media);
            if who.starts_with("FLV") {
                // So did the metadata: each one sent after the first keyframe, in order
                // (after the one current when the viewer started).
                let widths: Vec<f64> = got
                    .iter()
                    .filter(|s| s.kind == TagKind::Script)
                    .filter_map(|s| script_number(&s.data, "width"))
                    .collect();
                let later: Vec<f64> = (2..12).step_by(2).map(|g| 1280.0 + f64::from(g)).collect();
                assert!(widths.ends_with(&later), "{who}: metadata {widths:?}");
            }
        }
        assert_eq!(total(&server, |s| &s.rtmp_bad_input), 0);
    }
    server.stop();
}

/// Reads what the server sent so far (waiting at most `wait`) into `chunks`; the sequence
/// numbers of the acknowledgements among it.
fn acknowledgements(
    client: &mut RawClient,
    chunks: &mut ChunkDeserializer,
    wait: Duration,
) -> Vec<u32> {
    let mut buf = vec![0u8; 65536];
    client
        .stream
        .set_read_timeout(Some(wait))
        .expect("read timeout");
    let n = match client.stream.read(&mut buf) {
        Ok(0) => panic!("the server closed the publisher"),
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            0
        }
        Err(e) => panic!("publisher read: {e}"),
    };
    let mut acks = Vec::new();
    let mut input = &buf[..n];
    while let Some(message) = chunks.get_next_message(input).expect("valid chunks") {
        input = &[];
        if message.type_id == 1 {
            let size = u32::from_be_bytes(message.data[..4].try_into().expect("4 bytes"));
            chunks
                .set_max_chunk_size(size as usize)
                .expect("chunk size");
        }
        if message.type_id == ACKNOWLEDGEMENT {
            acks.push(u32::from_be_bytes(
                message.data[..4].try_into().expect("4 bytes"),
            ));
        }
    }
    acks
}

/// An encoder that honours the acknowledgement window: it announces a window of 2.5 MB and
/// never has more than that unacknowledged (counting every byte it sent, the handshake's
/// included; it does not start a frame that would pass the window), as hardware encoders and
/// some services do. At about 4 Mbit/s for 60 s it needs a dozen windows acknowledged, each
/// acknowledgement with the sequence number the specification defines.
#[test]
fn an_encoder_that_waits_for_acknowledgements_keeps_publishing() {
    const WINDOW: u32 = 2_500_000;
    const SECONDS: u32 = 60;
    let server = start("");
    let mut client = RawClient::connect(server.rtmp_addr());
    // C0, C1 and C2.
    let mut sent: u64 = 1 + 1536 + 1536;
    let mut setup = client.message(RtmpMessage::WindowAcknowledgement { size: WINDOW }, 0, 0);
    setup.extend(client.set_chunk_size(4096));
    setup.extend(client.publish_commands("acked"));
    client.send(&setup);
    sent += setup.len() as u64;
    assert_eq!(client.publish_status(), "NetStream.Publish.Start");
    let mut chunks = ChunkDeserializer::new();
    let mut acked: u64 = 0;
    let mut acks = Vec::new();
    let flv = Watch::flv(&server, "acked");
    let started = Instant::now();
    let frames = SECONDS * 25;
    let mut frame_bytes = client.keyframe(20_000);
    for i in 0..frames {
        if i > 0 {
            let frame = body(&[0x27, 1, 0, 0, 0], 20_000, i);
            frame_bytes = client.message(
                RtmpMessage::VideoData { data: frame.into() },
                STREAM,
                i * 40,
            );
        }
        // Wait for the window to open (as such an encoder does), at most 5 s.
        let waited = Instant::now();
        while sent + frame_bytes.len() as u64 - acked > u64::from(WINDOW) {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "no acknowledgement for 5 s at frame {i}: {sent} bytes sent, {acked} acknowledged"
            );
            for ack in acknowledgements(&mut client, &mut chunks, Duration::from_millis(100)) {
                // The sequence number is the bytes received so far (no wrap at this size).
                assert!(u64::from(ack) <= sent, "acknowledged {ack} of {sent} bytes");
                assert!(u64::from(ack) > acked, "acknowledgements go forward");
                acked = u64::from(ack);
                acks.push(ack);
            }
        }
        client.send(&frame_bytes);
        sent += frame_bytes.len() as u64;
        // Paced at 25 frames a second.
        let due = started + Duration::from_millis(u64::from(i + 1) * 40);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert!(started.elapsed() >= Duration::from_secs(u64::from(SECONDS)));
    // The encoder waited for them: a dozen windows went by.
    assert!(sent > 12 * u64::from(WINDOW), "{sent} bytes sent");
    // An acknowledgement every half window (one is due at least every window).
    for pair in acks.windows(2) {
        assert!(pair[1] - pair[0] >= WINDOW / 2, "acknowledgements {pair:?}");
    }
    let delete = client.command("deleteStream", 4.0, 0, vec![Amf0Value::Number(1.0)]);
    client.send(&delete);
    let (got, _) = flv.finish(WAIT);
    // The viewer got every frame (the sequence header, then all of them).
    assert_eq!(media_of(&got).len(), frames as usize + 1);
    server.stop();
}

#[test]
fn a_player_on_its_second_message_stream_gets_the_stream_on_it() {
    let server = start("");
    let mut publisher = raw_publisher(&server, "second", 4096);
    let mut media = publisher.keyframe(10_000);
    let frames: Vec<Bytes> = (1..20u32)
        .map(|i| Bytes::from(body(&[0x27, 1, 0, 0, 0], 3000, i)))
        .collect();
    for (i, frame) in frames.iter().enumerate() {
        let data = frame.clone();
        let ts = 40 * (i as u32 + 2);
        media.extend(publisher.message(RtmpMessage::VideoData { data }, STREAM, ts));
    }
    publisher.send(&media);
    wait_live(&server, "/live/second.flv");
    // The GOP cache holds all of it; the player gets it from the keyframe.
    let mut player = RawClient::connect(server.rtmp_addr());
    let mut commands = player.connect_app();
    commands.extend(player.command("createStream", 2.0, 0, Vec::new()));
    commands.extend(player.command("createStream", 3.0, 0, Vec::new()));
    let name = vec![Amf0Value::Utf8String("second".into())];
    commands.extend(player.command("play", 4.0, 2, name));
    player.send(&commands);
    let last = frames[frames.len() - 1].clone();
    let got = player.read_messages(WAIT, |got| {
        got.iter().any(|m| m.type_id == VIDEO && m.data == last)
    });
    let video: Vec<_> = got.iter().filter(|m| m.type_id == VIDEO).collect();
    // The sequence header, the keyframe and every frame, all on message stream 2.
    assert_eq!(video.len(), 2 + frames.len());
    for message in &video {
        assert_eq!(message.message_stream_id, 2, "video on the player's stream");
    }
    let bodies: Vec<Bytes> = video[2..].iter().map(|m| m.data.clone()).collect();
    assert_eq!(bodies, frames);
    // The play was answered on it too.
    assert!(got.iter().any(|m| m.type_id == 20
        && m.message_stream_id == 2
        && m.data.windows(20).any(|w| w == b"NetStream.Play.Start")));
    server.stop();
}
