//! RTMP chunks read back into messages (`corecast::rtmp::chunk::Reader`): any bytes give
//! messages or an error, never a panic (overflow checks are on here), and every message is
//! whole: as long as its header said, within the reader's limit, on a chunk stream that had
//! a full header first.
//!
//! Input: the bytes of a chunk stream; a Set Chunk Size message read changes the chunk
//! size, as the connection's read-back does.
#![no_main]

use corecast::rtmp::chunk::Reader;
use libfuzzer_sys::fuzz_target;

/// Longest message the reader accepts here: small, so that the limit is reached.
const MAX_MESSAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(MAX_MESSAGE);
    let mut input = data;
    while let Ok(Some(message)) = reader.next(&mut input) {
        assert!(message.payload.len() <= MAX_MESSAGE);
        if message.type_id == 1 {
            if let Some(size) = message.payload.get(..4) {
                let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
                if reader.set_chunk_size(size).is_err() {
                    return;
                }
            }
        }
    }
});
