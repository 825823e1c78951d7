//! Unit tests of [`super`] (the chunk reader), against rml_rtmp's serializer and hand-made
//! chunks.

use super::*;
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

fn read_all(reader: &mut Reader, mut input: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(message) = reader.next(&mut input).unwrap() {
        out.push(message);
    }
    assert!(input.is_empty());
    out
}

fn same(message: &Message, expected: &MessagePayload) {
    assert_eq!(message.type_id, expected.type_id);
    assert_eq!(message.stream_id, expected.message_stream_id);
    assert_eq!(message.timestamp, expected.timestamp.value);
    assert_eq!(message.payload, expected.data);
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
    let mut reader = Reader::new(1 << 20);
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
    let mut reader = Reader::new(1 << 20);
    let first = read_all(&mut reader, &bytes);
    assert_eq!(first.len(), 1);
    reader.set_chunk_size(4096).unwrap();
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
    let mut reader = Reader::new(1 << 20);
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
fn input_may_end_between_chunks_of_a_message() {
    let mut bytes = chunk(0, 6, &type0(0, 200, 9, 1));
    bytes.extend([0xaa; 128]);
    let mut reader = Reader::new(1 << 20);
    let mut input = &bytes[..];
    assert_eq!(reader.next(&mut input), Ok(None));
    let mut rest = chunk(3, 6, &[]);
    rest.extend([0xbb; 72]);
    let message = reader.next(&mut &rest[..]).unwrap().unwrap();
    assert_eq!(message.payload.len(), 200);
    assert_eq!(message.payload[127..129], [0xaa, 0xbb]);
}

#[test]
fn malformed_chunks_are_errors() {
    let mut reader = Reader::new(1 << 20);
    assert_eq!(
        reader.next(&mut &chunk(1, 5, &[0; 7])[..]),
        Err(ChunkError::NoPreviousHeader(5))
    );
    let mut reader = Reader::new(1 << 20);
    assert_eq!(
        reader.next(&mut &chunk(0, 5, &[0; 5])[..]),
        Err(ChunkError::Truncated)
    );
    let mut reader = Reader::new(100);
    assert_eq!(
        reader.next(&mut &chunk(0, 5, &type0(0, 101, 9, 1))[..]),
        Err(ChunkError::TooLong(101))
    );
    let mut reader = Reader::new(1 << 20);
    let mut bytes = chunk(0, 5, &type0(0, 200, 9, 1));
    bytes.extend([0; 128]);
    bytes.extend(chunk(0, 5, &type0(0, 10, 9, 1)));
    let mut input = &bytes[..];
    assert_eq!(
        reader.next(&mut input),
        Err(ChunkError::MessageInterrupted(5))
    );
    assert_eq!(reader.set_chunk_size(0), Err(ChunkError::ChunkSize(0)));
    let mut reader = Reader::new(1 << 20);
    let mut bytes = Vec::new();
    for csid in 2..(2 + MAX_CHUNK_STREAMS as u32 + 1) {
        bytes.extend(chunk(0, csid, &type0(0, 0, 8, 1)));
    }
    let mut input = &bytes[..];
    for _ in 0..MAX_CHUNK_STREAMS {
        assert!(reader.next(&mut input).unwrap().is_some());
    }
    assert_eq!(reader.next(&mut input), Err(ChunkError::TooManyStreams));
    assert_eq!(
        reader.set_chunk_size(1 << 31),
        Err(ChunkError::ChunkSize(1 << 31))
    );
}
