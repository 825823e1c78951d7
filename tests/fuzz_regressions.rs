//! Inputs found by the fuzz targets in `fuzz/` (see fuzz/README.md), kept as regression
//! tests: each calls the same public function as its target, with the input inline, and
//! checks that it is handled (a typed error or a sound answer), never a panic that escapes.

mod common;

use common::raw_rtmp::read_until;
use common::*;
use corecast::flv::reader::{FlvError, FlvReader, TagKind};
use corecast::http::request::{byte_range, parse_head, ByteRange};
use corecast::rtmp::amf::MAX_AMF_DEPTH;
use corecast::rtmp::chunk::ChunkError;
use corecast::rtmp::guard::{GuardError, InputGuard, CONTROL_MESSAGE_LIMIT};
use corecast::rtmp::{session_input, RtmpError};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// flv_tags: a valid file header, then a tag whose PreviousTagSize is wrong. The call that
/// parses the header and then fails keeps the header consumed, but not the faulty tag: the
/// error is sticky.
#[test]
fn flv_error_after_header_is_sticky() {
    let input: [u8; 47] = [
        b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0, // file header
        0x08, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaf, 0x00, 0x12, 0x08,
        0x56, 0xe5, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xaf,
        0x00, 0x12, 0x08, 0x12,
    ];
    let mut reader = FlvReader::new();
    reader.push(&input);
    let first = reader.next_tag().unwrap_err();
    assert!(matches!(
        first,
        FlvError::PreviousTagSizeMismatch {
            expected: 18,
            actual: 7
        }
    ));
    assert!(reader.header().is_some());
    assert_eq!(reader.buffered_len(), input.len() - 13);
    let again = reader.next_tag().unwrap_err();
    assert_eq!(first.to_string(), again.to_string());
    assert_eq!(reader.buffered_len(), input.len() - 13);
}

/// http_request: a range whose last byte is usize::MAX. `last + 1` overflowed: a panic with
/// overflow checks, and in release builds an empty range `2..0` whose slice panicked in the
/// HTTP driver (HLS segments honour ranges).
#[test]
fn range_ending_at_usize_max_is_clamped() {
    let input: [u8; 30] = *b"O=bytes=2-18446744073709551615";
    let header = std::str::from_utf8(&input[2..]).unwrap();
    assert_eq!(byte_range(Some(header), 100), ByteRange::Part(2, 100));
    assert_eq!(byte_range(Some(header), 2), ByteRange::Unsatisfiable);
    assert_eq!(byte_range(Some(header), 0), ByteRange::Unsatisfiable);
    assert_eq!(
        byte_range(Some(header), usize::MAX),
        ByteRange::Part(2, usize::MAX)
    );
    assert_eq!(
        byte_range(Some("bytes=0-18446744073709551615"), 61),
        ByteRange::Part(0, 61)
    );
    // As a request head, the way the driver gets it.
    let head = format!("GET /live/cam-7-3.ts HTTP/1.1\r\nRange: {header}\r\n\r\n");
    let (request, _) = parse_head(head.as_bytes(), 8192).unwrap().unwrap();
    assert_eq!(
        byte_range(request.range.as_deref(), 188),
        ByteRange::Part(2, 188)
    );
}

/// One RTMP message in chunks of the default chunk size (128): a full (type 0) header, then
/// type 3 headers.
fn chunk(csid: u8, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![csid, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, piece) in body.chunks(128).enumerate() {
        if i > 0 {
            out.push(0xc0 | csid);
        }
        out.extend_from_slice(piece);
    }
    out
}

/// An AMF0 command message (type 20).
fn command(stream_id: u32, values: Vec<Amf0Value>) -> Vec<u8> {
    chunk(3, 20, stream_id, &rml_amf0::serialize(&values).unwrap())
}

fn new_session() -> ServerSession {
    ServerSession::new(ServerSessionConfig::new()).unwrap().0
}

/// Accepts every connect and publish request among `results`, as the RTMP driver does.
fn accept_all(session: &mut ServerSession, results: Vec<ServerSessionResult>) -> bool {
    let mut published = false;
    for result in results {
        if let ServerSessionResult::RaisedEvent(event) = result {
            match event {
                ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                    session.accept_request(request_id).unwrap();
                }
                ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                    session.accept_request(request_id).unwrap();
                    published = true;
                }
                _ => {}
            }
        }
    }
    published
}

