//! Blocking RTMP publishing client.
//!
//! [`Publisher`] pushes audio, video and metadata to an RTMP server the way an
//! encoder (OBS, ffmpeg) would: handshake, `connect(app)`, `createStream`,
//! `publish(stream_key, "live")`, then media messages. It exists for
//! end-to-end tests and command-line tools such as load generators, so it is
//! deliberately blocking and single-threaded: one [`std::net::TcpStream`], no
//! runtime, and every call returns once its bytes have been handed to the
//! kernel. Run one publisher per thread to publish several streams at once.
//!
//! The RTMP protocol work is done by `rml_rtmp`'s [`Handshake`] and
//! [`ClientSession`]. Because `ClientSession` drops the `description` of
//! server status objects (and surfaces rejections in several different ways
//! depending on how the server phrases them), the publisher also decodes the
//! server-to-client byte stream with a second chunk deserializer whose only job
//! is to spot `_error` replies and `onStatus` objects of level `error`; both
//! are reported as [`ClientError::Rejected`] with the server's `code` and
//! `description`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use corecast::client::{Pace, Publisher};
//! use std::time::Duration;
//!
//! let (_, tags) = corecast::flv::reader::read_file("tests/fixtures/clip.flv")?;
//! let addr = "127.0.0.1:1935".parse()?;
//! let mut publisher = Publisher::connect(addr, "live", "cam1?token=abc", Duration::from_secs(5))?;
//! let mut offset = 0;
//! for _ in 0..3 {
//!     // Loop the clip; each pass continues one frame after the previous one.
//!     offset = publisher.replay(&tags, Pace::RealTime { speed: 1.0 }, offset)? + 40;
//! }
//! publisher.finish()?;
//! # Ok(())
//! # }
//! ```

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent,
    ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use crate::flv::reader::{FlvTag, TagKind};

/// Size of the buffer used for socket reads.
const READ_BUFFER_LEN: usize = 64 * 1024;
/// Upper bound on how long [`Publisher::finish`] waits for the server to close.
const FINISH_LINGER: Duration = Duration::from_secs(2);
/// Slowest accepted [`Pace::RealTime`] speed; smaller values are raised to it.
const MIN_SPEED: f64 = 1e-3;
/// Longest accepted connection timeout; larger values are clamped to it.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Code reported when the server rejects `connect` without a status object.
const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";

/// Errors returned by [`Publisher`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The RTMP handshake failed.
    #[error("RTMP handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The RTMP session layer failed (chunk or message coding, protocol state).
    #[error("RTMP session error: {0}")]
    Session(#[from] ClientSessionError),
    /// The server refused the request with an `_error` reply or an error-level
    /// `onStatus` (e.g. `NetStream.Publish.BadName`), during setup or while publishing.
    #[error("server rejected the request: {code}: {description}")]
    Rejected {
        /// Status code sent by the server.
        code: String,
        /// Human-readable description sent by the server (may be empty).
        description: String,
    },
    /// The connection timeout elapsed (connect, handshake, publish setup, or a blocked write).
    #[error("timed out")]
    Timeout,
    /// The server closed the connection.
    #[error("server closed the connection unexpectedly")]
    UnexpectedClose,
}

/// Maps socket errors to [`ClientError`], singling out timeouts and peer closes.
fn io_error(error: io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ClientError::UnexpectedClose,
        _ => ClientError::Io(error),
    }
}

/// How [`Publisher::replay`] spaces out tags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Send every tag immediately.
    AsFastAsPossible,
    /// Send each tag when its timestamp (relative to the first tag) is due,
    /// scaled by `speed`: 1.0 is real time, 2.0 twice as fast. Speeds that are
    /// not finite or not positive behave like [`Pace::AsFastAsPossible`]; tiny
    /// positive speeds are raised to 0.001.
    RealTime {
        /// Playback speed multiplier.
        speed: f64,
    },
}

