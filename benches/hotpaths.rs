//! Microbenchmarks of the per-unit and per-viewer hot paths (pure code, no IO):
//! a unit's serialization (its FLV tag and RTMP chunks in one buffer, once per unit per
//! stream), MPEG-TS muxing
//! (once per unit per stream with HLS), and the cursor's gather + advance (once per viewer
//! per send: the user-space part of fan-out besides the system call), and the RTMP input
//! guard beside rml_rtmp's chunk deserializer (once per byte a publisher sends), on video
//! alone, on a realistic mix (video, audio, onMetaData, whose AMF0 nesting the guard reads),
//! and on AMF0 data alone (the guard's worst case per byte); and a publisher's whole RTMP
//! connection (guard, session, state, actions) beside the guard and session alone.
//!
//! Run: `cargo bench --bench hotpaths`. `HOT_ROUNDS` (default 5) rounds, best one counts.

use bytes::Bytes;
use corecast::hls::ts::TsMuxer;
use corecast::hub::cursor::Cursor;
use corecast::hub::ring::Ring;
use corecast::media::{Format, Unit, UnitKind};
use corecast::rtmp::amf::Nesting;
use corecast::rtmp::connection::{Action, Connection, Settings};
use corecast::rtmp::guard::InputGuard;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::hint::black_box;
use std::io::IoSlice;
use std::time::Instant;

/// A 2.6 Mbit/s, 30 fps stream's average video frame.
const FRAME: usize = 10_800;

