//! One RTMP connection as a pure state machine: bytes and `now` in; bytes to send and
//! [`Action`]s out. No sockets, no clock, no shard.
//!
//! [`Connection`] owns the server handshake, the input guard ([`InputGuard`]) and rml_rtmp's
//! [`ServerSession`], and decides everything the protocol alone can decide: which requests
//! are valid in which state, which message size applies, what a player may send, when a
//! timeout expires. What needs the rest of the server (access control, the stream registry,
//! the owner shard) comes out as an [`Action`] for the driver (`rtmp::serve`), which answers
//! a publish or play request with [`Connection::accept`] or [`Connection::refuse`].
//!
//! Call order, for a driver:
//! 1. [`Connection::handle_input`] with the bytes read and the time they were read;
//! 2. [`Connection::poll_action`] until `None`, acting on each action in order; a request
//!    ([`Action::Publish`], [`Action::Play`]) must be answered before the next call to
//!    `handle_input` (input that arrived behind it waits in the connection, and so do the
//!    session results that followed it);
//! 3. [`Connection::take_output`] and send it, in order (unless the connection closed with an
//!    error);
//! 4. read again, no later than [`Connection::deadline`].
//!
//! States: `Handshaking` -> `Connected` -> (`Deciding` ->) `Publishing` | `Playing`, and
//! `Closing` from anywhere. A publisher that stops publishing is `Connected` again and may
//! publish anew; a player plays until it stops or the stream ends.

use super::chunk::MEDIA_STREAM_ID;
use super::guard::{GuardError, InputGuard, Scan, CONTROL_MESSAGE_LIMIT};
use super::RtmpError;
use crate::config::Config;
use crate::hub::{split_query, stream_key, validate_name, validate_names, NameError, StreamKey};
use crate::media::{has_payload, split_aggregate, UnitKind};
use crate::util::Escaped;
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use tracing::{debug, warn};

/// RTMP message type of an aggregate message (several FLV-tag-shaped messages in one).
const AGGREGATE_MESSAGE: u8 = 22;

/// The configuration a connection follows (copied from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Chunk size the server sends with (`rtmp.chunk_size`).
    pub chunk_size: u32,
    /// Largest chunk size a client may announce (`rtmp.max_chunk_size`).
    pub max_chunk_size: u32,
    /// Longest message from a publisher (`rtmp.max_message_bytes`); other messages are
    /// limited to [`CONTROL_MESSAGE_LIMIT`].
    pub max_message_bytes: u32,
    /// From the TCP accept (or the end of a publish) to publishing or playing
    /// (`rtmp.handshake_timeout_ms`), in ns.
    pub setup_timeout_ns: u64,
    /// Longest time a publisher may send no audio or video (`rtmp.idle_timeout_ms`), in ns.
    pub idle_timeout_ns: u64,
}

impl Settings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            chunk_size: config.rtmp.chunk_size,
            max_chunk_size: config.rtmp.max_chunk_size,
            max_message_bytes: config.rtmp.max_message_bytes,
            setup_timeout_ns: config.handshake_timeout().as_nanos() as u64,
            idle_timeout_ns: config.idle_timeout().as_nanos() as u64,
        }
    }
}

/// A publish or play request that the connection found valid, for the driver to decide.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Publish, or play on a message stream.
    pub kind: RequestKind,
    /// Application name.
    pub app: String,
    /// Stream name, without its query string.
    pub name: String,
    /// The query string after the stream name (`?token=...`): credentials, never logged.
    pub query: Option<String>,
    /// `app/name`.
    pub key: StreamKey,
    /// The session's id of the request, for the answer.
    request_id: u32,
}

impl fmt::Debug for Request {
    /// Without the query, which may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("with_query", &self.query.is_some())
            .finish()
    }
}

/// What a [`Request`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Publish the stream.
    Publish,
    /// Play the stream on this message stream.
    Play {
        /// The message stream the player created for it.
        stream_id: u32,
    },
}

/// A request the connection refused by itself, for the driver to count and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An invalid application or stream name (`names_rejected_total`).
    Name {
        /// `connect`, `publish` or `play`.
        request: &'static str,
        /// The name as sent, without its query string (log it escaped).
        shown: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// A play request that this connection may not make (`play_rejected_total`).
    Play {
        /// The stream asked for.
        key: StreamKey,
        /// The status code the player got.
        code: &'static str,
    },
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Decide on a publish request: authorize it and, on the stream's owner shard, register
    /// the publisher; then [`Connection::accept`] or [`Connection::refuse`]. A shard that does
    /// not own the stream hands the connection over, and the owner calls
    /// [`Connection::repeat_request`].
    Publish(Request),
    /// Decide on a play request: authorize it, attach a viewer; then accept or refuse.
    Play(Request),
    /// Audio or video from this connection's publisher, received at `at` (ns).
    Media {
        /// Audio or video.
        kind: UnitKind,
        /// RTMP timestamp (ms).
        timestamp: u32,
        /// The message body (an FLV tag body).
        body: Bytes,
        /// When it was read.
        at: u64,
    },
    /// Stream metadata (`@setDataFrame onMetaData`) from this connection's publisher.
    Metadata {
        /// The metadata.
        metadata: Box<StreamMetadata>,
        /// When it was read.
        at: u64,
    },
    /// The publisher stopped publishing (`FCUnpublish`, `deleteStream`); it may publish again.
    Unpublished,
    /// A request was refused by the connection: count it and log it.
    Refused(Refusal),
    /// The connection is over: with `None`, after the output is sent; with an error, at once.
    Close(Option<RtmpError>),
}

