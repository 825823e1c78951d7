//! Unit tests of [`super`] (the chunk reader), against rml_rtmp's serializer and hand-made
//! chunks.

use super::*;
use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::time::RtmpTimestamp;

fn payload(type_id: u8, stream_id: u32, timestamp: u32, len: usize) -> MessagePayload {
    MessagePayload {
        timestamp: RtmpTimestamp::new(timestamp),
        type_id,
        message_stream_id: stream_id,
        data: Bytes::from(
            (0..len)
                .map(|i| (i * 7 + usize::from(type_id)) as u8)
                .collect::<Vec<u8>>(),
        ),
    }
}

/// Generous limits.
const LIMITS: Limits = Limits {
    message: 1 << 20,
    partial: 4 << 20,
};

fn new_reader() -> Reader {
    Reader::new(MAX_CHUNK_SIZE)
}

fn read_all(reader: &mut Reader, input: &[u8]) -> Vec<Message> {
    try_read(reader, input, LIMITS).unwrap()
}

fn try_read(
    reader: &mut Reader,
    mut input: &[u8],
    limits: Limits,
) -> Result<Vec<Message>, ChunkError> {
    let mut out = Vec::new();
    while let Some(message) = reader.next(&mut input, limits)? {
        out.push(message);
    }
    assert!(input.is_empty());
    Ok(out)
}

/// The messages of `bytes` read in pieces of every length from 1 to `bytes.len()`, which
/// must all be the same; returned once.
fn read_cut_anywhere(bytes: &[u8]) -> Vec<Message> {
    let whole = read_all(&mut new_reader(), bytes);
    for piece in 1..bytes.len() {
        let mut reader = new_reader();
        let mut got = Vec::new();
        for mut input in bytes.chunks(piece) {
            while let Some(message) = reader.next(&mut input, LIMITS).unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got, whole, "pieces of {piece}");
    }
    whole
}

fn same(message: &Message, expected: &MessagePayload) {
    assert_eq!(message.type_id, expected.type_id);
    assert_eq!(message.stream_id, expected.message_stream_id);
    assert_eq!(message.timestamp, expected.timestamp.value);
    assert_eq!(message.payload[..], expected.data[..]);
}

#[test]
fn reads_what_rml_rtmp_writes_with_every_header_type() {
    // rml_rtmp compresses headers against the previous message of a chunk stream: the same
    // stream and length give type 2 and 3 headers, a new length type 1.
    let mut writer = ChunkSerializer::new();
    let messages = [
        payload(9, 1, 0, 300),
        payload(9, 1, 40, 300),
        payload(9, 1, 80, 300),
        payload(9, 1, 120, 20),
        payload(8, 1, 10, 5),
        payload(20, 0, 0, 200),
        payload(9, 1, 160, 1),
    ];
    let mut bytes = Vec::new();
    for message in &messages {
        bytes.extend(writer.serialize(message, false, false).unwrap().bytes);
    }
    let mut reader = new_reader();
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.len(), messages.len());
    for (message, expected) in got.iter().zip(&messages) {
        same(message, expected);
    }
}

#[test]
fn follows_the_chunk_size_and_extended_timestamps() {
    let mut writer = ChunkSerializer::new();
    let mut bytes = writer
        .set_max_chunk_size(4096, RtmpTimestamp::new(0))
        .unwrap()
        .bytes;
    let mut reader = new_reader();
    let first = read_all(&mut reader, &bytes);
    assert_eq!(first.len(), 1);
    assert_eq!(reader.chunk_size(), 4096);
    bytes.clear();
    let messages = [
        payload(9, 1, 0x0100_0000, 10_000),
        payload(9, 1, 0x0100_0028, 10_000),
        payload(8, 1, 5, 4096),
    ];
    for message in &messages {
        bytes.extend(writer.serialize(message, false, false).unwrap().bytes);
    }
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.len(), 3);
    for (message, expected) in got.iter().zip(&messages) {
        same(message, expected);
    }
}

