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
//!
//! This file is over 600 lines on purpose: it is one state machine, whose transitions read
//! best side by side. What it takes and gives (`actions`), the Enhanced RTMP negotiation
//! (`caps`) and the rewriting of the session's output (`output`) are in files of their own.

mod actions;
pub mod caps;
mod output;

pub use actions::{Action, Refusal, Request, RequestKind, Settings};
pub use output::OutputError;

use output::SessionOutput;

use super::chunk::{self, message_type, Message, ABORT, SET_CHUNK_SIZE};
use super::guard::{Acknowledgements, InputGuard, CONTROL_MESSAGE_LIMIT};
use super::RtmpError;
use crate::hub::{split_query, stream_key, validate_name, validate_names, NameError, StreamKey};
use crate::media::{has_payload, split_aggregate, Body, Tracks, UnitKind};
use crate::util::Escaped;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tracing::{debug, warn, Span};

/// Where the connection is.
enum State {
    /// The server handshake is under way.
    Handshaking(Box<Handshake>),
    /// Handshake done; neither publishing nor playing.
    Connected,
    /// A publish or play request waits for the driver's decision; the input and session
    /// results behind it wait too.
    Deciding(Request),
    /// Publishing `key` (accepted by the driver) on message stream `stream_id`.
    Publishing {
        /// The stream.
        key: StreamKey,
        /// The message stream the client publishes on: media and metadata on others are
        /// ignored.
        stream_id: u32,
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
    /// Remote address.
    peer: SocketAddr,
    /// The log context its lines hang from (none until the driver gives it one).
    span: Span,
    /// Where the connection is.
    state: State,
    /// The protocol session (rml_rtmp, sans-IO); created with the connection, fed once the
    /// handshake is done.
    session: ServerSession,
    /// The session's first messages (window, bandwidth, chunk size), sent after the handshake.
    greeting: Vec<u8>,
    /// The session's output, rewritten for the peer (see [`output`]).
    output: SessionOutput,
    /// The client's messages are read for what it announces of Enhanced RTMP until its
    /// `connect` (rml_rtmp does not pass the command object on).
    setup: bool,
    /// What the client announced of Enhanced RTMP in its `connect`.
    announced: Option<caps::Announced>,
    /// The chunk layer and the input limits, ahead of everything else.
    guard: InputGuard,
    /// When to acknowledge the bytes received.
    acks: Acknowledgements,
    /// The message stream of the command the session handles (a publish request's).
    command_stream: u32,
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
        let (mut session, initial) = ServerSession::new(config)?;
        // The session reads whole messages, each in one chunk (see `Connection::command`).
        super::session_input(&mut session, &chunk::whole_messages())?;
        let mut greeting = Vec::new();
        let mut output = SessionOutput::default();
        for result in initial {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                output.push(&packet.bytes, &mut greeting)?;
            }
        }
        Ok(Connection {
            settings,
            peer,
            span: Span::none(),
            state: State::Handshaking(Box::new(Handshake::new(PeerType::Server))),
            session,
            greeting,
            output,
            setup: true,
            announced: None,
            guard: InputGuard::new(settings.max_chunk_size),
            acks: Acknowledgements::default(),
            command_stream: 0,
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
        if let Some(sequence) = self.acks.received(bytes.len()) {
            if !self.is_closing() {
                chunk::put_message(
                    &mut self.out,
                    chunk::CSID_CONTROL,
                    message_type::ACKNOWLEDGEMENT,
                    0,
                    0,
                    &sequence.to_be_bytes(),
                );
            }
        }
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
            RequestKind::Publish { stream_id } => {
                self.publishes += 1;
                self.progress_ns = now;
                State::Publishing {
                    key: request.key,
                    stream_id,
                }
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
                RequestKind::Publish { .. } => Action::Publish(request.clone()),
                RequestKind::Play { .. } => Action::Play(request.clone()),
            };
            self.actions.push_back(action);
        }
    }

