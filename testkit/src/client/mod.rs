//! Blocking RTMP clients: a publisher and a player.
//!
//! [`Publisher`] pushes audio, video and metadata to an RTMP server the way an
//! encoder (OBS, ffmpeg) would: handshake, `connect(app)`, `createStream`,
//! `publish(stream_key, "live")`, then media messages. [`Player`] plays a
//! stream back the way a player (ffplay, VLC) would: handshake,
//! `connect(app)`, `createStream`, `play(stream_name)`, then it yields the
//! server's media messages as [`PlayEvent`]s.
//!
//! Both exist for end-to-end tests and command-line tools such as load
//! generators, so they are deliberately blocking and single-threaded: one
//! [`std::net::TcpStream`], no runtime, and every call returns once its bytes
//! have been handed to the kernel (or, for the player, once the next event has
//! arrived). Run one client per thread to drive several streams at once.
//!
//! The RTMP protocol work is done by `rml_rtmp`'s
//! [`Handshake`](rml_rtmp::handshake::Handshake) and
//! [`ClientSession`](rml_rtmp::sessions::ClientSession); everything the
//! session asks to send (acknowledgements of the server's window, ping
//! responses) is written as it is produced. Because `ClientSession` drops the
//! `description` of server status objects (and surfaces rejections in several
//! different ways depending on how the server phrases them), the
//! server-to-client byte stream is also decoded by a second chunk
//! deserializer whose job is to spot `_error` replies and `onStatus` objects
//! of level `error`; both are reported as [`ClientError::Rejected`] with the
//! server's `code` and `description`. The same decoder notices
//! `StreamEOF` events, which the session ignores.
//!
//! Two `rml_rtmp` 0.8 behaviours are worth knowing about:
//!
//! * its acknowledgements carry the number of bytes received since the
//!   previous acknowledgement rather than the total RTMP specifies; the
//!   clients rewrite them to the total received since the handshake;
//! * its chunk deserializer keeps a single reassembly buffer for all chunk
//!   streams, so a server that interleaves the chunks of messages on
//!   different chunk streams cannot be read. Messages split into several
//!   chunks must also repeat the extended timestamp in every continuation
//!   (type 3) chunk, which is what Flash Player expects and what nginx-rtmp
//!   does.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use corecast_testkit::client::{ClientError, Pace, PlayEvent, Player, Publisher};
//! use std::time::Duration;
//!
//! let (_, tags) = corecast::flv::reader::read_file("tests/fixtures/clip.flv")?;
//! let addr = "127.0.0.1:1935".parse()?;
//! let timeout = Duration::from_secs(5);
//! let mut publisher = Publisher::connect(addr, "live", "cam1?token=abc", timeout)?;
//! let publishing = std::thread::spawn(move || -> Result<(), ClientError> {
//!     let mut offset = 0;
//!     for _ in 0..3 {
//!         // Loop the clip; each pass continues one frame after the previous one.
//!         offset = publisher.replay(&tags, Pace::RealTime { speed: 1.0 }, offset)? + 40;
//!     }
//!     publisher.finish()
//! });
//!
//! let mut player = Player::connect(addr, "live", "cam1", timeout)?;
//! while let Some(event) = player.next_event()? {
//!     match event {
//!         PlayEvent::Video { timestamp, data } => println!("{timestamp} ms: {} bytes", data.len()),
//!         PlayEvent::StreamEnded => break,
//!         _ => {}
//!     }
//! }
//! player.finish()?;
//! publishing.join().expect("publisher thread panicked")?;
//! # Ok(())
//! # }
//! ```

pub mod cheap;
mod connection;
mod player;
#[cfg(test)]
mod test_support;

pub use player::{PlayEvent, Player};

use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::HandshakeError;
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::{ClientSessionError, ClientSessionResult, StreamMetadata};
use rml_rtmp::time::RtmpTimestamp;

use connection::{Connection, StreamRequest};
use corecast::flv::reader::{FlvTag, TagKind};

/// Slowest accepted [`Pace::RealTime`] speed; smaller values are raised to it.
const MIN_SPEED: f64 = 1e-3;

/// Errors returned by [`Publisher`] and [`Player`].
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
    /// `onStatus` (e.g. `NetStream.Publish.BadName`, `NetStream.Play.StreamNotFound`),
    /// during setup or afterwards.
    #[error("server rejected the request: {code}: {description}")]
    Rejected {
        /// Status code sent by the server.
        code: String,
        /// Human-readable description sent by the server (may be empty).
        description: String,
    },
    /// The connection timeout elapsed (connect, handshake, stream setup, a
    /// blocked write, or waiting for the next [`PlayEvent`]).
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
    connection: Connection,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", self.connection.stream())
            .field("timeout", &self.connection.timeout())
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
        let (connection, backlog) =
            Connection::open(addr, app, StreamRequest::Publish(stream_key), timeout, None)?;
        for item in backlog {
            tracing::debug!(?item, "RTMP event during publish setup");
        }
        Ok(Self { connection })
    }

    /// Sends stream metadata (`@setDataFrame onMetaData`). Only the fields of
    /// [`StreamMetadata`] are transmitted.
    pub fn send_metadata(&mut self, metadata: &StreamMetadata) -> Result<(), ClientError> {
        let result = self.connection.session().publish_metadata(metadata)?;
        self.send_result(result)
    }

    /// Sends one video message; `data` is an FLV video tag body (codec header
    /// byte, AVC packet type, composition time, payload).
    pub fn send_video(&mut self, timestamp_ms: u32, data: Bytes) -> Result<(), ClientError> {
        let result = self.connection.session().publish_video_data(
            data,
            RtmpTimestamp::new(timestamp_ms),
            false,
        )?;
        self.send_result(result)
    }

    /// Sends one audio message; `data` is an FLV audio tag body (sound header
    /// byte, AAC packet type, payload).
    pub fn send_audio(&mut self, timestamp_ms: u32, data: Bytes) -> Result<(), ClientError> {
        let result = self.connection.session().publish_audio_data(
            data,
            RtmpTimestamp::new(timestamp_ms),
            false,
        )?;
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
        let results = self.connection.session().stop_publishing()?;
        self.connection.close(results)
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
        self.connection.write_results([result])?;
        for item in self.connection.drain()? {
            tracing::debug!(?item, "RTMP event while publishing");
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::test_support::{
        accept_with_handshake, status_object, write_server_results, RawServer, TIMEOUT,
    };
    use super::*;
    use corecast::flv::reader::read_file;
    use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;

    fn clip() -> Vec<FlvTag> {
        read_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/clip.flv"
        ))
        .unwrap()
        .1
    }

    fn count(tags: &[FlvTag], kind: TagKind) -> usize {
        tags.iter().filter(|t| t.kind == kind).count()
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
            let mut buf = vec![0; 64 * 1024];
            let mut sent = 0;
            let mut write =
                |socket: &mut TcpStream, results| write_server_results(socket, results, &mut sent);
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
            let mut server = RawServer::accept(&listener);
            assert!(server.accept_until("publish"));
            let error = status_object("error", "NetStream.Publish.BadName", "Stream key is taken");
            server.send_command("onStatus", 0.0, vec![error], 1);
            while server.next_command().is_some() {}
        });
        (addr, handle)
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
