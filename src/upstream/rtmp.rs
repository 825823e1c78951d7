//! An RTMP pull as a sans-IO client: bytes and the origin's answers in, bytes to send and
//! [`Pulled`] events out.
//!
//! The client handshake is rml_rtmp's. The origin's input goes through corecast's own
//! chunk layer and its bounds ([`InputGuard`]: chunk streams, message sizes, AMF nesting),
//! exactly as a publisher's does; media and data messages become events here, and only
//! commands and user control events go on, each as one whole chunk, to rml_rtmp's
//! [`ClientSession`] (which asks for the connect, the stream and the play, and answers pings),
//! inside `catch_unwind` as on the server side. Acknowledgements follow the origin's window
//! over every byte received ([`Acknowledgements`]).
//!
//! Call order: [`RtmpPull::new`] (send [`RtmpPull::take_output`]), then for each read
//! [`RtmpPull::handle_input`] and send [`RtmpPull::take_output`].

use super::{PullError, Pulled};
use crate::forward::Target;
use crate::media::UnitKind;
use crate::rtmp::chunk::{self, message_type, Message, ABORT, SET_CHUNK_SIZE};
use crate::rtmp::guard::{Acknowledgements, InputGuard};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent, ClientSessionResult,
};

/// Status codes of a play that has no stream to give.
const NOT_FOUND: [&str; 2] = ["NetStream.Play.StreamNotFound", "NetStream.Play.Failed"];

/// Status codes of a stream that ended at the origin.
const ENDED: [&str; 3] = [
    "NetStream.Play.Stop",
    "NetStream.Play.UnpublishNotify",
    "NetStream.Play.Complete",
];

/// Where the pull is.
enum State {
    /// The client handshake is under way.
    Handshaking(Box<Handshake>),
    /// Connected: commands go back and forth until the origin plays the stream, and then
    /// media comes.
    Session(Box<ClientSession>),
}

/// One RTMP pull.
pub struct RtmpPull {
    state: State,
    /// The application to connect to.
    app: String,
    /// The `tcUrl` of the `connect` ([`Target::tc_url`]).
    tc_url: String,
    /// The stream to play (its query included).
    stream: String,
    /// The chunk layer and its bounds.
    guard: InputGuard,
    /// Acknowledgements of what was received.
    acks: Acknowledgements,
    /// Largest message accepted (`rtmp.max_message_bytes`).
    max_message: u32,
    /// Bytes to send.
    out: Vec<u8>,
}

impl std::fmt::Debug for RtmpPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpPull")
            .field("app", &self.app)
            .field("handshaking", &matches!(self.state, State::Handshaking(_)))
            .finish_non_exhaustive()
    }
}

/// A session error, in words.
fn session_error(err: impl std::fmt::Debug) -> PullError {
    PullError::Protocol(format!("rtmp session: {err:?}"))
}

/// Runs a session call with rml_rtmp's panics contained (see `rtmp::session_input`).
fn contained<T>(call: impl FnOnce() -> Result<T, ClientSessionError>) -> Result<T, PullError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .map_err(|_| PullError::Protocol("rtmp session failed on the origin's input".into()))?
        .map_err(session_error)
}

