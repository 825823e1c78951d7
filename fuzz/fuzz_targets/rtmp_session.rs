//! RTMP input as a corecast connection receives it: the server's own
//! `corecast::rtmp::connection::Connection` (handshake, input guard, session with rml_rtmp
//! panics contained, requests in every state, aggregate splitting), with a stand-in for
//! the shard that accepts requests and turns media and metadata into units and HLS
//! (`corecast_fuzz::Ingest`). Runs on a thread with a shard's stack
//! (`corecast_fuzz::on_shard_stack`).
//!
//! Input: a mode byte, a byte that chooses how the rest is cut into reads, then the bytes.
//! Mode % 3: 0 = the bytes start with the handshake; 1 = the bytes follow a completed
//! handshake; 2 = the bytes follow a canned connect + publish conversation (reaches media).
#![no_main]

use corecast_fuzz::{on_shard_stack, pieces, tolerate_contained_panics, Ingest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| on_shard_stack(data, run));

fn run(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let mut ingest = match mode % 3 {
        0 => Ingest::before_handshake(),
        1 => Ingest::new(),
        _ => {
            let mut ingest = Ingest::new();
            ingest.publish();
            ingest
        }
    };
    for read in pieces(rest, *seed) {
        if ingest.feed(read).is_err() {
            return;
        }
    }
    let _ = ingest.finish();
}
