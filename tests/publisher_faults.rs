//! Faults on the publishing side, end to end over 127.0.0.1 with two shards:
//!
//! - malformed media from an otherwise valid publisher (truncated frames, empty messages,
//!   sequence headers cut short, a truncated aggregate);
//! - timestamps that jump backwards, jump forwards and wrap at 32 bits mid-stream;
//! - a publisher killed mid-stream (TCP reset), with and without a republish within
//!   `stream.republish_grace_ms`.
//!
//! Every viewer (HTTP-FLV, RTMP play, and HLS where it matters) is read on its own thread
//! while the publisher sends, and what it receives is compared, message by message, with
//! what the relay's documented timestamp rules (docs/ARCHITECTURE.md, "Timestamp rebasing")
//! make of what was published.

mod common;

use bytes::Bytes;
use common::ts_check::{check_segment, TsState};
use common::*;
use corecast::flv::reader::{FlvTag, TagKind};
use corecast_testkit::client::{ClientError, Pace, PlayEvent, Player};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A test configuration with the given republish grace period. The slow-viewer policy is
/// relaxed so that a reader thread descheduled for a moment on a busy machine is never
/// skipped ahead (which would make the message-by-message comparisons fail for the wrong
/// reason); `extra` adds whole sections other than `[stream]` and `[viewer]`.
fn config(grace_ms: u64, extra: &str) -> String {
    format!(
        "[stream]\nrepublish_grace_ms = {grace_ms}\nring_max_duration_ms = 30000\n\
         [viewer]\nskip_after_ms = 10000\ndisconnect_after_ms = 20000\n{extra}"
    )
}

/// HLS settings that keep every segment of a short test stream (the fixture's GOP is 1 s).
const HLS_KEEP_ALL: &str = "[hls]\ntarget_duration_ms = 1000\nwindow_segments = 60\n";

/// Generous bound for functional waits (the machine may be busy).
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// A raw RTMP publisher: rml_rtmp's client session for the conversation, plus hand-made
// chunks for what the session cannot send (empty and aggregate messages), and a socket of
// our own (to reset the connection).
// ---------------------------------------------------------------------------------------

/// Chunk size this publisher announces (and uses for its hand-made chunks).
const RAW_CHUNK_SIZE: u32 = 4096;
/// The message stream the publisher publishes on: corecast answers the first
/// `createStream` of a connection with 1 (docs/ARCHITECTURE.md, "RTMP play").
const RAW_STREAM_ID: u32 = 1;
/// A chunk stream id the client session never uses (its serializer uses 2 to 6).
const RAW_CSID: u8 = 10;
const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
const TYPE_AGGREGATE: u8 = 22;