/// A blocking RTMP publisher; see the [module documentation](self).
///
/// Dropping a publisher closes the socket abruptly; call [`finish`](Self::finish)
/// to end the stream cleanly. After any error the connection state is
/// unknown (a write may have been cut short), so the publisher should be
/// dropped rather than used further.
pub struct Publisher {
    stream: TcpStream,
    session: ClientSession,
    observer: StatusObserver,
    timeout: Duration,
    read_buffer: Vec<u8>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", &self.stream)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects to `addr`, performs the handshake, connects to `app` and
    /// publishes (mode `live`) under `stream_key`, which is sent verbatim
    /// (a query string such as `name?token=abc` is kept).
    ///
    /// Returns once the server has answered `NetStream.Publish.Start`.
    /// `timeout` bounds the whole setup and, afterwards, each blocked write;
    /// it must be non-zero and is capped at one day.
    pub fn connect(
        addr: SocketAddr,
        app: &str,
        stream_key: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let timeout = timeout.min(MAX_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_error)?;

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(format!("rtmp://{addr}/{app}"));
        let (session, initial) = ClientSession::new(config)?;

        let mut publisher = Self {
            stream,
            session,
            observer: StatusObserver::new(),
            timeout,
            read_buffer: vec![0; READ_BUFFER_LEN],
        };
        let leftover = publisher.handshake(deadline)?;
        publisher.write_results(initial)?;
        publisher.start_publishing(app, stream_key, leftover, deadline)?;
        Ok(publisher)
    }

    /// Sends stream metadata (`@setDataFrame onMetaData`). Only the fields of
    /// [`StreamMetadata`] are transmitted.
    pub fn send_metadata(&mut self, metadata: &StreamMetadata) -> Result<(), ClientError> {
        let result = self.session.publish_metadata(metadata)?;
        self.send_result(result)
    }

