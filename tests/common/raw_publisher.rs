//! A raw RTMP publisher: rml_rtmp's client session for the conversation, plus hand-made
//! chunks for what the session cannot send (empty and aggregate messages), and a socket of
//! its own (to reset the connection).

use super::raw_rtmp::{client_handshake, read_some};
use super::watch::Sent;
use super::{read_until_closed, WAIT};
use bytes::Bytes;
use corecast::flv::reader::{FlvTag, TagKind};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Chunk size this publisher announces (and uses for its hand-made chunks).
pub const RAW_CHUNK_SIZE: u32 = 4096;
/// The message stream the publisher publishes on: corecast answers the first
/// `createStream` of a connection with 1 (docs/ARCHITECTURE.md, "RTMP play").
pub const RAW_STREAM_ID: u32 = 1;
/// A chunk stream id the client session never uses (its serializer uses 2 to 6).
pub const RAW_CSID: u8 = 10;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_AGGREGATE: u8 = 22;

pub struct RawPublisher {
    pub stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl RawPublisher {
    /// Connects, handshakes, connects to `live` and publishes `name`; returns once the
    /// server accepted the publish request. Panics (with the reason) otherwise.
    pub fn connect(addr: SocketAddr, name: &str) -> RawPublisher {
        let deadline = Instant::now() + WAIT;
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to RTMP");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        let mut config = ClientSessionConfig::new();
        config.chunk_size = RAW_CHUNK_SIZE;
        config.tc_url = Some(format!("rtmp://{addr}/live"));
        let (session, initial) = ClientSession::new(config).expect("client session");
        let mut p = RawPublisher {
            stream,
            session,
            buf: vec![0; 64 * 1024],
        };

        let mut input = client_handshake(&mut p.stream, deadline);
        p.write_results(initial);
        let connect = p
            .session
            .request_connection("live".to_string())
            .expect("connect request");
        p.write_results([connect]);
        let mut requested = false;
        loop {
            // Every response to this input is written before the next request, so that
            // outbound packets stay in the session serializer's order.
            for event in p.handle(&input) {
                match event {
                    ClientSessionEvent::ConnectionRequestAccepted if !requested => {
                        let publish = p
                            .session
                            .request_publishing(name.to_string(), PublishRequestType::Live)
                            .expect("publish request");
                        p.write_results([publish]);
                        requested = true;
                    }
                    ClientSessionEvent::PublishRequestAccepted => return p,
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        panic!("connect rejected: {description}")
                    }
                    _ => {}
                }
            }
            let n = p.read_some(deadline);
            input = p.buf[..n].to_vec();
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    pub fn write_results(&mut self, results: impl IntoIterator<Item = ClientSessionResult>) {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.write(&packet.bytes);
            }
        }
    }

    /// Feeds server bytes to the session, writes its answers, returns its events.
    pub fn handle(&mut self, input: &[u8]) -> Vec<ClientSessionEvent> {
        let results = self
            .session
            .handle_input(input)
            .expect("server input decodes");
        let mut events = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => self.write(&packet.bytes),
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events
    }

    /// Blocking read of at least one byte before `deadline` (see [`read_some`]).
    fn read_some(&mut self, deadline: Instant) -> usize {
        read_some(&mut self.stream, &mut self.buf, deadline)
    }