/// Where the connection is.
enum State {
    /// The server handshake is under way.
    Handshaking(Box<Handshake>),
    /// Handshake done; neither publishing nor playing.
    Connected,
    /// A publish or play request waits for the driver's decision; the input and session
    /// results behind it wait too.
    Deciding(Request),
    /// Publishing `key` (accepted by the driver).
    Publishing {
        /// The stream.
        key: StreamKey,
    },
    /// Playing `key` on message stream `stream_id`.
    Playing {
        /// The stream.
        key: StreamKey,
        /// The player's message stream (for the end-of-stream notice).
        stream_id: u32,
    },
    /// Over: input is ignored.
    Closing,
}

/// One RTMP connection, server side. See the module documentation for the call order.
pub struct Connection {
    /// The configuration it follows.
    settings: Settings,
    /// Remote address, for log lines.
    peer: SocketAddr,
    /// Where the connection is.
    state: State,
    /// The protocol session (rml_rtmp, sans-IO); created with the connection, fed once the
    /// handshake is done.
    session: ServerSession,
    /// The session's first messages (window, bandwidth, chunk size), sent after the handshake.
    greeting: Vec<u8>,
    /// Chunk-level checks of the input, ahead of the session.
    guard: InputGuard,
    /// Bytes to send, in order.
    out: Vec<u8>,
    /// Actions for the driver, in order.
    actions: VecDeque<Action>,
    /// Session results not handled yet: those behind a request that waits for a decision.
    held: VecDeque<ServerSessionResult>,
    /// Input not fed to the session yet: what arrived behind a request that waits for a
    /// decision (the driver answers before reading again, so this holds at most one read).
    unread: Vec<u8>,
    /// When the connection last made progress (ns): accepted, stopped publishing, or, while
    /// publishing, received media with a payload. The setup and idle timeouts count from it.
    progress_ns: u64,
    /// The connect request was answered (a second one closes the connection).
    connected: bool,
    /// Publishes this connection started (`limits.max_publishes_per_connection`).
    publishes: u32,
}