struct RawPublisher {
    stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl RawPublisher {
    /// Connects, handshakes, connects to `live` and publishes `name`; returns once the
    /// server accepted the publish request. Panics (with the reason) otherwise.
    fn connect(addr: SocketAddr, name: &str) -> RawPublisher {
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

        let mut handshake = Handshake::new(PeerType::Client);
        p.write(&handshake.generate_outbound_p0_and_p1().expect("C0+C1"));
        let mut input = loop {
            let n = p.read_some(deadline);
            match handshake
                .process_bytes(&p.buf[..n])
                .expect("RTMP handshake")
            {
                HandshakeProcessResult::InProgress { response_bytes } => p.write(&response_bytes),
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    p.write(&response_bytes);
                    break remaining_bytes;
                }
            }
        };
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

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    fn write_results(&mut self, results: impl IntoIterator<Item = ClientSessionResult>) {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.write(&packet.bytes);
            }
        }
    }

    /// Feeds server bytes to the session, writes its answers, returns its events.
    fn handle(&mut self, input: &[u8]) -> Vec<ClientSessionEvent> {
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

    /// Blocking read of at least one byte before `deadline` (EINTR retried).
    fn read_some(&mut self, deadline: Instant) -> usize {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "RTMP set-up timed out");
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.stream.read(&mut self.buf) {
                Ok(0) => panic!("the server closed the connection during set-up"),
                Ok(n) => return n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read during set-up: {e}"),
            }
        }
    }

    /// Services whatever the server sent (acknowledgements, pings) without blocking, so
    /// that the receive queue stays empty.
    fn drain(&mut self) {
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

    fn metadata(&mut self) {
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
    fn media(&mut self, kind: TagKind, ts: u32, data: Bytes) {
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
    fn tags(&mut self, tags: &[FlvTag], offset: u32) -> Vec<Sent> {
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
    fn raw(&mut self, type_id: u8, ts: u32, body: &[u8]) {
        let bytes = raw_message(type_id, ts, body);
        self.write(&bytes);
        self.drain();
    }

    /// Resets the connection: SO_LINGER 0, then close, so the kernel sends an RST (and
    /// discards anything unsent) instead of a FIN.
    fn kill(self) {
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
    fn wait_closed(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the server kept the publisher open");
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.stream.read(&mut self.buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                        && Instant::now() < deadline => {}
                Err(e) => panic!("the server kept the publisher open: {e}"),
            }
        }
    }

    /// Stops publishing cleanly (`deleteStream`, FIN) and waits briefly for the server's
    /// close.
    fn finish(mut self) {
        let results = self.session.stop_publishing().expect("deleteStream");
        self.write_results(results);
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        self.wait_closed(Duration::from_secs(5));
    }
}

/// One RTMP message in chunks of [`RAW_CHUNK_SIZE`] on [`RAW_CSID`].
fn raw_message(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
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
fn aggregate_part(type_id: u8, ts: u32, body: &[u8], declared: usize) -> Vec<u8> {
    let mut out = vec![type_id];
    out.extend_from_slice(&(declared as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.push((ts >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    out
}

fn is_av(tag: &FlvTag) -> bool {
    matches!(tag.kind, TagKind::Audio | TagKind::Video)
}

// ---------------------------------------------------------------------------------------
// What was sent, and what the documented rules make of it
// ---------------------------------------------------------------------------------------

/// One audio or video message as a publisher sent it (raw timestamp) or as a viewer must
/// see it (outgoing timestamp).
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    kind: TagKind,
    ts: u32,
    data: Bytes,
}

impl Sent {
    fn new(kind: TagKind, ts: u32, data: Bytes) -> Sent {
        Sent { kind, ts, data }
    }
}

/// Audio and video of fixture tags at their own timestamps plus `offset` (wrapping), as
/// [`Publisher::replay`] sends them.
fn as_sent(tags: &[FlvTag], offset: u32) -> Vec<Sent> {
    tags.iter()
        .filter(|t| is_av(t))
        .map(|t| Sent::new(t.kind, t.timestamp.wrapping_add(offset), t.data.clone()))
        .collect()
}

/// The relay's documented timestamp rules (docs/ARCHITECTURE.md, "Timestamp rebasing";
/// `media::Rebaser`), used to compute what viewers must receive:
///
/// - the first publisher starts at 0; a later one (within the grace period) starts 40 ms
///   after the last outgoing timestamp;
/// - steps are taken as signed 32-bit differences (a wrap is not a jump);
/// - a step forward by more than 10 s or back by more than 1 s is a discontinuity: the
///   timeline continues 40 ms after the last outgoing timestamp;
/// - outgoing timestamps never decrease (an older message gets the previous time).
#[derive(Debug, Default)]
struct Timeline {
    last_raw: Option<u32>,
    unwrapped: i64,
    offset: i64,
    base: i64,
    last_out: i64,
    started: bool,
}

const GAP_MS: i64 = 40;
const MAX_FORWARD_MS: i64 = 10_000;
const MAX_BACKWARD_MS: i64 = 1_000;

impl Timeline {
    fn new_publisher(&mut self) {
        self.last_raw = None;
        self.base = if self.started {
            self.last_out + GAP_MS
        } else {
            0
        };
    }

    fn map(&mut self, raw: u32) -> u32 {
        match self.last_raw {
            None => {
                self.unwrapped = i64::from(raw);
                self.offset = self.base - self.unwrapped;
            }
            Some(prev) => {
                let step = i64::from(raw.wrapping_sub(prev) as i32);
                self.unwrapped += step;
                if !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&step) {
                    self.offset = self.last_out + GAP_MS - self.unwrapped;
                }
            }
        }
        self.last_raw = Some(raw);
        self.last_out = (self.unwrapped + self.offset).max(self.last_out);
        self.started = true;
        self.last_out as u32
    }

    /// What viewers must receive for `sent` (non-empty bodies; empty ones are dropped by
    /// the relay before they reach the timeline).
    fn expect(&mut self, sent: &[Sent]) -> Vec<Sent> {
        sent.iter()
            .filter(|s| !s.data.is_empty())
            .map(|s| Sent::new(s.kind, self.map(s.ts), s.data.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Viewers read on their own threads
// ---------------------------------------------------------------------------------------

/// How a viewer's connection ended.
#[derive(Debug, Default)]
struct Ending {
    /// RTMP: the player reported the end of the stream (`NetStream.Play.Stop`/`Complete`,
    /// `UnpublishNotify` or `StreamEOF`).
    stream_ended: bool,
    /// The server closed the connection cleanly (FLV: at a tag boundary).
    closed: bool,
    /// The read error that ended it, if any.
    error: Option<String>,
}

/// A viewer read on its own thread; what it receives arrives over a channel.
struct Watch {
    who: String,
    rx: mpsc::Receiver<Sent>,
    got: Vec<Sent>,
    handle: Option<thread::JoinHandle<Ending>>,
}

impl Watch {
    /// An HTTP-FLV viewer of `/live/{name}.flv`. Its thread panics on invalid FLV or on a
    /// response that ends mid-tag (see [`FlvViewer::next_tag`]).
    fn flv(server: &corecast::Server, name: &str) -> Watch {
        let mut viewer = FlvViewer::open(server.http_addr(), &format!("/live/{name}.flv"));
        assert_eq!(viewer.status, 200, "GET /live/{name}.flv");
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            while let Some(tag) = viewer.next_tag() {
                if tx
                    .send(Sent::new(tag.kind, tag.timestamp, tag.data))
                    .is_err()
                {
                    return Ending::default();
                }
            }
            Ending {
                closed: true,
                ..Ending::default()
            }
        });
        Watch {
            who: format!("FLV viewer of {name}"),
            rx,
            got: Vec::new(),
            handle: Some(handle),
        }
    }

    /// An RTMP player of `name` (corecast's client). Metadata events are not forwarded.
    fn rtmp(server: &corecast::Server, name: &str) -> Watch {
        let mut player = Player::connect(server.rtmp_addr(), "live", name, WAIT).expect("play");
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut ending = Ending::default();
            loop {
                let sent = match player.next_event() {
                    Ok(Some(PlayEvent::Video { timestamp, data })) => {
                        Sent::new(TagKind::Video, timestamp, data)
                    }
                    Ok(Some(PlayEvent::Audio { timestamp, data })) => {
                        Sent::new(TagKind::Audio, timestamp, data)
                    }
                    Ok(Some(PlayEvent::Metadata(_))) => continue,
                    Ok(Some(PlayEvent::StreamEnded)) => {
                        ending.stream_ended = true;
                        continue;
                    }
                    Ok(None) => {
                        ending.closed = true;
                        return ending;
                    }
                    Err(e) => {
                        ending.error = Some(e.to_string());
                        return ending;
                    }
                };
                if tx.send(sent).is_err() {
                    return ending;
                }
            }
        });
        Watch {
            who: format!("RTMP player of {name}"),
            rx,
            got: Vec::new(),
            handle: Some(handle),
        }
    }

    /// Waits up to `limit` for `cond` on everything received so far; panics with `what`
    /// (and the reader thread's own panic, if it died) when it does not hold in time.
    fn expect(&mut self, limit: Duration, what: &str, cond: impl Fn(&[Sent]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if cond(&self.got) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(sent) => self.got.push(sent),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(cond(&self.got), "{}: {what} (timed out)", self.who);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if cond(&self.got) {
                        return;
                    }
                    let ending = self.join();
                    panic!("{}: {what}, but the viewer ended: {ending:?}", self.who);
                }
            }
        }
    }

    /// Waits until the viewer has received `data` (a payload sent earlier).
    fn expect_payload(&mut self, data: &Bytes) {
        let data = data.clone();
        self.expect(WAIT, "a payload that was sent never arrived", move |got| {
            got.iter().any(|s| s.data == data)
        });
    }

    /// Waits for the viewer's connection to end; returns everything it received.
    fn finish(mut self, limit: Duration) -> (Vec<Sent>, Ending) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(sent) => self.got.push(sent),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: the connection did not end within {limit:?}", self.who)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let ending = self.join();
        (std::mem::take(&mut self.got), ending)
    }

    fn join(&mut self) -> Ending {
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(ending)) => ending,
            Some(Err(panic)) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{}: the reader thread panicked: {reason}", self.who)
            }
            None => Ending::default(),
        }
    }
}

