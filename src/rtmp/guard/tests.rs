//! Unit tests of [`super`] (guard).

use super::*;
use crate::rtmp::chunk::{ChunkError, SET_CHUNK_SIZE};
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

/// Reads `bytes` in pieces of `piece` bytes: the messages, as (type, length).
fn read_in_pieces(guard: &mut InputGuard, bytes: &[u8], piece: usize) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    for mut chunk in bytes.chunks(piece.max(1)) {
        while let Some(message) = guard.next(&mut chunk, LIMIT).unwrap() {
            out.push((message.type_id, message.payload.len()));
        }
        assert!(chunk.is_empty());
    }
    out
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
        assert_eq!(
            read_in_pieces(&mut guard, &bytes, piece),
            expected,
            "pieces of {piece}"
        );
        assert_eq!(guard.messages(), expected.len() as u64);
        assert_eq!(guard.chunk_size(), 4096);
        assert_eq!(guard.partial_bytes(), 0);
    }
}

#[test]
fn the_limit_of_each_message_is_the_one_in_force_at_its_first_chunk() {
    let bytes = stream();
    // The 70,000-byte messages are over 64 KiB.
    let mut guard = InputGuard::new(65536);
    assert_eq!(
        guard.read(&bytes, CONTROL_MESSAGE_LIMIT).map(|m| m.len()),
        Err(GuardError::Chunk(ChunkError::TooLong {
            length: 70_000,
            limit: CONTROL_MESSAGE_LIMIT
        }))
    );
    // Read up to there at the control limit, the rest at a publisher's.
    let mut guard = InputGuard::new(65536);
    let mut input = &bytes[..];
    let mut read = 0;
    while read < 13 {
        assert!(guard
            .next(&mut input, CONTROL_MESSAGE_LIMIT)
            .unwrap()
            .is_some());
        read += 1;
    }
    assert_eq!(guard.read(input, LIMIT).unwrap().len(), 19 - 13);
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
                    .map(|read| guard.read(read, CONTROL_MESSAGE_LIMIT))
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
            assert_eq!(
                guard
                    .read(&at_bound, CONTROL_MESSAGE_LIMIT)
                    .map(|m| m.len()),
                Ok(2)
            );
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
        assert_eq!(
            guard.read(&deep, CONTROL_MESSAGE_LIMIT).map(|m| m.len()),
            Ok(2)
        );
    }
    // A message's nesting does not carry over to the next message.
    let mut bytes = deep_message(20, 2, MAX_AMF_DEPTH);
    bytes.extend_from_slice(&deep_message(18, 0, MAX_AMF_DEPTH)[16..]);
    let mut guard = InputGuard::new(65536);
    assert_eq!(
        guard.read(&bytes, CONTROL_MESSAGE_LIMIT).map(|m| m.len()),
        Ok(3)
    );
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
        assert!(guard.read(&command(COMMAND, &longer), LIMIT).is_ok());
        assert!(guard
            .read(&command(COMMAND, b"\x02\x00\x04play"), LIMIT)
            .is_ok());
        assert!(guard.read(&command(18, &create), LIMIT).is_ok());
    }
    for i in 0..MAX_CREATE_STREAMS {
        let (type_id, body) = if i % 2 == 0 {
            (COMMAND, &create)
        } else {
            (AMF3_COMMAND, &amf3)
        };
        assert_eq!(
            guard.read(&command(type_id, body), LIMIT).map(|m| m.len()),
            Ok(1)
        );
    }
    assert_eq!(
        guard
            .read(&command(COMMAND, &create), LIMIT)
            .map(|m| m.len()),
        Err(GuardError::TooManyCreateStreams)
    );
    assert!(GuardError::TooManyCreateStreams.is_limit());
}

#[test]
fn acknowledges_the_bytes_received_every_half_window() {
    let mut acks = Acknowledgements::default();
    // No window, no acknowledgements.
    assert_eq!(acks.received(10_000_000), None);
    acks.set_window(2_500_000);
    // The count started with the first byte (the handshake's included).
    assert_eq!(acks.received(1), Some(10_000_001));
    assert_eq!(acks.received(1_249_999), None);
    assert_eq!(acks.received(1), Some(11_250_001));
    let mut sent = Vec::new();
    for _ in 0..1000 {
        sent.extend(acks.received(7_777));
    }
    // One acknowledgement per half window, each with the total so far.
    assert_eq!(sent.len(), 6);
    assert_eq!(sent[0], 11_250_001 + 7_777 * 161);
    // The sequence number wraps at 2^32, and so does the window's arithmetic.
    let mut acks = Acknowledgements::default();
    acks.set_window(2_000_000);
    let near_end = u32::MAX as usize - 10;
    assert_eq!(acks.received(near_end), Some(near_end as u32));
    assert_eq!(acks.received(999_999), None);
    assert_eq!(acks.received(1), Some(999_989));
    acks.set_window(0);
    assert_eq!(acks.received(1 << 30), None);
}