/// A session that has accepted connect("live"), createStream and publish("fuzz") on
/// message stream 1, fed through `rtmp::session_input` as the server feeds it.
fn publishing_session() -> ServerSession {
    let mut session = new_session();
    let connect = command(
        0,
        vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object([("app".to_string(), Amf0Value::Utf8String("live".into()))].into()),
        ],
    );
    let create = command(
        0,
        vec![
            Amf0Value::Utf8String("createStream".into()),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ],
    );
    let publish = command(
        1,
        vec![
            Amf0Value::Utf8String("publish".into()),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::Utf8String("fuzz".into()),
            Amf0Value::Utf8String("live".into()),
        ],
    );
    let mut published = false;
    for read in [connect, create, publish] {
        let results = session_input(&mut session, &read).unwrap();
        published |= accept_all(&mut session, results);
    }
    assert!(published);
    session
}

fn assert_contained(result: Result<Vec<ServerSessionResult>, RtmpError>) {
    assert!(
        matches!(result, Err(RtmpError::SessionPanic)),
        "expected a contained panic, got {result:?}"
    );
}

/// amf0 (mode 3): an AMF0 command message with fewer than three values. rml_rtmp drains
/// `..3` from the decoded values and panics (amf0_command.rs); corecast contains it.
#[test]
fn command_with_too_few_values_is_contained() {
    // The fuzzer's body: a strict array and a number, two values.
    let body: [u8; 10] = [0x0a, 0x00, 0x00, 0x03, 0x00, 0x0a, 0x00, 0x01, 0x00, 0x02];
    let mut session = publishing_session();
    assert_contained(session_input(&mut session, &chunk(3, 20, 1, &body)));
    // The same on a fresh connection, before connect: a lone command name.
    let lone = chunk(
        3,
        20,
        0,
        &[0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't'],
    );
    assert_contained(session_input(&mut new_session(), &lone));
    // rtmp_session: an empty command message.
    assert_contained(session_input(&mut new_session(), &chunk(3, 20, 0, &[])));
}

/// rtmp_session: a message is half received when a type 1 chunk header on the same chunk
/// stream announces a shorter length. rml_rtmp subtracts the bytes already received from
/// the new length (chunk_io/deserializer.rs): an overflow, which panics where overflow
/// checks are on (test builds, fuzzing) and wraps in release builds. Either way the caller
/// gets an answer, and with overflow checks it is the contained panic.
#[test]
fn shrinking_message_length_mid_message_is_contained() {
    // Type 0 header on chunk stream 3: a 200-byte video message on stream 1, and its
    // first 128-byte chunk (the default chunk size).
    let mut input = vec![0x03, 0, 0, 0, 0, 0, 200, 0x09, 1, 0, 0, 0];
    input.extend_from_slice(&[0u8; 128]);
    // Type 1 header on chunk stream 3: timestamp delta 0, length 10, video.
    input.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 10, 0x09]);
    input.extend_from_slice(&[0u8; 10]);
    let result = session_input(&mut new_session(), &input);
    if cfg!(debug_assertions) {
        assert_contained(result);
    }
    // The server's chunk layer refuses it: a chunk stream's message continues with type 3
    // headers only.
    assert_eq!(
        InputGuard::new(65536).read(&input, CONTROL_MESSAGE_LIMIT),
        Err(GuardError::Chunk(ChunkError::MessageInterrupted(3)))
    );
}