/// A chunk by hand: basic header of `fmt` and `csid` (one, two or three bytes), then `rest`.
fn chunk(fmt: u8, csid: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = match csid {
        2..=63 => vec![fmt << 6 | csid as u8],
        64..=319 => vec![fmt << 6, (csid - 64) as u8],
        _ => vec![
            fmt << 6 | 1,
            ((csid - 64) % 256) as u8,
            ((csid - 64) / 256) as u8,
        ],
    };
    out.extend_from_slice(rest);
    out
}

fn type0(timestamp: u32, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut h = timestamp.to_be_bytes()[1..].to_vec();
    h.extend(&len.to_be_bytes()[1..]);
    h.push(type_id);
    h.extend(stream_id.to_le_bytes());
    h
}

#[test]
fn chunk_streams_interleave_each_with_its_own_message() {
    // Video of 300 bytes on chunk stream 6 in chunks of 128, with a whole audio message on
    // chunk stream 4 and metadata on chunk stream 320 (three-byte basic header) between them.
    let video: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut bytes = chunk(0, 6, &type0(1000, 300, 9, 1));
    bytes.extend(&video[..128]);
    bytes.extend(chunk(0, 4, &type0(990, 3, 8, 1)));
    bytes.extend([1, 2, 3]);
    bytes.extend(chunk(0, 320, &type0(0, 2, 18, 1)));
    bytes.extend([9, 9]);
    bytes.extend(chunk(3, 6, &[]));
    bytes.extend(&video[128..256]);
    bytes.extend(chunk(3, 6, &[]));
    bytes.extend(&video[256..]);
    // A type 2 header (delta 20) and a type 3 header starting a message (delta again).
    bytes.extend(chunk(2, 4, &[0, 0, 20]));
    bytes.extend([4, 5, 6]);
    bytes.extend(chunk(3, 4, &[]));
    bytes.extend([7, 8, 9]);
    // An empty message is one header.
    bytes.extend(chunk(1, 4, &[0, 0, 5, 0, 0, 0, 8]));
    let mut reader = new_reader();
    let got: Vec<(u32, u8, u32, Vec<u8>)> = read_all(&mut reader, &bytes)
        .into_iter()
        .map(|m| (m.csid, m.type_id, m.timestamp, m.payload.to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, 8, 990, vec![1, 2, 3]),
            (320, 18, 0, vec![9, 9]),
            (6, 9, 1000, video),
            (4, 8, 1010, vec![4, 5, 6]),
            (4, 8, 1030, vec![7, 8, 9]),
            (4, 8, 1035, vec![]),
        ]
    );
}

#[test]
fn input_may_end_anywhere() {
    let mut bytes = chunk(0, 6, &type0(0x00ff_ffff, 200, 9, 1));
    bytes.extend(0x0100_0000u32.to_be_bytes());
    bytes.extend([0xaa; 128]);
    bytes.extend(chunk(0, 320, &type0(7, 3, 8, 1)));
    bytes.extend([1, 2, 3]);
    bytes.extend(chunk(3, 6, &0x0100_0000u32.to_be_bytes()));
    bytes.extend([0xbb; 72]);
    let got = read_cut_anywhere(&bytes);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].csid, got[0].timestamp), (320, 7));
    assert_eq!((got[1].csid, got[1].timestamp), (6, 0x0100_0000));
    assert_eq!(got[1].payload.len(), 200);
    assert_eq!(got[1].payload[127..129], [0xaa, 0xbb]);
}

/// A video message of `len` bytes in chunks of 128 on chunk stream 6, with `between`
/// inserted after its chunk `at` (0: before the first).
fn video_with(len: usize, at: usize, between: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
    let mut bytes = Vec::new();
    for (i, piece) in body.chunks(128).enumerate() {
        if i == at {
            bytes.extend(between);
        }
        let header = match i {
            0 => chunk(0, 6, &type0(1000, len as u32, 9, 1)),
            _ => chunk(3, 6, &[]),
        };
        bytes.extend(header);
        bytes.extend(piece);
    }
    if at >= len.div_ceil(128) {
        bytes.extend(between);
    }
    (bytes, body)
}

