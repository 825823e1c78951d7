//! RTMP chunk input: corecast's input guard (`corecast::rtmp::guard::InputGuard`) against
//! rml_rtmp's chunk deserializer on the same bytes. Whatever the guard lets through, the
//! deserializer must read without an error or a panic (overflow checks are on here), to the
//! same message boundaries and the same chunk size. Runs on a thread with a shard's stack
//! (`corecast_fuzz::on_shard_stack`).
//!
//! Input: a byte that chooses how the rest is cut into reads, then the bytes (as received
//! after the handshake).
#![no_main]

use corecast::rtmp::guard::{InputGuard, Scan};
use corecast_fuzz::{on_shard_stack, pieces, MAX_CHUNK_SIZE};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::chunk_io::ChunkDeserializer;

/// The message type of Set Chunk Size.
const SET_CHUNK_SIZE: u8 = 1;

fuzz_target!(|data: &[u8]| on_shard_stack(data, run));

fn run(data: &[u8]) {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut guard = InputGuard::new(MAX_CHUNK_SIZE);
    let mut deserializer = ChunkDeserializer::new();
    let mut messages = 0u64;
    for read in pieces(rest, *seed) {
        match guard.scan(read, u32::MAX) {
            // The server closes the connection: the session never sees these bytes.
            Err(_) => return,
            Ok(Scan::Done) => {}
            Ok(other) => panic!("no message is over the limit: {other:?}"),
        }
        let mut input = read;
        loop {
            match deserializer.get_next_message(input) {
                Ok(Some(message)) => {
                    messages += 1;
                    // As the server session does with Set Chunk Size.
                    if message.type_id == SET_CHUNK_SIZE {
                        let size = message.data.get(..4).expect("the guard checked its length");
                        let size = u32::from_be_bytes(size.try_into().expect("4 bytes"));
                        deserializer
                            .set_max_chunk_size(size as usize)
                            .expect("the guard checked the size");
                    }
                }
                Ok(None) => break,
                Err(err) => panic!("the guard let through what the deserializer refuses: {err}"),
            }
            input = &[];
        }
        assert_eq!(guard.messages(), messages);
        assert_eq!(
            guard.chunk_size() as usize,
            deserializer.get_max_chunk_size()
        );
    }
}
