//! Helpers shared by the fuzz targets: a canned RTMP publish conversation, RTMP message
//! framing, input splitting, and [`Ingest`], which drives the server's own RTMP
//! [`Connection`] with a stand-in for the shard.
#![feature(thread_local)]

use bytes::Bytes;
use corecast::config::Config;
use corecast::hls::segmenter::Segmenter;
use corecast::hub::origin::{Origin, PublisherInfo};
use corecast::hub::owner_of;
use corecast::rtmp::chunk::MEDIA_STREAM_ID;
use corecast::rtmp::connection::{Action, Connection, Settings};
use corecast::rtmp::RtmpError;
use corecast::server::SHARD_STACK_BYTES;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;
use std::sync::OnceLock;

/// Chunk size the canned client announces (rml_rtmp's client default).
pub const CLIENT_CHUNK_SIZE: u32 = 4096;

/// `rtmp.max_chunk_size` of the default configuration.
pub const MAX_CHUNK_SIZE: u32 = 65536;

/// What a client sends, after the handshake, to connect to `live` and publish `fuzz`: the
/// server sees a connect, a createStream, and a publish, each in a read of its own (a client
/// waits for each answer). Built once by running an rml_rtmp client session against a
/// server session in memory.
pub fn publish_prefix() -> &'static [Vec<u8>] {
    static PREFIX: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let config = ClientSessionConfig {
            chunk_size: CLIENT_CHUNK_SIZE,
            ..ClientSessionConfig::new()
        };
        let (mut client, _) = ClientSession::new(config).expect("client");
        let (mut server, initial) = ServerSession::new(ServerSessionConfig::new()).expect("server");
        let mut to_server = Vec::new();
        let mut to_client: Vec<u8> = Vec::new();
        for r in initial {
            if let ServerSessionResult::OutboundResponse(p) = r {
                to_client.extend_from_slice(&p.bytes);
            }
        }
        match client.request_connection("live".into()).expect("connect") {
            ClientSessionResult::OutboundResponse(p) => to_server.extend_from_slice(&p.bytes),
            other => panic!("unexpected {other:?}"),
        }
        let mut sent = 0;
        let mut reads = Vec::new();
        let mut published = false;
        for _ in 0..50 {
            // Server side.
            let input = to_server[sent..].to_vec();
            sent = to_server.len();
            if !input.is_empty() {
                reads.push(input.clone());
            }
            let mut pending = server.handle_input(&input).expect("server input");
            pending.reverse();
            while let Some(r) = pending.pop() {
                match r {
                    ServerSessionResult::OutboundResponse(p) => {
                        to_client.extend_from_slice(&p.bytes)
                    }
                    ServerSessionResult::RaisedEvent(
                        ServerSessionEvent::ConnectionRequested { request_id, .. }
                        | ServerSessionEvent::PublishStreamRequested { request_id, .. },
                    ) => {
                        let mut more = server.accept_request(request_id).expect("accept");
                        more.reverse();
                        pending.extend(more);
                    }
                    _ => {}
                }
            }
            // Client side.
            let input = std::mem::take(&mut to_client);
            for r in client.handle_input(&input).expect("client input") {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        to_server.extend_from_slice(&p.bytes)
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestAccepted,
                    ) => {
                        match client
                            .request_publishing("fuzz".into(), PublishRequestType::Live)
                            .expect("publish")
                        {
                            ClientSessionResult::OutboundResponse(p) => {
                                to_server.extend_from_slice(&p.bytes)
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PublishRequestAccepted,
                    ) => {
                        published = true;
                    }
                    _ => {}
                }
            }
            if published && sent == to_server.len() {
                break;
            }
        }
        assert!(
            published,
            "the canned publish conversation did not complete"
        );
        reads
    })
}

