//! Inputs found by the fuzz targets in `fuzz/` (see fuzz/README.md), kept as regression
//! tests: each calls the same public function as its target, with the input inline, and
//! checks that it is handled (a typed error or a sound answer), never a panic that escapes.

mod common;

use common::*;
use corecast::flv::reader::{FlvError, FlvReader};
use corecast::http::request::{byte_range, parse_head, ByteRange};
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

/// One RTMP message in a single chunk with a full (type 0) header; `body` fits in the
/// default chunk size (128).
fn chunk(csid: u8, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= 128);
    let mut out = vec![csid, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    out.extend_from_slice(body);
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
    // The server's input guard refuses it before the session sees it.
    assert_eq!(
        InputGuard::new(65536).scan(&input, CONTROL_MESSAGE_LIMIT),
        Err(GuardError::LengthChanged { from: 200, to: 10 })
    );
}

/// rtmp_chunks: an empty message on chunk stream 64, then a type 1 header on it whose delta
/// field is 0xFFFFFF (extended timestamp follows) with an extended value of 0. rml_rtmp's
/// deserializer computes `extended - 0xFFFFFF` (deserializer.rs:358): a panic with overflow
/// checks, a wrapped timestamp without. The input guard refuses it first.
#[test]
fn extended_delta_below_the_marker_is_refused() {
    let input: [u8; 27] = [
        0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
        0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(
        InputGuard::new(65536).scan(&input, CONTROL_MESSAGE_LIMIT),
        Err(GuardError::ExtendedTimestamp { value: 0 })
    );
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
