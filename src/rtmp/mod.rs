//! RTMP ingest: the per-connection driver around rml_rtmp's handshake and `ServerSession`.
//!
//! The session is sans-IO; this driver reads the socket, feeds the session, writes its
//! responses in order, and turns its events into stream operations on the shard. A publish
//! request for a stream owned by another shard hands the connection over (socket, session and
//! undelivered results together, see [`Handoff`]); the owner continues with
//! [`resume`]. Input goes through [`guard::InputGuard`] before the session sees it.

pub mod amf;
pub mod chunk;
pub mod guard;

use crate::auth::Action;
use crate::hub::feed::Feed;
use crate::hub::origin::PublisherInfo;
use crate::hub::{split_query, stream_key, validate_name, validate_names, NameError, StreamKey};
use crate::limits::Ticket;
use crate::media::{has_payload, now_ns, split_aggregate, AggregateError, Format, UnitKind};
use crate::shard::{PublishRefusal, Shard};
use crate::stats;
use crate::util::Escaped;
use crate::viewer::{self, Delivery, Ending, Outbox};
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use guard::{GuardError, InputGuard, Scan, CONTROL_MESSAGE_LIMIT};
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// RTMP message type of an aggregate message (several FLV-tag-shaped messages in one).
const AGGREGATE_MESSAGE: u8 = 22;

/// Read buffer of a playing connection.
const PLAYER_READ_BUFFER: usize = 4096;

/// A publisher connection on its way from the shard that accepted it to the stream's owner.
/// The socket, the session state and whatever the session already decoded travel together.
pub struct Handoff {
    /// The connection (a duplicate of the accepting shard's descriptor, which it closed).
    pub fd: OwnedFd,
    /// The RTMP session, mid-conversation.
    pub session: Box<ServerSession>,
    /// The chunk-level checks of the connection's input, in step with the session.
    pub guard: InputGuard,
    /// Bytes received after the publish request, not yet fed to the session (a connection
    /// that is not publishing is fed one message at a time).
    pub pending: Vec<u8>,
    /// The publish request the owner must accept or refuse.
    pub request_id: u32,
    /// Application name.
    pub app: String,
    /// Publish name as sent, including any query string.
    pub publish_name: String,
    /// Session results decoded after the publish request, to be handled in order.
    pub rest: Vec<ServerSessionResult>,
    /// Remote address.
    pub peer: SocketAddr,
    /// The connection's place under the connection limits.
    pub ticket: Option<Ticket>,
    /// Publishes the connection started before (`limits.max_publishes_per_connection`).
    pub publishes: u32,
}

