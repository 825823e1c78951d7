//! Unit tests of [`super`] (guard).

use super::*;
use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::time::RtmpTimestamp;

const LIMIT: u32 = 1 << 20;

fn payload(type_id: u8, timestamp: u32, len: usize) -> MessagePayload {
    MessagePayload {
        timestamp: RtmpTimestamp::new(timestamp),
        type_id,
        message_stream_id: 1,
        data: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
    }
}

/// Messages decoded by rml_rtmp's deserializer from `bytes`, applying Set Chunk Size
/// as its server session does.
fn reference(bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut de = ChunkDeserializer::new();
    let mut out = Vec::new();
    let mut input = bytes;
    while let Some(message) = de.get_next_message(input).unwrap() {
        if message.type_id == SET_CHUNK_SIZE {
            let size = u32::from_be_bytes(message.data[..4].try_into().unwrap());
            de.set_max_chunk_size(size as usize).unwrap();
        }
        out.push((message.type_id, message.data.len()));
        input = &[];
    }
    out
}

/// A realistic stream: chunk size changes, audio and video of many sizes, timestamps
/// crossing into the extended range, type 1 to 3 headers from the serializer.
fn stream() -> Vec<u8> {
    let mut ser = ChunkSerializer::new();
    let mut out = Vec::new();
    let mut time = 0x00ff_fff0u32 - 2000;
    for (i, len) in [5usize, 300, 128, 129, 0, 4096, 10_000, 70_000, 7, 256]
        .iter()
        .enumerate()
    {
        if i == 3 {
            let packet = ser
                .set_max_chunk_size(4096, RtmpTimestamp::new(time))
                .unwrap();
            out.extend_from_slice(&packet.bytes);
        }
        for type_id in [8u8, 9] {
            time += 400;
            let packet = ser
                .serialize(&payload(type_id, time, *len), i == 0, false)
                .unwrap();
            out.extend_from_slice(&packet.bytes);
        }
    }
    out
}

fn scan_all(guard: &mut InputGuard, bytes: &[u8], piece: usize) -> Result<(), GuardError> {
    for chunk in bytes.chunks(piece.max(1)) {
        assert_eq!(guard.scan(chunk, LIMIT)?, Scan::Done);
    }
    Ok(())
}

#[test]
fn reads_what_the_deserializer_reads_in_any_pieces() {
    let bytes = stream();
    let expected = reference(&bytes);
    // 16 audio and video messages, Set Chunk Size (the serializer writes nothing for an
    // empty message).
    assert_eq!(expected.len(), 19);
    for piece in [1, 2, 3, 7, 11, 128, 1000, bytes.len()] {
        let mut guard = InputGuard::new(65536);
        scan_all(&mut guard, &bytes, piece).unwrap();
        assert_eq!(guard.messages(), expected.len() as u64, "pieces of {piece}");
        assert_eq!(guard.chunk_size(), 4096);
        assert_eq!(guard.stage, Stage::Header);
    }
}

#[test]
fn stops_at_each_message_end_when_asked() {
    let bytes = stream();
    let mut guard = InputGuard::new(65536);
    let mut ends = Vec::new();
    let mut pos = 0;
    loop {
        match guard.scan_message(&bytes[pos..], LIMIT).unwrap() {
            Scan::Message { consumed } => {
                pos += consumed;
                ends.push(pos);
            }
            Scan::Done => break,
            Scan::Blocked { .. } => unreachable!(),
        }
    }
    assert_eq!(pos, bytes.len());
    assert_eq!(ends.len(), reference(&bytes).len());
    // Each prefix up to a message end decodes to exactly that many messages.
    for (i, end) in ends.iter().enumerate() {
        assert_eq!(reference(&bytes[..*end]).len(), i + 1);
    }
}

#[test]
fn extended_timestamps_on_continuation_chunks() {
    let mut ser = ChunkSerializer::new();
    let mut bytes = Vec::new();
    for time in [0x0100_0000u32, 0x0100_0040, 0xffff_fff0] {
        let packet = ser
            .serialize(&payload(9, time, 1000), false, false)
            .unwrap();
        bytes.extend_from_slice(&packet.bytes);
    }
    let mut guard = InputGuard::new(65536);
    scan_all(&mut guard, &bytes, 5).unwrap();
    assert_eq!(guard.messages(), reference(&bytes).len() as u64);
    assert_eq!(guard.messages(), 3);
}

