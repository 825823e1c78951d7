//! RTMP chunk input: corecast's chunk layer and input checks
//! (`corecast::rtmp::guard::InputGuard`, as a connection reads with them) against rml_rtmp's
//! chunk deserializer on the same bytes. Any bytes give messages or a typed error, never a
//! panic (overflow checks are on here). Where both read the input, the messages are the same
//! (type, message stream, timestamp, payload, chunk size after them): when the deserializer
//! read it without an error or a panic, and the input did not interleave chunk streams
//! (which the deserializer reads into one buffer) or abort a message (which it does not
//! apply). The deserializer's own panics are caught here (they end the comparison), as
//! `tolerate_contained_panics` lets them; any other panic is a crash. Runs on a thread with
//! a shard's stack (`corecast_fuzz::on_shard_stack`).
//!
//! Input: a byte that chooses how the rest is cut into reads, then the bytes (as received
//! after the handshake).
#![no_main]

use corecast::rtmp::chunk::{ABORT, SET_CHUNK_SIZE};
use corecast::rtmp::guard::InputGuard;
use corecast_fuzz::{on_shard_stack, pieces, tolerate_contained_panics, MAX_CHUNK_SIZE};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::chunk_io::ChunkDeserializer;

/// The message limit of a publisher (`rtmp.max_message_bytes` by default).
const LIMIT: u32 = 8 << 20;

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| on_shard_stack(data, run));

/// A message as both sides see it.
type Seen = (u8, u32, u32, Vec<u8>);

fn run(data: &[u8]) {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut guard = InputGuard::new(MAX_CHUNK_SIZE);
    let mut deserializer = Some(ChunkDeserializer::new());
    let (mut ours, mut theirs): (Vec<Seen>, Vec<Seen>) = (Vec::new(), Vec::new());
    for read in pieces(rest, *seed) {
        let mut input = read;
        loop {
            match guard.next(&mut input, LIMIT) {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= LIMIT as usize);
                    ours.push((m.type_id, m.stream_id, m.timestamp, m.payload.to_vec()));
                }
                Ok(None) => break,
                // The server closes the connection.
                Err(_) => return,
            }
        }
        assert!(input.is_empty());
        if let Some(de) = deserializer.as_mut() {
            if !reference(de, read, &mut theirs) {
                deserializer = None;
            }
        }
    }
    let comparable =
        deserializer.is_some() && !guard.interleaved() && !ours.iter().any(|m| m.0 == ABORT);
    if comparable {
        assert_eq!(
            ours, theirs,
            "the chunk layer and rml_rtmp read different messages"
        );
        let de = deserializer.expect("comparable");
        assert_eq!(guard.chunk_size() as usize, de.get_max_chunk_size());
    }
}

/// rml_rtmp's deserializer on one read, applying Set Chunk Size as its server session does;
/// false when it failed (an error or a panic).
fn reference(de: &mut ChunkDeserializer, read: &[u8], out: &mut Vec<Seen>) -> bool {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut input = read;
        while let Some(m) = de.get_next_message(input).ok()? {
            input = &[];
            if m.type_id == SET_CHUNK_SIZE {
                let size = u32::from_be_bytes(m.data.get(..4)?.try_into().ok()?);
                de.set_max_chunk_size(size as usize).ok()?;
            }
            out.push((
                m.type_id,
                m.message_stream_id,
                m.timestamp.value,
                m.data.to_vec(),
            ));
        }
        Some(())
    }));
    matches!(result, Ok(Some(())))
}