/// Audio and video only (FLV viewers also get script tags).
fn media_of(got: &[Sent]) -> Vec<&Sent> {
    got.iter()
        .filter(|s| matches!(s.kind, TagKind::Audio | TagKind::Video))
        .collect()
}

/// Timestamps never decrease over everything the viewer received (metadata included).
fn assert_never_back(who: &str, got: &[Sent]) {
    for (i, pair) in got.windows(2).enumerate() {
        assert!(
            pair[1].ts >= pair[0].ts,
            "{who}: timestamp went back at message {}: {} -> {} ({:?} then {:?})",
            i + 1,
            pair[0].ts,
            pair[1].ts,
            pair[0].kind,
            pair[1].kind
        );
    }
}

/// The viewer's media end with exactly `expected`: same messages, same order, same
/// timestamps. `expected` is everything published after the viewer had caught up, so a
/// viewer that lost, duplicated, reordered or restamped anything fails here.
fn assert_tail(who: &str, got: &[Sent], expected: &[Sent]) {
    let media = media_of(got);
    assert!(
        media.len() >= expected.len(),
        "{who}: received {} media messages, expected at least {}",
        media.len(),
        expected.len()
    );
    let tail = &media[media.len() - expected.len()..];
    for (i, (g, e)) in tail.iter().zip(expected).enumerate() {
        assert!(
            g.kind == e.kind && g.data == e.data,
            "{who}: message {i} of {}: got {:?} at {} ms ({} bytes), expected {:?} at {} ms ({} bytes)",
            expected.len(),
            g.kind,
            g.ts,
            g.data.len(),
            e.kind,
            e.ts,
            e.data.len()
        );
        assert_eq!(
            g.ts,
            e.ts,
            "{who}: message {i} of {} ({:?}, {} bytes): timestamp",
            expected.len(),
            e.kind,
            e.data.len()
        );
    }
}

/// Position in `got` (media only) of the last message whose payload is `data`.
fn last_position(got: &[&Sent], data: &Bytes) -> usize {
    got.iter()
        .rposition(|s| s.data == *data)
        .expect("payload received")
}

// ---------------------------------------------------------------------------------------
// HLS
// ---------------------------------------------------------------------------------------

