//! The edge's pull clients (`corecast::upstream::flv::FlvPull`,
//! `corecast::upstream::rtmp::RtmpPull`) fed what an origin sends, a hostile one included:
//! whatever the bytes and however they are cut, never a panic that escapes (rml_rtmp's are
//! contained and become errors), and what a client holds stays within its bounds.
//!
//! Input: a byte choosing the client (bit 0) and the size of the pieces the bytes come in
//! (the rest), then the origin's bytes. The RTMP client gets a real server handshake first,
//! so that the bytes go to its chunk layer and session. rml_rtmp's panics are contained as
//! in the server (`tolerate_contained_panics`); any other panic is a crash. Runs on a
//! thread with a shard's stack.
#![no_main]

use corecast::forward::Target;
use corecast::upstream::flv::{FlvPull, MAX_CHUNK_LINE, MAX_HEAD};
use corecast::upstream::rtmp::RtmpPull;
use corecast_fuzz::{on_shard_stack, tolerate_contained_panics};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

/// Largest tag or message the clients take here.
const MAX_MESSAGE: usize = 64 * 1024;

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| on_shard_stack(data, run));

fn run(data: &[u8]) {
    let [choice, bytes @ ..] = data else {
        return;
    };
    let step = usize::from(choice >> 1).max(1) * 37;
    if choice & 1 == 0 {
        let mut pull = FlvPull::new(MAX_MESSAGE);
        for piece in bytes.chunks(step) {
            if pull.handle_input(piece).is_err() {
                return;
            }
            // The head or a chunk line being read, and less than one tag.
            assert!(pull.buffered_bytes() <= MAX_HEAD + MAX_CHUNK_LINE + MAX_MESSAGE + 15 + step);
        }
        return;
    }
    let Ok(target) = Target::parse("rtmp://127.0.0.1:1935/live/cam", "live", "cam") else {
        return;
    };
    let Ok(mut pull) = RtmpPull::new(&target, "cam".into(), MAX_MESSAGE as u32, 65536) else {
        return;
    };
    let mut server = Handshake::new(PeerType::Server);
    let answer = match server.process_bytes(&pull.take_output()) {
        Ok(HandshakeProcessResult::InProgress { response_bytes }) => response_bytes,
        Ok(HandshakeProcessResult::Completed { response_bytes, .. }) => response_bytes,
        Err(_) => return,
    };
    if pull.handle_input(&answer).is_err() {
        return;
    }
    pull.take_output();
    for piece in bytes.chunks(step) {
        if pull.handle_input(piece).is_err() {
            return;
        }
        pull.take_output();
    }
}
