//! RTMP by hand: the client's handshake, and a client that sends what a well-behaved client
//! would not.

use super::{read_until_closed, WAIT};
use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Completes the client's side of the RTMP handshake on a connected stream (rml_rtmp's
/// client handshake), or panics after [`WAIT`].
pub fn rtmp_handshake(stream: &mut TcpStream) {
    client_handshake(stream, Instant::now() + WAIT);
}

/// The client's side of the RTMP handshake, done by `deadline` (panics otherwise); returns
/// what the server sent after it, if anything. Leaves the stream without a read timeout.
pub fn client_handshake(stream: &mut TcpStream, deadline: Instant) -> Vec<u8> {
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake.generate_outbound_p0_and_p1().expect("C0+C1");
    stream.write_all(&c0c1).expect("RTMP handshake");
    let mut buf = vec![0u8; 16 * 1024];
    let rest = loop {
        let n = read_some(stream, &mut buf, deadline);
        match handshake.process_bytes(&buf[..n]).expect("RTMP handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).expect("RTMP handshake")
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).expect("RTMP handshake");
                break remaining_bytes;
            }
        }
    };
    stream.set_read_timeout(None).expect("read timeout");
    rest
}

/// Blocking read of at least one byte before `deadline` (EINTR retried), during a
/// connection's set-up: panics when the server closes the connection or the time is up.
pub fn read_some(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> usize {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "RTMP set-up timed out");
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(buf) {
            Ok(0) => panic!("the server closed the connection during set-up"),
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read during set-up: {e}"),
        }
    }
}

/// Reads from `stream` until `found` holds for everything read so far, which it returns;
/// panics when the server closes the connection first, or after `limit`.
pub fn read_until(
    stream: &mut TcpStream,
    limit: Duration,
    found: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !found(&seen) {
        let left = limit.saturating_sub(started.elapsed());
        let lossy = String::from_utf8_lossy(&seen).to_string();
        assert!(!left.is_zero(), "not there within {limit:?}: {lossy:?}");
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed before it came: {lossy:?}"),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the server's answers: {e}: {lossy:?}"),
        }
    }
    seen
}

/// An RTMP client written by hand: it sends what it is told, all at once, without waiting
/// for answers (as a pipelining client would), serialized by rml_rtmp's chunk serializer.
pub struct RawClient {
    pub stream: TcpStream,
    pub chunks: ChunkSerializer,
}

