//! The part of an RTMP client connection shared by [`Publisher`](super::Publisher)
//! and [`Player`](super::Player): socket set-up, handshake, `connect(app)` and
//! the stream request, reads bounded by deadlines, feeding the server's bytes
//! to the [`ClientSession`] and writing its answers, rejection detection, and
//! the closing linger.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent,
    ClientSessionResult, PublishRequestType,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::{io_error, ClientError};

/// Size of the buffer used for socket reads.
pub(super) const READ_BUFFER_LEN: usize = 64 * 1024;
/// Upper bound on how long [`Connection::close`] waits for the server to close.
const FINISH_LINGER: Duration = Duration::from_secs(2);
/// Longest accepted connection timeout; larger values are clamped to it.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Code reported when the server rejects `connect` without a status object.
const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";

/// RTMP message type ids the [`StatusObserver`] needs to decode.
const TYPE_SET_CHUNK_SIZE: u8 = 1;
const TYPE_USER_CONTROL: u8 = 4;
const TYPE_WINDOW_ACK_SIZE: u8 = 5;
const TYPE_AMF0_COMMAND: u8 = 20;

/// What the connection asks for once connected to the application.
#[derive(Debug, Clone, Copy)]
pub(super) enum StreamRequest<'a> {
    /// `publish(key, "live")`.
    Publish(&'a str),
    /// `play(name)`.
    Play(&'a str),
}

impl StreamRequest<'_> {
    fn send(self, session: &mut ClientSession) -> Result<ClientSessionResult, ClientSessionError> {
        match self {
            Self::Publish(key) => {
                session.request_publishing(key.to_owned(), PublishRequestType::Live)
            }
            Self::Play(name) => session.request_playback(name.to_owned()),
        }
    }

    fn is_accepted_by(self, event: &ClientSessionEvent) -> bool {
        matches!(
            (self, event),
            (Self::Publish(_), ClientSessionEvent::PublishRequestAccepted)
                | (Self::Play(_), ClientSessionEvent::PlaybackRequestAccepted)
        )
    }
}

/// Something the server told us, in the order it was received.
#[derive(Debug)]
pub(super) enum Incoming {
    /// An event raised by the [`ClientSession`].
    Session(ClientSessionEvent),
    /// A `StreamEOF` user control event, which the session ignores. It is
    /// reported after the session's events for the same input.
    StreamEof,
}

/// One RTMP client connection; see the module documentation.
///
/// After any error the connection state is unknown (a write may have been cut
/// short, the session may have dropped responses), so it must not be used
/// further.
pub(super) struct Connection {
    stream: TcpStream,
    session: ClientSession,
    observer: StatusObserver,
    acks: AckCounter,
    timeout: Duration,
    read_buffer: Vec<u8>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (with `SO_RCVBUF` set to `recv_buffer` first, if
    /// given), performs the handshake, connects to `app` and sends `request`,
    /// all within `timeout` (clamped to one day), and returns once the server
    /// accepted the request.
    ///
    /// Also returns what the server sent besides the set-up replies, in
    /// order (e.g. media sent before or with `NetStream.Play.Start`).
    pub(super) fn open(
        addr: SocketAddr,
        app: &str,
        request: StreamRequest<'_>,
        timeout: Duration,
        recv_buffer: Option<usize>,
    ) -> Result<(Self, Vec<Incoming>), ClientError> {
        let timeout = timeout.min(MAX_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let stream = tcp_connect(addr, timeout, recv_buffer)?;
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_error)?;

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(format!("rtmp://{addr}/{app}"));
        let (session, initial) = ClientSession::new(config)?;

        let mut connection = Self {
            stream,
            session,
            observer: StatusObserver::new(),
            acks: AckCounter::default(),
            timeout,
            read_buffer: vec![0; READ_BUFFER_LEN],
        };
        let leftover = connection.handshake(deadline)?;
        connection.write_results(initial)?;
        let backlog = connection.set_up(app, request, leftover, deadline)?;
        Ok((connection, backlog))
    }

    /// The timeout given at connection, as clamped.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(super) fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Blocks until the server sends something or `deadline` passes, feeds it
    /// to the session and writes the session's answers. `Ok(None)` means the
    /// server closed the connection.
    pub(super) fn receive(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Vec<Incoming>>, ClientError> {
        let len = self.read_until(deadline)?;
        if len == 0 {
            return Ok(None);
        }
        // Moved out for the call so the bytes can be borrowed alongside `self`.
        let buffer = std::mem::take(&mut self.read_buffer);
        let result = self.handle_incoming(&buffer[..len]);
        self.read_buffer = buffer;
        result.map(Some)
    }

    /// Reads whatever the server has sent without blocking, feeds it to the
    /// session and writes the session's answers (acknowledgements, pings).
    pub(super) fn drain(&mut self) -> Result<Vec<Incoming>, ClientError> {
        self.stream.set_nonblocking(true).map_err(io_error)?;
        let received = self.read_available();
        self.stream.set_nonblocking(false).map_err(io_error)?;
        let received = received?;
        if received.is_empty() {
            return Ok(Vec::new());
        }
        self.handle_incoming(&received)
    }

    /// Writes every outbound packet in order, ignoring non-packet results.
    pub(super) fn write_results(
        &mut self,
        results: impl IntoIterator<Item = ClientSessionResult>,
    ) -> Result<(), ClientError> {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.write_all(&packet.bytes)?;
            }
        }
        Ok(())
    }