impl RtmpPull {
    /// A pull of `stream` (with its query) from `target`'s application; messages up to
    /// `max_message` bytes, chunks up to `max_chunk_size`. The handshake's first bytes are
    /// in [`RtmpPull::take_output`].
    pub fn new(
        target: &Target,
        stream: String,
        max_message: u32,
        max_chunk_size: u32,
    ) -> Result<Self, PullError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let first = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|err| PullError::Protocol(format!("handshake: {err:?}")))?;
        Ok(RtmpPull {
            state: State::Handshaking(Box::new(handshake)),
            app: target.app.clone(),
            tc_url: target.tc_url(),
            stream,
            guard: InputGuard::new(max_chunk_size),
            acks: Acknowledgements::default(),
            max_message,
            out: first,
        })
    }

    /// The bytes to send now, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes held: messages in progress, output not yet taken.
    pub fn buffered_bytes(&self) -> usize {
        self.guard.partial_bytes() as usize + self.out.len()
    }

    /// Takes the bytes the origin sent next; what they complete, in order.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<Vec<Pulled>, PullError> {
        if let Some(sequence) = self.acks.received(bytes.len()) {
            chunk::put_message(
                &mut self.out,
                chunk::CSID_CONTROL,
                message_type::ACKNOWLEDGEMENT,
                0,
                0,
                &sequence.to_be_bytes(),
            );
        }
        let State::Handshaking(handshake) = &mut self.state else {
            return self.read(bytes);
        };
        let handshake_error = |err| PullError::Protocol(format!("handshake: {err:?}"));
        match handshake.process_bytes(bytes).map_err(handshake_error)? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                self.out.extend_from_slice(&response_bytes);
                Ok(Vec::new())
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                self.out.extend_from_slice(&response_bytes);
                let config = ClientSessionConfig {
                    tc_url: Some(self.tc_url.clone()),
                    ..ClientSessionConfig::new()
                };
                let (mut session, results) = ClientSession::new(config).map_err(session_error)?;
                // The session reads whole messages (see the module's notes).
                let mut results = results;
                results.extend(contained(|| {
                    session.handle_input(&chunk::whole_messages())
                })?);
                results.push(contained(|| session.request_connection(self.app.clone()))?);
                self.state = State::Session(Box::new(session));
                let mut events = self.session_results(results)?;
                events.extend(self.read(&remaining_bytes)?);
                Ok(events)
            }
        }
    }

    /// Reads chunks into messages and handles them.
    fn read(&mut self, bytes: &[u8]) -> Result<Vec<Pulled>, PullError> {
        let messages = self
            .guard
            .read(bytes, self.max_message)
            .map_err(|err| PullError::Protocol(err.to_string()))?;
        let mut events = Vec::new();
        for message in messages {
            events.extend(self.message(message)?);
        }
        Ok(events)
    }

    /// One message from the origin.
    fn message(&mut self, message: Message) -> Result<Vec<Pulled>, PullError> {
        let kind = match message.type_id {
            message_type::AUDIO => UnitKind::Audio,
            message_type::VIDEO => UnitKind::Video,
            message_type::DATA | message_type::DATA_AMF3 => {
                let metadata = crate::rtmp::amf::stream_metadata(message.type_id, &message.payload);
                return Ok(metadata
                    .map(|m| Pulled::Metadata(Box::new(m)))
                    .into_iter()
                    .collect());
            }
            message_type::WINDOW_ACK_SIZE => {
                if let Some(size) = message.payload.first_chunk::<4>() {
                    self.acks.set_window(u32::from_be_bytes(*size));
                }
                return Ok(Vec::new());
            }
            message_type::COMMAND | message_type::COMMAND_AMF3 | message_type::USER_CONTROL => {
                let State::Session(session) = &mut self.state else {
                    return Ok(Vec::new());
                };
                let whole = chunk::whole_message(&message);
                let results = contained(|| session.handle_input(&whole))?;
                return self.session_results(results);
            }
            SET_CHUNK_SIZE
            | ABORT
            | message_type::ACKNOWLEDGEMENT
            | message_type::SET_PEER_BANDWIDTH => return Ok(Vec::new()),
            // Aggregates and anything else: not from the servers this pulls from.
            _ => return Ok(Vec::new()),
        };
        Ok(vec![Pulled::Media {
            kind,
            timestamp: message.timestamp,
            body: message.payload,
        }])
    }

    /// Sends the session's output and acts on its events.
    fn session_results(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<Pulled>, PullError> {
        let mut events = Vec::new();
        for result in results {
            let event = match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                    continue;
                }
                ClientSessionResult::RaisedEvent(event) => event,
                ClientSessionResult::UnhandleableMessageReceived(_) => continue,
            };
            match event {
                ClientSessionEvent::ConnectionRequestAccepted => {
                    let State::Session(session) = &mut self.state else {
                        continue;
                    };
                    let stream = self.stream.clone();
                    let play = contained(|| session.request_playback(stream))?;
                    if let ClientSessionResult::OutboundResponse(packet) = play {
                        self.out.extend_from_slice(&packet.bytes);
                    }
                }
                ClientSessionEvent::ConnectionRequestRejected { description } => {
                    return Err(PullError::Refused(format!("connect: {description}")))
                }
                ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                    if NOT_FOUND.contains(&code.as_str()) {
                        return Err(PullError::NotFound(code));
                    }
                    if ENDED.contains(&code.as_str()) {
                        events.push(Pulled::Ended(code));
                    }
                }
                // Acknowledgements, pings, the play's own acceptance (media follows), and
                // what the session does not know: nothing to do.
                _ => {}
            }
        }
        Ok(events)
    }
}