impl RawClient {
    /// Connects to `addr` and completes the handshake.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        RawClient::over(stream)
    }

    /// Completes the handshake on a connected stream (e.g. one bound to a chosen source
    /// address).
    pub fn over(mut stream: TcpStream) -> RawClient {
        rtmp_handshake(&mut stream);
        RawClient {
            stream,
            chunks: ChunkSerializer::new(),
        }
    }

    pub fn message(&mut self, message: RtmpMessage, stream_id: u32, timestamp: u32) -> Vec<u8> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
            .unwrap();
        self.payload(&payload)
    }

    pub fn payload(&mut self, payload: &MessagePayload) -> Vec<u8> {
        self.chunks.serialize(payload, false, false).unwrap().bytes
    }

    pub fn command(
        &mut self,
        name: &str,
        transaction: f64,
        stream_id: u32,
        args: Vec<Amf0Value>,
    ) -> Vec<u8> {
        let command = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: transaction,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        };
        self.message(command, stream_id, 0)
    }

    /// `connect("live")`.
    pub fn connect_app(&mut self) -> Vec<u8> {
        self.connect_with(HashMap::new())
    }

    /// `connect("live")` with more properties in its command object (e.g. an Enhanced
    /// RTMP announcement).
    pub fn connect_with(&mut self, mut properties: HashMap<String, Amf0Value>) -> Vec<u8> {
        properties.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        let connect = RtmpMessage::Amf0Command {
            command_name: "connect".to_string(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(properties),
            additional_arguments: Vec::new(),
        };
        self.message(connect, 0, 0)
    }

    /// `connect`, `createStream`, `publish(name)` on message stream 1.
    pub fn publish_commands(&mut self, name: &str) -> Vec<u8> {
        let mut out = self.connect_app();
        out.extend(self.command("createStream", 2.0, 0, Vec::new()));
        out.extend(self.command(
            "publish",
            3.0,
            1,
            vec![
                Amf0Value::Utf8String(name.into()),
                Amf0Value::Utf8String("live".into()),
            ],
        ));
        out
    }

    /// Set Chunk Size: sent, and used for what this client sends next.
    pub fn set_chunk_size(&mut self, size: u32) -> Vec<u8> {
        self.chunks
            .set_max_chunk_size(size, RtmpTimestamp::new(0))
            .unwrap()
            .bytes
    }

    /// An AVC sequence header and a keyframe of `len` bytes (FLV video bodies).
    pub fn keyframe(&mut self, len: usize) -> Vec<u8> {
        let header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]);
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.resize(len, 0x65);
        let mut out = self.message(RtmpMessage::VideoData { data: header }, 1, 0);
        out.extend(self.message(RtmpMessage::VideoData { data: frame.into() }, 1, 40));
        out
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may close before taking everything: a failed write is fine.
        let _ = self.stream.write_all(bytes);
    }

    /// Reads until the server answers a publish request (within 3 s); its status code.
    pub fn publish_status(&mut self) -> String {
        let code = |seen: &[u8]| -> Option<String> {
            let prefix: &[u8] = b"NetStream.Publish.";
            let at = seen.windows(prefix.len()).position(|w| w == prefix)?;
            let code: Vec<u8> = seen[at..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.')
                .copied()
                .collect();
            (code.len() > prefix.len() + 3).then(|| String::from_utf8(code).unwrap())
        };
        let seen = read_until(&mut self.stream, Duration::from_secs(3), |seen| {
            code(seen).is_some()
        });
        code(&seen).expect("a publish status")
    }

    /// `connect("live")`, `createStream`, `play(name)` on message stream 1.
    pub fn play_commands(&mut self, name: &str) -> Vec<u8> {
        self.play_commands_with(name, HashMap::new())
    }

    /// [`RawClient::play_commands`] with more `connect` properties.
    pub fn play_commands_with(
        &mut self,
        name: &str,
        properties: HashMap<String, Amf0Value>,
    ) -> Vec<u8> {
        let mut out = self.connect_with(properties);
        out.extend(self.command("createStream", 2.0, 0, Vec::new()));
        out.extend(self.command("play", 3.0, 1, vec![Amf0Value::Utf8String(name.into())]));
        out
    }

    /// Reads the server's messages, exactly as sent (type, timestamp, body, after chunk
    /// reassembly), until `done` holds for them, the server closes, or `limit` passes.
    pub fn read_messages(
        &mut self,
        limit: Duration,
        done: impl Fn(&[MessagePayload]) -> bool,
    ) -> Vec<MessagePayload> {
        const SET_CHUNK_SIZE: u8 = 1;
        let deadline = Instant::now() + limit;
        let mut chunks = ChunkDeserializer::new();
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !done(&messages) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let n = match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut input = &buf[..n];
            while let Some(message) = chunks.get_next_message(input).expect("valid chunks") {
                input = &[];
                if message.type_id == SET_CHUNK_SIZE {
                    let size = u32::from_be_bytes(message.data[..4].try_into().unwrap());
                    chunks.set_max_chunk_size(size as usize).unwrap();
                }
                messages.push(message);
            }
        }
        messages
    }

    /// Reads (and drops) what the server sends until it closes.
    pub fn wait_closed(&mut self, limit: Duration) {
        read_until_closed(&mut self.stream, limit);
    }

    /// Sends a Window Acknowledgement Size every 200 ms (input, but no progress) until the
    /// server closes the connection, which must happen 0.9 to 4 s after `started`.
    pub fn keep_talking_until_closed(&mut self, started: Instant) {
        while started.elapsed() < Duration::from_secs(5) {
            let ack = self.message(RtmpMessage::WindowAcknowledgement { size: 2_500_000 }, 0, 0);
            self.send(&ack);
            if !self.stays_open(Duration::from_millis(200)) {
                break;
            }
        }
        let closed_after = started.elapsed();
        assert!(
            closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
            "closed after {closed_after:?}"
        );
    }

    /// True if the server keeps the connection open for `time`.
    pub fn stays_open(&mut self, time: Duration) -> bool {
        self.stream.set_read_timeout(Some(time)).unwrap();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return true,
                Err(_) => return false,
            }
        }
        true
    }
}