/// Why an RTMP connection ended.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The handshake bytes were invalid.
    #[error("bad handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A publisher that was replaced by a new one (`auth.takeover_after_ms`), or whose
    /// stream ended under it, sent more media.
    #[error("this publisher was replaced, or its stream ended")]
    Replaced,
    /// The handshake did not complete within `rtmp.handshake_timeout_ms`.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The connection neither published nor played within `rtmp.handshake_timeout_ms`.
    #[error("neither published nor played in time")]
    SetupTimeout,
    /// A publisher sent no audio or video for `rtmp.idle_timeout_ms`.
    #[error("no media in time (idle publisher)")]
    IdleTimeout,
    /// The client did not take the server's answers within `server.write_timeout_ms`.
    #[error("answers not taken within the write timeout")]
    WriteTimeout,
    /// Input refused before the session saw it: a limit (message size, chunk size, chunk
    /// streams, AMF nesting) or chunking the session cannot follow.
    #[error("input refused: {0}")]
    Input(#[from] GuardError),
    /// The peer sent bytes the session could not decode (bad chunk, bad AMF, ...).
    #[error("protocol error: {0}")]
    Session(#[from] ServerSessionError),
    /// A request the connection may not make in its state (a second connect; connect,
    /// publish or play while playing): refused by closing the connection, so that the
    /// session never keeps requests nobody answers.
    #[error("{0} not allowed {1}")]
    NotAllowed(&'static str, &'static str),
    /// An aggregate message (type 22) whose sub-messages do not fit in it.
    #[error("bad aggregate message: {0}")]
    Aggregate(#[from] AggregateError),
    /// The session library failed on the input (contained to this connection).
    #[error("session failed on malformed input")]
    SessionPanic,
    /// Socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl RtmpError {
    /// Counts the error in the shard's statistics.
    fn count(&self, shard: &Shard) {
        let counter = match self {
            RtmpError::Input(err) if err.is_limit() => &shard.stats.rtmp_limits_hit,
            RtmpError::Handshake(_)
            | RtmpError::Session(_)
            | RtmpError::SessionPanic
            | RtmpError::Aggregate(_)
            | RtmpError::NotAllowed(..)
            | RtmpError::Input(_) => &shard.stats.rtmp_bad_input,
            RtmpError::HandshakeTimeout
            | RtmpError::SetupTimeout
            | RtmpError::IdleTimeout
            | RtmpError::WriteTimeout => &shard.stats.timeouts,
            RtmpError::Replaced | RtmpError::Io(_) => return,
        };
        stats::inc(counter);
    }
}

/// What the connection is doing.
enum State {
    /// Connected, neither publishing nor playing.
    Idle,
    /// Publishing `key` on this (the owner) shard.
    Publishing(StreamKey),
    /// Playing `key` from this shard's feed, on message stream `stream_id`.
    Playing {
        key: StreamKey,
        feed: Rc<RefCell<Feed>>,
        stream_id: u32,
        /// The play name's query string (`stream?token=...`), kept for access control.
        query: Option<String>,
    },
}

/// What to do after handling a batch of session results.
enum Flow {
    Continue,
    /// Playback was accepted: switch to delivering the stream.
    Play,
    /// Hand the connection to `owner`, which decides on the publish request.
    HandOff {
        owner: usize,
        request_id: u32,
        app: String,
        publish_name: String,
        rest: Vec<ServerSessionResult>,
    },
    /// Send what is queued, then close.
    Close,
}

/// One RTMP connection.
struct Conn {
    /// The shard serving it.
    shard: Rc<Shard>,
    /// The protocol state (rml_rtmp, sans-IO).
    session: ServerSession,
    /// Remote address, for logs and the publisher record.
    peer: SocketAddr,
    /// Process-unique id, to tell this publisher apart from a later one on the same stream.
    conn_id: u64,
    /// Publishing, playing, or neither.
    state: State,
    /// Responses waiting to be written, in order.
    out: Vec<u8>,
    /// The connection's place under the connection limits (goes along on a handoff).
    ticket: Option<Ticket>,
    /// Chunk-level checks of the input, ahead of the session.
    guard: InputGuard,
    /// Input not yet fed to the session when the connection is handed to another shard.
    pending: Vec<u8>,
    /// When the connection last made progress (`now_ns`): accepted, stopped publishing, or,
    /// while publishing, received media with a payload. The setup and idle timeouts count
    /// from it.
    progress_ns: u64,
    /// The connect request was answered (a second one closes the connection).
    connected: bool,
    /// Publishes this connection started (`limits.max_publishes_per_connection`).
    publishes: u32,
}

/// Serves one accepted RTMP connection.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr, ticket: Ticket) {
    let accepted_ns = now_ns();
    stats::inc(&shard.stats.rtmp_accepted);
    let _ = stream.set_nodelay(true);
    let result = async {
        let leftover =
            crate::util::timeout(shard.config.handshake_timeout(), handshake(&mut stream))
                .await
                .ok_or(RtmpError::HandshakeTimeout)??;
        let config = ServerSessionConfig {
            chunk_size: shard.config.rtmp.chunk_size,
            ..ServerSessionConfig::new()
        };
        let (session, initial) = ServerSession::new(config)?;
        let guard = InputGuard::new(shard.config.rtmp.max_chunk_size);
        let mut conn = Conn::new(shard.clone(), session, guard, peer, Some(ticket));
        conn.progress_ns = accepted_ns;
        let flow = conn.handle_results(initial)?;
        let flow = match flow {
            Flow::Continue => conn.feed(&leftover)?,
            other => other,
        };
        conn.run(stream, flow).await
    }
    .await;
    report(&shard, peer, result);
}

/// Continues a publisher handed over by another shard.
pub async fn resume(shard: Rc<Shard>, handoff: Box<Handoff>) {
    let Handoff {
        fd,
        session,
        guard,
        pending,
        request_id,
        app,
        publish_name,
        rest,
        peer,
        ticket,
        publishes,
    } = *handoff;
    // SAFETY: `fd` is an open TCP socket whose ownership the accepting shard gave up.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let mut conn = Conn::new(shard.clone(), *session, guard, peer, ticket);
    conn.connected = true;
    conn.publishes = publishes;
    let result = async {
        let flow = conn.publish_requested(request_id, &app, &publish_name)?;
        let flow = match flow {
            Flow::Continue => conn.handle_results(rest)?,
            other => other,
        };
        // Input read after the publish request, not yet fed to the session.
        let flow = match flow {
            Flow::Continue => conn.feed(&pending)?,
            other => other,
        };
        conn.run(stream, flow).await
    }
    .await;
    report(&shard, peer, result);
}

fn report(shard: &Shard, peer: SocketAddr, result: Result<(), RtmpError>) {
    match result {
        Ok(()) => debug!(protocol = "rtmp", shard = shard.id, %peer, "rtmp: connection closed"),
        Err(err) => {
            err.count(shard);
            match err {
                RtmpError::Io(err) => debug!(shard = shard.id, %peer, "rtmp: {err}"),
                err => info!(shard = shard.id, %peer, "rtmp: closing: {err}"),
            }
        }
    }
}

/// Runs the server side of the handshake; returns the bytes that followed it.
async fn handshake(stream: &mut TcpStream) -> Result<Vec<u8>, RtmpError> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        match handshake_input(&mut handshake, &buf[..n])? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// Feeds bytes received during the handshake to the server side of it: the pure step of
/// [`serve`]'s handshake loop, public so that it can be fuzzed as the server runs it.
pub fn handshake_input(
    handshake: &mut Handshake,
    bytes: &[u8],
) -> Result<HandshakeProcessResult, RtmpError> {
    Ok(handshake.process_bytes(bytes)?)
}

/// Feeds bytes received after the handshake to a connection's session: the pure step of
/// every RTMP connection's input path (publishers and players), public so that it can be
/// fuzzed as the server runs it.
///
/// rml_rtmp can panic on hostile chunk headers. The panic is contained here and becomes
/// [`RtmpError::SessionPanic`], which closes that one connection (and is counted as bad
/// input). This relies on panics unwinding, the release profile's default: see the
/// `[profile.release]` note in Cargo.toml. The session must not be used after an error.
pub fn session_input(
    session: &mut ServerSession,
    bytes: &[u8],
) -> Result<Vec<ServerSessionResult>, RtmpError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)))
        .map_err(|_| RtmpError::SessionPanic)?
        .map_err(RtmpError::from)
}