/// One RTMP message as uncompressed chunks (type 0 header, then type 3), at the chunk size
/// the canned client announced.
pub fn message(type_id: u8, stream_id: u32, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let mut serializer = ChunkSerializer::new();
    serializer
        .set_max_chunk_size(CLIENT_CHUNK_SIZE, RtmpTimestamp::new(0))
        .expect("chunk size");
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(timestamp),
        type_id,
        message_stream_id: stream_id,
        data: Bytes::copy_from_slice(data),
    };
    serializer
        .serialize(&payload, true, false)
        .map(|p| p.bytes)
        .unwrap_or_default()
}

/// The stream id the canned client publishes on.
pub const PUBLISH_STREAM_ID: u32 = MEDIA_STREAM_ID;

/// Cuts `data` into pieces whose sizes follow `seed` (1 to 64 bytes, or all at once when
/// `seed` is 0), the way a socket may deliver them.
pub fn pieces(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut state = u32::from(seed);
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((state >> 16) as usize % 64 + 1).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// The server's own RTMP connection ([`Connection`]) with a stand-in for the shard around
/// it: requests that the connection passes on are accepted (a stream whose owner would be
/// another shard goes through the handoff path first: [`Connection::repeat_request`]); media
/// and metadata become units through an [`Origin`] with an HLS [`Segmenter`]. The protocol
/// decisions are all the connection's: nothing of the driver is copied here.
pub struct Ingest {
    /// The connection, as the server configures it (default configuration).
    pub conn: Box<Connection>,
    /// The stream's owner-side state.
    pub origin: Origin,
    /// Units made.
    pub units: usize,
    /// The clock passed to the connection and the segmenter (ms).
    now_ms: u64,
    /// The request being decided was handed over once already.
    handed_over: bool,
}

impl Ingest {
    /// A fresh connection, before the handshake.
    pub fn before_handshake() -> Self {
        // The default configuration is parsed from its TOML: once, not per input.
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        let settings = *SETTINGS.get_or_init(|| Settings::from_config(&Config::default()));
        let peer = "127.0.0.1:1".parse().expect("address");
        let conn = Connection::new(settings, peer, 0).expect("session");
        let segmenter = Segmenter::new("fuzz", 1, 1000, 3);
        Ingest {
            conn: Box::new(conn),
            origin: Origin::new(2, 4096, Some(segmenter)),
            units: 0,
            now_ms: 0,
            handed_over: false,
        }
    }

    /// A fresh connection past the handshake (C0 C1 and C2 of the plain, digest-less kind).
    pub fn new() -> Self {
        let mut ingest = Ingest::before_handshake();
        let mut handshake = vec![3u8];
        handshake.resize(1 + 2 * 1536, 0);
        ingest.feed(&handshake).expect("the canned handshake");
        ingest
    }

    /// Feeds the canned publish conversation ([`publish_prefix`]); then publishing.
    pub fn publish(&mut self) {
        for read in publish_prefix() {
            self.feed(read).expect("the canned publish conversation");
        }
        assert!(
            self.conn.publishing().is_some(),
            "the canned publish conversation was not accepted"
        );
    }

    /// Feeds bytes read from the socket to the connection and acts on what it asks; an
    /// error closes the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        self.now_ms += 10;
        self.conn.handle_input(bytes, self.now_ms * 1_000_000);
        while let Some(action) = self.conn.poll_action() {
            match action {
                Action::Publish(request) => {
                    if owner_of(&request.key, 2) == 1 && !std::mem::take(&mut self.handed_over) {
                        // Handed to the owner shard (the connection moves whole), which
                        // asks again.
                        self.handed_over = true;
                        self.conn.repeat_request();
                        continue;
                    }
                    self.origin.start_publishing(PublisherInfo {
                        conn_id: 1,
                        peer: self.conn.peer(),
                        query: request.query,
                        since_ns: 0,
                        pulled: false,
                    });
                    self.conn.accept(self.now_ms * 1_000_000);
                }
                Action::Play(_) => self.conn.accept(self.now_ms * 1_000_000),
                Action::Media {
                    kind,
                    timestamp,
                    body,
                    ..
                } => {
                    if let Some(unit) = self.origin.media(kind, timestamp, body, 0) {
                        self.unit(unit);
                    }
                }
                Action::Metadata { metadata, .. } => {
                    let unit = self.origin.metadata(&metadata, 0);
                    self.unit(unit);
                }
                Action::Unpublished => {
                    self.origin.stop_publishing(1);
                }
                Action::Refused(_) | Action::Close(None) => {}
                Action::Close(Some(err)) => return Err(err),
            }
        }
        Ok(())
    }

    fn unit(&mut self, unit: corecast::media::Unit) {
        self.units += 1;
        if let Some(hls) = self.origin.hls.as_mut() {
            // Errors are counted by the shard and the unit is left out of HLS.
            let _ = hls.push(&unit, self.now_ms);
        }
    }

    /// What the driver does when a player's stream ends.
    pub fn finish(&mut self) -> Result<(), RtmpError> {
        self.conn.finish_playing().map(drop)
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Self::new()
    }
}