const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// Waits for the ended stream's playlist (`#EXT-X-ENDLIST`), fetches every segment it
/// lists, and checks them in order with the project's TS checker (structure, continuity
/// across segments, DTS never going back, each segment starting with an IDR after SPS and
/// PPS). Returns the playlist and the number of video frames over all segments.
fn check_final_hls(server: &corecast::Server, name: &str) -> (String, usize) {
    let addr = server.http_addr();
    let path = format!("/live/{name}.m3u8");
    let mut playlist = String::new();
    let ended = wait_until(WAIT, || {
        let Response { status, body, .. } = http_get(addr, &path);
        playlist = String::from_utf8_lossy(&body).to_string();
        status == 200 && playlist.contains("#EXT-X-ENDLIST")
    });
    assert!(ended, "{path} never ended:\n{playlist}");
    let segments: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(segments.len() >= 3, "few segments:\n{playlist}");
    let mut state = TsState::default();
    let mut video_frames = 0;
    for segment in segments {
        let Response {
            status,
            body: bytes,
            ..
        } = http_get(addr, &format!("/live/{segment}"));
        assert_eq!(status, 200, "{segment} listed but not served");
        let facts = check_segment(&bytes, &mut state, VIDEO_PID, AUDIO_PID);
        assert!(facts.video_frames > 0, "{segment}: no video: {facts:?}");
        video_frames += facts.video_frames;
    }
    (playlist, video_frames)
}

/// AVC frames that carry NAL units (packet type 1), the only video HLS muxes.
fn avc_frames(sent: &[Sent]) -> usize {
    sent.iter()
        .filter(|s| s.kind == TagKind::Video && s.data.len() > 5 && s.data[1] == 1)
        .count()
}