impl Conn {
    fn new(
        shard: Rc<Shard>,
        session: ServerSession,
        guard: InputGuard,
        peer: SocketAddr,
        ticket: Option<Ticket>,
    ) -> Self {
        Conn {
            conn_id: shard.conn_id(),
            shard,
            session,
            peer,
            state: State::Idle,
            out: Vec::new(),
            ticket,
            guard,
            pending: Vec::new(),
            progress_ns: now_ns(),
            connected: false,
            publishes: 0,
        }
    }

    /// Reads and handles input until the peer leaves, an error occurs, or the connection is
    /// handed to another shard.
    async fn run(mut self, mut stream: TcpStream, mut flow: Flow) -> Result<(), RtmpError> {
        let mut result = self.run_inner(&mut stream, &mut flow).await;
        if result.is_ok() && matches!(flow, Flow::Play) {
            result = self.play(&mut stream).await;
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Publishing(key) => self.shard.stop_publishing(&key, self.conn_id),
            State::Playing { key, feed, .. } => {
                self.shard.detach_viewer(&key, &feed, Format::Rtmp);
                stats::dec(&self.shard.stats.rtmp_players);
            }
            State::Idle => {}
        }
        match flow {
            Flow::HandOff {
                owner,
                request_id,
                app,
                publish_name,
                rest,
            } if result.is_ok() => {
                // Duplicate the descriptor for the owner; ours closes with `stream`.
                let fd = crate::net::dup(&stream)?;
                debug!(protocol = "rtmp", shard = self.shard.id, owner, peer = %self.peer, "rtmp: handing publisher to owner");
                self.shard.hand_off(
                    owner,
                    Handoff {
                        fd,
                        session: Box::new(self.session),
                        guard: self.guard,
                        pending: self.pending,
                        request_id,
                        app,
                        publish_name,
                        rest,
                        peer: self.peer,
                        ticket: self.ticket.take(),
                        publishes: self.publishes,
                    },
                );
                Ok(())
            }
            _ => result,
        }
    }