extern "C" {
    /// The lowest stack address this thread reached, kept by the instrumentation that
    /// cargo-fuzz enables on Linux (`-sanitizer-coverage-stack-depth`) and defined by
    /// libFuzzer, which turns the stack depth of a run into coverage features: inputs that
    /// recurse deeper are kept, and grow towards an overflow. It is thread-local, so
    /// [`on_shard_stack`] carries a worker's depth over to the fuzzing thread.
    #[thread_local]
    static mut __sancov_lowest_stack: usize;
}

/// An address on the current thread's stack, near its top.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Runs `target` on `data` on a thread with a shard thread's stack
/// (`corecast::server::SHARD_STACK_BYTES`), so that a decoder recursing as deeply as its
/// input says overflows here whenever it would overflow a shard (sooner, if anything: the
/// sanitizer makes stack frames larger). An overflow aborts the process, which libFuzzer
/// reports as a crash; a panic that escapes `target` is raised again on the caller's thread.
/// The stack depth the run reached counts for libFuzzer as if it had run on its thread.
pub fn on_shard_stack(data: &[u8], target: fn(&[u8])) {
    let depth = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("shard".into())
            .stack_size(SHARD_STACK_BYTES)
            .spawn_scoped(scope, || {
                let top = stack_address();
                // SAFETY: the worker's own thread-local, written by this thread only.
                unsafe { __sancov_lowest_stack = top };
                target(data);
                // SAFETY: as above.
                top.saturating_sub(unsafe { __sancov_lowest_stack })
            })
            .expect("a thread with a shard's stack");
        match worker.join() {
            Ok(depth) => depth,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    let reached = stack_address().saturating_sub(depth);
    // SAFETY: the fuzzing thread's own thread-local, written by this thread only.
    unsafe { __sancov_lowest_stack = __sancov_lowest_stack.min(reached) };
}

/// Lets panics that corecast contains (rml_rtmp's, caught by `rtmp::session_input`) pass,
/// as they do in the server, printing each panic location once. A panic that nothing
/// contains still reaches libfuzzer-sys, which aborts: a crash. Call from the target's
/// `init`. With `CORECAST_FUZZ_ABORT_ON_CONTAINED=1` every panic aborts, contained or not
/// (libFuzzer's own behaviour), to collect inputs that make rml_rtmp panic.
pub fn tolerate_contained_panics() {
    if std::env::var_os("CORECAST_FUZZ_ABORT_ON_CONTAINED").is_some() {
        return;
    }
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let abort_hook = std::panic::take_hook();
    drop(abort_hook);
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if seen
            .lock()
            .map(|mut s| s.insert(at.clone()))
            .unwrap_or(false)
        {
            eprintln!("corecast-fuzz: panic at {at}: {info}");
        }
    }));
}