#[test]
fn messages_interleave_at_every_chunk_boundary() {
    // A whole audio message (type 0, then type 2 and type 3 headers on later rounds) and
    // metadata in two chunks of its own chunk stream, between any two chunks of the video.
    let mut audio = chunk(0, 4, &type0(990, 3, 8, 1));
    audio.extend([1, 2, 3]);
    let meta_body = [7u8; 200];
    let mut meta = chunk(0, 5, &type0(0, 200, 18, 1));
    meta.extend(&meta_body[..128]);
    for at in 0..=8 {
        // The metadata's second chunk comes one chunk later (or at the end).
        let (video, body) = video_with(1000, at, &[audio.clone(), meta.clone()].concat());
        let mut rest = chunk(3, 5, &[]);
        rest.extend(&meta_body[128..]);
        let cut = video.len()
            - if at < 7 { 1000 - 128 * (at + 1) } else { 0 }
            - if at < 7 { 8 - at - 1 } else { 0 };
        let bytes = [&video[..cut], &rest[..], &video[cut..]].concat();
        let got = read_cut_anywhere(&bytes);
        let got: Vec<(u32, u8, u32, usize)> = got
            .iter()
            .map(|m| (m.csid, m.type_id, m.timestamp, m.payload.len()))
            .collect();
        assert!(got.contains(&(6, 9, 1000, 1000)), "at {at}: {got:?}");
        assert!(got.contains(&(4, 8, 990, 3)), "at {at}: {got:?}");
        assert!(got.contains(&(5, 18, 0, 200)), "at {at}: {got:?}");
        assert_eq!(got.len(), 3);
        let video = read_all(&mut new_reader(), &bytes)
            .into_iter()
            .find(|m| m.csid == 6)
            .unwrap();
        assert_eq!(video.payload[..], body[..]);
    }
}

#[test]
fn several_messages_are_in_progress_at_once_with_every_header_type() {
    // Three chunk streams take turns chunk by chunk: two video messages (a multitrack
    // encoder) and data; then the next messages on them with type 1, 2 and 3 headers, still
    // interleaved; extended timestamps on one of them, repeated in its type 3 chunks.
    let body = |seed: u8, len: usize| -> Vec<u8> { (0..len).map(|i| seed ^ i as u8).collect() };
    let streams: [(u32, Vec<u8>, Vec<u8>); 3] = [
        (6, type0(100, 300, 9, 1), body(1, 300)),
        (7, type0(0x00ff_ffff, 300, 9, 1), body(2, 300)),
        (8, type0(50, 300, 18, 1), body(3, 300)),
    ];
    let ext = 0x0100_0000u32.to_be_bytes();
    let mut bytes = Vec::new();
    for round in 0..3 {
        for (csid, header, payload) in &streams {
            let extended = *csid == 7;
            let head = match round {
                0 if extended => [&header[..], &ext[..]].concat(),
                0 => header.clone(),
                _ if extended => ext.to_vec(),
                _ => Vec::new(),
            };
            bytes.extend(chunk(if round == 0 { 0 } else { 3 }, *csid, &head));
            bytes.extend(&payload[round * 128..(300).min(round * 128 + 128)]);
        }
    }
    // Second messages: type 1 (new length, delta 40), type 2 (delta 40) and a type 3 that
    // starts a message (the previous field again: an extended one stays extended).
    bytes.extend(chunk(1, 6, &[0, 0, 40, 0, 0, 2, 9]));
    bytes.extend([0xa1, 0xa2]);
    bytes.extend(chunk(3, 7, &ext));
    bytes.extend(&body(4, 128));
    bytes.extend(chunk(2, 8, &[0, 0, 40]));
    bytes.extend(&body(5, 128));
    bytes.extend(chunk(3, 7, &ext));
    bytes.extend(&body(4, 300)[128..256]);
    bytes.extend(chunk(3, 8, &[]));
    bytes.extend(&body(5, 300)[128..256]);
    bytes.extend(chunk(3, 7, &ext));
    bytes.extend(&body(4, 300)[256..]);
    bytes.extend(chunk(3, 8, &[]));
    bytes.extend(&body(5, 300)[256..]);
    let got: Vec<(u32, u32, Vec<u8>)> = read_cut_anywhere(&bytes)
        .into_iter()
        .map(|m| (m.csid, m.timestamp, m.payload.to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            (6, 100, body(1, 300)),
            (7, 0x0100_0000, body(2, 300)),
            (8, 50, body(3, 300)),
            (6, 140, vec![0xa1, 0xa2]),
            (
                7,
                0x0200_0000,
                [body(4, 128), body(4, 300)[128..].to_vec()].concat()
            ),
            (8, 90, body(5, 300)),
        ]
    );
}

