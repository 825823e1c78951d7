//! Blocking RTMP player; see the [parent module](super) for the overview.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::sessions::{ClientSessionEvent, StreamMetadata};

use super::connection::{Connection, Incoming, StreamRequest};
use super::ClientError;

/// `onStatus` codes (of level `status`) that mean the stream stopped.
const END_CODES: [&str; 3] = [
    "NetStream.Play.Stop",
    "NetStream.Play.Complete",
    "NetStream.Play.UnpublishNotify",
];

/// One message received while playing.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayEvent {
    /// A video message.
    Video {
        /// RTMP timestamp in milliseconds.
        timestamp: u32,
        /// The FLV video tag body (codec header byte, AVC packet type,
        /// composition time, payload).
        data: Bytes,
    },
    /// An audio message.
    Audio {
        /// RTMP timestamp in milliseconds.
        timestamp: u32,
        /// The FLV audio tag body (sound header byte, AAC packet type, payload).
        data: Bytes,
    },
    /// Stream metadata (an `onMetaData` data message). Only the fields
    /// [`StreamMetadata`] knows are kept, and `rml_rtmp` only recognises
    /// `onMetaData` as the first value: a message starting with
    /// `@setDataFrame` is ignored.
    Metadata(StreamMetadata),
    /// The server said the stream ended: an `onStatus` with code
    /// `NetStream.Play.Stop`, `NetStream.Play.Complete` or
    /// `NetStream.Play.UnpublishNotify`, or a `StreamEOF` user control event.
    ///
    /// Reported once per end even when the server signals it several ways;
    /// it is reported again only after more media or metadata arrived. The
    /// connection stays open: keep calling [`Player::next_event`] to see
    /// whether the server closes it or the stream resumes.
    StreamEnded,
}

/// A blocking RTMP player; see the [module documentation](super).
///
/// The player answers what the server needs (acknowledgements of its window,
/// ping requests) while it reads, that is only inside
/// [`next_event`](Self::next_event); a player that stops calling it stops
/// reading, which tests can use to make a slow viewer (see
/// [`connect_with`](Self::connect_with)).
///
/// Dropping a player closes the socket abruptly; call [`finish`](Self::finish)
/// to stop playing cleanly. After an error other than a read timeout the
/// connection state is unknown, so the player should be dropped rather than
/// used further.
pub struct Player {
    connection: Connection,
    queue: VecDeque<PlayEvent>,
    /// `StreamEnded` was reported and no media followed.
    ended: bool,
    /// The server closed the connection.
    closed: bool,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("stream", self.connection.stream())
            .field("timeout", &self.connection.timeout())
            .field("queued", &self.queue.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Connects to `addr`, performs the handshake, connects to `app`, creates
    /// a stream and plays `stream_name`, which is sent verbatim (a query
    /// string such as `name?token=abc` is kept).
    ///
    /// Returns once the server has answered `NetStream.Play.Start`; media
    /// sent before or with it is kept for [`next_event`](Self::next_event).
    /// An `_error` reply or an error-level `onStatus` (e.g.
    /// `NetStream.Play.StreamNotFound`, `NetStream.Play.Failed`) is returned
    /// as [`ClientError::Rejected`].
    ///
    /// `timeout` bounds the whole setup and, afterwards, each wait for an
    /// event and each blocked write; it must be non-zero and is capped at one
    /// day.
    pub fn connect(
        addr: SocketAddr,
        app: &str,
        stream_name: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, app, stream_name, timeout, None)
    }

    /// Like [`connect`](Self::connect), but first sets the socket's receive
    /// buffer (`SO_RCVBUF`) to `recv_buffer` bytes if given; being set before
    /// connecting, it also bounds the TCP window the player advertises. The
    /// kernel adjusts the value (Linux doubles it and enforces a minimum).
    pub fn connect_with(
        addr: SocketAddr,
        app: &str,
        stream_name: &str,
        timeout: Duration,
        recv_buffer: Option<usize>,
    ) -> Result<Self, ClientError> {
        let (connection, backlog) = Connection::open(
            addr,
            app,
            StreamRequest::Play(stream_name),
            timeout,
            recv_buffer,
        )?;
        let mut player = Self {
            connection,
            queue: VecDeque::new(),
            ended: false,
            closed: false,
        };
        player.enqueue(backlog);
        Ok(player)
    }