fn best_ns(rounds: u32, iters: u64, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rounds: u32 = std::env::var("HOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut body = vec![0x5au8; FRAME];
    body[..5].copy_from_slice(&[0x27, 1, 0, 0, 0]);
    body[5..9].copy_from_slice(&((FRAME - 9) as u32).to_be_bytes());
    body[9] = 0x41;

    println!("hot paths, {FRAME}-byte video frames, best of {rounds} rounds");
    let unit = best_ns(rounds, 200_000, || {
        black_box(Unit::serialize(
            UnitKind::Video,
            40,
            false,
            false,
            black_box(&body),
            4096,
            None,
        ));
    });
    println!(
        "{:<52} {:>10.0} ns",
        "unit serialization, FLV + RTMP 4096 (per unit)", unit
    );

    let mut muxer = TsMuxer::new();
    muxer
        .set_video_config(&[
            0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2,
            0x68, 0xee,
        ])
        .expect("config");
    let mut out = Vec::with_capacity(64 * 1024);
    let mut dts = 0u64;
    let ts = best_ns(rounds, 50_000, || {
        out.clear();
        dts += 33;
        muxer
            .write_video(&mut out, dts, black_box(&body), false)
            .expect("mux");
        black_box(&out);
    });
    println!(
        "{:<52} {:>10.0} ns",
        "MPEG-TS muxing (per video frame per stream)", ts
    );

    // Fan-out bookkeeping: a viewer gathers the units pending since its last send and
    // advances over what the kernel took. Five units per send, as with a 50 ms window. An
    // HTTP-FLV viewer sends one slice per unit, an RTMP player one per chunk and chunk
    // header. One GOP: a viewer reads within its GOP, as caught-up viewers do.
    let mut ring = Ring::new(1 << 30, u64::MAX);
    let frame = vec![0u8; 4_500];
    for seq in 0..100_000u64 {
        let key = seq == 0;
        let mut unit = Unit::serialize(UnitKind::Video, seq as u32, key, false, &frame, 4096, None);
        unit.seq = seq;
        ring.push(unit, 0);
    }
    let per_send = 5u64;
    for format in [Format::Flv, Format::Rtmp] {
        let mut cursor = Cursor::new(format, Vec::new(), 0);
        let mut recorded = 0u64;
        let gather = best_ns(rounds, 19_000, || {
            if cursor.position() + per_send > ring.end() {
                cursor = Cursor::new(format, Vec::new(), 0);
            }
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(32);
            let n = cursor.gather(&ring, &mut iov, 1 << 20, 4 * per_send as usize);
            drop(iov);
            cursor.advance(&ring, n, |_| recorded += 1);
        }) / per_send as f64;
        black_box(recorded);
        println!(
            "{:<52} {:>10.1} ns",
            format!("cursor gather + advance, {format:?} (per unit per viewer)"),
            gather
        );
    }

    // A publisher's input: one second of 30 video frames, 4096-byte chunks, read 64 KiB at
    // a time. The chunk layer reads every chunk header and copies every payload once, into
    // its message (so does rml_rtmp's deserializer, measured for scale).
    let video: Vec<(u8, u32, Vec<u8>)> = (0..30u32).map(|i| (9, i * 33, body.clone())).collect();
    let input = publisher_input(&video);
    let per_mb = 1e6 / input.len() as f64;
    let guard = guard_ns(rounds, 2_000, &input) * per_mb;
    // The same second with its audio (43 AAC frames of 372 bytes: 128 kbit/s) and an
    // onMetaData in front, as an encoder starts a stream: the checks read the AMF0 nesting of
    // the metadata, not the media.
    let mut meta = StreamMetadata::new();
    meta.video_width = Some(1280);
    meta.video_height = Some(720);
    meta.video_codec_id = Some(7);
    meta.video_frame_rate = Some(30.0);
    meta.video_bitrate_kbps = Some(2500);
    meta.audio_codec_id = Some(10);
    meta.audio_bitrate_kbps = Some(128);
    meta.audio_sample_rate = Some(44100);
    meta.audio_channels = Some(2);
    meta.audio_is_stereo = Some(true);
    meta.encoder = Some("obs-output module (libobs version 30.1.2)".into());
    let mut set_data_frame =
        rml_amf0::serialize(&vec![Amf0Value::Utf8String("@setDataFrame".into())])
            .expect("a string");
    set_data_frame.extend_from_slice(&corecast::flv::metadata_body(&meta));
    let mut media = Vec::new();
    for (i, frame) in video.iter().enumerate() {
        media.push(frame.clone());
        for a in i * 43 / 30..(i + 1) * 43 / 30 {
            media.push((8, a as u32 * 23, vec![0xaf; 372]));
        }
    }
    let av = publisher_input(&media);
    let guard_av = guard_ns(rounds, 2_000, &av) * 1e6 / av.len() as f64;
    // The same second through the whole RTMP connection of a publisher (chunk layer, state,
    // actions; media no longer goes through the session), beside rml_rtmp's session alone,
    // which read it before (its deserializer, then an event per message).
    let mut conn = publishing_connection();
    let connection_av = best_ns(rounds, 500, || {
        for read in av.chunks(65536) {
            conn.handle_input(black_box(read), 0);
            while let Some(action) = conn.poll_action() {
                black_box(action);
            }
        }
    }) * 1e6
        / av.len() as f64;
    let mut session = publishing_session();
    // Both do the same work: every media message of the second raised as an event.
    let raised = |results: Vec<ServerSessionResult>| {
        results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    ServerSessionResult::RaisedEvent(
                        ServerSessionEvent::VideoDataReceived { .. }
                            | ServerSessionEvent::AudioDataReceived { .. }
                    )
                )
            })
            .count()
    };
    let events: usize = av
        .chunks(65536)
        .map(|read| raised(corecast::rtmp::session_input(&mut session, read).expect("valid")))
        .sum();
    let mut actions = 0;
    for read in av.chunks(65536) {
        conn.handle_input(read, 0);
        while let Some(action) = conn.poll_action() {
            actions += usize::from(matches!(action, Action::Media { .. }));
        }
    }
    assert_eq!((events, actions), (media.len(), media.len()));
    let session_av = best_ns(rounds, 500, || {
        for read in av.chunks(65536) {
            black_box(corecast::rtmp::session_input(&mut session, read).expect("valid"));
        }
    }) * 1e6
        / av.len() as f64;
    let mut mix = vec![(18u8, 0u32, set_data_frame)];
    mix.extend(media);
    let mixed = publisher_input(&mix);
    let guard_mixed = guard_ns(rounds, 2_000, &mixed) * 1e6 / mixed.len() as f64;
    // AMF0 data alone: a 64 KiB onMetaData of 2,000 properties (numbers, strings, flags),
    // what a publisher would send to make the guard read as much AMF0 as it can.
    let properties = (0..2_000)
        .map(|i| {
            let value = match i % 3 {
                0 => Amf0Value::Number(f64::from(i)),
                1 => Amf0Value::Utf8String(format!("value {i}")),
                _ => Amf0Value::Boolean(true),
            };
            (format!("property{i}"), value)
        })
        .collect();
    let amf = rml_amf0::serialize(&vec![
        Amf0Value::Utf8String("@setDataFrame".into()),
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(properties),
    ])
    .expect("flat values");
    let data = publisher_input(&[(18, 0, amf.clone())]);
    let guard_amf = guard_ns(rounds, 500, &data) * 1e6 / data.len() as f64;
    let scan_amf = best_ns(rounds, 500, || {
        let mut nesting = Nesting::new(18);
        nesting.read(black_box(&amf)).expect("flat");
        black_box(nesting.deepest());
    }) * 1e6
        / amf.len() as f64;
    let decode_amf = best_ns(rounds, 100, || {
        black_box(rml_amf0::deserialize(&mut black_box(&amf[..])).expect("valid"));
    }) * 1e6
        / amf.len() as f64;
    let deserializer = best_ns(rounds, 500, || {
        let mut de = ChunkDeserializer::new();
        for read in input.chunks(65536) {
            let mut bytes = read;
            while let Some(message) = de.get_next_message(bytes).expect("valid") {
                if message.type_id == 1 {
                    de.set_max_chunk_size(4096).expect("chunk size");
                }
                black_box(message);
                bytes = &[];
            }
        }
    }) * per_mb;
    println!(
        "{:<52} {:>10.0} ns",
        "RTMP chunk layer + checks (per MB from a publisher)", guard
    );
    println!(
        "{:<52} {:>10.0} ns",
        "RTMP chunk layer + checks, video+audio (per MB)", guard_av
    );
    println!(
        "{:<52} {:>10.0} ns",
        "RTMP chunk layer + checks, video+audio+onMetaData (per MB)", guard_mixed
    );
    println!(
        "{:<52} {:>10.0} ns",
        "RTMP connection, video+audio (per MB)", connection_av
    );
    println!(
        "{:<52} {:>10.0} ns",
        "rml_rtmp session alone (its chunks), video+audio (per MB)", session_av
    );
    println!(
        "{:<52} {:>10.0} ns",
        "RTMP chunk layer + checks, AMF0 data only (per MB)", guard_amf
    );
    println!(
        "{:<52} {:>10.0} ns",
        "AMF0 nesting scan alone (per MB of AMF0)", scan_amf
    );
    println!(
        "{:<52} {:>10.0} ns",
        "rml_amf0 decoding the same (per MB, for scale)", decode_amf
    );
    println!(
        "{:<52} {:>10.0} ns",
        "rml_rtmp chunk deserializer (per MB, for scale)", deserializer
    );
}