#[test]
fn set_chunk_size_between_the_chunks_of_a_message_applies_to_the_next_chunk() {
    let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut bytes = chunk(0, 6, &type0(0, 1000, 9, 1));
    bytes.extend(&body[..128]);
    bytes.extend(chunk(0, 2, &type0(0, 4, SET_CHUNK_SIZE, 0)));
    bytes.extend(500u32.to_be_bytes());
    bytes.extend(chunk(3, 6, &[]));
    bytes.extend(&body[128..628]);
    bytes.extend(chunk(3, 6, &[]));
    bytes.extend(&body[628..]);
    let got = read_cut_anywhere(&bytes);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].type_id, SET_CHUNK_SIZE);
    assert_eq!(got[1].payload[..], body[..]);
}

#[test]
fn abort_drops_the_message_in_progress() {
    let mut bytes = chunk(0, 6, &type0(0, 1000, 9, 1));
    bytes.extend([1; 128]);
    bytes.extend(chunk(0, 2, &type0(0, 4, ABORT, 0)));
    bytes.extend(6u32.to_be_bytes());
    // The chunk stream starts afresh, with a full header.
    bytes.extend(chunk(0, 6, &type0(40, 2, 9, 1)));
    bytes.extend([2, 2]);
    let mut reader = new_reader();
    let got = read_all(&mut reader, &bytes);
    assert_eq!(got.len(), 2);
    assert_eq!((got[1].timestamp, &got[1].payload[..]), (40, &[2u8, 2][..]));
    assert_eq!(reader.partial_bytes(), 0);
    // What the aborted message announced no longer counts against the limits.
    let mut bytes = chunk(0, 6, &type0(0, 1000, 9, 1));
    bytes.extend([1; 128]);
    bytes.extend(chunk(0, 2, &type0(0, 4, ABORT, 0)));
    bytes.extend(6u32.to_be_bytes());
    bytes.extend(chunk(0, 7, &type0(0, 1000, 9, 1)));
    let limits = Limits {
        message: 1000,
        // The video, and the abort beside it.
        partial: 1004,
    };
    assert!(try_read(&mut new_reader(), &bytes, limits).is_ok());
}

#[test]
fn input_may_end_between_chunks_of_a_message() {
    let mut bytes = chunk(0, 6, &type0(0, 200, 9, 1));
    bytes.extend([0xaa; 128]);
    let mut reader = new_reader();
    let mut input = &bytes[..];
    assert_eq!(reader.next(&mut input, LIMITS), Ok(None));
    let mut rest = chunk(3, 6, &[]);
    rest.extend([0xbb; 72]);
    let message = reader.next(&mut &rest[..], LIMITS).unwrap().unwrap();
    assert_eq!(message.payload.len(), 200);
    assert_eq!(message.payload[127..129], [0xaa, 0xbb]);
}