#[test]
fn blocks_at_a_long_message_until_the_limit_rises() {
    let mut ser = ChunkSerializer::new();
    let small = ser.serialize(&payload(20, 0, 100), true, false).unwrap();
    let big = ser
        .serialize(&payload(9, 40, 200_000), true, false)
        .unwrap();
    let bytes = [&small.bytes[..], &big.bytes[..]].concat();
    let mut guard = InputGuard::new(65536);
    let header_end = small.bytes.len() + 12;
    assert_eq!(
        guard.scan(&bytes, CONTROL_MESSAGE_LIMIT),
        Ok(Scan::Blocked {
            consumed: header_end,
            length: 200_000
        })
    );
    assert_eq!(guard.messages(), 1);
    // Still blocked with nothing more to read, then admitted under a larger limit.
    assert_eq!(
        guard.scan(&[], CONTROL_MESSAGE_LIMIT),
        Ok(Scan::Blocked {
            consumed: 0,
            length: 200_000
        })
    );
    assert_eq!(guard.scan(&bytes[header_end..], 1 << 20), Ok(Scan::Done));
    assert_eq!(guard.messages(), 2);
}

#[test]
fn refuses_chunk_sizes_out_of_range() {
    for (size, accepted) in [(0u32, false), (1, true), (65536, true), (65537, false)] {
        let mut ser = ChunkSerializer::new();
        let packet = ser.set_max_chunk_size(size, RtmpTimestamp::new(0)).unwrap();
        let mut guard = InputGuard::new(65536);
        let result = guard.scan(&packet.bytes, LIMIT);
        if accepted {
            assert_eq!(result, Ok(Scan::Done));
            assert_eq!(guard.chunk_size(), size);
        } else {
            assert_eq!(
                result,
                Err(GuardError::ChunkSizeRefused { size, max: 65536 })
            );
        }
    }
    // A Set Chunk Size without its 4 bytes.
    let short = [2u8, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        InputGuard::new(65536).scan(&short, LIMIT),
        Err(GuardError::ChunkSizeMalformed { length: 2 })
    );
}

/// A type 0 header on `csid` for a message of `len` bytes of type `type_id`.
fn full_header(csid: u8, len: u32, type_id: u8) -> Vec<u8> {
    let len = len.to_be_bytes();
    vec![csid, 0, 0, 0, len[1], len[2], len[3], type_id, 1, 0, 0, 0]
}

#[test]
fn refuses_interleaved_and_changed_messages() {
    // 300 bytes on chunk stream 4 (128 per chunk at first), then chunk stream 6.
    let mut bytes = full_header(4, 300, 9);
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(&full_header(6, 10, 8));
    assert_eq!(
        InputGuard::new(65536).scan(&bytes, LIMIT),
        Err(GuardError::Interleaved {
            csid: 6,
            current: 4
        })
    );
    // The same chunk stream with a shorter length: what made rml_rtmp panic.
    let mut bytes = full_header(4, 300, 9);
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(&full_header(4, 100, 9));
    assert_eq!(
        InputGuard::new(65536).scan(&bytes, LIMIT),
        Err(GuardError::LengthChanged { from: 300, to: 100 })
    );
    // A type 3 continuation is fine, and a repeated type 0 header with the same length
    // is read as the deserializer reads it.
    let mut bytes = full_header(4, 300, 9);
    bytes.extend_from_slice(&[0; 128]);
    bytes.push(0xc4);
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(&full_header(4, 300, 9));
    bytes.extend_from_slice(&[0; 44]);
    let mut guard = InputGuard::new(65536);
    assert_eq!(guard.scan(&bytes, LIMIT), Ok(Scan::Done));
    assert_eq!(guard.messages(), 1);
    assert_eq!(reference(&bytes).len(), 1);
}

/// Found by the `rtmp_chunks` fuzz target: a full header in the middle of a message that
/// keeps its length but changes its type. The deserializer delivers the message with the
/// last header's type: a message the guard skipped as video reached the AMF0 reader as a
/// command, unchecked.
#[test]
fn refuses_a_type_change_mid_message() {
    let deep = crate::rtmp::amf::tests::nested(0, 1000);
    let len = deep.len() as u32;
    let mut bytes = full_header(4, len, 9);
    bytes.extend_from_slice(&deep[..128]);
    bytes.extend_from_slice(&full_header(4, len, 20));
    bytes.extend_from_slice(&deep[128..256]);
    assert_eq!(
        InputGuard::new(65536).scan(&bytes, LIMIT),
        Err(GuardError::TypeChanged { from: 9, to: 20 })
    );
    // What the deserializer would have made of it, once complete.
    for piece in deep[256..].chunks(128) {
        bytes.push(0xc4);
        bytes.extend_from_slice(piece);
    }
    assert_eq!(reference(&bytes), vec![(20, deep.len())]);
    // The same type again is a header the deserializer reads as the guard does.
    let mut bytes = full_header(4, 300, 9);
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(&full_header(4, 300, 9));
    bytes.extend_from_slice(&[0; 128]);
    let mut guard = InputGuard::new(65536);
    assert_eq!(guard.scan(&bytes, LIMIT), Ok(Scan::Done));
}