/// rtmp_chunks: an empty message on chunk stream 64, then a type 1 header on it whose delta
/// field is 0xFFFFFF (extended timestamp follows) with an extended value of 0. rml_rtmp's
/// deserializer computes `extended - 0xFFFFFF` (deserializer.rs:358): a panic with overflow
/// checks, a wrapped timestamp without. corecast's chunk layer reads the delta as it is.
#[test]
fn extended_delta_below_the_marker_is_refused() {
    let input: [u8; 27] = [
        0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
        0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let read = InputGuard::new(65536)
        .read(&input, CONTROL_MESSAGE_LIMIT)
        .unwrap();
    // An empty message at 64 ms, then one whose extended delta of 0 adds nothing.
    let timestamps: Vec<u32> = read.iter().map(|m| m.timestamp).collect();
    assert_eq!(timestamps, [64, 64]);
    let result = session_input(&mut new_session(), &input);
    if cfg!(debug_assertions) {
        assert_contained(result);
    }
}

/// amf0 (mode 2): "@setDataFrame", "onMetaData" and nothing after them. rml_rtmp removes
/// the missing third value and panics (sessions/server/mod.rs); corecast contains it.
#[test]
fn set_data_frame_without_properties_is_contained() {
    let mut body = vec![0x02, 0x00, 0x0d];
    body.extend_from_slice(b"@setDataFrame");
    body.extend_from_slice(&[0x02, 0x00, 0x0a]);
    body.extend_from_slice(b"onMetaData");
    let mut session = publishing_session();
    assert_contained(session_input(&mut session, &chunk(4, 18, 1, &body)));
}

/// amf0 (mode 1): a data message whose only value is "@setDataFrame" (the object end
/// marker after it ends the decoding). rml_rtmp indexes the missing next value and panics
/// (sessions/server/mod.rs); corecast contains it.
#[test]
fn lone_set_data_frame_is_contained() {
    let body: [u8; 25] = [
        0x02, 0x00, 0x0d, b'@', b's', b'e', b't', b'D', b'a', b't', b'a', b'F', b'r', b'a', b'm',
        b'e', 0x09, 0x40, 0x18, 0x51, 0x00, 0x00, 0x00, 0x00, 0x69,
    ];
    let mut session = publishing_session();
    assert_contained(session_input(&mut session, &chunk(4, 18, 1, &body)));
}

/// End to end: the contained panic closes only that connection, and is counted.
#[test]
fn contained_panic_closes_the_connection_and_is_counted() {
    let server = start("");
    let mut bad = TcpStream::connect(server.rtmp_addr()).unwrap();
    rtmp_handshake(&mut bad);
    let lone = chunk(
        3,
        20,
        0,
        &[0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't'],
    );
    bad.write_all(&lone).unwrap();
    read_until_closed(&mut bad, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || {
        total(&server, |s| &s.rtmp_session_panics) == 1
            && total(&server, |s| &s.rtmp_bad_input) == 1
    }));
    // The server still serves.
    let mut witness = publisher(&server, "after");
    for tag in fixture_tags().iter().take(5) {
        witness.send_tag(tag).unwrap();
    }
    server.stop();
}

/// AMF0 markers of the containers rml_amf0 reads recursively.
const OBJECT: u8 = 0x03;
const ECMA_ARRAY: u8 = 0x08;
const STRICT_ARRAY: u8 = 0x0a;

/// A command name and transaction id, then containers of the kind `marker` opened one inside
/// the other (never closed) up to `size` bytes: what overflowed a shard's stack in rml_rtmp's
/// recursive AMF0 reader at 36 KB, right after the handshake.
fn deep_amf(marker: u8, size: usize) -> Vec<u8> {
    let mut body = vec![0x02, 0x00, 0x07];
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&1f64.to_be_bytes());
    let level: &[u8] = match marker {
        OBJECT => &[OBJECT, 0, 1, b'a'],
        ECMA_ARRAY => &[ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'a'],
        _ => &[STRICT_ARRAY, 0, 0, 0, 1],
    };
    while body.len() + level.len() <= size {
        body.extend_from_slice(level);
    }
    body
}

/// amf0 and rtmp_session (seeds `deep-*`): deeply nested objects, ECMA arrays and strict
/// arrays in every message type rml_rtmp decodes as AMF0 (command 20, data 18, and the
/// "AMF3" command 17 and data 15 it also reads as AMF0) are refused by the input guard
/// before the session sees them, from a stranger (64 KiB limit) and from a publisher (a
/// metadata message of up to `rtmp.max_message_bytes`).
#[test]
fn deep_amf_nesting_is_refused_by_the_guard() {
    for type_id in [15u8, 17, 18, 20] {
        for marker in [OBJECT, ECMA_ARRAY, STRICT_ARRAY] {
            for (size, limit) in [(36_000, CONTROL_MESSAGE_LIMIT), (1 << 20, 8 << 20)] {
                let input = chunk(3, type_id, 1, &deep_amf(marker, size));
                assert_eq!(
                    InputGuard::new(65536).read(&input, limit).map(|m| m.len()),
                    Err(GuardError::AmfTooDeep { type_id }),
                    "type {type_id}, marker {marker}, {size} bytes"
                );
            }
        }
    }
    // The bound is in force at the level past it, and not before.
    let prefix = deep_amf(OBJECT, 0).len();
    let mut at_bound = deep_amf(OBJECT, prefix + 4 * MAX_AMF_DEPTH);
    at_bound.push(0x05);
    let input = chunk(3, 20, 0, &at_bound);
    assert_eq!(
        InputGuard::new(65536)
            .read(&input, CONTROL_MESSAGE_LIMIT)
            .map(|m| m.len()),
        Ok(1)
    );
    let one_more = chunk(
        3,
        20,
        0,
        &deep_amf(OBJECT, prefix + 4 * (MAX_AMF_DEPTH + 1)),
    );
    assert_eq!(
        InputGuard::new(65536)
            .read(&one_more, CONTROL_MESSAGE_LIMIT)
            .map(|m| m.len()),
        Err(GuardError::AmfTooDeep { type_id: 20 })
    );
}

