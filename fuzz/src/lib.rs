//! Helpers shared by the fuzz targets: a canned RTMP publish conversation, RTMP message
//! framing, input splitting, and [`Ingest`], which handles session results the way
//! corecast's RTMP driver (`src/rtmp/mod.rs`) does, minus the sockets and the shard.
#![feature(thread_local)]

use bytes::Bytes;
use corecast::hls::segmenter::Segmenter;
use corecast::hub::origin::{Origin, PublisherInfo};
use corecast::hub::{owner_of, split_query, stream_key};
use corecast::media::{split_aggregate, UnitKind};
use corecast::rtmp::chunk::MEDIA_STREAM_ID;
use corecast::rtmp::guard::{GuardError, InputGuard, Scan, CONTROL_MESSAGE_LIMIT};
use corecast::rtmp::{session_input, RtmpError};
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

/// `rtmp.max_chunk_size` and `rtmp.max_message_bytes` of the default configuration.
pub const MAX_CHUNK_SIZE: u32 = 65536;
/// See [`MAX_CHUNK_SIZE`].
pub const MAX_MESSAGE_BYTES: u32 = 8 << 20;

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

/// What corecast's RTMP connection does with session results, without sockets or shards:
/// accepts connect and publish, refuses or accepts play, splits aggregates, and turns media
/// and metadata into units through an [`Origin`] with an HLS [`Segmenter`].
pub struct Ingest {
    /// The session, as the server configures it.
    pub session: ServerSession,
    /// The input guard, as the server configures it.
    pub guard: InputGuard,
    /// The stream's owner-side state.
    pub origin: Origin,
    /// Publishing (a publish request was accepted).
    pub publishing: bool,
    /// Playing on this message stream.
    pub playing: Option<u32>,
    /// Units made.
    pub units: usize,
    now_ms: u64,
}

impl Ingest {
    /// A fresh connection with the server's default session configuration.
    pub fn new() -> Self {
        let config = ServerSessionConfig {
            chunk_size: 4096,
            ..ServerSessionConfig::new()
        };
        let (session, initial) = ServerSession::new(config).expect("session");
        let segmenter = Segmenter::new("fuzz", 1, 1000, 3);
        let mut ingest = Ingest {
            session,
            guard: InputGuard::new(MAX_CHUNK_SIZE),
            origin: Origin::new(2, 4096, Some(segmenter)),
            publishing: false,
            playing: None,
            units: 0,
            now_ms: 0,
        };
        ingest.handle(initial).expect("initial results");
        ingest
    }

    /// Feeds the canned publish conversation ([`publish_prefix`]); then publishing.
    pub fn publish(&mut self) {
        for read in publish_prefix() {
            self.feed(read).expect("the canned publish conversation");
        }
        assert!(
            self.publishing,
            "the canned publish conversation was not accepted"
        );
    }

    /// Feeds bytes read from the socket through the guard, as `Conn::feed` does (one
    /// message at a time until publishing); an error closes the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), RtmpError> {
        loop {
            let (limit, scan) = if self.publishing {
                (
                    MAX_MESSAGE_BYTES,
                    self.guard.scan(bytes, MAX_MESSAGE_BYTES)?,
                )
            } else {
                let limit = CONTROL_MESSAGE_LIMIT;
                (limit, self.guard.scan_message(bytes, limit)?)
            };
            let consumed = match scan {
                Scan::Done => bytes.len(),
                Scan::Message { consumed } | Scan::Blocked { consumed, .. } => consumed,
            };
            let results = session_input(&mut self.session, &bytes[..consumed])?;
            self.handle(results)?;
            bytes = &bytes[consumed..];
            match scan {
                Scan::Blocked { length, .. } if !self.publishing || limit == MAX_MESSAGE_BYTES => {
                    return Err(GuardError::MessageTooLarge { length, limit }.into())
                }
                Scan::Done => return Ok(()),
                _ => {}
            }
        }
    }

    /// Handles session results as `Conn::handle_results` does.
    pub fn handle(&mut self, results: Vec<ServerSessionResult>) -> Result<(), RtmpError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(_) => {}
                ServerSessionResult::RaisedEvent(event) => self.event(event)?,
                ServerSessionResult::UnhandleableMessageReceived(payload)
                    if payload.type_id == 22 =>
                {
                    for sub in split_aggregate(payload.timestamp.value, &payload.data)? {
                        self.media(sub.kind, sub.timestamp, &sub.body);
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn event(&mut self, event: ServerSessionEvent) -> Result<(), RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. }
            | ServerSessionEvent::ReleaseStreamRequested { request_id, .. } => {
                let results = self.session.accept_request(request_id)?;
                self.handle(results)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key: name,
                ..
            } => {
                let (name, query) = split_query(&name);
                let key = stream_key(&app_name, name);
                let _ = owner_of(&key, 4);
                if self.publishing || self.playing.is_some() {
                    let results = self.session.reject_request(
                        request_id,
                        "NetStream.Publish.BadName",
                        "already publishing",
                    )?;
                    return self.handle(results);
                }
                self.origin.start_publishing(PublisherInfo {
                    conn_id: 1,
                    peer: "127.0.0.1:1".parse().expect("address"),
                    query: query.map(str::to_string),
                    since_ns: 0,
                });
                self.publishing = true;
                let results = self.session.accept_request(request_id)?;
                self.handle(results)
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if std::mem::take(&mut self.publishing) {
                    self.origin.stop_publishing(1);
                }
                Ok(())
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if self.publishing {
                    let unit = self.origin.metadata(&metadata, 0);
                    self.unit(unit);
                }
                Ok(())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(UnitKind::Video, timestamp.value, &data);
                Ok(())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(UnitKind::Audio, timestamp.value, &data);
                Ok(())
            }
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                stream_id,
                stream_key: name,
                ..
            } => {
                let _ = split_query(&name);
                if self.publishing || self.playing.is_some() || stream_id != MEDIA_STREAM_ID {
                    let results = self.session.reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "refused",
                    )?;
                    return self.handle(results);
                }
                self.playing = Some(stream_id);
                let results = self.session.accept_request(request_id)?;
                self.handle(results)
            }
            _ => Ok(()),
        }
    }

    fn media(&mut self, kind: UnitKind, ts: u32, body: &[u8]) {
        if !self.publishing {
            return;
        }
        if let Some(unit) = self.origin.media(kind, ts, body, 0) {
            self.unit(unit);
        }
    }

    fn unit(&mut self, unit: corecast::media::Unit) {
        self.units += 1;
        self.now_ms += 10;
        if let Some(hls) = self.origin.hls.as_mut() {
            // Errors are counted by the shard and the unit is left out of HLS.
            let _ = hls.push(&unit, self.now_ms);
        }
    }

    /// What the driver does when a player's stream ends.
    pub fn finish(&mut self) -> Result<(), RtmpError> {
        if let Some(stream_id) = self.playing.take() {
            self.session.finish_playing(stream_id)?;
        }
        Ok(())
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