    /// Sends one video message; `data` is an FLV video tag body (codec header
    /// byte, AVC packet type, composition time, payload).
    pub fn send_video(&mut self, timestamp_ms: u32, data: Bytes) -> Result<(), ClientError> {
        let result =
            self.session
                .publish_video_data(data, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_result(result)
    }

    /// Sends one audio message; `data` is an FLV audio tag body (sound header
    /// byte, AAC packet type, payload).
    pub fn send_audio(&mut self, timestamp_ms: u32, data: Bytes) -> Result<(), ClientError> {
        let result =
            self.session
                .publish_audio_data(data, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_result(result)
    }

    /// Sends an FLV tag at its own timestamp.
    ///
    /// Audio and video tags are sent as media messages. A script tag holding
    /// `onMetaData` is decoded and sent through [`send_metadata`](Self::send_metadata)
    /// (so only the fields [`StreamMetadata`] knows survive); other script tags,
    /// undecodable script tags and tags of any other kind are skipped.
    pub fn send_tag(&mut self, tag: &FlvTag) -> Result<(), ClientError> {
        self.send_tag_at(tag, tag.timestamp)
    }

    /// Sends `tags` in order with `ts_offset` added (wrapping) to every
    /// timestamp, paced according to `pace`, and returns the last timestamp
    /// sent (`ts_offset` if `tags` is empty).
    ///
    /// Pacing is relative to the first tag and to the moment of the call, so
    /// a clip can be looped by calling `replay` again with an offset just past
    /// the returned timestamp.
    pub fn replay(
        &mut self,
        tags: &[FlvTag],
        pace: Pace,
        ts_offset: u32,
    ) -> Result<u32, ClientError> {
        let speed = match pace {
            Pace::RealTime { speed } if speed.is_finite() && speed > 0.0 => {
                Some(speed.max(MIN_SPEED))
            }
            _ => None,
        };
        let start = Instant::now();
        let first_ts = tags.first().map_or(0, |tag| tag.timestamp);
        let mut last_ts = ts_offset;

        for tag in tags {
            if let Some(speed) = speed {
                let media_ms = tag.timestamp.saturating_sub(first_ts);
                let due = start + Duration::from_secs_f64(f64::from(media_ms) / 1000.0 / speed);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
            }
            last_ts = tag.timestamp.wrapping_add(ts_offset);
            self.send_tag_at(tag, last_ts)?;
        }
        Ok(last_ts)
    }

    /// Ends the stream: sends `deleteStream` for the published stream, shuts
    /// down the write side and waits briefly (at most the connection timeout,
    /// capped at two seconds) for the server to close its side.
    ///
    /// `rml_rtmp`'s client session offers no `FCUnpublish`, so only
    /// `deleteStream` is sent; servers treat it as the end of publishing.
    pub fn finish(mut self) -> Result<(), ClientError> {
        let results = self.session.stop_publishing()?;
        self.write_results(results)?;
        self.stream.shutdown(Shutdown::Write).map_err(io_error)?;

        // Reading until EOF keeps our receive queue empty, so closing the
        // socket does not turn into a reset that could discard `deleteStream`.
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

    /// Drives `connect` and `publish` until the server accepts the publish.
    fn start_publishing(
        &mut self,
        app: &str,
        stream_key: &str,
        mut pending: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let connect = self.session.request_connection(app.to_owned())?;
        self.write_results([connect])?;

        let mut publish_requested = false;
        loop {
            if !pending.is_empty() {
                let mut connected = false;
                for event in self.handle_incoming(&pending)? {
                    match event {
                        ClientSessionEvent::ConnectionRequestAccepted => connected = true,
                        ClientSessionEvent::PublishRequestAccepted => return Ok(()),
                        ClientSessionEvent::ConnectionRequestRejected { description } => {
                            return Err(ClientError::Rejected {
                                code: CONNECT_REJECTED.to_owned(),
                                description,
                            });
                        }
                        other => tracing::debug!(event = ?other, "RTMP event during publish setup"),
                    }
                }
                // Requested only after every response to this input has been
                // written, so outbound packets stay in serializer order.
                if connected && !publish_requested {
                    let publish = self
                        .session
                        .request_publishing(stream_key.to_owned(), PublishRequestType::Live)?;
                    self.write_results([publish])?;
                    publish_requested = true;
                }
            }
            let len = self.read_some(deadline)?;
            pending = self.read_buffer[..len].to_vec();
        }
    }

    fn send_tag_at(&mut self, tag: &FlvTag, timestamp_ms: u32) -> Result<(), ClientError> {
        match tag.kind {
            TagKind::Audio => self.send_audio(timestamp_ms, tag.data.clone()),
            TagKind::Video => self.send_video(timestamp_ms, tag.data.clone()),
            TagKind::Script => match parse_on_metadata(&tag.data) {
                Some(metadata) => self.send_metadata(&metadata),
                None => Ok(()),
            },
            TagKind::Other(_) => Ok(()),
        }
    }

    /// Writes a media/metadata packet, then services anything the server sent.
    fn send_result(&mut self, result: ClientSessionResult) -> Result<(), ClientError> {
        self.write_results([result])?;
        self.drain()
    }

    /// Reads whatever the server has sent without blocking, feeds it to the
    /// session and writes the session's responses (acknowledgements, pings).
    fn drain(&mut self) -> Result<(), ClientError> {
        self.stream.set_nonblocking(true).map_err(io_error)?;
        let received = self.read_available();
        self.stream.set_nonblocking(false).map_err(io_error)?;
        let received = received?;
        if !received.is_empty() {
            for event in self.handle_incoming(&received)? {
                tracing::debug!(event = ?event, "RTMP event while publishing");
            }
        }
        Ok(())
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

    /// Feeds server bytes to the status observer and the session, writes the
    /// session's responses and returns its events.
    fn handle_incoming(&mut self, bytes: &[u8]) -> Result<Vec<ClientSessionEvent>, ClientError> {
        // The observer goes first: for some rejections the session itself
        // fails (e.g. `CreateStreamFailed`) and would hide the server's reason.
        if let Some(rejection) = self.observer.observe(bytes)? {
            return Err(rejection);
        }
        let mut events = Vec::new();
        for result in self.session.handle_input(bytes)? {
            match result {
                ClientSessionResult::OutboundResponse(packet) => self.write_all(&packet.bytes)?,
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(payload) => {
                    tracing::trace!(type_id = payload.type_id, "unhandled RTMP message");
                }
            }
        }
        Ok(events)
    }

    /// Writes every outbound packet in order, ignoring non-packet results.
    fn write_results(
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

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).map_err(io_error)
    }

    /// Blocking read of at least one byte before `deadline`.
    fn read_some(&mut self, deadline: Instant) -> Result<usize, ClientError> {
        match self.read_until(deadline)? {
            0 => Err(ClientError::UnexpectedClose),
            len => Ok(len),
        }
    }

    /// Blocking read before `deadline`; `Ok(0)` means end of stream.
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

/// Decodes an FLV script tag body into metadata if it is `onMetaData`
/// (optionally preceded by `@setDataFrame`).
fn parse_on_metadata(data: &[u8]) -> Option<StreamMetadata> {
    let values = rml_amf0::deserialize(&mut Cursor::new(data)).ok()?;
    let mut values = values
        .into_iter()
        .skip_while(|v| matches!(v, Amf0Value::Utf8String(s) if s == "@setDataFrame"));
    match (values.next(), values.next()) {
        (Some(Amf0Value::Utf8String(name)), Some(Amf0Value::Object(properties)))
            if name == "onMetaData" =>
        {
            let mut metadata = StreamMetadata::new();
            metadata.apply_metadata_values(properties);
            Some(metadata)
        }
        _ => None,
    }
}

/// A second decoder over the server-to-client stream that only looks for
/// error replies, which [`ClientSession`] reports without their description
/// (or, for `createStream`, only as a bare error).
///
/// The server only sends small control and command messages to a publisher,
/// so decoding them twice is cheap.
struct StatusObserver {
    deserializer: ChunkDeserializer,
}

impl StatusObserver {
    fn new() -> Self {
        Self {
            deserializer: ChunkDeserializer::new(),
        }
    }

    /// Returns the first rejection found in `bytes`, if any.
    fn observe(&mut self, bytes: &[u8]) -> Result<Option<ClientError>, ClientSessionError> {
        let mut input = bytes;
        while let Some(payload) = self.deserializer.get_next_message(input)? {
            input = &[];
            match payload.to_rtmp_message()? {
                RtmpMessage::SetChunkSize { size } => {
                    self.deserializer.set_max_chunk_size(size as usize)?;
                }
                RtmpMessage::Amf0Command {
                    command_name,
                    additional_arguments,
                    ..
                } => {
                    if let Some(rejection) = rejection(&command_name, &additional_arguments) {
                        return Ok(Some(rejection));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
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
    use crate::flv::reader::read_file;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    use std::collections::HashMap;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn clip() -> Vec<FlvTag> {
        read_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/clip.flv"
        ))
        .unwrap()
        .1
    }

    fn count(tags: &[FlvTag], kind: TagKind) -> usize {
        tags.iter().filter(|t| t.kind == kind).count()
    }

    /// Accepts one connection and completes the server side of the handshake.
    fn accept_with_handshake(listener: &TcpListener) -> (TcpStream, Vec<u8>) {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = vec![0; READ_BUFFER_LEN];
        loop {
            let len = socket.read(&mut buf).unwrap();
            assert_ne!(len, 0, "client closed during handshake");
            match handshake.process_bytes(&buf[..len]).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    socket.write_all(&response_bytes).unwrap();
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    socket.write_all(&response_bytes).unwrap();
                    return (socket, remaining_bytes);
                }
            }
        }
    }

    #[derive(Clone)]
    enum Decision {
        Accept,
        RejectConnect,
        RejectPublish,
    }

    #[derive(Default, Debug)]
    struct Report {
        app: String,
        stream_key: String,
        metadata: Vec<StreamMetadata>,
        video_timestamps: Vec<u32>,
        audio: usize,
        ping_responses: usize,
        finished: bool,
    }

    /// A server built on rml_rtmp's `ServerSession`, which rejects with `_error`.
    fn spawn_session_server(decision: Decision) -> (SocketAddr, JoinHandle<Report>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut socket, mut pending) = accept_with_handshake(&listener);
            let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).unwrap();
            let mut report = Report::default();
            let mut buf = vec![0; READ_BUFFER_LEN];
            let write = |socket: &mut TcpStream, results: Vec<ServerSessionResult>| {
                let mut events = Vec::new();
                for result in results {
                    match result {
                        ServerSessionResult::OutboundResponse(p) => {
                            socket.write_all(&p.bytes).unwrap()
                        }
                        ServerSessionResult::RaisedEvent(e) => events.push(e),
                        ServerSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
                events
            };
            write(&mut socket, initial);
            loop {
                let results = session.handle_input(&pending).unwrap();
                for event in write(&mut socket, results) {
                    match event {
                        ServerSessionEvent::ConnectionRequested {
                            request_id,
                            app_name,
                        } => {
                            report.app = app_name;
                            let results = match decision {
                                Decision::RejectConnect => session
                                    .reject_request(
                                        request_id,
                                        "NetConnection.Connect.Rejected",
                                        "no such app",
                                    )
                                    .unwrap(),
                                _ => session.accept_request(request_id).unwrap(),
                            };
                            write(&mut socket, results);
                        }
                        ServerSessionEvent::PublishStreamRequested {
                            request_id,
                            stream_key,
                            ..
                        } => {
                            report.stream_key = stream_key;
                            if let Decision::RejectPublish = decision {
                                let results = session
                                    .reject_request(
                                        request_id,
                                        "NetStream.Publish.BadName",
                                        "stream key in use",
                                    )
                                    .unwrap();
                                write(&mut socket, results);
                            } else {
                                let results = session.accept_request(request_id).unwrap();
                                write(&mut socket, results);
                                let (ping, _) = session.send_ping_request().unwrap();
                                socket.write_all(&ping.bytes).unwrap();
                            }
                        }
                        ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                            report.metadata.push(metadata);
                        }
                        ServerSessionEvent::VideoDataReceived { timestamp, .. } => {
                            report.video_timestamps.push(timestamp.value);
                        }
                        ServerSessionEvent::AudioDataReceived { .. } => report.audio += 1,
                        ServerSessionEvent::PingResponseReceived { .. } => {
                            report.ping_responses += 1
                        }
                        ServerSessionEvent::PublishStreamFinished { .. } => report.finished = true,
                        _ => {}
                    }
                }
                match socket.read(&mut buf) {
                    Ok(0) | Err(_) => return report,
                    Ok(len) => pending = buf[..len].to_vec(),
                }
            }
        });
        (addr, handle)
    }

    /// A hand-rolled server that answers `publish` with an error-level
    /// `onStatus`, like nginx-rtmp and SRS do.
    fn spawn_on_status_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut socket, mut pending) = accept_with_handshake(&listener);
            let mut deserializer = ChunkDeserializer::new();
            let mut serializer = ChunkSerializer::new();
            let mut buf = vec![0; READ_BUFFER_LEN];
            let mut send = |socket: &mut TcpStream,
                            name: &str,
                            tid: f64,
                            args: Vec<Amf0Value>,
                            stream_id: u32| {
                let message = RtmpMessage::Amf0Command {
                    command_name: name.to_owned(),
                    transaction_id: tid,
                    command_object: Amf0Value::Null,
                    additional_arguments: args,
                };
                let payload = message
                    .into_message_payload(RtmpTimestamp::new(0), stream_id)
                    .unwrap();
                let packet = serializer.serialize(&payload, false, false).unwrap();
                socket.write_all(&packet.bytes).unwrap();
            };
            loop {
                let mut input = pending.as_slice();
                while let Some(payload) = deserializer.get_next_message(input).unwrap() {
                    input = &[];
                    match payload.to_rtmp_message().unwrap() {
                        RtmpMessage::SetChunkSize { size } => {
                            deserializer.set_max_chunk_size(size as usize).unwrap();
                        }
                        RtmpMessage::Amf0Command {
                            command_name,
                            transaction_id,
                            ..
                        } => match command_name.as_str() {
                            "connect" => {
                                let ok =
                                    status_object("status", "NetConnection.Connect.Success", "ok");
                                send(&mut socket, "_result", transaction_id, vec![ok], 0);
                            }
                            "createStream" => {
                                send(
                                    &mut socket,
                                    "_result",
                                    transaction_id,
                                    vec![Amf0Value::Number(1.0)],
                                    0,
                                );
                            }
                            "publish" => {
                                let error = status_object(
                                    "error",
                                    "NetStream.Publish.BadName",
                                    "Stream key is taken",
                                );
                                send(&mut socket, "onStatus", 0.0, vec![error], 1);
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
                match socket.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(len) => pending = buf[..len].to_vec(),
                }
            }
        });
        (addr, handle)
    }

    fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
        let properties: HashMap<String, Amf0Value> = [
            ("level", level),
            ("code", code),
            ("description", description),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Amf0Value::Utf8String(v.to_owned())))
        .collect();
        Amf0Value::Object(properties)
    }

    #[test]
    fn publishes_clip_twice_and_finishes() {
        let tags = clip();
        let (addr, server) = spawn_session_server(Decision::Accept);
        let mut publisher = Publisher::connect(addr, "live", "cam1?token=abc", TIMEOUT).unwrap();
        let last = publisher.replay(&tags, Pace::AsFastAsPossible, 0).unwrap();
        assert_eq!(last, tags.last().unwrap().timestamp);
        let offset = last + 40;
        let last2 = publisher
            .replay(&tags, Pace::AsFastAsPossible, offset)
            .unwrap();
        assert_eq!(last2, offset + last);
        publisher.finish().unwrap();

        let report = server.join().unwrap();
        assert_eq!(report.app, "live");
        assert_eq!(report.stream_key, "cam1?token=abc");
        assert!(report.finished);
        assert!(report.ping_responses >= 1, "ping was not answered");
        assert_eq!(
            report.video_timestamps.len(),
            2 * count(&tags, TagKind::Video)
        );
        assert_eq!(report.audio, 2 * count(&tags, TagKind::Audio));
        assert_eq!(report.metadata.len(), 2);
        let metadata = &report.metadata[0];
        assert_eq!(
            (metadata.video_width, metadata.video_height),
            (Some(320), Some(240))
        );
        assert_eq!(metadata.video_codec_id, Some(7));
        assert_eq!(metadata.audio_codec_id, Some(10));
        let half = report.video_timestamps.len() / 2;
        assert_eq!(report.video_timestamps[half], offset);
    }

    #[test]
    fn real_time_pace_follows_timestamps() {
        let tags: Vec<FlvTag> = clip().into_iter().filter(|t| t.timestamp <= 200).collect();
        let (addr, server) = spawn_session_server(Decision::Accept);
        let mut publisher = Publisher::connect(addr, "live", "paced", TIMEOUT).unwrap();
        let start = Instant::now();
        publisher
            .replay(&tags, Pace::RealTime { speed: 1.0 }, 0)
            .unwrap();
        let real_time = start.elapsed();
        let start = Instant::now();
        publisher
            .replay(&tags, Pace::RealTime { speed: 4.0 }, 1000)
            .unwrap();
        let fast = start.elapsed();
        publisher.finish().unwrap();
        server.join().unwrap();
        assert!(real_time >= Duration::from_millis(200), "{real_time:?}");
        assert!(
            fast >= Duration::from_millis(50) && fast < real_time,
            "{fast:?}"
        );
    }

    #[test]
    fn publish_rejected_with_error_reply() {
        let (addr, server) = spawn_session_server(Decision::RejectPublish);
        let err = Publisher::connect(addr, "live", "taken", TIMEOUT).unwrap_err();
        match err {
            ClientError::Rejected { code, description } => {
                assert_eq!(code, "NetStream.Publish.BadName");
                assert_eq!(description, "stream key in use");
            }
            other => panic!("unexpected error: {other:?}"),
        }
        assert_eq!(server.join().unwrap().stream_key, "taken");
    }

    #[test]
    fn connect_rejected_with_error_reply() {
        let (addr, server) = spawn_session_server(Decision::RejectConnect);
        let err = Publisher::connect(addr, "nope", "key", TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, ClientError::Rejected { code, description }
                if code == "NetConnection.Connect.Rejected" && description == "no such app"),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn publish_rejected_with_on_status() {
        let (addr, server) = spawn_on_status_server();
        let err = Publisher::connect(addr, "live", "taken", TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, ClientError::Rejected { code, description }
                if code == "NetStream.Publish.BadName" && description == "Stream key is taken"),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        let err = Publisher::connect(addr, "live", "key", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ClientError::Timeout), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn closed_connection_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || drop(listener.accept().unwrap()));
        let err = Publisher::connect(addr, "live", "key", TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::UnexpectedClose), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn metadata_parsing() {
        let tags = clip();
        let metadata = parse_on_metadata(&tags[0].data).unwrap();
        assert_eq!(metadata.video_frame_rate, Some(25.0));
        assert_eq!(metadata.audio_sample_rate, Some(44100));
        assert!(parse_on_metadata(&tags[1].data).is_none());
        assert!(parse_on_metadata(b"\x02\x00\x05hello").is_none());
    }
}