/// Found by the `rtmp_chunks` fuzz target: a type 1 header whose timestamp delta field is
/// 0xFFFFFF, with an extended delta below that, made the deserializer subtract past zero.
#[test]
fn extended_deltas_below_the_marker_are_refused() {
    let mut bytes = full_header(4, 1, 8);
    bytes.push(0xaf);
    bytes.extend_from_slice(&[0x44, 0xff, 0xff, 0xff, 0, 0, 1, 8, 0, 0, 0, 5, 0xaf]);
    assert_eq!(
        InputGuard::new(65536).scan(&bytes, LIMIT),
        Err(GuardError::ExtendedTimestamp { value: 5 })
    );
    // At or above the marker it is a delta like any other.
    let last = bytes.len() - 5;
    bytes[last..last + 4].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    let mut guard = InputGuard::new(65536);
    assert_eq!(guard.scan(&bytes, LIMIT), Ok(Scan::Done));
    assert_eq!(guard.messages(), 2);
    assert_eq!(reference(&bytes).len(), 2);
}

#[test]
fn empty_messages_complete_at_once() {
    let mut bytes = full_header(4, 0, 8);
    bytes.extend_from_slice(&full_header(4, 1, 8));
    bytes.push(0xaf);
    let mut guard = InputGuard::new(65536);
    assert_eq!(guard.scan(&bytes, LIMIT), Ok(Scan::Done));
    assert_eq!(guard.messages(), 2);
    assert_eq!(reference(&bytes), vec![(8, 0), (8, 1)]);
}

#[test]
fn refuses_continuations_without_a_previous_header() {
    for first in [0x44u8, 0x84, 0xc4] {
        assert_eq!(
            InputGuard::new(65536).scan(&[first, 0, 0, 0], LIMIT),
            Err(GuardError::NoPreviousChunk { csid: 4 })
        );
    }
    // Two- and three-byte chunk stream ids.
    assert_eq!(
        InputGuard::new(65536).scan(&[0xc0, 10], LIMIT),
        Err(GuardError::NoPreviousChunk { csid: 74 })
    );
    assert_eq!(
        InputGuard::new(65536).scan(&[0xc1, 1, 2], LIMIT),
        Err(GuardError::NoPreviousChunk {
            csid: 2 * 256 + 1 + 64
        })
    );
}

/// A command name and transaction id, then `levels` nested containers of `kind` (see
/// `amf::tests::nested`), cut at 36,000 bytes (a client need not close what it opens), as
/// one message of type `type_id`.
fn deep_message(type_id: u8, kind: usize, levels: usize) -> Vec<u8> {
    let mut body = vec![2, 0, 7];
    body.extend_from_slice(b"connect");
    body.push(0);
    body.extend_from_slice(&1f64.to_be_bytes());
    let mut nested = crate::rtmp::amf::tests::nested(kind, levels);
    nested.truncate(36_000);
    body.extend_from_slice(&nested);
    let mut ser = ChunkSerializer::new();
    let mut bytes = ser
        .set_max_chunk_size(4096, RtmpTimestamp::new(0))
        .unwrap()
        .bytes;
    let message = MessagePayload {
        data: Bytes::from(body),
        ..payload(type_id, 0, 0)
    };
    bytes.extend_from_slice(&ser.serialize(&message, true, false).unwrap().bytes);
    bytes
}