fn assert_no_panics_or_bad_input(server: &corecast::Server) {
    assert_eq!(
        total(server, |s| &s.rtmp_session_panics),
        0,
        "rml_rtmp panicked"
    );
    assert_eq!(
        total(server, |s| &s.rtmp_bad_input),
        0,
        "a connection was closed as bad input"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Malformed media from a valid publisher
// ---------------------------------------------------------------------------------------

/// A malformed message injected mid-stream.
struct Fault {
    what: &'static str,
    kind: TagKind,
    body: Vec<u8>,
}

fn faults() -> Vec<Fault> {
    let fault = |what, kind, body: &[u8]| Fault {
        what,
        kind,
        body: body.to_vec(),
    };
    vec![
        fault("video: codec byte only (inter)", TagKind::Video, &[0x27]),
        fault("video: codec byte only (key)", TagKind::Video, &[0x17]),
        fault(
            "AVC NALU whose 4-byte length points past the end",
            TagKind::Video,
            &[
                0x27, 0x01, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 0x41, 0x9a, 0x02,
            ],
        ),
        fault("empty audio message", TagKind::Audio, &[]),
        fault("empty video message", TagKind::Video, &[]),
        fault("AAC: sound header byte only", TagKind::Audio, &[0xaf]),
        fault(
            "AAC sequence header without its AudioSpecificConfig",
            TagKind::Audio,
            &[0xaf, 0x00],
        ),
        fault(
            "AVC sequence header cut short",
            TagKind::Video,
            &[0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00],
        ),
    ]
}

#[test]
fn malformed_media_mid_stream_is_contained_and_viewers_recover() {
    let server = start(&config(500, HLS_KEEP_ALL));
    let tags = fixture_tags();
    // Key frames of the fixture are at tags 3, 69, 137, ... (one a second).
    let (header_v, header_a) = (&tags[1], &tags[2]);
    assert!(header_v.is_sequence_header() && header_a.is_sequence_header());
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let mut all_sent = Vec::new();

    // Another stream, published normally, must not notice anything.
    let mut steady = publisher(&server, "steady");
    for tag in &tags[..30] {
        steady.send_tag(tag).expect("steady publishes");
    }
    let mut steady_viewer = Watch::flv(&server, "steady");
    steady_viewer.expect_payload(&tags[29].data);

    let mut faulty = RawPublisher::connect(server.rtmp_addr(), "faulty");
    faulty.metadata();
    let head = faulty.tags(&tags[..30], 0);
    timeline.expect(&head);
    all_sent.extend(head);
    let mut flv = Watch::flv(&server, "faulty");
    let mut rtmp = Watch::rtmp(&server, "faulty");
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);

    // From here on, viewers must receive exactly what the rules say.
    let mut sent = faulty.tags(&tags[30..69], 0);
    let at = tags[68].timestamp;
    let faults = faults();
    for (i, fault) in faults.iter().enumerate() {
        if fault.body.is_empty() {
            // The client session writes nothing for an empty message: hand-made chunk.
            let type_id = match fault.kind {
                TagKind::Audio => TYPE_AUDIO,
                _ => TYPE_VIDEO,
            };
            faulty.raw(type_id, at, &fault.body);
        } else {
            faulty.media(fault.kind, at, Bytes::from(fault.body.clone()));
        }
        sent.push(Sent::new(fault.kind, at, Bytes::from(fault.body.clone())));
        if i == 1 {
            // A video message of frame type 1 (key) without its AVC packet type is not a
            // start point (docs: "frame type 1 and, for AVC, packet type 1"): a viewer
            // joining now starts at the last real keyframe, tag 3.
            let mut mid = Watch::flv(&server, "faulty");
            mid.expect_payload(&Bytes::from_static(&[0x17]));
            let first_frame = mid.got.iter().find(|s| {
                s.kind == TagKind::Video && s.data.get(1) != Some(&0) && s.data.len() > 1
            });
            assert_eq!(
                first_frame.map(|s| &s.data),
                Some(&tags[3].data),
                "a viewer joining after the 1-byte 'keyframe' starts at tag 3"
            );
        }
    }
    // An encoder that reconfigures sends its sequence headers again before the next
    // keyframe; new viewers must get these, not the broken ones.
    for header in [header_v, header_a] {
        faulty.media(header.kind, at, header.data.clone());
        sent.push(Sent::new(header.kind, at, header.data.clone()));
    }
    sent.extend(faulty.tags(&tags[69..140], 0));
    // The stream goes on: a new viewer starts cleanly with the good headers.
    flv.expect_payload(&tags[139].data);
    let mut late = Watch::flv(&server, "faulty");
    // It starts at the newest keyframe (tag 137): metadata, headers, tags 137 to 139.
    late.expect_payload(&tags[139].data);
    let start: Vec<FlvTag> = late
        .got
        .iter()
        .map(|s| FlvTag {
            kind: s.kind,
            timestamp: s.ts,
            data: s.data.clone(),
        })
        .collect();
    assert_decodable_start(&start);
    let late_headers: Vec<&Bytes> = late.got[1..3].iter().map(|s| &s.data).collect();
    assert!(
        late_headers.contains(&&header_v.data) && late_headers.contains(&&header_a.data),
        "a viewer joining after the broken headers gets the good ones sent since"
    );
    sent.extend(faulty.tags(&tags[140..], 0));

    // Other streams are unaffected.
    for tag in &tags[30..100] {
        steady.send_tag(tag).expect("steady publishes");
    }
    steady_viewer.expect_payload(&tags[99].data);
    assert_eq!(total(&server, |s| &s.publishers), 2, "both still publish");
    assert_no_panics_or_bad_input(&server);

    faulty.finish();
    steady.finish().expect("steady finishes");
    let expected = timeline.expect(&sent);
    all_sent.extend(sent.iter().cloned());
    assert!(
        expected.iter().all(|e| !e.data.is_empty()) && expected.len() == sent.len() - 2,
        "the two empty messages are dropped, every other one is relayed"
    );
    // The viewers that were there before the faults get everything, faults included; the
    // late one (joined at tag 137) gets the rest of the stream.
    let late_part = &expected[expected.len() - 200..];
    for (watch, must_see) in [
        (flv, &expected[..]),
        (rtmp, &expected[..]),
        (late, late_part),
    ] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(
            ending.closed,
            "{who}: connection closed cleanly: {ending:?}"
        );
        assert_never_back(&who, &got);
        assert!(
            got.iter().all(|s| !s.data.is_empty()),
            "{who}: received an empty message"
        );
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_tail(&who, &got, must_see);
        if must_see.len() == expected.len() {
            // Spelled out: non-empty malformed messages are relayed untouched.
            for fault in faults.iter().filter(|f| !f.body.is_empty()) {
                assert!(
                    got.iter()
                        .any(|s| s.kind == fault.kind && s.data == fault.body),
                    "{who}: {} was relayed as sent",
                    fault.what
                );
            }
        }
    }
    steady_viewer.finish(WAIT);

    // HLS: the relay's own remux. Broken configurations and frames are refused by the
    // muxer (counted), the previous configuration stays in force, and every segment, those
    // made after the faults included, passes the TS checker.
    let (playlist, video_frames) = check_final_hls(&server, "faulty");
    assert_eq!(
        total(&server, |s| &s.hls_errors),
        3,
        "the truncated NALU, the empty AAC config and the short AVC config are refused"
    );
    assert_eq!(
        video_frames,
        avc_frames(&all_sent) - 1,
        "every good AVC frame (not the truncated one) is in the segments:\n{playlist}"
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// The only malformed media documented to close a publisher: an aggregate message (type
/// 22) whose sub-messages run past its end. The publisher is closed and counted, the
/// stream enters its grace period, and a republish continues for the viewers.
#[test]
fn truncated_aggregate_closes_the_publisher_and_a_republish_continues() {
    let server = start(&config(4000, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let mut first = RawPublisher::connect(server.rtmp_addr(), "agg");
    first.metadata();
    timeline.expect(&first.tags(&tags[..30], 0));
    let mut flv = Watch::flv(&server, "agg");
    let mut rtmp = Watch::rtmp(&server, "agg");
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);

    // A well-formed aggregate of tags 30..40 is split into its messages.
    let parts: Vec<&FlvTag> = tags[30..40].iter().filter(|t| is_av(t)).collect();
    let aggregate: Vec<u8> = parts
        .iter()
        .flat_map(|t| {
            let kind = if t.kind == TagKind::Audio {
                TYPE_AUDIO
            } else {
                TYPE_VIDEO
            };
            aggregate_part(kind, t.timestamp, &t.data, t.data.len())
        })
        .collect();
    first.raw(TYPE_AGGREGATE, parts[0].timestamp, &aggregate);
    let mut expected = timeline.expect(&as_sent(&tags[30..40], 0));
    flv.expect_payload(&parts[parts.len() - 1].data);
    rtmp.expect_payload(&parts[parts.len() - 1].data);

    // One that announces 1000 body bytes and carries 20.
    let t = &tags[40];
    let mut truncated = aggregate_part(TYPE_VIDEO, t.timestamp, &t.data[..20], 1000);
    truncated.truncate(11 + 20);
    first.raw(TYPE_AGGREGATE, t.timestamp, &truncated);
    first.wait_closed(WAIT);
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.rtmp_bad_input) == 1),
        "counted as bad input"
    );
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.publishers) == 0),
        "the publisher is gone"
    );
    assert_eq!(total(&server, |s| &s.rtmp_session_panics), 0);
    assert_eq!(total(&server, |s| &s.streams), 1, "in its grace period");

    let mut second = publisher(&server, "agg");
    second
        .replay(&tags, Pace::AsFastAsPossible, 0)
        .expect("republish");
    second.finish().expect("finish");
    timeline.new_publisher();
    expected.extend(timeline.expect(&as_sent(&tags, 0)));
    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        assert_never_back(&who, &got);
        assert!(
            !got.iter().any(|s| s.data == t.data[..20]),
            "{who}: the truncated aggregate's part was not delivered"
        );
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 1);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 2. Timestamps that jump and wrap
// ---------------------------------------------------------------------------------------