    /// Blocks until the next event, for at most the timeout given at
    /// connection ([`ClientError::Timeout`]). Returns `Ok(None)` once the
    /// server has closed the connection (and every earlier event was
    /// returned); a connection reset is [`ClientError::UnexpectedClose`].
    ///
    /// A rejection sent while playing (error-level `onStatus` or `_error`)
    /// is returned as [`ClientError::Rejected`]. A [`ClientError::Timeout`]
    /// because nothing arrived leaves the player usable (call again to keep
    /// waiting); after any other error it should be dropped.
    pub fn next_event(&mut self) -> Result<Option<PlayEvent>, ClientError> {
        let deadline = Instant::now() + self.connection.timeout();
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(Some(event));
            }
            if self.closed {
                return Ok(None);
            }
            match self.connection.receive(deadline)? {
                Some(incoming) => self.enqueue(incoming),
                None => self.closed = true,
            }
        }
    }

    /// The player's socket, e.g. to inspect or tune it in tests. Reading from
    /// or writing to it corrupts the RTMP session.
    pub fn socket(&self) -> &TcpStream {
        self.connection.stream()
    }

    /// Stops playing: sends `deleteStream` (`rml_rtmp`'s client session
    /// offers no `closeStream`), shuts down the write side and waits briefly
    /// (at most the connection timeout, capped at two seconds) for the server
    /// to close its side, discarding what it still sends.
    pub fn finish(mut self) -> Result<(), ClientError> {
        let results = if self.closed {
            Vec::new()
        } else {
            self.connection.session().stop_playback()?
        };
        self.connection.close(results)
    }

    /// Turns what the connection received into events.
    fn enqueue(&mut self, incoming: Vec<Incoming>) {
        for item in incoming {
            let event = match item {
                Incoming::Session(ClientSessionEvent::VideoDataReceived { timestamp, data }) => {
                    PlayEvent::Video {
                        timestamp: timestamp.value,
                        data,
                    }
                }
                Incoming::Session(ClientSessionEvent::AudioDataReceived { timestamp, data }) => {
                    PlayEvent::Audio {
                        timestamp: timestamp.value,
                        data,
                    }
                }
                Incoming::Session(ClientSessionEvent::StreamMetadataReceived { metadata }) => {
                    PlayEvent::Metadata(metadata)
                }
                Incoming::Session(ClientSessionEvent::UnhandleableOnStatusCode { code })
                    if END_CODES.contains(&code.as_str()) =>
                {
                    PlayEvent::StreamEnded
                }
                Incoming::StreamEof => PlayEvent::StreamEnded,
                Incoming::Session(other) => {
                    tracing::debug!(event = ?other, "RTMP event while playing");
                    continue;
                }
            };
            if event == PlayEvent::StreamEnded {
                if std::mem::replace(&mut self.ended, true) {
                    continue;
                }
            } else {
                self.ended = false;
            }
            self.queue.push_back(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        accept_with_handshake, status_object, write_server_results, RawServer, TIMEOUT,
    };
    use super::*;
    use rml_rtmp::messages::{RtmpMessage, UserControlEventType};
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent};
    use rml_rtmp::time::RtmpTimestamp;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};

    /// What the fake server does once the client asked to play.
    enum Script {
        /// Rejects the play request with `_error`.
        Reject,
        /// Accepts, sends the given media, a ping request and
        /// `NetStream.Play.Complete`, then serves until the client closes.
        Play(Vec<PlayEvent>),
        /// Accepts, sends the given media and closes the connection.
        PlayAndClose(Vec<PlayEvent>),
        /// Accepts and sends nothing.
        Silent,
    }

    #[derive(Default, Debug)]
    struct Report {
        app: String,
        stream_name: String,
        acks: Vec<u32>,
        /// Bytes sent after the handshake, up to the last acknowledgement.
        sent_before_last_ack: u64,
        ping_responses: usize,
        finished: bool,
    }

    fn sample_metadata() -> StreamMetadata {
        let mut metadata = StreamMetadata::new();
        metadata.video_width = Some(320);
        metadata.video_height = Some(240);
        metadata.video_codec_id = Some(7);
        metadata.audio_codec_id = Some(10);
        metadata
    }

    /// Media with bodies spanning several chunks and distinct bytes.
    fn sample_media(count: u32) -> Vec<PlayEvent> {
        let mut events = vec![PlayEvent::Metadata(sample_metadata())];
        for i in 0..count {
            let video: Vec<u8> = (0..3000 + i).map(|b| (b * 7 + i) as u8).collect();
            events.push(PlayEvent::Video {
                timestamp: i * 40,
                data: Bytes::from(video),
            });
            events.push(PlayEvent::Audio {
                timestamp: i * 40 + 3,
                data: Bytes::from(vec![0xAF, 1, i as u8, 9]),
            });
        }
        events
    }

    /// A server built on rml_rtmp's `ServerSession`, with a small
    /// acknowledgement window so that the player has to acknowledge.
    fn spawn_session_server(script: Script) -> (SocketAddr, JoinHandle<Report>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut socket, mut pending) = accept_with_handshake(&listener);
            let mut config = ServerSessionConfig::new();
            config.window_ack_size = 16 * 1024;
            let (mut session, initial) = ServerSession::new(config).unwrap();
            let mut report = Report::default();
            let mut sent = 0;
            let mut buf = vec![0; 64 * 1024];
            write_server_results(&mut socket, initial, &mut sent);
            let mut script = Some(script);
            loop {
                let results = session.handle_input(&pending).unwrap();
                for event in write_server_results(&mut socket, results, &mut sent) {
                    match event {
                        ServerSessionEvent::ConnectionRequested {
                            request_id,
                            app_name,
                        } => {
                            report.app = app_name;
                            let results = session.accept_request(request_id).unwrap();
                            write_server_results(&mut socket, results, &mut sent);
                        }
                        ServerSessionEvent::PlayStreamRequested {
                            request_id,
                            stream_key,
                            stream_id,
                            ..
                        } => {
                            report.stream_name = stream_key;
                            let script = script.take().expect("one play request");
                            let media = match script {
                                Script::Reject => {
                                    let results = session
                                        .reject_request(
                                            request_id,
                                            "NetStream.Play.StreamNotFound",
                                            "no such stream",
                                        )
                                        .unwrap();
                                    write_server_results(&mut socket, results, &mut sent);
                                    continue;
                                }
                                Script::Play(ref media) | Script::PlayAndClose(ref media) => {
                                    media.clone()
                                }
                                Script::Silent => Vec::new(),
                            };
                            let results = session.accept_request(request_id).unwrap();
                            write_server_results(&mut socket, results, &mut sent);
                            for event in media {
                                let packet = match event {
                                    PlayEvent::Metadata(metadata) => {
                                        session.send_metadata(stream_id, &metadata).unwrap()
                                    }
                                    PlayEvent::Video { timestamp, data } => session
                                        .send_video_data(
                                            stream_id,
                                            data,
                                            RtmpTimestamp::new(timestamp),
                                            false,
                                        )
                                        .unwrap(),
                                    PlayEvent::Audio { timestamp, data } => session
                                        .send_audio_data(
                                            stream_id,
                                            data,
                                            RtmpTimestamp::new(timestamp),
                                            false,
                                        )
                                        .unwrap(),
                                    PlayEvent::StreamEnded => unreachable!(),
                                };
                                socket.write_all(&packet.bytes).unwrap();
                                sent += packet.bytes.len() as u64;
                            }
                            match script {
                                Script::Play(_) => {
                                    let (ping, _) = session.send_ping_request().unwrap();
                                    let complete = session.finish_playing(stream_id).unwrap();
                                    for packet in [ping, complete] {
                                        socket.write_all(&packet.bytes).unwrap();
                                        sent += packet.bytes.len() as u64;
                                    }
                                }
                                Script::PlayAndClose(_) => {
                                    // Closing only the write side and reading
                                    // on avoids a reset discarding the media.
                                    socket.shutdown(std::net::Shutdown::Write).unwrap();
                                }
                                _ => {}
                            }
                        }
                        ServerSessionEvent::AcknowledgementReceived { bytes_received } => {
                            report.acks.push(bytes_received);
                            report.sent_before_last_ack = sent;
                        }
                        ServerSessionEvent::PingResponseReceived { .. } => {
                            report.ping_responses += 1
                        }
                        ServerSessionEvent::PlayStreamFinished { .. } => report.finished = true,
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

    /// Reads events until the stream ends or the connection closes.
    fn collect(player: &mut Player) -> Vec<PlayEvent> {
        let mut events = Vec::new();
        while let Some(event) = player.next_event().unwrap() {
            let ended = event == PlayEvent::StreamEnded;
            events.push(event);
            if ended {
                break;
            }
        }
        events
    }

    #[test]
    fn plays_metadata_and_media_then_stream_end() {
        let media = sample_media(100);
        let (addr, server) = spawn_session_server(Script::Play(media.clone()));
        let mut player = Player::connect(addr, "live", "cam1?token=abc", TIMEOUT).unwrap();
        let events = collect(&mut player);
        let mut expected = media;
        expected.push(PlayEvent::StreamEnded);
        assert_eq!(events, expected);
        player.finish().unwrap();

        let report = server.join().unwrap();
        assert_eq!(report.app, "live");
        assert_eq!(report.stream_name, "cam1?token=abc");
        // `finish_playing` marked the stream completed, so `ServerSession`
        // does not report its deletion (the silent-stream test checks it).
        assert!(!report.finished);
        assert_eq!(report.ping_responses, 1, "ping was not answered");
        // Totals, not per-window counts: strictly increasing, never more than sent.
        assert!(report.acks.len() >= 3, "{:?}", report.acks);
        assert!(
            report.acks.windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            report.acks
        );
        let last = u64::from(*report.acks.last().unwrap());
        assert!(last <= report.sent_before_last_ack, "{last} > {report:?}");
    }

    #[test]
    fn play_rejected_with_error_reply() {
        let (addr, server) = spawn_session_server(Script::Reject);
        let err = Player::connect(addr, "live", "nothing", TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, ClientError::Rejected { code, description }
                if code == "NetStream.Play.StreamNotFound" && description == "no such stream"),
            "{err:?}"
        );
        assert_eq!(server.join().unwrap().stream_name, "nothing");
    }

    #[test]
    fn play_rejected_with_on_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut server = RawServer::accept(&listener);
            assert!(server.accept_until("play"));
            let error = status_object("error", "NetStream.Play.Failed", "not allowed");
            server.send_command("onStatus", 0.0, vec![error], 1);
            while server.next_command().is_some() {}
        });
        let err = Player::connect(addr, "live", "cam1", TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, ClientError::Rejected { code, description }
                if code == "NetStream.Play.Failed" && description == "not allowed"),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn server_close_is_end_of_events() {
        let media = sample_media(2);
        let (addr, server) = spawn_session_server(Script::PlayAndClose(media.clone()));
        let mut player = Player::connect(addr, "live", "cam1", TIMEOUT).unwrap();
        assert_eq!(collect(&mut player), media);
        assert_eq!(player.next_event().unwrap(), None);
        player.finish().unwrap();
        assert!(!server.join().unwrap().finished);
    }

    #[test]
    fn silent_stream_times_out_and_receive_buffer_is_set() {
        let (addr, server) = spawn_session_server(Script::Silent);
        let timeout = Duration::from_millis(500);
        let mut player = Player::connect_with(addr, "live", "cam1", timeout, Some(4096)).unwrap();
        let size = socket2::SockRef::from(player.socket())
            .recv_buffer_size()
            .unwrap();
        assert!((4096..64 * 1024).contains(&size), "SO_RCVBUF is {size}");
        let start = Instant::now();
        let err = player.next_event().unwrap_err();
        assert!(matches!(err, ClientError::Timeout), "{err:?}");
        assert!(start.elapsed() >= timeout);
        player.finish().unwrap();
        assert!(server.join().unwrap().finished);
    }

    /// Writes one message the way the server under test does: every chunk
    /// stream id of its own, a full (type 0) header, the extended timestamp
    /// when the timestamp does not fit 24 bits, repeated in each type 3
    /// continuation chunk.
    fn full_header_message(
        csid: u8,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        body: &[u8],
        chunk_size: usize,
    ) -> Vec<u8> {
        let extended = timestamp >= 0xFF_FFFF;
        let mut out = vec![csid];
        out.extend_from_slice(&timestamp.min(0xFF_FFFF).to_be_bytes()[1..]);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        for (index, chunk) in body.chunks(chunk_size).enumerate() {
            if index > 0 {
                out.push(0xC0 | csid);
            }
            if extended {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn full_header_media_with_extended_timestamps() {
        const CHUNK_SIZE: usize = 128;
        let timestamps = [0, 1000, 0xFF_FFFE, 0xFF_FFFF, 0x100_0000, u32::MAX];
        let expected: Vec<PlayEvent> = timestamps
            .iter()
            .flat_map(|&timestamp| {
                let video: Vec<u8> = (0..300u32).map(|b| (b ^ timestamp) as u8).collect();
                [
                    PlayEvent::Video {
                        timestamp,
                        data: Bytes::from(video),
                    },
                    PlayEvent::Audio {
                        timestamp,
                        data: Bytes::from(timestamp.to_le_bytes().to_vec()),
                    },
                ]
            })
            .chain([
                PlayEvent::Metadata(sample_metadata()),
                PlayEvent::StreamEnded,
            ])
            .collect();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let events = expected.clone();
        let server = thread::spawn(move || {
            let mut server = RawServer::accept(&listener);
            assert!(server.accept_until("play"));
            let start = status_object("status", "NetStream.Play.Start", "go");
            server.send_command("onStatus", 0.0, vec![start], 1);
            let mut bytes = Vec::new();
            for event in events {
                match event {
                    PlayEvent::Video { timestamp, data } => {
                        bytes.extend(full_header_message(9, 9, 1, timestamp, &data, CHUNK_SIZE))
                    }
                    PlayEvent::Audio { timestamp, data } => {
                        bytes.extend(full_header_message(8, 8, 1, timestamp, &data, CHUNK_SIZE))
                    }
                    PlayEvent::Metadata(_) => {
                        let payload = RtmpMessage::Amf0Data {
                            values: vec![
                                Amf0Value::Utf8String("onMetaData".to_owned()),
                                Amf0Value::Object(
                                    [
                                        ("width", 320.0),
                                        ("height", 240.0),
                                        ("videocodecid", 7.0),
                                        ("audiocodecid", 10.0),
                                    ]
                                    .into_iter()
                                    .map(|(k, v)| (k.to_owned(), Amf0Value::Number(v)))
                                    .collect(),
                                ),
                            ],
                        }
                        .into_message_payload(RtmpTimestamp::new(0), 1)
                        .unwrap();
                        bytes.extend(full_header_message(
                            7,
                            payload.type_id,
                            1,
                            u32::MAX,
                            &payload.data,
                            CHUNK_SIZE,
                        ));
                    }
                    PlayEvent::StreamEnded => {}
                }
            }
            // Written in small pieces to split chunks across reads.
            for piece in bytes.chunks(100) {
                server.socket.write_all(piece).unwrap();
            }
            // Both end signals, reported once.
            server.send_message(
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::StreamEof,
                    stream_id: Some(1),
                    buffer_length: None,
                    timestamp: None,
                },
                0,
            );
            let stop = status_object("status", "NetStream.Play.UnpublishNotify", "gone");
            server.send_command("onStatus", 0.0, vec![stop], 1);
            server.socket.shutdown(std::net::Shutdown::Write).unwrap();
            while server.next_command().is_some() {}
        });

        let mut player = Player::connect(addr, "live", "cam1", TIMEOUT).unwrap();
        let mut events = Vec::new();
        while let Some(event) = player.next_event().unwrap() {
            events.push(event);
        }
        assert_eq!(events, expected);
        player.finish().unwrap();
        server.join().unwrap();
    }
}