#[test]
fn refuses_amf_nested_past_the_bound_in_every_amf_message_type() {
    for type_id in [15u8, 17, 18, 20] {
        // Objects, ECMA arrays, strict arrays: 36 KB of them (9,000 levels of objects)
        // overflowed a shard's stack.
        for kind in 0..3 {
            let deep = deep_message(type_id, kind, 9_000);
            assert!(deep.len() < CONTROL_MESSAGE_LIMIT as usize);
            for piece in [1, 1000, deep.len()] {
                let mut guard = InputGuard::new(65536);
                let refused = deep
                    .chunks(piece)
                    .map(|read| guard.scan(read, CONTROL_MESSAGE_LIMIT))
                    .find(Result::is_err);
                assert_eq!(
                    refused,
                    Some(Err(GuardError::AmfTooDeep { type_id })),
                    "type {type_id}, kind {kind}, pieces of {piece}"
                );
            }
            assert!(GuardError::AmfTooDeep { type_id }.is_limit());
            // At the bound the message passes, and the session decodes it.
            let at_bound = deep_message(type_id, kind, MAX_AMF_DEPTH);
            let mut guard = InputGuard::new(65536);
            assert_eq!(guard.scan(&at_bound, CONTROL_MESSAGE_LIMIT), Ok(Scan::Done));
            assert_eq!(guard.messages(), 2);
            assert_eq!(reference(&at_bound).len(), 2);
        }
    }
}

#[test]
fn reads_no_other_payload_as_amf() {
    // The same bytes as media, a shared object (16, 19), or an unknown type pass.
    for type_id in [8u8, 9, 16, 19, 22, 23] {
        let deep = deep_message(type_id, 0, 9_000);
        let mut guard = InputGuard::new(65536);
        assert_eq!(guard.scan(&deep, CONTROL_MESSAGE_LIMIT), Ok(Scan::Done));
        assert_eq!(guard.messages(), 2);
    }
    // A message's nesting does not carry over to the next message.
    let mut bytes = deep_message(20, 2, MAX_AMF_DEPTH);
    bytes.extend_from_slice(&deep_message(18, 0, MAX_AMF_DEPTH)[16..]);
    let mut guard = InputGuard::new(65536);
    assert_eq!(guard.scan(&bytes, CONTROL_MESSAGE_LIMIT), Ok(Scan::Done));
    assert_eq!(guard.messages(), 3);
}

#[test]
fn bounds_the_create_stream_requests_of_a_connection() {
    let command = |type_id: u8, body: &[u8]| {
        let mut ser = ChunkSerializer::new();
        let message = MessagePayload {
            data: Bytes::copy_from_slice(body),
            ..payload(type_id, 0, 0)
        };
        ser.serialize(&message, true, false).unwrap().bytes
    };
    let mut create = CREATE_STREAM.to_vec();
    create.extend_from_slice(&[0, 0x40, 0, 0, 0, 0, 0, 0, 0, 5]);
    let amf3 = [&[0u8][..], &create].concat();
    // Other commands, and names that only start like it, do not count.
    let mut longer = b"\x02\x00\x0dcreateStreamX".to_vec();
    longer.extend_from_slice(&create[15..]);
    let mut guard = InputGuard::new(65536);
    for _ in 0..100 {
        assert!(guard.scan(&command(COMMAND, &longer), LIMIT).is_ok());
        assert!(guard
            .scan(&command(COMMAND, b"\x02\x00\x04play"), LIMIT)
            .is_ok());
        assert!(guard.scan(&command(18, &create), LIMIT).is_ok());
    }
    for i in 0..MAX_CREATE_STREAMS {
        let (type_id, body) = if i % 2 == 0 {
            (COMMAND, &create)
        } else {
            (AMF3_COMMAND, &amf3)
        };
        assert_eq!(guard.scan(&command(type_id, body), LIMIT), Ok(Scan::Done));
    }
    assert_eq!(
        guard.scan(&command(COMMAND, &create), LIMIT),
        Err(GuardError::TooManyCreateStreams)
    );
    assert!(GuardError::TooManyCreateStreams.is_limit());
}

#[test]
fn bounds_the_chunk_streams_of_a_connection() {
    let mut guard = InputGuard::new(65536);
    let mut bytes = Vec::new();
    for csid in 0..MAX_CHUNK_STREAMS as u8 {
        // Two-byte basic headers: chunk stream ids 64 and up.
        let mut header = full_header(0, 1, 8);
        header.insert(1, csid);
        bytes.extend_from_slice(&header);
        bytes.push(0xaf);
    }
    assert_eq!(guard.scan(&bytes, LIMIT), Ok(Scan::Done));
    assert_eq!(guard.messages(), MAX_CHUNK_STREAMS as u64);
    let mut header = full_header(0, 1, 8);
    header.insert(1, 200);
    assert_eq!(
        guard.scan(&header, LIMIT),
        Err(GuardError::TooManyChunkStreams)
    );
}