#[test]
fn malformed_chunks_are_errors() {
    let err = |bytes: &[u8]| try_read(&mut new_reader(), bytes, LIMITS).unwrap_err();
    assert_eq!(err(&chunk(1, 5, &[0; 7])), ChunkError::NoPreviousHeader(5));
    assert_eq!(err(&chunk(3, 5, &[])), ChunkError::NoPreviousHeader(5));
    let mut bytes = chunk(0, 5, &type0(0, 200, 9, 1));
    bytes.extend([0; 128]);
    // Headers that change the message's length or type.
    for header in [
        chunk(0, 5, &type0(0, 10, 9, 1)),
        chunk(0, 5, &type0(0, 200, 8, 1)),
        chunk(1, 5, &[0, 0, 0, 0, 0, 10, 9]),
    ] {
        assert_eq!(
            err(&[&bytes[..], &header].concat()),
            ChunkError::MessageInterrupted(5)
        );
    }
    // Headers that repeat them continue the message, and restamp it.
    for (header, timestamp) in [
        (chunk(0, 5, &type0(9, 200, 9, 1)), 9),
        (chunk(1, 5, &[0, 0, 5, 0, 0, 200, 9]), 5),
        (chunk(2, 5, &[0, 0, 7]), 7),
    ] {
        let whole = [&bytes[..], &header, &[0; 72]].concat();
        let got = try_read(&mut new_reader(), &whole, LIMITS).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].payload.len(), got[0].timestamp), (200, timestamp));
    }
    // A set chunk size message too short to hold a size.
    let short = [chunk(0, 2, &type0(0, 3, SET_CHUNK_SIZE, 0)), vec![0, 0, 1]].concat();
    assert_eq!(err(&short), ChunkError::ChunkSizeMalformed(3));
}

#[test]
fn limits_are_refused_before_anything_is_held() {
    let limits = Limits {
        message: 1000,
        partial: 1500,
    };
    let refused = |bytes: &[u8]| {
        let error = try_read(&mut new_reader(), bytes, limits).unwrap_err();
        assert!(error.is_limit(), "{error}");
        error
    };
    // A message over the limit, at its first header.
    assert_eq!(
        refused(&chunk(0, 5, &type0(0, 1001, 9, 1))),
        ChunkError::TooLong {
            length: 1001,
            limit: 1000
        }
    );
    // Two messages in progress that together announce more than the total.
    let mut bytes = chunk(0, 5, &type0(0, 1000, 9, 1));
    bytes.extend([0; 128]);
    bytes.extend(chunk(0, 6, &type0(0, 501, 8, 1)));
    assert_eq!(
        refused(&bytes),
        ChunkError::PartialTooLarge {
            bytes: 1501,
            limit: 1500
        }
    );
    // More messages in progress than the bound.
    let mut bytes = Vec::new();
    for csid in 3..3 + MAX_PARTIAL_MESSAGES as u32 + 1 {
        bytes.extend(chunk(0, csid, &type0(0, 129, 8, 1)));
        bytes.extend([0; 128]);
    }
    assert_eq!(refused(&bytes), ChunkError::TooManyPartial);
    // More chunk streams than the bound (each message complete).
    let mut bytes = Vec::new();
    for csid in 2..(2 + MAX_CHUNK_STREAMS as u32 + 1) {
        bytes.extend(chunk(0, csid, &type0(0, 0, 8, 1)));
    }
    assert_eq!(refused(&bytes), ChunkError::TooManyStreams);
    // Chunk sizes outside 1 ..= the reader's maximum.
    for size in [0, 65_537, 1 << 31] {
        let mut bytes = chunk(0, 2, &type0(0, 4, SET_CHUNK_SIZE, 0));
        bytes.extend(u32::to_be_bytes(size));
        let error = try_read(&mut Reader::new(65_536), &bytes, limits).unwrap_err();
        assert_eq!(error, ChunkError::ChunkSize { size, max: 65_536 });
        assert!(error.is_limit());
    }
}