    /// The stream of a playing connection ended: the bytes that tell the player.
    pub fn finish_playing(&mut self) -> Result<Vec<u8>, RtmpError> {
        match self.state {
            State::Playing { stream_id, .. } => {
                let packet = self.session.finish_playing(stream_id)?;
                let mut bytes = Vec::new();
                self.output.push(&packet.bytes, &mut bytes)?;
                Ok(bytes)
            }
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
            State::Publishing { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Gives back what the setup held (its queues keep the capacity of their busiest moment),
    /// for a connection that stays as long as it plays: called once play starts, when the
    /// driver has taken every action and the output (`take_output` leaves no capacity).
    pub fn settle(&mut self) {
        self.greeting = Vec::new();
        self.unread = Vec::new();
        self.actions.shrink_to_fit();
        self.held.shrink_to_fit();
    }

    /// The stream this connection plays, if it does.
    pub fn playing(&self) -> Option<&StreamKey> {
        match &self.state {
            State::Playing { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The message stream this connection plays on, if it plays.
    pub fn play_stream(&self) -> Option<u32> {
        match self.state {
            State::Playing { stream_id, .. } => Some(stream_id),
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

    /// Bytes this connection buffers: the part of a message received so far, output not
    /// yet taken, input held behind a request.
    pub fn buffered_bytes(&self) -> u64 {
        let vecs = self.out.capacity() + self.unread.capacity() + self.greeting.capacity();
        self.guard.partial_bytes() + vecs as u64
    }

    /// Sets the connection's log context ([`crate::logging::connection_span`]).
    pub fn set_span(&mut self, span: Span) {
        self.span = span;
    }

    /// Closes the connection with `error`: nothing more is sent or read.
    fn fail(&mut self, error: RtmpError) {
        if let RtmpError::SessionPanic = error {
            warn!(parent: &self.span, "rtmp: input made the session library panic; closing this connection");
        }
        self.state = State::Closing;
        self.held.clear();
        self.unread.clear();
        self.actions.push_back(Action::Close(Some(error)));
    }

    /// Queues a packet of the session's output, rewritten for the peer.
    fn send(&mut self, packet: &[u8]) {
        if let Err(err) = self.output.push(packet, &mut self.out) {
            self.fail(err.into());
        }
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

    /// Reads bytes received after the handshake into messages, and handles each as it
    /// completes: messages may be up to [`CONTROL_MESSAGE_LIMIT`] bytes long until the
    /// connection publishes, then up to `rtmp.max_message_bytes`. A message that needs a
    /// decision (a publish or play request) stops the reading: what follows it waits, so
    /// that media sent right behind a publish request counts once it is accepted.
    fn read(&mut self, mut bytes: &[u8], now: u64) {
        loop {
            match self.state {
                State::Closing => return,
                State::Deciding(_) => return self.unread.extend_from_slice(bytes),
                _ => {}
            }
            match self.guard.next(&mut bytes, self.message_limit()) {
                Ok(Some(message)) => self.message(message, now),
                Ok(None) => return,
                Err(err) => return self.fail(err.into()),
            }
        }
    }

    /// Handles one message from the client. Media and metadata are handled here; commands
    /// and user control events go to the session; the chunk layer applied Set Chunk Size
    /// and Abort; Acknowledgement and Set Peer Bandwidth need nothing (corecast sends no
    /// more than a viewer reads, see [`crate::viewer`]).
    fn message(&mut self, message: Message, now: u64) {
        self.read_setup(&message);
        match message.type_id {
            message_type::AUDIO => self.media(UnitKind::Audio, message, now),
            message_type::VIDEO => self.media(UnitKind::Video, message, now),
            message_type::AGGREGATE => self.aggregate(message, now),
            message_type::DATA | message_type::DATA_AMF3 => self.data(message, now),
            message_type::WINDOW_ACK_SIZE => {
                if let Some(size) = message.payload.first_chunk::<4>() {
                    self.acks.set_window(u32::from_be_bytes(*size));
                }
            }
            message_type::COMMAND | message_type::COMMAND_AMF3 | message_type::USER_CONTROL => {
                self.command(message, now)
            }
            SET_CHUNK_SIZE
            | ABORT
            | message_type::ACKNOWLEDGEMENT
            | message_type::SET_PEER_BANDWIDTH => {}
            type_id => debug!(parent: &self.span, type_id, "rtmp: ignored message"),
        }
    }

    /// A command or user control event, for the session: written again as one chunk.
    fn command(&mut self, message: Message, now: u64) {
        self.command_stream = message.stream_id;
        match super::session_input(&mut self.session, &chunk::whole_message(&message)) {
            Ok(results) => self.handle_results(results, now),
            Err(err) => self.fail(err),
        }
    }

    /// The message stream this connection publishes on, if it does.
    fn publish_stream(&self) -> Option<u32> {
        match self.state {
            State::Publishing { stream_id, .. } => Some(stream_id),
            _ => None,
        }
    }

    /// An audio or video message: an action when it comes on the stream this connection
    /// publishes (others are ignored, as before a publish is accepted).
    fn media(&mut self, kind: UnitKind, message: Message, now: u64) {
        if self.publish_stream() == Some(message.stream_id) {
            self.publish_media(kind, message.timestamp, message.payload, now);
        }
    }

    /// An aggregate message: its audio and video messages, as if sent one by one.
    fn aggregate(&mut self, message: Message, now: u64) {
        if self.publish_stream() != Some(message.stream_id) {
            return;
        }
        match split_aggregate(message.timestamp, &message.payload.into_bytes()) {
            Ok(subs) => {
                for sub in subs {
                    let body = Body::copy_from(&sub.body);
                    self.publish_media(sub.kind, sub.timestamp, body, now);
                }
            }
            Err(err) => self.fail(err.into()),
        }
    }

    /// A data message: the stream's metadata when it is `onMetaData`, with or without
    /// `@setDataFrame` before it (encoders send the first, nginx-rtmp's pushes the second),
    /// on the stream this connection publishes. Other data is ignored.
    fn data(&mut self, message: Message, now: u64) {
        if self.publish_stream() != Some(message.stream_id) {
            return;
        }
        match super::amf::stream_metadata(message.type_id, &message.payload) {
            Some(metadata) => self.actions.push_back(Action::Metadata {
                metadata: Box::new(metadata),
                at: now,
            }),
            None => debug!(parent: &self.span, "rtmp: data message ignored"),
        }
    }

    /// Handles session results in order, until one needs a decision: the rest wait in
    /// `held`. (They are taken from the session's vector directly while nothing waits in
    /// `held`: a publisher's media never goes through the queue.)
    fn handle_results(&mut self, results: Vec<ServerSessionResult>, now: u64) {
        let mut results = results.into_iter();
        while !self.stalled() && self.held.is_empty() {
            let Some(result) = results.next() else {
                return;
            };
            self.handle_result(result, now);
        }
        if !self.is_closing() {
            self.held.extend(results);
            self.drain_held(now);
        }
    }

    /// Reads the client's messages up to its `connect` for what it announces of Enhanced
    /// RTMP (see [`caps::read_setup`]).
    fn read_setup(&mut self, message: &Message) {
        if !self.setup {
            return;
        }
        match caps::read_setup(message) {
            caps::Setup::Waiting => {}
            caps::Setup::Connect(announced) => {
                self.announced = announced;
                self.setup = false;
            }
            caps::Setup::GaveUp => self.setup = false,
        }
    }

    /// What the client announced of Enhanced RTMP in its `connect`, if anything.
    pub fn announced(&self) -> Option<&caps::Announced> {
        self.announced.as_ref()
    }

    /// The tracks of a multitrack stream this client gets as a player: every track when it
    /// announced multitrack support, the default track otherwise (see [`Tracks`]).
    pub fn tracks(&self) -> Tracks {
        if self
            .announced
            .as_ref()
            .is_some_and(caps::Announced::multitrack)
        {
            Tracks::All
        } else {
            Tracks::Default
        }
    }

    /// Handles the session results in `held`, in order, until one needs a decision.
    fn drain_held(&mut self, now: u64) {
        while !self.stalled() {
            let Some(result) = self.held.pop_front() else {
                return;
            };
            self.handle_result(result, now);
        }
    }

    /// Handles one session result.
    fn handle_result(&mut self, result: ServerSessionResult, now: u64) {
        match result {
            ServerSessionResult::OutboundResponse(packet) => self.send(&packet.bytes),
            ServerSessionResult::RaisedEvent(event) => match self.state {
                State::Playing { .. } => self.player_event(event),
                _ => self.event(event, now),
            },
            ServerSessionResult::UnhandleableMessageReceived(payload) => {
                debug!(parent: &self.span, type_id = payload.type_id, "rtmp: ignored message");
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
                let enhanced = self.announced.is_some();
                debug!(parent: &self.span, app = %Escaped(&app_name), enhanced, "rtmp: connect");
                // A client that announced Enhanced RTMP is told what corecast supports.
                self.output.amend_connect_answer(enhanced);
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
            } => {
                let kind = RequestKind::Publish {
                    stream_id: self.command_stream,
                };
                self.request(request_id, kind, &app_name, &stream_key)
            }
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
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                debug!(parent: &self.span, command = %Escaped(&command_name), "rtmp: command ignored");
            }
            // Media and data never reach the session (see `Connection::message`).
            ServerSessionEvent::StreamMetadataChanged { .. }
            | ServerSessionEvent::VideoDataReceived { .. }
            | ServerSessionEvent::AudioDataReceived { .. }
            | ServerSessionEvent::ClientChunkSizeChanged { .. }
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
                debug!(parent: &self.span, event = event_name(&event), "rtmp player: ignored event")
            }
        }
    }

    /// Media of the published stream, for the driver.
    fn publish_media(&mut self, kind: UnitKind, timestamp: u32, body: Body, now: u64) {
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

    /// A publish or play request: refused here when the names are invalid or the connection
    /// may not make it; otherwise the driver decides.
    fn request(&mut self, request_id: u32, kind: RequestKind, app: &str, name_and_query: &str) {
        let (name, query) = split_query(name_and_query);
        let (verb, bad_name) = match kind {
            RequestKind::Publish { .. } => ("publish", "NetStream.Publish.BadName"),
            RequestKind::Play { .. } => ("play", "NetStream.Play.BadName"),
        };
        if let Err(error) = validate_names(app, name) {
            return self.refuse_name(request_id, bad_name, verb, format!("{app}/{name}"), error);
        }
        let key = stream_key(app, name);
        if !matches!(self.state, State::Connected) {
            // One stream per connection at a time.
            let description = "this connection already publishes or plays";
            return match kind {
                RequestKind::Publish { .. } => self.reject(request_id, bad_name, description),
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
            RequestKind::Publish { .. } => Action::Publish(request.clone()),
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
                        self.send(&packet.bytes);
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
mod tests;