#[test]
fn timestamp_jumps_and_wraps_never_go_back_for_flv_rtmp_or_hls() {
    let server = start(&config(500, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut p = publisher(&server, "jumpy");
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    // Sections of the clip, each starting at a keyframe, with the raw clock moved as an
    // encoder might move it (the first section only gets the viewers started).
    let back = 0u32.wrapping_sub(tags[137].timestamp); // restarts at 0: ~1.5 s back
    let forward = 3_600_000; // +1 hour
    let wrap = 0xffff_ff00u32.wrapping_sub(tags[273].timestamp); // wraps 256 ms in
    let small_back = 0u32.wrapping_sub(500); // 0.5 s back: jitter, clamped
    let wrap_range = 273..tags.len();
    let sections: [(&str, std::ops::Range<usize>, u32); 6] = [
        ("start", 0..30, 0),
        ("before the jumps", 30..69, 0),
        ("clock back 0.5 s", 69..137, small_back),
        ("clock back ~1.5 s", 137..205, back),
        ("clock forward 1 h", 205..273, forward),
        (
            "from 0xFFFF_FF00 across the 32-bit wrap",
            wrap_range.clone(),
            wrap,
        ),
    ];

    p.replay(&tags[sections[0].1.clone()], Pace::AsFastAsPossible, 0)
        .expect("publish");
    timeline.expect(&as_sent(&tags[sections[0].1.clone()], 0));
    let mut flv = Watch::flv(&server, "jumpy");
    let mut rtmp = Watch::rtmp(&server, "jumpy");
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);

    let mut expected = Vec::new();
    let mut firsts = Vec::new();
    for (what, range, offset) in sections.iter().skip(1) {
        let slice = &tags[range.clone()];
        p.replay(slice, Pace::AsFastAsPossible, *offset)
            .expect("publish");
        let sent = as_sent(slice, *offset);
        firsts.push((*what, sent[0].clone()));
        expected.extend(timeline.expect(&sent));
        // Media keep flowing after each change of clock.
        let last = sent.last().expect("media").data.clone();
        flv.expect_payload(&last);
        rtmp.expect_payload(&last);
    }
    let wrapped_raw = as_sent(&tags[wrap_range], wrap);
    let after_wrap = wrapped_raw
        .iter()
        .position(|s| s.ts < 0x8000_0000)
        .expect("the raw clock wrapped");
    assert!(wrapped_raw[0].ts >= 0xffff_ff00 && after_wrap > 0);
    p.finish().expect("finish");

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);

        // The documented behaviour, spelled out at each change of clock. A step back of at
        // most 1 s is clamped; a jump back by more than 1 s, forward by more than 10 s (not
        // passed through), or into the wrap section (from 1 h to 0xFFFF_FF00: a step back,
        // as a signed 32-bit difference) continues 40 ms after the previous message.
        let media = media_of(&got);
        let (what, first) = &firsts[1];
        let at = last_position(&media, &first.data);
        assert_eq!(
            media[at].ts,
            media[at - 1].ts,
            "{who}: {what}: a step back of at most 1 s is not a discontinuity: the message \
             is stamped with the previous one's time"
        );
        for (what, first) in &firsts[2..] {
            let at = last_position(&media, &first.data);
            assert_eq!(
                media[at].ts,
                media[at - 1].ts + 40,
                "{who}: {what}: the timeline continues 40 ms after the last message"
            );
        }
        // Across the 32-bit wrap itself, time runs on by the raw step (which is not 40 ms
        // here, so a wrap taken for a jump would show).
        let before = &wrapped_raw[after_wrap - 1];
        let after = &wrapped_raw[after_wrap];
        let raw_step = after.ts.wrapping_sub(before.ts);
        assert!(raw_step > 0 && raw_step != 40, "fixture: step {raw_step}");
        let (i, j) = (
            last_position(&media, &before.data),
            last_position(&media, &after.data),
        );
        assert_eq!(j, i + 1, "{who}: consecutive across the wrap");
        assert_eq!(
            media[j].ts - media[i].ts,
            raw_step,
            "{who}: across the wrap ({:#x} -> {:#x}) time advances by the raw step",
            before.ts,
            after.ts
        );
        let last = media.last().expect("media").ts;
        assert!(
            last < 10_000,
            "{who}: the whole 6 s clip, four clock changes included, ends at {last} ms"
        );
    }

    let (playlist, video_frames) = check_final_hls(&server, "jumpy");
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags, 0)),
        "every frame is in the segments:\n{playlist}"
    );
    assert_eq!(total(&server, |s| &s.hls_errors), 0);
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 3. A publisher killed mid-stream
// ---------------------------------------------------------------------------------------