/// A server connection of a publisher of `live/bench`, past the handshake and the publish
/// request (accepted).
fn publishing_connection() -> Connection {
    let settings = Settings {
        chunk_size: 4096,
        max_chunk_size: 65536,
        max_message_bytes: 1 << 23,
        setup_timeout_ns: u64::MAX / 4,
        idle_timeout_ns: u64::MAX / 4,
    };
    let peer = "127.0.0.1:1".parse().expect("address");
    let mut conn = Connection::new(settings, peer, 0).expect("session");
    let mut handshake = vec![3u8];
    handshake.resize(1 + 2 * 1536, 0);
    conn.handle_input(&handshake, 0);
    conn.handle_input(&publish_commands().concat(), 0);
    while let Some(action) = conn.poll_action() {
        if let Action::Publish(_) = action {
            conn.accept(0);
        }
    }
    assert!(conn.publishing().is_some(), "the publish was accepted");
    conn
}

/// An rml_rtmp server session of a publisher of `live/bench` (its publish accepted).
fn publishing_session() -> ServerSession {
    let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).expect("session");
    // One command at a time, each answered before the next is read, as the server does.
    for command in publish_commands() {
        let mut pending: std::collections::VecDeque<_> =
            session.handle_input(&command).expect("valid").into();
        while let Some(result) = pending.pop_front() {
            if let ServerSessionResult::RaisedEvent(
                ServerSessionEvent::ConnectionRequested { request_id, .. }
                | ServerSessionEvent::PublishStreamRequested { request_id, .. },
            ) = result
            {
                pending.extend(session.accept_request(request_id).expect("accepted"));
            }
        }
    }
    session
}

/// `connect("live")`, `createStream`, `publish("bench")`, as a client sends them (one
/// message each).
fn publish_commands() -> Vec<Vec<u8>> {
    let mut serializer = ChunkSerializer::new();
    let mut app = std::collections::HashMap::new();
    app.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
    let commands = [
        ("connect", 1.0, 0, Amf0Value::Object(app), Vec::new()),
        ("createStream", 2.0, 0, Amf0Value::Null, Vec::new()),
        (
            "publish",
            3.0,
            1,
            Amf0Value::Null,
            vec![
                Amf0Value::Utf8String("bench".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        ),
    ];
    commands
        .into_iter()
        .map(|(name, transaction, stream_id, object, args)| {
            let command = RtmpMessage::Amf0Command {
                command_name: name.to_string(),
                transaction_id: transaction,
                command_object: object,
                additional_arguments: args,
            };
            let payload = command
                .into_message_payload(RtmpTimestamp::new(0), stream_id)
                .expect("a command");
            serializer
                .serialize(&payload, true, false)
                .expect("chunks")
                .bytes
        })
        .collect()
}

/// What a publisher sends: Set Chunk Size 4096, then `(type, timestamp, body)` messages.
fn publisher_input(messages: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
    let mut serializer = ChunkSerializer::new();
    let mut input = serializer
        .set_max_chunk_size(4096, RtmpTimestamp::new(0))
        .expect("chunk size")
        .bytes;
    for (type_id, timestamp, body) in messages {
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(*timestamp),
            type_id: *type_id,
            message_stream_id: 1,
            data: Bytes::copy_from_slice(body),
        };
        input.extend(
            serializer
                .serialize(&payload, false, false)
                .expect("chunks")
                .bytes,
        );
    }
    input
}

/// The chunk layer and input checks over `input` read 64 KiB at a time, as a publisher's
/// (8 MiB messages), every message taken.
fn guard_ns(rounds: u32, iters: u64, input: &[u8]) -> f64 {
    best_ns(rounds, iters, || {
        let mut guard = InputGuard::new(65536);
        for mut read in input.chunks(65536) {
            while let Some(message) = guard.next(black_box(&mut read), 1 << 23).expect("admitted") {
                black_box(message);
            }
        }
    })
}