    async fn run_inner(
        &mut self,
        stream: &mut TcpStream,
        flow: &mut Flow,
    ) -> Result<(), RtmpError> {
        let mut buf = vec![0u8; self.shard.config.rtmp.read_buffer_bytes];
        loop {
            if !self.out.is_empty() {
                write_within(&self.shard, stream, &self.out).await?;
                self.out.clear();
            }
            if !matches!(flow, Flow::Continue) {
                return Ok(());
            }
            let shard = self.shard.clone();
            let (limit, expired) = match self.state {
                State::Publishing(_) => (shard.config.idle_timeout(), RtmpError::IdleTimeout),
                _ => (shard.config.handshake_timeout(), RtmpError::SetupTimeout),
            };
            let deadline = self.progress_ns.saturating_add(limit.as_nanos() as u64);
            let left = Duration::from_nanos(deadline.saturating_sub(now_ns()));
            let read = async { Some(crate::util::timeout(left, stream.read(&mut buf)).await) };
            let stop = async {
                shard.stopped().await;
                None
            };
            // A stopping server closes connections that are not playing.
            let Some(read) = futures_lite::future::or(read, stop).await else {
                return Ok(());
            };
            let n = read.ok_or(expired)??;
            if n == 0 {
                return Ok(());
            }
            if matches!(self.state, State::Publishing(_)) {
                stats::add(&self.shard.stats.bytes_in, n as u64);
            }
            *flow = self.feed(&buf[..n])?;
        }
    }