/// How a test publisher goes away.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    /// SO_LINGER 0 and close: a TCP reset.
    Reset,
    /// A plain close (FIN) without `deleteStream`, as when an encoder process dies.
    Close,
}

#[test]
fn publisher_reset_mid_stream_and_republished_within_grace_keeps_viewers() {
    killed_and_republished_within_grace(Kill::Reset, "phoenix");
}

#[test]
fn publisher_closed_without_delete_stream_and_republished_within_grace_keeps_viewers() {
    killed_and_republished_within_grace(Kill::Close, "lazarus");
}

/// A publisher goes away in the middle of a message (`kill`), and a new one publishes the
/// same stream, its clock restarted at 0, within the grace period: an HTTP-FLV viewer and
/// an RTMP player connected before keep their connections and receive everything from both
/// publishers, time going on 40 ms after the first publisher's last message.
fn killed_and_republished_within_grace(kill: Kill, name: &str) {
    let grace = Duration::from_millis(5000);
    let server = start(&config(grace.as_millis() as u64, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let mut first = RawPublisher::connect(server.rtmp_addr(), name);
    first.metadata();
    timeline.expect(&first.tags(&tags[..30], 0));
    let mut flv = Watch::flv(&server, name);
    let mut rtmp = Watch::rtmp(&server, name);
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);

    let mut expected = timeline.expect(&first.tags(&tags[30..120], 0));
    flv.expect_payload(&tags[119].data);
    rtmp.expect_payload(&tags[119].data);
    // Half of the next video frame, then the publisher dies: that frame must never reach
    // anyone.
    let cut = &tags[120..]
        .iter()
        .find(|t| t.kind == TagKind::Video && t.data.len() > 200)
        .expect("a video frame");
    let message = raw_message(TYPE_VIDEO, cut.timestamp, &cut.data);
    first.write(&message[..message.len() / 2]);
    match kill {
        Kill::Reset => first.kill(),
        Kill::Close => drop(first),
    }
    let killed = Instant::now();

    assert!(
        wait_until(WAIT, || total(&server, |s| &s.publishers) == 0),
        "the server noticed that the publisher is gone ({kill:?})"
    );
    assert_eq!(total(&server, |s| &s.streams), 1, "the stream waits");
    // During the grace period the stream still answers new viewers.
    let mut during = FlvViewer::open(server.http_addr(), &format!("/live/{name}.flv"));
    assert_eq!(
        during.status, 200,
        "viewers can still join during the grace"
    );
    assert!(during.next_tag().is_some(), "and get the stream's headers");
    drop(during);

    let mut second = publisher(&server, name);
    assert!(
        killed.elapsed() < grace,
        "the republish is within the grace period (took {:?})",
        killed.elapsed()
    );
    second
        .replay(&tags, Pace::AsFastAsPossible, 0)
        .expect("republish");
    second.finish().expect("finish");
    timeline.new_publisher();
    let republished = timeline.expect(&as_sent(&tags, 0));
    let resume_at = republished[0].ts;
    expected.extend(republished);

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(grace + WAIT);
        assert!(ending.closed, "{who}: closed cleanly: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_never_back(&who, &got);
        // Everything after the catch-up point, from both publishers, in order (so nothing
        // of the frame cut by the reset), with the second publisher's clock (restarted at
        // 0) continuing 40 ms after the first's.
        assert_tail(&who, &got, &expected);
        let media = media_of(&got);
        let at = last_position(&media, &tags[1].data);
        assert_eq!(
            (media[at].ts, media[at - 1].ts + 40),
            (resume_at, resume_at),
            "{who}: the new publisher's first message comes 40 ms after the last one"
        );
    }
    assert_no_panics_or_bad_input(&server);
    assert_eq!(total(&server, |s| &s.viewers_ended_with_stream), 2);
    server.stop();
}

#[test]
fn publisher_gone_for_good_ends_the_stream_after_the_grace_period() {
    let grace = Duration::from_millis(1500);
    let server = start(&config(grace.as_millis() as u64, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let mut p = RawPublisher::connect(server.rtmp_addr(), "gone");
    p.metadata();
    timeline.expect(&p.tags(&tags[..30], 0));
    let mut flv = Watch::flv(&server, "gone");
    let mut rtmp = Watch::rtmp(&server, "gone");
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);
    let expected = timeline.expect(&p.tags(&tags[30..100], 0));
    flv.expect_payload(&tags[99].data);
    rtmp.expect_payload(&tags[99].data);
    p.kill();
    let killed = Instant::now();

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(grace + WAIT);
        let ended_after = killed.elapsed();
        // The end comes no earlier than the grace period after the reset (the server
        // notices the reset after it happened, then waits the whole period).
        assert!(
            ended_after >= grace - Duration::from_millis(100),
            "{who}: the stream ended {ended_after:?} after the reset, before the grace period"
        );
        assert!(ending.closed, "{who}: closed cleanly: {ending:?}");
        assert!(ending.error.is_none(), "{who}: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(
                ending.stream_ended,
                "{who}: end of stream (NetStream.Play.Complete) reported before the close"
            );
        }
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.viewers_ended_with_stream), 2);
    assert!(wait_until(WAIT, || total(&server, |s| &s.streams) == 0));

    // The stream is gone: players are refused, HTTP-FLV gets 404.
    match Player::connect(server.rtmp_addr(), "live", "gone", WAIT) {
        Err(ClientError::Rejected { code, .. }) => {
            assert_eq!(code, "NetStream.Play.StreamNotFound")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("played an ended stream"),
    }
    assert_eq!(
        FlvViewer::open(server.http_addr(), "/live/gone.flv").status,
        404
    );
    // A publish after the grace period is a new stream, from timestamp 0 again.
    let mut again = publisher(&server, "gone");
    for tag in &tags[..30] {
        again.send_tag(tag).expect("publish again");
    }
    let mut fresh = Watch::flv(&server, "gone");
    fresh.expect_payload(&tags[29].data);
    let key = fresh
        .got
        .iter()
        .find(|s| {
            s.kind == TagKind::Video && s.data.first() == Some(&0x17) && s.data.get(1) == Some(&1)
        })
        .expect("a keyframe")
        .ts;
    assert_eq!(key, 0, "the new stream's timeline starts at 0");
    again.finish().expect("finish");
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// A keyframe whose NAL unit length points past its end, where a segment may close. The HLS
/// muxer refuses it (`hls_errors`) before it closes or opens a segment, and leaves out the
/// inter frames of its GOP: every segment still starts with an IDR. (Before the fix, the
/// keyframe opened a segment that then started with P-frames.)
#[test]
fn truncated_keyframe_neither_closes_nor_opens_an_hls_segment() {
    let server = start(&config(300, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let mut p = RawPublisher::connect(server.rtmp_addr(), "cutkey");
    p.metadata();
    timeline.expect(&p.tags(&tags[..30], 0));
    let mut flv = Watch::flv(&server, "cutkey");
    let mut rtmp = Watch::rtmp(&server, "cutkey");
    flv.expect_payload(&tags[29].data);
    rtmp.expect_payload(&tags[29].data);

    let mut sent = p.tags(&tags[30..137], 0);
    // Tag 137 is the keyframe at 2000 ms, when the segment started at 1000 ms is due to
    // close: its first NAL unit announces 16 KiB and the message ends 4 bytes later.
    let key = &tags[137];
    assert!(key.is_video_keyframe() && !key.is_sequence_header());
    let mut cut = key.data[..13].to_vec();
    cut[5..9].copy_from_slice(&0x4000u32.to_be_bytes());
    let cut = Bytes::from(cut);
    p.media(TagKind::Video, key.timestamp, cut.clone());
    sent.push(Sent::new(TagKind::Video, key.timestamp, cut));
    sent.extend(p.tags(&tags[138..], 0));
    p.finish();

    // HTTP-FLV and RTMP relay it untouched and go on.
    let expected = timeline.expect(&sent);
    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.hls_errors), 1, "the frame is refused");
    // Every segment passes the checker, and the refused keyframe's GOP is left out of HLS.
    let (_, video_frames) = check_final_hls(&server, "cutkey");
    let gop_end = tags[138..]
        .iter()
        .position(|t| t.is_video_keyframe() && !t.is_sequence_header())
        .map_or(tags.len(), |i| 138 + i);
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags[..137], 0)) + avc_frames(&as_sent(&tags[gop_end..], 0))
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// A stream whose first AVC sequence header is cut short, the good one arriving later,
/// before an inter frame. The stream has video, so its HLS segments start at video
/// keyframes the muxer can use: the first is the keyframe after the good header, and its
/// segment's PMT lists both tracks. (Before the fix, an unusable keyframe opened a segment
/// whose PMT listed only audio, and the inter frames after the good header went into it.)
#[test]
fn video_configured_late_starts_hls_at_its_first_keyframe() {
    let server = start(&config(300, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let mut p = RawPublisher::connect(server.rtmp_addr(), "lateconfig");
    p.metadata();
    let broken = Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 0x01, 0x64]);
    p.media(TagKind::Video, 0, broken.clone());
    let mut head = vec![Sent::new(TagKind::Video, 0, broken)];
    head.extend(p.tags(&tags[2..30], 0));
    timeline.expect(&head);
    let mut flv = Watch::flv(&server, "lateconfig");
    flv.expect_payload(&tags[29].data);
    let mut sent = p.tags(&tags[30..50], 0);
    let at = tags[50].timestamp;
    p.media(TagKind::Video, at, tags[1].data.clone());
    sent.push(Sent::new(TagKind::Video, at, tags[1].data.clone()));
    sent.extend(p.tags(&tags[50..], 0));
    p.finish();
    let expected = timeline.expect(&sent);

    let (got, ending) = flv.finish(WAIT);
    assert!(ending.closed, "{ending:?}");
    assert_never_back("FLV viewer", &got);
    assert_tail("FLV viewer", &got, &expected);
    assert_eq!(
        total(&server, |s| &s.hls_errors),
        1,
        "the short header is refused"
    );
    let (_, video_frames) = check_final_hls(&server, "lateconfig");
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags[69..], 0)),
        "from the first keyframe after the good header on, every frame is muxed"
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}
