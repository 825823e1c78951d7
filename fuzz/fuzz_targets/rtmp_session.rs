//! RTMP input as a corecast connection receives it: the server handshake
//! (`corecast::rtmp::handshake_input`), then the session (`corecast::rtmp::session_input`,
//! which contains rml_rtmp panics), then corecast's handling of the session results
//! (connect, publish, play, aggregate splitting, metadata, units, HLS), see
//! `corecast_fuzz::Ingest`. Runs on a thread with a shard's stack
//! (`corecast_fuzz::on_shard_stack`).
//!
//! Input: a mode byte, a byte that chooses how the rest is cut into reads, then the bytes.
//! Mode % 3: 0 = the bytes start with the handshake; 1 = the bytes follow a completed
//! handshake; 2 = the bytes follow a canned connect + publish conversation (reaches media).
#![no_main]

use corecast::rtmp::handshake_input;
use corecast_fuzz::{on_shard_stack, pieces, tolerate_contained_panics, Ingest};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| on_shard_stack(data, run));

fn run(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let mut ingest = Ingest::new();
    let mut reads = pieces(rest, *seed).into_iter();
    match mode % 3 {
        0 => {
            let mut handshake = Handshake::new(PeerType::Server);
            let mut leftover = None;
            for read in reads.by_ref() {
                match handshake_input(&mut handshake, read) {
                    Err(_) => return,
                    Ok(HandshakeProcessResult::InProgress { .. }) => {}
                    Ok(HandshakeProcessResult::Completed {
                        remaining_bytes, ..
                    }) => {
                        leftover = Some(remaining_bytes);
                        break;
                    }
                }
            }
            let Some(leftover) = leftover else { return };
            if ingest.feed(&leftover).is_err() {
                return;
            }
        }
        1 => {}
        _ => ingest.publish(),
    }
    for read in reads {
        if ingest.feed(read).is_err() {
            return;
        }
    }
    let _ = ingest.finish();
}