    /// Feeds received bytes to the session and handles what comes out, after the guard:
    /// messages may be up to [`CONTROL_MESSAGE_LIMIT`] bytes long until the connection
    /// publishes, then up to `rtmp.max_message_bytes`.
    ///
    /// Until it publishes, a connection's messages go to the session one at a time: the
    /// session ignores media on a stream whose publish request is not yet accepted, and an
    /// encoder may send its first frames right behind the request.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<Flow, RtmpError> {
        loop {
            let limit = self.message_limit();
            let scan = match self.state {
                State::Publishing(_) => self.guard.scan(bytes, limit)?,
                _ => self.guard.scan_message(bytes, limit)?,
            };
            let consumed = match scan {
                Scan::Done => bytes.len(),
                Scan::Message { consumed } | Scan::Blocked { consumed, .. } => consumed,
            };
            let results = self.decode(&bytes[..consumed])?;
            let flow = self.handle_results(results)?;
            bytes = &bytes[consumed..];
            if let Scan::Blocked { length, .. } = scan {
                // Unless what came before made this connection a publisher (or hands it to
                // the owner, which decides), the message is too long.
                let allowed = match flow {
                    Flow::Continue => self.message_limit() > limit,
                    Flow::HandOff { .. } | Flow::Close => true,
                    Flow::Play => false,
                };
                if !allowed {
                    return Err(GuardError::MessageTooLarge { length, limit }.into());
                }
            } else if bytes.is_empty() {
                return Ok(flow);
            }
            match flow {
                Flow::Continue => {}
                // The owner decides on the publish request, then reads the rest.
                Flow::HandOff { .. } => {
                    self.pending = bytes.to_vec();
                    return Ok(flow);
                }
                Flow::Play => {
                    let results = self.decode_player_input(bytes)?;
                    self.answer_only(results)?;
                    return Ok(flow);
                }
                Flow::Close => return Ok(flow),
            }
        }
    }

    /// The longest message this connection may send now.
    fn message_limit(&self) -> u32 {
        match self.state {
            State::Publishing(_) => self.shard.config.rtmp.max_message_bytes,
            _ => CONTROL_MESSAGE_LIMIT,
        }
    }

    /// Feeds a player's input to the session: control messages only.
    fn decode_player_input(&mut self, bytes: &[u8]) -> Result<Vec<ServerSessionResult>, RtmpError> {
        match self.guard.scan(bytes, CONTROL_MESSAGE_LIMIT)? {
            Scan::Done | Scan::Message { .. } => self.decode(bytes),
            Scan::Blocked { length, .. } => Err(GuardError::MessageTooLarge {
                length,
                limit: CONTROL_MESSAGE_LIMIT,
            }
            .into()),
        }
    }

    /// Feeds received bytes (checked by the guard) to the session.
    fn decode(&mut self, bytes: &[u8]) -> Result<Vec<ServerSessionResult>, RtmpError> {
        let result = session_input(&mut self.session, bytes);
        if let Err(RtmpError::SessionPanic) = result {
            stats::inc(&self.shard.stats.rtmp_session_panics);
            warn!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, "rtmp: input made the session library panic; closing this connection");
        }
        result
    }

    /// Delivers the stream to this player until it ends, the player stops, or it fails.
    /// The player's input is read at the same time: its session's responses go out between
    /// shared media messages.
    async fn play(&mut self, stream: &mut TcpStream) -> Result<(), RtmpError> {
        let State::Playing {
            key,
            feed,
            stream_id,
            query,
        } = &self.state
        else {
            return Ok(());
        };
        let shard = self.shard.clone();
        // The query may hold credentials: only whether there was one is logged.
        let with_query = query.is_some();
        debug!(protocol = "rtmp", shard = shard.id, peer = %self.peer, stream = %key, with_query, "rtmp player start");
        let (key, feed, stream_id) = (key.clone(), feed.clone(), *stream_id);
        // A second descriptor for the same socket: one glommio stream reads, one writes.
        // SAFETY: `dup` returns a new descriptor of an open TCP socket, owned by nobody else.
        let mut writer = unsafe { TcpStream::from_raw_fd(crate::net::dup(stream)?.into_raw_fd()) };
        let outbox = RefCell::new(Outbox::default());
        let delivery = Delivery {
            format: Format::Rtmp,
            head: Vec::new(),
            outbox: Some(&outbox),
        };
        let ending = futures_lite::future::or(
            viewer::deliver(&shard, &feed, &mut writer, delivery),
            self.player_input(stream, &outbox),
        )
        .await;
        ending.record(&shard, "rtmp", self.peer, &key);
        if matches!(ending, Ending::StreamEnded | Ending::Unavailable) {
            let done = self.session.finish_playing(stream_id)?;
            write_within(&shard, &mut writer, &done.bytes).await?;
        }
        Ok(())
    }

    /// Reads a player's input: its session's responses go to the outbox; a stop ends play.
    async fn player_input(&mut self, stream: &mut TcpStream, outbox: &RefCell<Outbox>) -> Ending {
        // A player sends little (acknowledgements, pings, stop): a small buffer, held for as
        // long as it plays, whatever rtmp.read_buffer_bytes is.
        let mut buf = vec![0u8; PLAYER_READ_BUFFER];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) => return Ending::Stopped,
                Ok(n) => n,
                Err(err) => return Ending::Io(err),
            };
            let results = match self.decode_player_input(&buf[..n]) {
                Ok(results) => results,
                Err(err) => {
                    err.count(&self.shard);
                    info!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, "rtmp player: closing: {err}");
                    return Ending::Io(io::Error::new(io::ErrorKind::InvalidData, err));
                }
            };
            for result in results {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        if !outbox.borrow_mut().push(Bytes::from(packet.bytes)) {
                            info!(shard = self.shard.id, peer = %self.peer, "rtmp player: not reading its answers; closing");
                            return Ending::Stopped;
                        }
                    }
                    ServerSessionResult::RaisedEvent(ServerSessionEvent::PlayStreamFinished {
                        ..
                    }) => return Ending::Stopped,
                    ServerSessionResult::RaisedEvent(event) => {
                        if let Err(err) = refuse_while_playing(&event) {
                            err.count(&self.shard);
                            info!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, "rtmp player: closing: {err}");
                            return Ending::Io(io::Error::new(io::ErrorKind::InvalidData, err));
                        }
                        debug!(protocol = "rtmp", peer = %self.peer, event = event_name(&event), "rtmp player: ignored event");
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    }

    fn handle_results(&mut self, results: Vec<ServerSessionResult>) -> Result<Flow, RtmpError> {
        let ingest_ns = now_ns();
        let mut results = results.into_iter();
        while let Some(result) = results.next() {
            let flow = match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                    Flow::Continue
                }
                ServerSessionResult::RaisedEvent(event) => self.on_event(event, ingest_ns)?,
                ServerSessionResult::UnhandleableMessageReceived(payload)
                    if payload.type_id == AGGREGATE_MESSAGE =>
                {
                    for sub in split_aggregate(payload.timestamp.value, &payload.data)? {
                        self.media(sub.kind, sub.timestamp, &sub.body, ingest_ns)?;
                    }
                    Flow::Continue
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    debug!(protocol = "rtmp", peer = %self.peer, type_id = payload.type_id, "rtmp: ignored message");
                    Flow::Continue
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::HandOff {
                    owner,
                    request_id,
                    app,
                    publish_name,
                    ..
                } => {
                    return Ok(Flow::HandOff {
                        owner,
                        request_id,
                        app,
                        publish_name,
                        rest: results.collect(),
                    })
                }
                Flow::Close => return Ok(Flow::Close),
                Flow::Play => {
                    self.answer_only(results.collect())?;
                    return Ok(Flow::Play);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Session results after a play request: whatever the session answers still goes out,
    /// in order; a further request closes the connection.
    fn answer_only(&mut self, results: Vec<ServerSessionResult>) -> Result<(), RtmpError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes)
                }
                ServerSessionResult::RaisedEvent(event) => {
                    refuse_while_playing(&event)?;
                    debug!(protocol = "rtmp", peer = %self.peer, event = event_name(&event), "rtmp player: ignored event")
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    debug!(protocol = "rtmp", peer = %self.peer, type_id = payload.type_id, "rtmp player: ignored message")
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, request_id: u32) -> Result<Flow, RtmpError> {
        let results = self.session.accept_request(request_id)?;
        self.handle_results(results)
    }

    fn on_event(&mut self, event: ServerSessionEvent, ingest_ns: u64) -> Result<Flow, RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if std::mem::replace(&mut self.connected, true) {
                    return Err(RtmpError::NotAllowed("connect", "twice"));
                }
                if let Err(err) = validate_name(&app_name) {
                    return self.refuse_name(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "connect",
                        &app_name,
                        err,
                    );
                }
                debug!(protocol = "rtmp", peer = %self.peer, app = %app_name, "rtmp: connect");
                self.accept(request_id)
            }
            ServerSessionEvent::ReleaseStreamRequested { request_id, .. } => {
                self.accept(request_id)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => self.publish_requested(request_id, &app_name, &stream_key),
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let State::Publishing(key) = std::mem::replace(&mut self.state, State::Idle) {
                    self.shard.stop_publishing(&key, self.conn_id);
                    self.progress_ns = now_ns();
                }
                Ok(Flow::Continue)
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let State::Publishing(key) = &self.state {
                    if !self
                        .shard
                        .ingest_metadata(key, self.conn_id, &metadata, ingest_ns)
                    {
                        return Err(RtmpError::Replaced);
                    }
                }
                Ok(Flow::Continue)
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self.media(UnitKind::Video, timestamp.value, &data, ingest_ns),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self.media(UnitKind::Audio, timestamp.value, &data, ingest_ns),
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                app_name,
                stream_key,
                stream_id,
                ..
            } => self.play_requested(request_id, &app_name, &stream_key, stream_id),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                debug!(protocol = "rtmp", peer = %self.peer, command = %Escaped(&command_name), "rtmp: command ignored");
                Ok(Flow::Continue)
            }
            ServerSessionEvent::ClientChunkSizeChanged { .. }
            | ServerSessionEvent::PlayStreamFinished { .. }
            | ServerSessionEvent::AcknowledgementReceived { .. }
            | ServerSessionEvent::PingResponseReceived { .. } => Ok(Flow::Continue),
        }
    }

    /// An audio or video message: ingested when this connection publishes.
    /// A publisher that was taken over (or whose stream ended) is closed.
    fn media(
        &mut self,
        kind: UnitKind,
        ts: u32,
        body: &[u8],
        ingest_ns: u64,
    ) -> Result<Flow, RtmpError> {
        if let State::Publishing(key) = &self.state {
            if !self
                .shard
                .ingest_media(key, self.conn_id, kind, ts, body, ingest_ns)
            {
                return Err(RtmpError::Replaced);
            }
            if has_payload(kind, body) {
                self.progress_ns = ingest_ns;
            }
        }
        Ok(Flow::Continue)
    }

    /// A play request: accepted when the stream is known on this shard (any shard serves
    /// players; a replica feed is created when needed).
    fn play_requested(
        &mut self,
        request_id: u32,
        app: &str,
        name: &str,
        stream_id: u32,
    ) -> Result<Flow, RtmpError> {
        let (name, query) = split_query(name);
        if let Err(err) = validate_names(app, name) {
            let shown = format!("{app}/{name}");
            return self.refuse_name(request_id, "NetStream.Play.BadName", "play", &shown, err);
        }
        let key = stream_key(app, name);
        let refusal = if !matches!(self.state, State::Idle) {
            Some((
                "NetStream.Play.Failed",
                "this connection already publishes or plays",
            ))
        } else if stream_id != chunk::MEDIA_STREAM_ID {
            Some((
                "NetStream.Play.Failed",
                "play on the first stream created by the connection",
            ))
        } else if let Err(denied) =
            self.shard
                .authorize(Action::Play, app, name, query, "rtmp", self.peer)
        {
            Some(("NetStream.Play.Unauthorized", denied.message()))
        } else {
            None
        };
        let feed = match refusal {
            None => self.shard.attach_viewer(&key, Format::Rtmp),
            Some(_) => None,
        };
        let Some(feed) = feed else {
            stats::inc(&self.shard.stats.play_rejected);
            let (code, description) =
                refusal.unwrap_or(("NetStream.Play.StreamNotFound", "no such stream"));
            info!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, stream = %key, code, "play refused");
            return self.refuse(request_id, code, description);
        };
        stats::inc(&self.shard.stats.rtmp_players);
        stats::inc(&self.shard.stats.rtmp_players_total);
        // From here on, leaving the state (in `run`) undoes the gauge and detaches the viewer.
        self.state = State::Playing {
            key,
            feed,
            stream_id,
            query: query.map(str::to_string),
        };
        self.accept(request_id)?;
        Ok(Flow::Play)
    }

    /// A publish request: decided here when this shard owns the stream, otherwise handed to
    /// the owner.
    fn publish_requested(
        &mut self,
        request_id: u32,
        app: &str,
        publish_name: &str,
    ) -> Result<Flow, RtmpError> {
        let (name, query) = split_query(publish_name);
        if let Err(err) = validate_names(app, name) {
            let shown = format!("{app}/{name}");
            return self.refuse_name(
                request_id,
                "NetStream.Publish.BadName",
                "publish",
                &shown,
                err,
            );
        }
        let key = stream_key(app, name);
        if !matches!(self.state, State::Idle) {
            // One stream per connection at a time.
            return self.refuse(
                request_id,
                "NetStream.Publish.BadName",
                "this connection already publishes or plays",
            );
        }
        if let Err(denied) =
            self.shard
                .authorize(Action::Publish, app, name, query, "rtmp", self.peer)
        {
            return self.refuse(
                request_id,
                "NetStream.Publish.Unauthorized",
                denied.message(),
            );
        }
        let owner = self.shard.owner(&key);
        if owner != self.shard.id {
            return Ok(Flow::HandOff {
                owner,
                request_id,
                app: app.to_string(),
                publish_name: publish_name.to_string(),
                // Filled in by `handle_results` with what follows the request.
                rest: Vec::new(),
            });
        }
        let cap = self.shard.config.limits.max_publishes_per_connection;
        let result = if cap > 0 && self.publishes >= cap {
            Err(PublishRefusal::ConnectionPublishes)
        } else {
            let publisher = PublisherInfo {
                conn_id: self.conn_id,
                peer: self.peer,
                query: query.map(str::to_string),
                since_ns: now_ns(),
            };
            self.shard.start_publishing(&key, publisher)
        };
        match result {
            Ok(()) => {
                self.state = State::Publishing(key);
                self.publishes += 1;
                self.progress_ns = now_ns();
                self.accept(request_id)
            }
            Err(refusal) => {
                let (code, description) = refusal.status();
                // A refusal while stopping is no client's doing: not counted.
                if refusal != PublishRefusal::Stopping {
                    stats::inc(&self.shard.stats.publish_rejected);
                    info!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, stream = %key, "publish refused: {description}");
                }
                self.refuse(request_id, code, description)
            }
        }
    }

    /// Refuses a request (`connect`, `publish` or `play`) for an invalid application or
    /// stream name `shown` (without its query string), counts and logs it (escaped), and
    /// closes the connection.
    fn refuse_name(
        &mut self,
        request_id: u32,
        code: &str,
        request: &'static str,
        shown: &str,
        err: NameError,
    ) -> Result<Flow, RtmpError> {
        stats::inc(&self.shard.stats.names_rejected);
        info!(protocol = "rtmp", shard = self.shard.id, peer = %self.peer, request, name = %Escaped(shown), "invalid name refused: {err}");
        self.refuse(request_id, code, &format!("invalid name: {err}"))
    }

    fn refuse(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
    ) -> Result<Flow, RtmpError> {
        let results = self.session.reject_request(request_id, code, description)?;
        self.handle_results(results)?;
        Ok(Flow::Close)
    }
}