/// Feeds `input` through the guard and the session, as the RTMP driver does.
fn guarded(
    guard: &mut InputGuard,
    session: &mut ServerSession,
    input: &[u8],
) -> Vec<ServerSessionResult> {
    assert!(guard.read(input, 8 << 20).is_ok());
    session_input(session, input).unwrap()
}

/// What encoders send still passes: `connect` with its command object, and the onMetaData
/// of the fixture (written by ffmpeg), with a nested track list as newer encoders add.
#[test]
fn real_commands_and_metadata_pass_the_guard() {
    let mut guard = InputGuard::new(65536);
    let mut session = new_session();
    let connect = command(
        0,
        vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(
                [
                    ("app".to_string(), Amf0Value::Utf8String("live".into())),
                    (
                        "flashVer".to_string(),
                        Amf0Value::Utf8String("FMLE/3.0".into()),
                    ),
                    (
                        "tcUrl".to_string(),
                        Amf0Value::Utf8String("rtmp://h/live".into()),
                    ),
                    ("fpad".to_string(), Amf0Value::Boolean(false)),
                    ("capabilities".to_string(), Amf0Value::Number(15.0)),
                ]
                .into(),
            ),
        ],
    );
    let results = guarded(&mut guard, &mut session, &connect);
    assert!(results.iter().any(|r| matches!(
        r,
        ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested { .. })
    )));

    let mut guard = InputGuard::new(65536);
    let mut session = publishing_session();
    let script = fixture_tags()
        .into_iter()
        .find(|tag| tag.kind == TagKind::Script)
        .expect("the fixture's onMetaData");
    let mut values = vec![Amf0Value::Utf8String("@setDataFrame".into())];
    values.extend(rml_amf0::deserialize(&mut &script.data[..]).unwrap());
    if let Some(Amf0Value::Object(properties)) = values.last_mut() {
        let track =
            Amf0Value::Object([("codec".to_string(), Amf0Value::Utf8String("avc1".into()))].into());
        properties.insert("trackinfo".into(), Amf0Value::StrictArray(vec![track]));
    }
    let body = rml_amf0::serialize(&values).unwrap();
    // Set Chunk Size as encoders send it, then the metadata in one chunk.
    let mut input = chunk(2, 1, 0, &4096u32.to_be_bytes());
    let mut data = chunk(4, 18, 1, &[]);
    data[4..7].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    data.extend_from_slice(&body);
    input.extend_from_slice(&data);
    let results = guarded(&mut guard, &mut session, &input);
    assert!(results.iter().any(|r| matches!(
        r,
        ServerSessionResult::RaisedEvent(ServerSessionEvent::StreamMetadataChanged { .. })
    )));
}

/// End to end: the 36 KB command right after the handshake, and a 1 MB onMetaData from a
/// publisher, each close only their connection and are counted as limits hit; the process
/// (which such a message aborted with a stack overflow) still serves.
#[test]
fn deep_amf_closes_only_its_connection() {
    let server = start("");
    let mut stranger = TcpStream::connect(server.rtmp_addr()).unwrap();
    rtmp_handshake(&mut stranger);
    stranger
        .write_all(&chunk(3, 20, 0, &deep_amf(OBJECT, 36_000)))
        .unwrap();
    read_until_closed(&mut stranger, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || {
        total(&server, |s| &s.rtmp_limits_hit) == 1
    }));

    let mut publisher_conn = TcpStream::connect(server.rtmp_addr()).unwrap();
    rtmp_handshake(&mut publisher_conn);
    let requests = [
        command(
            0,
            vec![
                Amf0Value::Utf8String("connect".into()),
                Amf0Value::Number(1.0),
                Amf0Value::Object(
                    [("app".to_string(), Amf0Value::Utf8String("live".into()))].into(),
                ),
            ],
        ),
        command(
            0,
            vec![
                Amf0Value::Utf8String("createStream".into()),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
            ],
        ),
        command(
            1,
            vec![
                Amf0Value::Utf8String("publish".into()),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                Amf0Value::Utf8String("deep".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        ),
    ];
    for request in requests {
        publisher_conn.write_all(&request).unwrap();
    }
    let started: &[u8] = b"NetStream.Publish.Start";
    read_until(&mut publisher_conn, Duration::from_secs(5), |seen| {
        seen.windows(started.len()).any(|w| w == started)
    });
    // Over the 64 KiB a stranger may send: only a publisher gets this far.
    let metadata = chunk(4, 18, 1, &deep_amf(ECMA_ARRAY, 1 << 20));
    // The server closes the connection part way through: writing may fail.
    let _ = publisher_conn.write_all(&metadata);
    read_until_closed(&mut publisher_conn, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || {
        total(&server, |s| &s.rtmp_limits_hit) == 2
    }));
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 0);

    // The command behind a video header, its type changed by a full header mid-message
    // (see `type_change_mid_message_is_refused`): bad input.
    let mut hidden = TcpStream::connect(server.rtmp_addr()).unwrap();
    rtmp_handshake(&mut hidden);
    let mut input = chunk(3, 9, 0, &deep_amf(OBJECT, 36_000));
    input[12 + 128..12 + 128 + 12]
        .copy_from_slice(&chunk(3, 20, 0, &deep_amf(OBJECT, 36_000))[..12]);
    let _ = hidden.write_all(&input);
    read_until_closed(&mut hidden, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || {
        total(&server, |s| &s.rtmp_bad_input) == 1
    }));
    assert_eq!(total(&server, |s| &s.rtmp_session_panics), 0);

    // The server still serves.
    let mut witness = publisher(&server, "after");
    for tag in fixture_tags().iter().take(5) {
        witness.send_tag(tag).unwrap();
    }
    server.stop();
}