    /// Writes `results` (the stream's closing command), shuts down the write
    /// side and waits briefly (at most the connection timeout, capped at two
    /// seconds) for the server to close its side. What the server sends in
    /// the meantime is discarded.
    pub(super) fn close(
        mut self,
        results: impl IntoIterator<Item = ClientSessionResult>,
    ) -> Result<(), ClientError> {
        self.write_results(results)?;
        self.stream.shutdown(Shutdown::Write).map_err(io_error)?;

        // Reading until EOF keeps our receive queue empty, so closing the
        // socket does not turn into a reset that could discard our last
        // command.
        let deadline = Instant::now() + self.timeout.min(FINISH_LINGER);
        loop {
            match self.read_until(deadline) {
                Ok(0) => break,
                Ok(_) => {}
                Err(ClientError::Timeout | ClientError::UnexpectedClose) => break,
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Runs the handshake and returns the bytes received after it.
    fn handshake(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let p0_and_p1 = handshake.generate_outbound_p0_and_p1()?;
        self.write_all(&p0_and_p1)?;
        loop {
            let len = self.read_some(deadline)?;
            match handshake.process_bytes(&self.read_buffer[..len])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write_all(&response_bytes)?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.write_all(&response_bytes)?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    /// Drives `connect` and `request` until the server accepts the request.
    /// Returns everything else the server sent meanwhile.
    fn set_up(
        &mut self,
        app: &str,
        request: StreamRequest<'_>,
        leftover: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<Incoming>, ClientError> {
        let connect = self.session.request_connection(app.to_owned())?;
        self.write_results([connect])?;

        let mut backlog = Vec::new();
        let mut incoming = if leftover.is_empty() {
            Vec::new()
        } else {
            self.handle_incoming(&leftover)?
        };
        let mut requested = false;
        loop {
            let mut connected = false;
            let mut accepted = false;
            for item in incoming {
                match item {
                    Incoming::Session(ClientSessionEvent::ConnectionRequestAccepted) => {
                        connected = true;
                    }
                    Incoming::Session(ClientSessionEvent::ConnectionRequestRejected {
                        description,
                    }) => {
                        return Err(ClientError::Rejected {
                            code: CONNECT_REJECTED.to_owned(),
                            description,
                        });
                    }
                    Incoming::Session(ref event) if request.is_accepted_by(event) => {
                        accepted = true;
                    }
                    other => backlog.push(other),
                }
            }
            // Whatever followed the acceptance in the same input is in the backlog.
            if accepted {
                return Ok(backlog);
            }
            // Requested only after every response to this input has been
            // written, so outbound packets stay in serializer order.
            if connected && !requested {
                let packet = request.send(&mut self.session)?;
                self.write_results([packet])?;
                requested = true;
            }
            incoming = self
                .receive(deadline)?
                .ok_or(ClientError::UnexpectedClose)?;
        }
    }

    /// Feeds server bytes to the status observer and the session, writes the
    /// session's responses and returns what it learnt, in order.
    fn handle_incoming(&mut self, bytes: &[u8]) -> Result<Vec<Incoming>, ClientError> {
        let session_ack = self.acks.receive(bytes.len());
        // The observer goes first: for some rejections the session itself
        // fails (e.g. `CreateStreamFailed`) and would hide the server's reason.
        let observed = self.observer.observe(bytes)?;
        let results = self.session.handle_input(bytes)?;
        if let Some(size) = observed.window_ack_size {
            // Like the session, start counting towards the window with the
            // next input.
            self.acks.window = Some(size);
        }

        let mut incoming = Vec::new();
        for (index, result) in results.into_iter().enumerate() {
            match result {
                ClientSessionResult::OutboundResponse(mut packet) => {
                    // The session's acknowledgement, if any, comes first.
                    if let (0, Some(sent)) = (index, session_ack) {
                        fix_acknowledgement(&mut packet.bytes, sent, self.acks.total);
                    }
                    self.write_all(&packet.bytes)?;
                }
                ClientSessionResult::RaisedEvent(event) => incoming.push(Incoming::Session(event)),
                ClientSessionResult::UnhandleableMessageReceived(payload) => {
                    tracing::trace!(type_id = payload.type_id, "unhandled RTMP message");
                }
            }
        }
        if observed.stream_eof {
            incoming.push(Incoming::StreamEof);
        }
        Ok(incoming)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).map_err(io_error)
    }

    /// Reads until the socket would block. Requires nonblocking mode.
    fn read_available(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut received = Vec::new();
        loop {
            match self.stream.read(&mut self.read_buffer) {
                Ok(0) => return Err(ClientError::UnexpectedClose),
                Ok(len) => received.extend_from_slice(&self.read_buffer[..len]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(received),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    /// Blocking read of at least one byte before `deadline`.
    fn read_some(&mut self, deadline: Instant) -> Result<usize, ClientError> {
        match self.read_until(deadline)? {
            0 => Err(ClientError::UnexpectedClose),
            len => Ok(len),
        }
    }

    /// Blocking read into the read buffer before `deadline`; `Ok(0)` means
    /// end of stream.
    fn read_until(&mut self, deadline: Instant) -> Result<usize, ClientError> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout);
            }
            self.stream
                .set_read_timeout(Some(remaining))
                .map_err(io_error)?;
            match self.stream.read(&mut self.read_buffer) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(io_error),
            }
        }
    }
}

/// Opens the TCP connection, setting `SO_RCVBUF` beforehand so that the
/// advertised window (and window scaling) follows it.
fn tcp_connect(
    addr: SocketAddr,
    timeout: Duration,
    recv_buffer: Option<usize>,
) -> Result<TcpStream, ClientError> {
    let Some(size) = recv_buffer else {
        return TcpStream::connect_timeout(&addr, timeout).map_err(io_error);
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(io_error)?;
    socket.set_recv_buffer_size(size).map_err(io_error)?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .map_err(io_error)?;
    Ok(socket.into())
}

/// Mirrors [`ClientSession`]'s acknowledgement accounting.
///
/// The session sends an acknowledgement once it has been handed at least a
/// window's worth of bytes since the previous one, but puts that count (not
/// the total received, as RTMP specifies) in it; the mirror lets
/// [`Connection`] spot that packet and correct it.
#[derive(Debug, Default)]
struct AckCounter {
    /// The server's window, as last applied by the session.
    window: Option<u32>,
    since_last: u32,
    /// Bytes received since the handshake, wrapping like the sequence number.
    total: u32,
}

impl AckCounter {
    /// Counts `len` more bytes; returns the sequence number the session will
    /// put in the acknowledgement it sends for this input, if it sends one.
    fn receive(&mut self, len: usize) -> Option<u32> {
        // Truncation is what the session does, and what a wrapping count wants.
        let len = len as u32;
        self.total = self.total.wrapping_add(len);
        let window = self.window?;
        self.since_last = self.since_last.wrapping_add(len);
        if self.since_last < window {
            return None;
        }
        Some(std::mem::take(&mut self.since_last))
    }
}

/// Rewrites the sequence number of an acknowledgement packet from `sent` (the
/// session's value) to `total`. The packet is left alone if it does not end
/// with `sent`, i.e. if it is not the acknowledgement after all.
fn fix_acknowledgement(packet: &mut [u8], sent: u32, total: u32) {
    match packet.len().checked_sub(4) {
        Some(start) if packet[start..] == sent.to_be_bytes() => {
            packet[start..].copy_from_slice(&total.to_be_bytes());
        }
        _ => tracing::debug!(sent, "RTMP acknowledgement not found where expected"),
    }
}

/// What the [`StatusObserver`] saw in one input, besides rejections.
#[derive(Debug, Default)]
struct Observed {
    /// The last window acknowledgement size the server announced.
    window_ack_size: Option<u32>,
    /// The server sent a `StreamEOF` user control event.
    stream_eof: bool,
}

/// A second decoder over the server-to-client stream for what
/// [`ClientSession`] does not report: rejections with their code and
/// description (the session drops the description, or for `createStream`
/// fails with a bare error), `StreamEOF` events, and the server's
/// acknowledgement window.
///
/// It decodes only control and command messages; media messages are still
/// reassembled a second time, which costs one extra copy of the stream.
struct StatusObserver {
    deserializer: ChunkDeserializer,
}

impl StatusObserver {
    fn new() -> Self {
        Self {
            deserializer: ChunkDeserializer::new(),
        }
    }

    /// Returns what `bytes` hold, or the first rejection found in them as an error.
    fn observe(&mut self, bytes: &[u8]) -> Result<Observed, ClientError> {
        let mut observed = Observed::default();
        let mut input = bytes;
        while let Some(payload) = self
            .deserializer
            .get_next_message(input)
            .map_err(ClientSessionError::from)?
        {
            input = &[];
            if !matches!(
                payload.type_id,
                TYPE_SET_CHUNK_SIZE | TYPE_USER_CONTROL | TYPE_WINDOW_ACK_SIZE | TYPE_AMF0_COMMAND
            ) {
                continue;
            }
            match payload
                .to_rtmp_message()
                .map_err(ClientSessionError::from)?
            {
                RtmpMessage::SetChunkSize { size } => {
                    self.deserializer
                        .set_max_chunk_size(size as usize)
                        .map_err(ClientSessionError::from)?;
                }
                RtmpMessage::WindowAcknowledgement { size } => {
                    observed.window_ack_size = Some(size);
                }
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::StreamEof,
                    ..
                } => observed.stream_eof = true,
                RtmpMessage::Amf0Command {
                    command_name,
                    additional_arguments,
                    ..
                } => {
                    if let Some(rejection) = rejection(&command_name, &additional_arguments) {
                        return Err(rejection);
                    }
                }
                _ => {}
            }
        }
        Ok(observed)
    }
}

/// Interprets a command as a rejection: any `_error` reply, or an `onStatus`
/// whose status object has level `error`.
fn rejection(command_name: &str, arguments: &[Amf0Value]) -> Option<ClientError> {
    let status = arguments.iter().find_map(|value| match value {
        Amf0Value::Object(properties) => Some(properties),
        _ => None,
    });
    let field = |name: &str| match status.and_then(|properties| properties.get(name)) {
        Some(Amf0Value::Utf8String(value)) => Some(value.clone()),
        _ => None,
    };
    let is_error = match command_name {
        "_error" => true,
        "onStatus" => field("level").as_deref() == Some("error"),
        _ => false,
    };
    is_error.then(|| ClientError::Rejected {
        code: field("code").unwrap_or_else(|| command_name.to_owned()),
        description: field("description").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_counter_mirrors_the_session() {
        let mut acks = AckCounter::default();
        assert_eq!(acks.receive(100), None);
        acks.window = Some(250);
        assert_eq!(acks.receive(100), None);
        assert_eq!(acks.receive(200), Some(300));
        assert_eq!(acks.receive(249), None);
        assert_eq!(acks.receive(1), Some(250));
        assert_eq!(acks.total, 650);
    }

    #[test]
    fn acknowledgement_is_rewritten_only_when_recognised() {
        let mut packet = vec![2, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0, 1, 44];
        fix_acknowledgement(&mut packet, 300, 0x0102_0304);
        assert_eq!(packet[12..], [1, 2, 3, 4]);
        let before = packet.clone();
        fix_acknowledgement(&mut packet, 300, 7);
        assert_eq!(packet, before);
        fix_acknowledgement(&mut [0, 1], 300, 7);
    }
}