impl Connection {
    /// A connection accepted at `now` (ns), at the start of the handshake.
    pub fn new(settings: Settings, peer: SocketAddr, now: u64) -> Result<Self, RtmpError> {
        let config = ServerSessionConfig {
            chunk_size: settings.chunk_size,
            ..ServerSessionConfig::new()
        };
        let (session, initial) = ServerSession::new(config)?;
        let mut greeting = Vec::new();
        for result in initial {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                greeting.extend_from_slice(&packet.bytes);
            }
        }
        Ok(Connection {
            settings,
            peer,
            state: State::Handshaking(Box::new(Handshake::new(PeerType::Server))),
            session,
            greeting,
            guard: InputGuard::new(settings.max_chunk_size),
            out: Vec::new(),
            actions: VecDeque::new(),
            held: VecDeque::new(),
            unread: Vec::new(),
            progress_ns: now,
            connected: false,
            publishes: 0,
        })
    }

    /// Handles bytes read from the peer at `now` (ns).
    pub fn handle_input(&mut self, bytes: &[u8], now: u64) {
        let result = match &mut self.state {
            State::Handshaking(handshake) => handshake.process_bytes(bytes),
            _ => return self.read(bytes, now),
        };
        match result {
            Err(err) => self.fail(err.into()),
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                self.out.extend_from_slice(&response_bytes)
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                self.out.extend_from_slice(&response_bytes);
                self.out.append(&mut self.greeting);
                self.state = State::Connected;
                self.read(&remaining_bytes, now);
            }
        }
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The bytes to send now, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Accepts the request of the last [`Action::Publish`] or [`Action::Play`] at `now`, and
    /// goes on with the input that waited behind it.
    pub fn accept(&mut self, now: u64) {
        let State::Deciding(request) = std::mem::replace(&mut self.state, State::Closing) else {
            return;
        };
        self.state = match request.kind {
            RequestKind::Publish => {
                self.publishes += 1;
                self.progress_ns = now;
                State::Publishing { key: request.key }
            }
            RequestKind::Play { stream_id } => State::Playing {
                key: request.key,
                stream_id,
            },
        };
        self.answer(|session| session.accept_request(request.request_id));
        self.resume(now);
    }

    /// Refuses the request of the last [`Action::Publish`] or [`Action::Play`] with an RTMP
    /// status `code` and `description`; the connection closes once they are sent.
    pub fn refuse(&mut self, code: &str, description: &str) {
        if let State::Deciding(request) = std::mem::replace(&mut self.state, State::Connected) {
            self.reject(request.request_id, code, description);
        }
    }

    /// Puts the request that waits for a decision out again as an action: for the shard a
    /// publisher was handed to, which decides on it.
    pub fn repeat_request(&mut self) {
        if let State::Deciding(request) = &self.state {
            let action = match request.kind {
                RequestKind::Publish => Action::Publish(request.clone()),
                RequestKind::Play { .. } => Action::Play(request.clone()),
            };
            self.actions.push_back(action);
        }
    }

    /// The stream of a playing connection ended: the bytes that tell the player.
    pub fn finish_playing(&mut self) -> Result<Vec<u8>, RtmpError> {
        match self.state {
            State::Playing { stream_id, .. } => Ok(self.session.finish_playing(stream_id)?.bytes),
            _ => Ok(Vec::new()),
        }
    }

    /// When the connection times out if nothing happens, and with which error: the
    /// handshake and the setup (publish or play) by `rtmp.handshake_timeout_ms` after the
    /// accept, a publisher after `rtmp.idle_timeout_ms` without media. `None` while playing
    /// (a player's delivery has its own deadlines), deciding or closing.
    pub fn deadline(&self) -> Option<(u64, RtmpError)> {
        let (limit, error) = match self.state {
            State::Handshaking(_) => (self.settings.setup_timeout_ns, RtmpError::HandshakeTimeout),
            State::Connected => (self.settings.setup_timeout_ns, RtmpError::SetupTimeout),
            State::Publishing { .. } => (self.settings.idle_timeout_ns, RtmpError::IdleTimeout),
            State::Deciding(_) | State::Playing { .. } | State::Closing => return None,
        };
        Some((self.progress_ns.saturating_add(limit), error))
    }

    /// The stream this connection publishes, if it does.
    pub fn publishing(&self) -> Option<&StreamKey> {
        match &self.state {
            State::Publishing { key } => Some(key),
            _ => None,
        }
    }

    /// The stream this connection plays, if it does.
    pub fn playing(&self) -> Option<&StreamKey> {
        match &self.state {
            State::Playing { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether the connection is over.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// Publishes this connection started.
    pub fn publishes(&self) -> u32 {
        self.publishes
    }

    /// Remote address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Closes the connection with `error`: nothing more is sent or read.
    fn fail(&mut self, error: RtmpError) {
        if let RtmpError::SessionPanic = error {
            warn!(protocol = "rtmp", peer = %self.peer, "rtmp: input made the session library panic; closing this connection");
        }
        self.state = State::Closing;
        self.held.clear();
        self.unread.clear();
        self.actions.push_back(Action::Close(Some(error)));
    }

    /// Closes the connection once the output is sent.
    fn close(&mut self) {
        self.state = State::Closing;
        self.held.clear();
        self.unread.clear();
        self.actions.push_back(Action::Close(None));
    }

    /// Whether results and input must wait (for a decision) or be dropped (closing).
    fn stalled(&self) -> bool {
        matches!(self.state, State::Deciding(_) | State::Closing)
    }

    /// After a decision: the session results, then the input, that waited behind it.
    fn resume(&mut self, now: u64) {
        self.drain_held(now);
        if !self.stalled() && !self.unread.is_empty() {
            let unread = std::mem::take(&mut self.unread);
            self.read(&unread, now);
        }
    }

    /// The longest message this connection may send now.
    fn message_limit(&self) -> u32 {
        match self.state {
            State::Publishing { .. } => self.settings.max_message_bytes,
            _ => CONTROL_MESSAGE_LIMIT,
        }
    }

    /// Feeds bytes received after the handshake to the session, after the guard: messages
    /// may be up to [`CONTROL_MESSAGE_LIMIT`] bytes long until the connection publishes, then
    /// up to `rtmp.max_message_bytes`.
    ///
    /// Until it publishes, a connection's messages go to the session one at a time: the
    /// session ignores media on a stream whose publish request is not yet accepted, and an
    /// encoder may send its first frames right behind the request. A player's input is
    /// control messages only.
    fn read(&mut self, mut bytes: &[u8], now: u64) {
        while !bytes.is_empty() {
            match self.state {
                State::Closing => return,
                State::Deciding(_) => return self.unread.extend_from_slice(bytes),
                _ => {}
            }
            let limit = self.message_limit();
            let scan = match self.state {
                State::Publishing { .. } | State::Playing { .. } => self.guard.scan(bytes, limit),
                _ => self.guard.scan_message(bytes, limit),
            };
            let scan = match scan {
                Ok(scan) => scan,
                Err(err) => return self.fail(err.into()),
            };
            let consumed = match scan {
                Scan::Done => bytes.len(),
                Scan::Message { consumed } | Scan::Blocked { consumed, .. } => consumed,
            };
            match super::session_input(&mut self.session, &bytes[..consumed]) {
                Ok(results) => self.held.extend(results),
                Err(err) => return self.fail(err),
            }
            self.drain_held(now);
            bytes = &bytes[consumed..];
            if let Scan::Blocked { length, .. } = scan {
                // Too long, unless what came before made this connection a publisher (or
                // waits for the decision on a publish or play request: the limit after it
                // applies then).
                if !self.stalled() && self.message_limit() <= limit {
                    return self.fail(GuardError::MessageTooLarge { length, limit }.into());
                }
            }
        }
    }

    /// Handles the session results in `held`, in order, until one needs a decision.
    fn drain_held(&mut self, now: u64) {
        while !self.stalled() {
            let Some(result) = self.held.pop_front() else {
                return;
            };
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes)
                }
                ServerSessionResult::RaisedEvent(event) => match self.state {
                    State::Playing { .. } => self.player_event(event),
                    _ => self.event(event, now),
                },
                ServerSessionResult::UnhandleableMessageReceived(payload)
                    if payload.type_id == AGGREGATE_MESSAGE && self.playing().is_none() =>
                {
                    match split_aggregate(payload.timestamp.value, &payload.data) {
                        Ok(subs) => {
                            for sub in subs {
                                self.media(sub.kind, sub.timestamp, sub.body, now);
                            }
                        }
                        Err(err) => self.fail(err.into()),
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    debug!(protocol = "rtmp", peer = %self.peer, type_id = payload.type_id, "rtmp: ignored message");
                }
            }
        }
    }

    /// Handles a session event of a connection that does not play.
    fn event(&mut self, event: ServerSessionEvent, now: u64) {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if std::mem::replace(&mut self.connected, true) {
                    return self.fail(RtmpError::NotAllowed("connect", "twice"));
                }
                if let Err(error) = validate_name(&app_name) {
                    return self.refuse_name(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "connect",
                        app_name,
                        error,
                    );
                }
                debug!(protocol = "rtmp", peer = %self.peer, app = %Escaped(&app_name), "rtmp: connect");
                self.answer(|session| session.accept_request(request_id));
            }
            ServerSessionEvent::ReleaseStreamRequested { request_id, .. } => {
                self.answer(|session| session.accept_request(request_id))
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => self.request(request_id, RequestKind::Publish, &app_name, &stream_key),
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                app_name,
                stream_key,
                stream_id,
                ..
            } => self.request(
                request_id,
                RequestKind::Play { stream_id },
                &app_name,
                &stream_key,
            ),
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let State::Publishing { .. } = self.state {
                    self.state = State::Connected;
                    self.progress_ns = now;
                    self.actions.push_back(Action::Unpublished);
                }
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let State::Publishing { .. } = self.state {
                    self.actions.push_back(Action::Metadata {
                        metadata: Box::new(metadata),
                        at: now,
                    });
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self.media(UnitKind::Video, timestamp.value, data, now),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self.media(UnitKind::Audio, timestamp.value, data, now),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                debug!(protocol = "rtmp", peer = %self.peer, command = %Escaped(&command_name), "rtmp: command ignored");
            }
            ServerSessionEvent::ClientChunkSizeChanged { .. }
            | ServerSessionEvent::PlayStreamFinished { .. }
            | ServerSessionEvent::AcknowledgementReceived { .. }
            | ServerSessionEvent::PingResponseReceived { .. } => {}
        }
    }

    /// Handles a session event of a playing connection: a stop ends play; a request closes
    /// the connection, since the session keeps every request until it is answered and a
    /// player gets no answers to connect, publish or play.
    fn player_event(&mut self, event: ServerSessionEvent) {
        match event {
            ServerSessionEvent::PlayStreamFinished { .. } => self.close(),
            ServerSessionEvent::ConnectionRequested { .. }
            | ServerSessionEvent::PublishStreamRequested { .. }
            | ServerSessionEvent::PlayStreamRequested { .. }
            | ServerSessionEvent::ReleaseStreamRequested { .. } => {
                self.fail(RtmpError::NotAllowed(event_name(&event), "while playing"))
            }
            event => {
                debug!(protocol = "rtmp", peer = %self.peer, event = event_name(&event), "rtmp player: ignored event")
            }
        }
    }

    /// An audio or video message: an action when this connection publishes.
    fn media(&mut self, kind: UnitKind, timestamp: u32, body: Bytes, now: u64) {
        if let State::Publishing { .. } = self.state {
            if has_payload(kind, &body) {
                self.progress_ns = now;
            }
            self.actions.push_back(Action::Media {
                kind,
                timestamp,
                body,
                at: now,
            });
        }
    }

    /// A publish or play request: refused here when the names are invalid or the connection
    /// may not make it; otherwise the driver decides.
    fn request(&mut self, request_id: u32, kind: RequestKind, app: &str, name_and_query: &str) {
        let (name, query) = split_query(name_and_query);
        let (verb, bad_name) = match kind {
            RequestKind::Publish => ("publish", "NetStream.Publish.BadName"),
            RequestKind::Play { .. } => ("play", "NetStream.Play.BadName"),
        };
        if let Err(error) = validate_names(app, name) {
            return self.refuse_name(request_id, bad_name, verb, format!("{app}/{name}"), error);
        }
        let key = stream_key(app, name);
        let refusal = if !matches!(self.state, State::Connected) {
            Some("this connection already publishes or plays")
        } else if matches!(kind, RequestKind::Play { stream_id } if stream_id != MEDIA_STREAM_ID) {
            Some("play on the first stream created by the connection")
        } else {
            None
        };
        if let Some(description) = refusal {
            return match kind {
                // One stream per connection at a time.
                RequestKind::Publish => self.reject(request_id, bad_name, description),
                RequestKind::Play { .. } => {
                    let code = "NetStream.Play.Failed";
                    self.actions
                        .push_back(Action::Refused(Refusal::Play { key, code }));
                    self.reject(request_id, code, description)
                }
            };
        }
        let request = Request {
            kind,
            app: app.to_string(),
            name: name.to_string(),
            query: query.map(str::to_string),
            key,
            request_id,
        };
        self.actions.push_back(match kind {
            RequestKind::Publish => Action::Publish(request.clone()),
            RequestKind::Play { .. } => Action::Play(request.clone()),
        });
        self.state = State::Deciding(request);
    }

    /// Refuses a request for an invalid application or stream name `shown` (without its
    /// query string), and closes the connection.
    fn refuse_name(
        &mut self,
        request_id: u32,
        code: &str,
        request: &'static str,
        shown: String,
        error: NameError,
    ) {
        self.actions.push_back(Action::Refused(Refusal::Name {
            request,
            shown,
            error,
        }));
        self.reject(request_id, code, &format!("invalid name: {error}"));
    }

    /// Answers request `request_id` with an error status; the connection closes once it is
    /// sent.
    fn reject(&mut self, request_id: u32, code: &str, description: &str) {
        match self.session.reject_request(request_id, code, description) {
            Ok(results) => {
                for result in results {
                    if let ServerSessionResult::OutboundResponse(packet) = result {
                        self.out.extend_from_slice(&packet.bytes);
                    }
                }
                self.close();
            }
            Err(err) => self.fail(err.into()),
        }
    }

    /// Runs a session call that answers a request; its results go first in line.
    fn answer(
        &mut self,
        call: impl FnOnce(
            &mut ServerSession,
        )
            -> Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>,
    ) {
        match call(&mut self.session) {
            Ok(results) => {
                for result in results.into_iter().rev() {
                    self.held.push_front(result);
                }
            }
            Err(err) => self.fail(err.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::guard::GuardError;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::RtmpMessage;
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::time::RtmpTimestamp;
    use std::collections::HashMap;

    const MS: u64 = 1_000_000;

    fn settings() -> Settings {
        Settings {
            chunk_size: 4096,
            max_chunk_size: 65536,
            max_message_bytes: 1 << 20,
            setup_timeout_ns: 10_000 * MS,
            idle_timeout_ns: 30_000 * MS,
        }
    }

    /// A connection past the handshake, and a client that writes messages by hand (so that
    /// it can send what a well-behaved client would not).
    struct Peer {
        conn: Connection,
        chunks: ChunkSerializer,
        /// Actions taken from the connection, not yet looked at.
        actions: VecDeque<Action>,
        /// Everything the connection sent.
        sent: Vec<u8>,
    }

    impl Peer {
        fn new() -> Peer {
            let peer = "192.0.2.1:5000".parse().unwrap();
            let mut conn = Connection::new(settings(), peer, 0).unwrap();
            let mut client = Handshake::new(PeerType::Client);
            let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
            conn.handle_input(&c0c1, 0);
            assert!(matches!(conn.state, State::Handshaking(_)));
            let reply = conn.take_output();
            let c2 = match client.process_bytes(&reply).unwrap() {
                HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
                HandshakeProcessResult::InProgress { .. } => panic!("handshake incomplete"),
            };
            conn.handle_input(&c2, 0);
            assert!(matches!(conn.state, State::Connected));
            let mut peer = Peer {
                conn,
                chunks: ChunkSerializer::new(),
                actions: VecDeque::new(),
                sent: Vec::new(),
            };
            peer.collect();
            peer
        }

        /// A connected client (`connect("live")` answered).
        fn connected() -> Peer {
            let mut peer = Peer::new();
            let connect = peer.connect("live");
            peer.send(&connect);
            assert!(peer.sent_status("NetConnection.Connect.Success"));
            peer
        }

        fn collect(&mut self) {
            while let Some(action) = self.conn.poll_action() {
                self.actions.push_back(action);
            }
            self.sent.extend(self.conn.take_output());
        }

        fn send_at(&mut self, bytes: &[u8], now: u64) {
            self.conn.handle_input(bytes, now);
            self.collect();
        }

        fn send(&mut self, bytes: &[u8]) {
            self.send_at(bytes, 0);
        }

        fn next(&mut self) -> Option<Action> {
            self.actions.pop_front()
        }

        /// Whether the connection sent a status with this code (from the start).
        fn sent_status(&self, code: &str) -> bool {
            self.sent
                .windows(code.len())
                .any(|window| window == code.as_bytes())
        }

        fn message(&mut self, message: RtmpMessage, stream_id: u32, timestamp: u32) -> Vec<u8> {
            let payload = message
                .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
                .unwrap();
            self.chunks.serialize(&payload, false, false).unwrap().bytes
        }

        fn command(
            &mut self,
            name: &str,
            tx: f64,
            stream_id: u32,
            args: Vec<Amf0Value>,
        ) -> Vec<u8> {
            let command = RtmpMessage::Amf0Command {
                command_name: name.to_string(),
                transaction_id: tx,
                command_object: Amf0Value::Null,
                additional_arguments: args,
            };
            self.message(command, stream_id, 0)
        }

        fn connect(&mut self, app: &str) -> Vec<u8> {
            let mut properties = HashMap::new();
            properties.insert("app".to_string(), Amf0Value::Utf8String(app.into()));
            let connect = RtmpMessage::Amf0Command {
                command_name: "connect".to_string(),
                transaction_id: 1.0,
                command_object: Amf0Value::Object(properties),
                additional_arguments: Vec::new(),
            };
            self.message(connect, 0, 0)
        }

        fn create_stream(&mut self) -> Vec<u8> {
            self.command("createStream", 2.0, 0, Vec::new())
        }

        fn publish(&mut self, name: &str) -> Vec<u8> {
            let args = vec![
                Amf0Value::Utf8String(name.into()),
                Amf0Value::Utf8String("live".into()),
            ];
            self.command("publish", 3.0, MEDIA_STREAM_ID, args)
        }

        fn play(&mut self, name: &str, stream_id: u32) -> Vec<u8> {
            self.command(
                "play",
                4.0,
                stream_id,
                vec![Amf0Value::Utf8String(name.into())],
            )
        }

        fn delete_stream(&mut self) -> Vec<u8> {
            let args = vec![Amf0Value::Number(MEDIA_STREAM_ID.into())];
            self.command("deleteStream", 0.0, 0, args)
        }

        fn video(&mut self, body: &[u8], timestamp: u32) -> Vec<u8> {
            let data = Bytes::copy_from_slice(body);
            self.message(RtmpMessage::VideoData { data }, MEDIA_STREAM_ID, timestamp)
        }

        /// Connected, then a publish request for `live/name` that waits for a decision.
        fn asking_to_publish(name: &str) -> (Peer, Request) {
            let mut peer = Peer::connected();
            let mut bytes = peer.create_stream();
            bytes.extend(peer.publish(name));
            peer.send(&bytes);
            match peer.next() {
                Some(Action::Publish(request)) => (peer, request),
                other => panic!("expected a publish request, got {other:?}"),
            }
        }

        /// A publisher of `live/cam`, accepted at `now`.
        fn publishing(now: u64) -> Peer {
            let (mut peer, _) = Peer::asking_to_publish("cam");
            peer.conn.accept(now);
            peer.collect();
            assert!(peer.sent_status("NetStream.Publish.Start"));
            peer
        }

        /// A player of `live/cam`, accepted.
        fn playing() -> Peer {
            let mut peer = Peer::connected();
            let mut bytes = peer.create_stream();
            bytes.extend(peer.play("cam", MEDIA_STREAM_ID));
            peer.send(&bytes);
            assert!(matches!(peer.next(), Some(Action::Play(_))));
            peer.conn.accept(0);
            peer.collect();
            assert_eq!(peer.conn.playing().map(|k| &**k), Some("live/cam"));
            peer
        }
    }

    /// An AVC keyframe of `len` bytes (an FLV video body with a payload).
    fn keyframe(len: usize) -> Vec<u8> {
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.resize(len, 0x65);
        frame
    }

    fn closed_with(action: Option<Action>) -> RtmpError {
        match action {
            Some(Action::Close(Some(err))) => err,
            other => panic!("expected a close with an error, got {other:?}"),
        }
    }

    #[test]
    fn handshake_then_the_session_greets_and_the_setup_deadline_runs_from_the_accept() {
        let peer = "192.0.2.1:5000".parse().unwrap();
        let conn = Connection::new(settings(), peer, 5 * MS).unwrap();
        let (at, err) = conn.deadline().unwrap();
        assert_eq!(at, 10_005 * MS);
        assert!(matches!(err, RtmpError::HandshakeTimeout));
        let peer = Peer::new();
        // After the handshake's reply (taken by `Peer::new`), the session's window, bandwidth
        // and chunk size: protocol control messages on chunk stream 2.
        assert_eq!(peer.sent.first(), Some(&0x02));
        let (at, err) = peer.conn.deadline().unwrap();
        assert_eq!(at, 10_000 * MS);
        assert!(matches!(err, RtmpError::SetupTimeout));
    }

    #[test]
    fn a_bad_handshake_closes() {
        let peer = "192.0.2.1:5000".parse().unwrap();
        let mut conn = Connection::new(settings(), peer, 0).unwrap();
        conn.handle_input(&[9; 1537], 0);
        assert!(matches!(
            closed_with(conn.poll_action()),
            RtmpError::Handshake(_)
        ));
        assert!(conn.is_closing());
        // Input after the close is ignored.
        conn.handle_input(&[3; 100], 0);
        assert!(conn.poll_action().is_none());
    }

    #[test]
    fn connect_is_answered_and_a_second_connect_closes() {
        let mut peer = Peer::connected();
        assert!(peer.next().is_none());
        let again = peer.connect("live");
        peer.send(&again);
        assert!(matches!(
            closed_with(peer.next()),
            RtmpError::NotAllowed("connect", "twice")
        ));
    }

    #[test]
    fn an_invalid_application_name_is_refused_counted_and_closed() {
        let mut peer = Peer::new();
        let connect = peer.connect("bad/app");
        peer.send(&connect);
        match peer.next() {
            Some(Action::Refused(Refusal::Name { request, shown, .. })) => {
                assert_eq!(request, "connect");
                assert_eq!(shown, "bad/app");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(peer.next(), Some(Action::Close(None))));
        assert!(peer.sent_status("NetConnection.Connect.Rejected"));
    }

    #[test]
    fn a_publish_request_waits_for_the_decision_with_the_frames_behind_it() {
        let mut peer = Peer::connected();
        let mut bytes = peer.create_stream();
        bytes.extend(peer.publish("cam?token=secret"));
        bytes.extend(peer.video(&keyframe(300_000), 0));
        peer.send_at(&bytes, 7 * MS);
        let Some(Action::Publish(request)) = peer.next() else {
            panic!("expected a publish request");
        };
        assert_eq!(&*request.key, "live/cam");
        assert_eq!(request.query.as_deref(), Some("token=secret"));
        assert!(!format!("{request:?}").contains("secret"));
        // Nothing behind the request is read before the decision (the keyframe is over the
        // limit of a connection that does not publish).
        assert!(peer.next().is_none());
        assert!(peer.conn.deadline().is_none());
        peer.conn.accept(8 * MS);
        peer.collect();
        assert_eq!(peer.conn.publishing().map(|k| &**k), Some("live/cam"));
        match peer.next() {
            Some(Action::Media { kind, body, at, .. }) => {
                assert_eq!(kind, UnitKind::Video);
                assert_eq!(body.len(), 300_000);
                assert_eq!(at, 8 * MS);
            }
            other => panic!("expected the keyframe, got {other:?}"),
        }
        assert_eq!(peer.conn.publishes(), 1);
        let (at, err) = peer.conn.deadline().unwrap();
        assert_eq!(at, 30_008 * MS);
        assert!(matches!(err, RtmpError::IdleTimeout));
    }

    #[test]
    fn a_refused_publish_sends_the_status_and_closes() {
        let (mut peer, _) = Peer::asking_to_publish("cam");
        peer.conn.refuse("NetStream.Publish.Unauthorized", "no");
        peer.collect();
        assert!(peer.sent_status("NetStream.Publish.Unauthorized"));
        assert!(matches!(peer.next(), Some(Action::Close(None))));
        assert!(peer.conn.is_closing());
        assert!(peer.conn.publishing().is_none());
        let frame = peer.video(&keyframe(100), 0);
        peer.send(&frame);
        assert!(peer.next().is_none());
    }

    #[test]
    fn a_handed_over_request_is_asked_again_and_continues_where_it_stopped() {
        let mut peer = Peer::connected();
        let mut bytes = peer.create_stream();
        bytes.extend(peer.publish("cam"));
        bytes.extend(peer.video(&keyframe(100), 0));
        peer.send(&bytes);
        let Some(Action::Publish(first)) = peer.next() else {
            panic!("expected a publish request");
        };
        // The accepting shard moves the connection to the owner, which asks again.
        let mut conn = Box::new(peer.conn);
        conn.repeat_request();
        let Some(Action::Publish(again)) = conn.poll_action() else {
            panic!("expected the same request");
        };
        assert_eq!(first, again);
        conn.accept(0);
        assert!(matches!(
            conn.poll_action(),
            Some(Action::Media {
                kind: UnitKind::Video,
                ..
            })
        ));
    }

    #[test]
    fn only_media_with_a_payload_keeps_a_publisher_alive() {
        let mut peer = Peer::publishing(0);
        // An empty video message and a bare AVC end-of-sequence carry no picture.
        let empty = peer.video(&[], 0);
        peer.send_at(&empty, 5_000 * MS);
        let end_of_sequence = peer.video(&[0x17, 2, 0, 0, 0], 0);
        peer.send_at(&end_of_sequence, 6_000 * MS);
        assert_eq!(peer.conn.deadline().unwrap().0, 30_000 * MS);
        let frame = peer.video(&keyframe(100), 40);
        peer.send_at(&frame, 7_000 * MS);
        assert_eq!(peer.conn.deadline().unwrap().0, 37_000 * MS);
    }

    #[test]
    fn a_publisher_may_stop_and_publish_again_but_not_publish_twice_at_once() {
        let mut peer = Peer::publishing(0);
        let second = peer.publish("other");
        peer.send(&second);
        assert!(peer.sent_status("NetStream.Publish.BadName"));
        assert!(matches!(peer.next(), Some(Action::Close(None))));

        let mut peer = Peer::publishing(0);
        let delete = peer.delete_stream();
        peer.send_at(&delete, 2_000 * MS);
        assert!(matches!(peer.next(), Some(Action::Unpublished)));
        assert!(peer.conn.publishing().is_none());
        // Media after the end of the publish is not the stream's any more.
        let frame = peer.video(&keyframe(100), 0);
        peer.send(&frame);
        assert!(peer.next().is_none());
        // The setup deadline counts from the end of the publish.
        let (at, err) = peer.conn.deadline().unwrap();
        assert_eq!(at, 12_000 * MS);
        assert!(matches!(err, RtmpError::SetupTimeout));
        let mut bytes = peer.create_stream();
        bytes.extend(peer.publish("cam"));
        peer.send(&bytes);
        assert!(matches!(peer.next(), Some(Action::Publish(_))));
        peer.conn.accept(0);
        assert_eq!(peer.conn.publishes(), 2);
    }

    #[test]
    fn long_messages_are_refused_before_publishing_and_past_the_limit_after() {
        let mut peer = Peer::connected();
        let long = peer.video(&keyframe(CONTROL_MESSAGE_LIMIT as usize + 1), 0);
        peer.send(&long);
        assert!(matches!(
            closed_with(peer.next()),
            RtmpError::Input(GuardError::MessageTooLarge { .. })
        ));

        let mut peer = Peer::publishing(0);
        let at_limit = peer.video(&keyframe(settings().max_message_bytes as usize), 0);
        peer.send(&at_limit);
        assert!(matches!(peer.next(), Some(Action::Media { .. })));
        let over = peer.video(&keyframe(settings().max_message_bytes as usize + 1), 40);
        peer.send(&over);
        assert!(matches!(
            closed_with(peer.next()),
            RtmpError::Input(GuardError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn an_aggregate_message_is_split_into_its_frames() {
        let mut peer = Peer::publishing(0);
        let mut aggregate = Vec::new();
        for (ts, body) in [(100u32, keyframe(20)), (140, keyframe(30))] {
            let len = body.len() as u32;
            aggregate.push(9);
            aggregate.extend_from_slice(&len.to_be_bytes()[1..]);
            aggregate.extend_from_slice(&ts.to_be_bytes()[1..]);
            aggregate.push((ts >> 24) as u8);
            aggregate.extend_from_slice(&[0, 0, 0]);
            aggregate.extend_from_slice(&body);
            aggregate.extend_from_slice(&(len + 11).to_be_bytes());
        }
        let payload = rml_rtmp::messages::MessagePayload {
            timestamp: RtmpTimestamp::new(1000),
            type_id: AGGREGATE_MESSAGE,
            message_stream_id: MEDIA_STREAM_ID,
            data: Bytes::from(aggregate),
        };
        let bytes = peer.chunks.serialize(&payload, false, false).unwrap().bytes;
        peer.send(&bytes);
        let stamps: Vec<(u32, usize)> = std::iter::from_fn(|| match peer.next() {
            Some(Action::Media {
                timestamp, body, ..
            }) => Some((timestamp, body.len())),
            _ => None,
        })
        .collect();
        assert_eq!(stamps, [(1000, 20), (1040, 30)]);
    }

    #[test]
    fn a_play_request_is_decided_by_the_driver_and_then_only_answers_go_out() {
        let mut peer = Peer::playing();
        assert!(peer.sent_status("NetStream.Play.Start"));
        assert!(peer.conn.deadline().is_none());
        assert!(peer.conn.publishing().is_none());
        // A player's media is ignored.
        let frame = peer.video(&keyframe(100), 0);
        peer.send(&frame);
        assert!(peer.next().is_none());
        // A stop ends play in order.
        let delete = peer.delete_stream();
        peer.send(&delete);
        assert!(matches!(peer.next(), Some(Action::Close(None))));
        // The end of the stream, told to a player.
        let mut peer = Peer::playing();
        assert!(!peer.conn.finish_playing().unwrap().is_empty());
    }

    #[test]
    fn a_player_that_asks_for_anything_else_is_closed() {
        for request in ["publish", "play", "connect"] {
            let mut peer = Peer::playing();
            let bytes = match request {
                "publish" => peer.publish("cam"),
                "play" => peer.play("cam", MEDIA_STREAM_ID),
                _ => peer.connect("live"),
            };
            peer.send(&bytes);
            assert!(
                matches!(closed_with(peer.next()), RtmpError::NotAllowed(name, "while playing") if name == request),
                "{request}"
            );
        }
        let mut peer = Peer::playing();
        let long = peer.video(&keyframe(CONTROL_MESSAGE_LIMIT as usize + 1), 0);
        peer.send(&long);
        assert!(matches!(
            closed_with(peer.next()),
            RtmpError::Input(GuardError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn play_requests_the_connection_cannot_make_are_refused_by_it() {
        // On a message stream other than the first.
        let mut peer = Peer::connected();
        let play = peer.play("cam", 2);
        peer.send(&play);
        match peer.next() {
            Some(Action::Refused(Refusal::Play { key, code })) => {
                assert_eq!(&*key, "live/cam");
                assert_eq!(code, "NetStream.Play.Failed");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(peer.next(), Some(Action::Close(None))));
        // While publishing.
        let mut peer = Peer::publishing(0);
        let play = peer.play("cam", MEDIA_STREAM_ID);
        peer.send(&play);
        assert!(matches!(
            peer.next(),
            Some(Action::Refused(Refusal::Play { .. }))
        ));
        // An invalid name.
        let mut peer = Peer::connected();
        let play = peer.play("", MEDIA_STREAM_ID);
        peer.send(&play);
        assert!(matches!(
            peer.next(),
            Some(Action::Refused(Refusal::Name {
                request: "play",
                ..
            }))
        ));
        assert!(peer.sent_status("NetStream.Play.BadName"));
    }

    #[test]
    fn a_refused_play_closes_without_playing() {
        let mut peer = Peer::connected();
        let mut bytes = peer.create_stream();
        bytes.extend(peer.play("cam", MEDIA_STREAM_ID));
        peer.send(&bytes);
        assert!(matches!(peer.next(), Some(Action::Play(_))));
        peer.conn
            .refuse("NetStream.Play.StreamNotFound", "no such stream");
        peer.collect();
        assert!(peer.sent_status("NetStream.Play.StreamNotFound"));
        assert!(matches!(peer.next(), Some(Action::Close(None))));
        assert!(peer.conn.playing().is_none());
        assert!(peer.conn.finish_playing().unwrap().is_empty());
    }

    #[test]
    fn input_split_anywhere_gives_the_same_actions() {
        let mut whole = Peer::connected();
        let mut bytes = whole.create_stream();
        bytes.extend(whole.publish("cam"));
        bytes.extend(whole.video(&keyframe(10_000), 0));
        bytes.extend(whole.video(&keyframe(20), 40));
        for step in [1, 7, 128, 4096] {
            let mut peer = Peer::connected();
            let mut media = 0;
            for piece in bytes.chunks(step) {
                peer.send(piece);
                while let Some(action) = peer.next() {
                    match action {
                        Action::Publish(_) => {
                            peer.conn.accept(0);
                            peer.collect();
                        }
                        Action::Media { .. } => media += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            assert_eq!(media, 2, "pieces of {step}");
        }
    }
}