/// rtmp_chunks: a full header in the middle of a message, with the message's length but
/// another type (here Set Chunk Size). rml_rtmp's deserializer takes the type from the last
/// chunk's header, so a message read as video could reach its AMF0 reader as a command.
/// corecast's chunk layer continues a message with type 3 headers only.
#[test]
fn type_change_mid_message_is_refused() {
    let input: [u8; 105] = [
        1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 5, 252, 0, 122, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        0, 9, 1, 0, 0, 0, 9, 0, 0, 251, 252, 0, 122, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 1, 0,
        0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0, 9, 0, 0, 251, 252, 0, 122, 0, 1, 0,
        1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 1, 0, 0, 0, 0, 0, 0, 5, 0, 1,
    ];
    let mut guard = InputGuard::new(65536);
    let refused = [&input[..26], &input[26..65], &input[65..]]
        .iter()
        .map(|read| guard.read(read, u32::MAX))
        .find(Result::is_err);
    assert!(
        matches!(
            refused,
            Some(Err(GuardError::Chunk(ChunkError::MessageInterrupted(_))))
        ),
        "{refused:?}"
    );
    // The deep command hidden behind a video header.
    let mut hidden = chunk(3, 9, 0, &deep_amf(OBJECT, 36_000));
    hidden[140..152].copy_from_slice(&chunk(3, 20, 0, &deep_amf(OBJECT, 36_000))[..12]);
    assert_eq!(
        InputGuard::new(65536)
            .read(&hidden, CONTROL_MESSAGE_LIMIT)
            .map(|m| m.len()),
        Err(GuardError::Chunk(ChunkError::MessageInterrupted(3)))
    );
}

/// upstream_pull: an origin answering an edge's RTMP pull with a command of fewer than
/// three AMF values (here `createStream`'s stream as a lone number) makes rml_rtmp's
/// client session panic; the pull contains it and ends that session with an error (the
/// next origin is tried), as the server does with a client's.
#[test]
fn an_origin_s_short_command_ends_the_pull_with_an_error() {
    use corecast::forward::Target;
    use corecast::upstream::rtmp::RtmpPull;
    use corecast::upstream::PullError;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let input: [u8; 66] = [
        0x23, 0xf5, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xf7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xeb, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x2a, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xef, 0x00, 0x00, 0x00, 0x06, 0x00, 0x1d, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x06,
    ];
    let target = Target::parse("rtmp://127.0.0.1:1935/live/cam", "live", "cam").unwrap();
    let mut pull = RtmpPull::new(&target, "cam".into(), 65536, 65536).unwrap();
    let mut server = Handshake::new(PeerType::Server);
    let answer = match server.process_bytes(&pull.take_output()).unwrap() {
        HandshakeProcessResult::InProgress { response_bytes }
        | HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
    };
    pull.handle_input(&answer).expect("the handshake");
    // As the target fed it: pieces of 37 bytes.
    let ended = input
        .chunks(37)
        .map(|piece| pull.handle_input(piece))
        .find_map(Result::err);
    assert!(
        matches!(&ended, Some(PullError::Protocol(why)) if why.contains("rtmp session")),
        "{ended:?}"
    );
}
