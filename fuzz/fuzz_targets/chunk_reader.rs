//! RTMP chunks read into messages (`corecast::rtmp::chunk::Reader`): any bytes give messages
//! or an error, never a panic (overflow checks are on here), and every message is whole and
//! within the bounds: as long as its header said, within the message limit, with the
//! messages in progress within theirs.
//!
//! Input: a byte that chooses how the rest is cut into reads, then the bytes of a chunk
//! stream (Set Chunk Size and Abort apply, as on a connection).
#![no_main]

use corecast::rtmp::chunk::{Limits, Reader};
use corecast_fuzz::pieces;
use libfuzzer_sys::fuzz_target;

/// Bounds small enough to be reached.
const LIMITS: Limits = Limits {
    message: 4096,
    partial: 6000,
};

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut reader = Reader::new(65536);
    for read in pieces(rest, *seed) {
        let mut input = read;
        loop {
            match reader.next(&mut input, LIMITS) {
                Ok(Some(message)) => assert!(message.payload.len() <= LIMITS.message as usize),
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(reader.partial_bytes() <= LIMITS.partial);
        }
    }
});