    /// Services whatever the server sent (acknowledgements, pings) without blocking, so
    /// that the receive queue stays empty.
    pub fn drain(&mut self) {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut received = Vec::new();
        loop {
            match self.stream.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("publisher read: {e}"),
            }
        }
        self.stream.set_nonblocking(false).expect("blocking");
        if !received.is_empty() {
            self.handle(&received);
        }
    }

    pub fn metadata(&mut self) {
        let mut metadata = StreamMetadata::new();
        metadata.video_codec_id = Some(7);
        metadata.audio_codec_id = Some(10);
        metadata.encoder = Some("publisher_faults".to_string());
        let packet = self
            .session
            .publish_metadata(&metadata)
            .expect("metadata packet");
        self.write_results([packet]);
        self.drain();
    }

    /// One audio or video message through the client session (non-empty bodies only: the
    /// session's serializer writes nothing for an empty one).
    pub fn media(&mut self, kind: TagKind, ts: u32, data: Bytes) {
        assert!(!data.is_empty(), "use raw() for empty messages");
        let packet = match kind {
            TagKind::Audio => self
                .session
                .publish_audio_data(data, RtmpTimestamp::new(ts), false),
            TagKind::Video => self
                .session
                .publish_video_data(data, RtmpTimestamp::new(ts), false),
            other => panic!("not media: {other:?}"),
        }
        .expect("media packet");
        self.write_results([packet]);
        self.drain();
    }

    /// Sends fixture tags at their own timestamp plus `offset` (wrapping); script tags are
    /// skipped. Returns the media sent, with their raw timestamps.
    pub fn tags(&mut self, tags: &[FlvTag], offset: u32) -> Vec<Sent> {
        let mut sent = Vec::new();
        for tag in tags.iter().filter(|t| is_av(t)) {
            let ts = tag.timestamp.wrapping_add(offset);
            self.media(tag.kind, ts, tag.data.clone());
            sent.push(Sent::new(tag.kind, ts, tag.data.clone()));
        }
        sent
    }

    /// Writes one complete message in hand-made chunks (type 0 header on [`RAW_CSID`], type
    /// 3 continuations), on the published message stream.
    pub fn raw(&mut self, type_id: u8, ts: u32, body: &[u8]) {
        let bytes = raw_message(type_id, ts, body);
        self.write(&bytes);
        self.drain();
    }

    /// Resets the connection: SO_LINGER 0, then close, so the kernel sends an RST (and
    /// discards anything unsent) instead of a FIN.
    pub fn kill(self) {
        let socket = socket2::SockRef::from(&self.stream);
        socket
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        assert_eq!(
            socket.linger().expect("read SO_LINGER"),
            Some(Duration::ZERO),
            "closing will reset the connection"
        );
        drop(self);
    }

    /// Waits until the server closes the connection (EOF or reset); panics after `limit`.
    pub fn wait_closed(mut self, limit: Duration) {
        read_until_closed(&mut self.stream, limit);
    }

    /// Stops publishing cleanly (`deleteStream`, FIN) and waits briefly for the server's
    /// close.
    pub fn finish(mut self) {
        let results = self.session.stop_publishing().expect("deleteStream");
        self.write_results(results);
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        self.wait_closed(Duration::from_secs(5));
    }
}

/// One RTMP message in chunks of [`RAW_CHUNK_SIZE`] on [`RAW_CSID`].
pub fn raw_message(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
    let extended = ts >= 0x00ff_ffff;
    let field = if extended { 0x00ff_ffff } else { ts };
    let mut out = vec![RAW_CSID];
    out.extend_from_slice(&field.to_be_bytes()[1..]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&RAW_STREAM_ID.to_le_bytes());
    if extended {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    for (i, chunk) in body.chunks(RAW_CHUNK_SIZE as usize).enumerate() {
        if i > 0 {
            out.push(0xc0 | RAW_CSID);
            if extended {
                out.extend_from_slice(&ts.to_be_bytes());
            }
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// An FLV-tag-shaped sub-message of an aggregate message: header, body, back pointer.
/// `declared` is the body size written in the header (the real size unless testing a lie).
pub fn aggregate_part(type_id: u8, ts: u32, body: &[u8], declared: usize) -> Vec<u8> {
    let mut out = vec![type_id];
    out.extend_from_slice(&(declared as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    out
}

pub fn is_av(tag: &FlvTag) -> bool {
    matches!(tag.kind, TagKind::Audio | TagKind::Video)
}