/// Writes answers (not live media) within `server.write_timeout_ms`.
async fn write_within(
    shard: &Shard,
    stream: &mut TcpStream,
    bytes: &[u8],
) -> Result<(), RtmpError> {
    crate::util::timeout(shard.config.write_timeout(), stream.write_all(bytes))
        .await
        .ok_or(RtmpError::WriteTimeout)??;
    Ok(())
}

/// Refuses a request event on a playing connection: the session keeps every request until
/// it is answered, and a player gets no answers to connect, publish or play.
fn refuse_while_playing(event: &ServerSessionEvent) -> Result<(), RtmpError> {
    match event {
        ServerSessionEvent::ConnectionRequested { .. }
        | ServerSessionEvent::PublishStreamRequested { .. }
        | ServerSessionEvent::PlayStreamRequested { .. }
        | ServerSessionEvent::ReleaseStreamRequested { .. } => {
            Err(RtmpError::NotAllowed(event_name(event), "while playing"))
        }
        _ => Ok(()),
    }
}

/// The kind of a session event, for logs: events carry client strings (stream names with
/// their credentials, command names) that must not reach a log line.
fn event_name(event: &ServerSessionEvent) -> &'static str {
    match event {
        ServerSessionEvent::ClientChunkSizeChanged { .. } => "chunk size changed",
        ServerSessionEvent::ConnectionRequested { .. } => "connect",
        ServerSessionEvent::ReleaseStreamRequested { .. } => "release stream",
        ServerSessionEvent::PublishStreamRequested { .. } => "publish",
        ServerSessionEvent::PublishStreamFinished { .. } => "publish finished",
        ServerSessionEvent::StreamMetadataChanged { .. } => "metadata",
        ServerSessionEvent::AudioDataReceived { .. } => "audio",
        ServerSessionEvent::VideoDataReceived { .. } => "video",
        ServerSessionEvent::UnhandleableAmf0Command { .. } => "unhandled command",
        ServerSessionEvent::PlayStreamRequested { .. } => "play",
        ServerSessionEvent::PlayStreamFinished { .. } => "play finished",
        ServerSessionEvent::AcknowledgementReceived { .. } => "acknowledgement",
        ServerSessionEvent::PingResponseReceived { .. } => "ping response",
    }
}
