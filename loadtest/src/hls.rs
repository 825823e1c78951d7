//! HLS viewers on a glommio executor: each behaves like a player on a live playlist and
//! measures what it sees.
//!
//! A viewer reloads the media playlist as RFC 8216 §6.3.4 asks (a target duration after the
//! previous load began, or half of one when the reload brought nothing new), fetches every
//! new segment once, in order, over one keep-alive HTTP/1.1 connection (reopened when the
//! server closes it), and records request times, startup, stalls, 404s and errors into an
//! [`HlsStats`] shared by a group of viewers. Probes also demultiplex each segment's MPEG-TS
//! and read the publisher's SEI send-time stamps ([`crate::sei`]) for end-to-end latency;
//! other viewers only count bytes.
//!
//! The decisions are pure functions, tested on their own: [`plan`] (which segments a playlist
//! load makes due), [`reload_after`] (when to reload), [`StallClock`] (what is a stall) and
//! [`StampReader`] (MPEG-TS to stamps).
//!
//! Everything is bounded: response heads ([`MAX_HEAD`]), bodies ([`MAX_BODY`]), each request
//! ([`REQUEST_TIMEOUT`]) and the viewer's run (its deadline).

use crate::sei;
use corecast_testkit::ts::{self, TsPayload, TsReader};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use m3u8_rs::{MediaPlaylist, Playlist};
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::TransportScramblingControl;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted (playlist or segment).
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Longest a request may take, (re)connecting included, before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer for bodies that are only counted: small, since a load test holds thousands of
/// viewers.
const READ_BUFFER: usize = 16 * 1024;
/// Bytes asked for per read while a response head comes in.
const HEAD_READ: usize = 2048;
/// Most headers parsed in a response head.
const MAX_HEADERS: usize = 64;

/// Where a new HLS viewer starts in the live playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsStart {
    /// At the newest listed segment (the same as `SegmentsBack(1)`): lowest latency.
    LiveEdge,
    /// This many segments before the end of the playlist, as players do (RFC 8216 §6.3.3:
    /// not less than three target durations from the end). `SegmentsBack(0)` waits for the
    /// first segment that appears after joining.
    SegmentsBack(usize),
}

impl Default for HlsStart {
    /// Three segments back, as players do.
    fn default() -> Self {
        HlsStart::SegmentsBack(3)
    }
}

impl HlsStart {
    /// How many of the listed segments a viewer joining a live playlist fetches.
    fn segments_back(self) -> usize {
        match self {
            HlsStart::LiveEdge => 1,
            HlsStart::SegmentsBack(n) => n,
        }
    }
}

/// How HLS viewers behave.
#[derive(Debug, Clone)]
pub struct HlsOptions {
    /// Where a viewer starts in the live playlist.
    pub start: HlsStart,
    /// No new segment for longer than this, while the stream is live, is a stall.
    pub stall: Duration,
    /// Probe: demultiplex every segment and measure latency from its SEI send-time stamps.
    pub probe: bool,
}

impl Default for HlsOptions {
    /// Three segments back; a stall after 6 s without a new segment (three of corecast's
    /// default 2 s target durations); no probing.
    fn default() -> Self {
        HlsOptions {
            start: HlsStart::default(),
            stall: Duration::from_secs(6),
            probe: false,
        }
    }
}

/// What HLS viewers measured; one per group of viewers, shared through
/// `Rc<RefCell<HlsStats>>`. Histograms are in nanoseconds.
#[derive(Debug, Clone)]
pub struct HlsStats {
    /// Request issued (a reconnect included) to full response received, for every response
    /// to a playlist or segment request, whatever its status.
    pub request: Histogram<u64>,
    /// Probes only: segment fully received minus the send time of the last stamped frame in
    /// it (how long after the publisher sent the segment's last frame the viewer had it).
    pub segment_latency: Histogram<u64>,
    /// Probes only: for every stamped frame, segment fully received minus the frame's send
    /// time.
    pub frame_latency: Histogram<u64>,
    /// First playlist request to first segment fully received.
    pub startup: Histogram<u64>,
    /// Playlists received and parsed.
    pub playlists: u64,
    /// Segments received (status 200, body complete).
    pub segments: u64,
    /// 404 responses (a segment that expired before it was fetched, or a playlist of a
    /// stream that is gone).
    pub not_found: u64,
    /// Gaps between new segments longer than [`HlsOptions::stall`], each counted once.
    pub stalls: u64,
    /// Other HTTP statuses, unparsable playlists, connection errors and timeouts.
    pub errors: u64,
    /// Segments that slid out of the playlist window before the viewer could fetch them
    /// (the viewer fell behind); not requested, so not counted as 404s.
    pub skipped: u64,
    /// Segments received that were marked EXT-X-DISCONTINUITY (the publisher reconnected).
    pub discontinuities: u64,
}

/// A latency histogram: 1 µs to one hour, 3 significant digits, in nanoseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("static bounds are valid")
}

impl Default for HlsStats {
    fn default() -> Self {
        HlsStats {
            request: histogram(),
            segment_latency: histogram(),
            frame_latency: histogram(),
            startup: histogram(),
            playlists: 0,
            segments: 0,
            not_found: 0,
            stalls: 0,
            errors: 0,
            skipped: 0,
            discontinuities: 0,
        }
    }
}

impl HlsStats {
    /// Adds `other` into `self` (histograms and counters).
    pub fn merge(&mut self, other: &HlsStats) {
        merge_histogram(&mut self.request, &other.request);
        merge_histogram(&mut self.segment_latency, &other.segment_latency);
        merge_histogram(&mut self.frame_latency, &other.frame_latency);
        merge_histogram(&mut self.startup, &other.startup);
        self.playlists += other.playlists;
        self.segments += other.segments;
        self.not_found += other.not_found;
        self.stalls += other.stalls;
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.discontinuities += other.discontinuities;
    }
}

/// Adds `from` into `into`; values beyond `into`'s range are clamped to it (only possible
/// when a caller replaced a histogram with one of other bounds).
fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// A nanosecond count of `d` for a histogram.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---- playlist logic (pure) ----------------------------------------------------------------

/// A segment a viewer is to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Media sequence number.
    pub seq: u64,
    /// URI as listed (usually relative to the playlist; see [`segment_path`]).
    pub uri: String,
    /// EXT-X-DISCONTINUITY precedes it.
    pub discontinuity: bool,
}

/// What one playlist load makes due.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Segments to fetch, in order.
    pub due: Vec<Due>,
    /// Media sequence number of the segment to fetch after `due`: the cursor to keep.
    pub next: u64,
    /// Segments after the cursor that slid out of the window before they were fetched.
    pub skipped: u64,
    /// The playlist has EXT-X-ENDLIST: once `due` is fetched, the stream is over.
    pub ended: bool,
}

/// Which segments of `playlist` are due.
///
/// `next` is the media sequence number of the next segment to fetch, `None` before the first
/// load. On the first load a live playlist is joined `start` segments from its end; a
/// playlist that has EXT-X-ENDLIST is fetched from its first segment, as players do with a
/// finished presentation. Afterwards every segment from `next` on is due; if the window slid
/// past `next`, fetching resumes at the first listed segment and the gap is `skipped`. A
/// playlist that lists nothing at or after `next` (a shard's snapshot a little behind the one
/// loaded before, after a reconnect) makes nothing due and keeps the cursor.
pub fn plan(playlist: &MediaPlaylist, next: Option<u64>, start: HlsStart) -> Step {
    let first = playlist.media_sequence;
    let listed = playlist.segments.len();
    // Index of the first due segment in the playlist.
    let (offset, skipped) = match next {
        None if playlist.end_list => (0, 0),
        None => (listed - start.segments_back().min(listed), 0),
        Some(n) if n < first => (0, first - n),
        Some(n) => (usize::try_from(n - first).unwrap_or(usize::MAX), 0),
    };
    // Sequence numbers come from the server: saturate rather than overflow on absurd ones.
    let due: Vec<Due> = playlist
        .segments
        .iter()
        .enumerate()
        .skip(offset)
        .map(|(i, s)| Due {
            seq: first.saturating_add(i as u64),
            uri: s.uri.clone(),
            discontinuity: s.discontinuity,
        })
        .collect();
    let next = match next {
        Some(n) if n >= first => n.saturating_add(due.len() as u64),
        _ => first.saturating_add((offset + due.len()) as u64),
    };
    Step {
        due,
        next,
        skipped,
        ended: playlist.end_list,
    }
}

/// How long after a playlist load began the next one should begin (RFC 8216 §6.3.4): the
/// target duration if the load `changed` anything (or was the first), half of it if not. A
/// target duration of 0 (invalid) counts as one second.
pub fn reload_after(target_duration_s: u64, changed: bool) -> Duration {
    let target = Duration::from_secs(target_duration_s.max(1));
    if changed {
        target
    } else {
        target / 2
    }
}

/// Parses a media playlist. A master playlist is an error: variant streams are not followed.
pub fn parse_playlist(body: &[u8]) -> Result<MediaPlaylist, HlsError> {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MediaPlaylist(playlist)) => Ok(playlist),
        Ok(Playlist::MasterPlaylist(_)) => Err(HlsError::Playlist(
            "a master playlist (variant streams are not followed)".into(),
        )),
        Err(err) => Err(HlsError::Playlist(format!(
            "not an M3U8 media playlist ({})",
            err.map(|e| e.code)
        ))),
    }
}

/// The request path of segment `uri` listed in the playlist at `playlist_path`: relative
/// URIs resolve against the playlist's directory; absolute ones (`/…`, `http://host/…`) keep
/// their path, requested from the viewer's own target. `None` for URIs that cannot go into a
/// request line (`https://`, whitespace, control characters, `..`).
pub fn segment_path(playlist_path: &str, uri: &str) -> Option<String> {
    if uri.is_empty()
        || uri.bytes().any(|b| b.is_ascii_control() || b == b' ')
        || uri.split('/').any(|part| part == "..")
    {
        return None;
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        return Some(
            rest.find('/')
                .map_or_else(|| "/".into(), |i| rest[i..].into()),
        );
    }
    if uri.contains("://") {
        return None;
    }
    if uri.starts_with('/') {
        return Some(uri.into());
    }
    let dir = &playlist_path[..=playlist_path.rfind('/')?];
    Some(format!("{dir}{uri}"))
}

/// Counts stalls: gaps between newly fetched segments longer than a limit, each gap once,
/// as soon as it is seen (on a reload while waiting, or when the next segment arrives).
#[derive(Debug, Clone)]
pub struct StallClock {
    limit: Duration,
    last: Option<Instant>,
    counted: bool,
}

impl StallClock {
    /// A clock for gaps longer than `limit`. It starts at the first segment: a viewer that
    /// never gets one shows as a missing startup sample, not as a stall.
    pub fn new(limit: Duration) -> Self {
        StallClock {
            limit,
            last: None,
            counted: false,
        }
    }

    /// A new segment arrived at `now`; true if that ends a stall not counted yet.
    pub fn segment(&mut self, now: Instant) -> bool {
        let stall = self.check(now);
        self.last = Some(now);
        self.counted = false;
        stall
    }

    /// True if the gap open at `now` just became a stall (once per gap).
    pub fn check(&mut self, now: Instant) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        if self.counted || now.saturating_duration_since(last) <= self.limit {
            return false;
        }
        self.counted = true;
        true
    }
}

// ---- MPEG-TS to stamps (pure) -------------------------------------------------------------

/// Reads SEI send-time stamps out of MPEG-TS segments with the test kit's TS reader
/// ([`corecast_testkit::ts`]): PAT, then PMT, then the first H.264 stream (stream_type
/// 0x1b), its PES packets reassembled, split into Annex B NAL units, and every SEI NAL unit
/// read with [`sei::parse_nal`].
///
/// The program tables carry over from one segment to the next (a segment without PAT and
/// PMT is read with the previous segment's); PES packets do not. Never panics: bad or
/// truncated input yields fewer stamps, or none. Packets that lost sync are skipped up to the
/// next sync byte; packets the reader refuses, and packets marked in error or scrambled, are
/// skipped. Program tables must fit in one packet, as they do for a program with a few
/// streams.
#[derive(Debug, Default)]
pub struct StampReader {
    /// The TS reader: it keeps the PIDs the PAT and PMT listed.
    ts: TsReader,
    /// PID of the first H.264 stream of the last PMT read.
    video_pid: Option<u16>,
    /// Elementary stream bytes of the open video PES packet.
    pes: Vec<u8>,
    /// A video PES packet is open (its header was read).
    in_pes: bool,
}

impl StampReader {
    /// A reader that knows no program yet.
    pub fn new() -> Self {
        StampReader::default()
    }

    /// Appends the stamps in segment `ts` to `out`, in stream order.
    pub fn read_segment(&mut self, ts: &[u8], out: &mut Vec<u64>) {
        for packet in ts::packets(ts) {
            self.packet(packet, out);
        }
        self.end_pes(out);
    }

    fn packet(&mut self, p: &[u8; ts::PACKET_SIZE], out: &mut Vec<u64>) {
        let Ok(packet) = self.ts.read(p) else {
            return;
        };
        let header = &packet.header;
        if header.transport_error_indicator
            || header.transport_scrambling_control != TransportScramblingControl::NotScrambled
        {
            return;
        }
        let pid = header.pid.as_u16();
        match packet.payload {
            Some(TsPayload::Pmt(pmt)) => {
                let h264 = pmt
                    .es_info
                    .iter()
                    .find(|es| es.stream_type == StreamType::H264)
                    .map(|es| es.elementary_pid.as_u16());
                if let Some(video) = h264 {
                    if self.video_pid != Some(video) {
                        self.end_pes(out);
                        self.video_pid = Some(video);
                    }
                }
            }
            Some(TsPayload::Pes(pes)) if Some(pid) == self.video_pid => {
                self.end_pes(out);
                self.pes.extend_from_slice(&pes.data);
                self.in_pes = true;
            }
            Some(TsPayload::Raw(bytes)) if Some(pid) == self.video_pid && self.in_pes => {
                self.pes.extend_from_slice(&bytes);
            }
            _ => {}
        }
    }

    /// Closes the open PES packet and reads its stamps.
    fn end_pes(&mut self, out: &mut Vec<u64>) {
        if std::mem::take(&mut self.in_pes) {
            out.extend(
                ts::nal_units(&self.pes)
                    .filter(|nal| ts::nal_type(nal) == 6)
                    .filter_map(sei::parse_nal),
            );
        }
        self.pes.clear();
    }
}

/// The stamps in one segment read on its own (see [`StampReader`]).
pub fn segment_stamps(ts: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    StampReader::new().read_segment(ts, &mut out);
    out
}

// ---- HTTP ---------------------------------------------------------------------------------

/// Why an HLS request failed.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// The TCP connection could not be opened.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// No complete response in time.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before the response was complete.
    #[error("connection closed before the response was complete")]
    Closed,
    /// The response head is larger than [`MAX_HEAD`].
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response head is not HTTP.
    #[error("malformed response head: {0}")]
    BadHead(String),
    /// The body's length is not given by one Content-Length.
    #[error("response without a usable Content-Length (chunked and close-delimited bodies are not supported)")]
    NoLength,
    /// The body is larger than [`MAX_BODY`].
    #[error("response body of {0} bytes is over the limit of {MAX_BODY}")]
    BodyTooLarge(u64),
    /// A status other than 200 where 200 was needed.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The playlist could not be used.
    #[error("playlist: {0}")]
    Playlist(String),
    /// The stream name, application or a segment URI cannot be requested.
    #[error("cannot request {0:?}")]
    Path(String),
}

impl From<HlsError> for io::Error {
    fn from(err: HlsError) -> Self {
        let kind = match &err {
            HlsError::Connect { source, .. } => source.kind(),
            HlsError::Io(e) => e.kind(),
            HlsError::Timeout(_) => io::ErrorKind::TimedOut,
            HlsError::Closed => io::ErrorKind::UnexpectedEof,
            HlsError::Status(404) => io::ErrorKind::NotFound,
            HlsError::Status(_) => io::ErrorKind::Other,
            HlsError::Path(_) => io::ErrorKind::InvalidInput,
            HlsError::HeadTooLarge
            | HlsError::BadHead(_)
            | HlsError::NoLength
            | HlsError::BodyTooLarge(_)
            | HlsError::Playlist(_) => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// The parts of a response head a viewer needs.
struct Head {
    status: u16,
    len: u64,
    close: bool,
}

/// Parses a complete response head; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HlsError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HlsError::BadHead(e.to_string())),
    };
    let status = response.code.unwrap_or_default();
    let mut len: Option<u64> = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().map_err(|_| HlsError::NoLength)?;
            if len.is_some_and(|l| l != n) {
                return Err(HlsError::NoLength);
            }
            len = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HlsError::NoLength);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    // HTTP/1.0 keep-alive; a `close` anywhere still wins.
                    close &= response.version == Some(1);
                }
            }
        }
    }
    // 1xx, 204 and 304 responses have no body.
    let bodiless = status < 200 || status == 204 || status == 304;
    let len = match len {
        Some(n) => n,
        None if bodiless => 0,
        None => return Err(HlsError::NoLength),
    };
    Ok(Some((Head { status, len, close }, head_len)))
}

/// One keep-alive HTTP/1.1 connection to the target, opened on demand and reopened after
/// the server closed it.
struct Client {
    target: SocketAddr,
    conn: Option<TcpStream>,
    /// Received bytes not consumed yet: the head being read, and anything past a body.
    buf: Vec<u8>,
    /// Scratch space for bodies that are only counted.
    scratch: Box<[u8]>,
    /// A byte of the current response arrived.
    answered: bool,
}

impl Client {
    fn new(target: SocketAddr) -> Self {
        Client {
            target,
            conn: None,
            buf: Vec::new(),
            scratch: vec![0; READ_BUFFER].into_boxed_slice(),
            answered: false,
        }
    }

    /// Forgets the connection (after an error or a timeout: its state is unknown).
    fn reset(&mut self) {
        self.conn = None;
        self.buf.clear();
    }

    /// `GET path`; returns the status once the whole response is read. A 200 body goes into
    /// `keep` (if given) and through `count`; other bodies are read and dropped. A request
    /// on a reused connection that the server had closed is retried once on a new one.
    async fn get(
        &mut self,
        path: &str,
        mut keep: Option<&mut Vec<u8>>,
        count: &dyn Fn(usize),
    ) -> Result<u16, HlsError> {
        let reused = self.conn.is_some();
        match self.exchange(path, keep.as_deref_mut(), count).await {
            Err(HlsError::Io(_) | HlsError::Closed) if reused && !self.answered => {
                self.reset();
                self.exchange(path, keep, count).await
            }
            result => result,
        }
        .inspect_err(|_| self.reset())
    }

    async fn exchange(
        &mut self,
        path: &str,
        keep: Option<&mut Vec<u8>>,
        count: &dyn Fn(usize),
    ) -> Result<u16, HlsError> {
        self.answered = false;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.buf.clear();
                let addr = self.target;
                let conn = TcpStream::connect(addr)
                    .await
                    .map_err(|e| HlsError::Connect {
                        addr,
                        source: e.into(),
                    })?;
                // Requests are single small writes: no reason to hold them back.
                let _ = conn.set_nodelay(true);
                conn
            }
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
        conn.write_all(request.as_bytes()).await?;
        let (head, head_len) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(HlsError::HeadTooLarge);
            }
            let start = self.buf.len();
            self.buf.resize((start + HEAD_READ).min(MAX_HEAD), 0);
            let read = conn.read(&mut self.buf[start..]).await;
            self.buf.truncate(start + read.as_ref().map_or(0, |&n| n));
            match read? {
                0 => return Err(HlsError::Closed),
                _ => self.answered = true,
            }
        };
        self.buf.drain(..head_len);
        let len = usize::try_from(head.len)
            .ok()
            .filter(|_| head.len <= MAX_BODY)
            .ok_or(HlsError::BodyTooLarge(head.len))?;
        let ok = head.status == 200;
        let counted = |n: usize| {
            if ok && n > 0 {
                count(n)
            }
        };
        // Body bytes that came with the head.
        let early = len.min(self.buf.len());
        counted(early);
        match keep.filter(|_| ok) {
            Some(body) => {
                body.clear();
                body.extend(self.buf.drain(..early));
                body.resize(len, 0);
                let mut filled = early;
                while filled < len {
                    match conn.read(&mut body[filled..]).await? {
                        0 => return Err(HlsError::Closed),
                        n => {
                            filled += n;
                            counted(n);
                        }
                    }
                }
            }
            None => {
                self.buf.drain(..early);
                let mut left = len - early;
                while left > 0 {
                    let want = left.min(self.scratch.len());
                    match conn.read(&mut self.scratch[..want]).await? {
                        0 => return Err(HlsError::Closed),
                        n => {
                            left -= n;
                            counted(n);
                        }
                    }
                }
            }
        }
        if !head.close {
            self.conn = Some(conn);
        }
        Ok(head.status)
    }
}

/// How a request within a deadline ended.
enum Fetch {
    /// A complete response: its status and how long the request took.
    Done(u16, Duration),
    /// No complete response.
    Failed(HlsError),
    /// The viewer's deadline came first.
    Deadline,
}

/// `client.get` bounded by [`REQUEST_TIMEOUT`] and by `deadline`.
async fn fetch(
    client: &mut Client,
    path: &str,
    keep: Option<&mut Vec<u8>>,
    count: &dyn Fn(usize),
    deadline: Instant,
) -> Fetch {
    let issued = Instant::now();
    let limit = REQUEST_TIMEOUT.min(deadline.saturating_duration_since(issued));
    if limit.is_zero() {
        return Fetch::Deadline;
    }
    let result =
        glommio::timer::timeout(limit, async { Ok(client.get(path, keep, count).await) }).await;
    match result {
        Ok(Ok(status)) => Fetch::Done(status, issued.elapsed()),
        Ok(Err(err)) => Fetch::Failed(err),
        Err(_) => {
            client.reset();
            if limit < REQUEST_TIMEOUT {
                Fetch::Deadline
            } else {
                Fetch::Failed(HlsError::Timeout(limit))
            }
        }
    }
}

// ---- the viewer ---------------------------------------------------------------------------

/// True when `part` can go into a request path as one segment.
fn path_safe(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#'))
}

/// One viewer: polls the playlist like a player (reload every target duration, or half of it
/// after a reload that brought nothing new, per RFC 8216 §6.3.4), fetches each new segment
/// once in order over one keep-alive connection (reconnect on close), counts segment body
/// bytes through `bytes(n)`, and records into `stats`.
///
/// Runs until `deadline`, or until the playlist has EXT-X-ENDLIST and every segment has been
/// fetched. Returns `Err` only if it could never start (connection refused, the first
/// playlist request did not bring a parsable media playlist with status 200, or `app` or
/// `stream` cannot go into a request path); such a viewer records nothing. Later failures are counted in `stats` and the viewer goes on: a segment
/// that fails is skipped, a playlist that fails is reloaded after half a target duration.
pub async fn view(
    target: SocketAddr,
    app: &str,
    stream: &str,
    options: &HlsOptions,
    deadline: Instant,
    bytes: &dyn Fn(usize),
    stats: &RefCell<HlsStats>,
) -> io::Result<()> {
    if !path_safe(app) || !path_safe(stream) {
        return Err(HlsError::Path(format!("{app}/{stream}")).into());
    }
    let playlist_path = format!("/{app}/{stream}.m3u8");
    let mut viewer = Viewer {
        client: Client::new(target),
        options,
        bytes,
        stats,
        deadline,
        joined: Instant::now(),
        got_segment: false,
        stall: StallClock::new(options.stall),
        segment: Vec::new(),
        stamps: Vec::new(),
        reader: StampReader::new(),
    };
    let mut playlist_body = Vec::new();
    // Media sequence number of the next segment to fetch; `None` until the first playlist.
    let mut next = None;
    // Until the first playlist says otherwise.
    let mut target_duration = 1;
    'run: loop {
        let began = Instant::now();
        let fetched = fetch(
            &mut viewer.client,
            &playlist_path,
            Some(&mut playlist_body),
            &|_| {},
            deadline,
        )
        .await;
        let (loaded, took) = match fetched {
            Fetch::Deadline => break,
            Fetch::Done(200, took) => (parse_playlist(&playlist_body), Some(took)),
            Fetch::Done(status, took) => (Err(HlsError::Status(status)), Some(took)),
            Fetch::Failed(err) => (Err(err), None),
        };
        let loaded = match loaded {
            // Nothing recorded: the caller counts a viewer that could not start.
            Err(err) if next.is_none() => return Err(err.into()),
            loaded => loaded,
        };
        if let Some(took) = took {
            viewer.record(|s| s.request.saturating_record(nanos(took)));
        }
        let changed = match loaded {
            Ok(playlist) => {
                viewer.record(|s| s.playlists += 1);
                target_duration = playlist.target_duration;
                let step = plan(&playlist, next, options.start);
                let changed = next.is_none() || !step.due.is_empty() || step.skipped > 0;
                next = Some(step.next);
                viewer.record(|s| s.skipped += step.skipped);
                for due in &step.due {
                    if !viewer.segment(&playlist_path, due).await {
                        break 'run;
                    }
                }
                if step.ended {
                    // Over: no stall to look for.
                    return Ok(());
                }
                changed
            }
            Err(err) => {
                viewer.record(|s| match err {
                    HlsError::Status(404) => s.not_found += 1,
                    _ => s.errors += 1,
                });
                false
            }
        };
        if viewer.stall.check(Instant::now()) {
            viewer.record(|s| s.stalls += 1);
        }
        let wake = (began + reload_after(target_duration, changed)).min(deadline);
        glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
    }
    // A gap still open at the deadline counts too.
    if viewer.stall.check(Instant::now()) {
        viewer.record(|s| s.stalls += 1);
    }
    Ok(())
}

/// A running viewer's state.
struct Viewer<'a> {
    client: Client,
    options: &'a HlsOptions,
    bytes: &'a dyn Fn(usize),
    stats: &'a RefCell<HlsStats>,
    deadline: Instant,
    /// When the first playlist request was issued.
    joined: Instant,
    /// A segment was received (startup is over).
    got_segment: bool,
    stall: StallClock,
    /// Probes: the segment being read.
    segment: Vec<u8>,
    /// Probes: the stamps of the last segment.
    stamps: Vec<u64>,
    reader: StampReader,
}

impl Viewer<'_> {
    /// Records into the shared stats (never held across an await).
    fn record(&self, f: impl FnOnce(&mut HlsStats)) {
        f(&mut self.stats.borrow_mut());
    }

    /// Fetches one due segment and records what it brought; false when the deadline came.
    async fn segment(&mut self, playlist_path: &str, due: &Due) -> bool {
        let Some(path) = segment_path(playlist_path, &due.uri) else {
            self.record(|s| s.errors += 1);
            return true;
        };
        let keep = self.options.probe.then_some(&mut self.segment);
        let fetched = fetch(&mut self.client, &path, keep, self.bytes, self.deadline).await;
        let (status, took) = match fetched {
            Fetch::Deadline => return false,
            Fetch::Failed(_) => {
                self.record(|s| s.errors += 1);
                return true;
            }
            Fetch::Done(status, took) => (status, took),
        };
        let received_ns = sei::now_unix_ns();
        let now = Instant::now();
        self.record(|s| s.request.saturating_record(nanos(took)));
        match status {
            200 => {}
            404 => {
                self.record(|s| s.not_found += 1);
                return true;
            }
            _ => {
                self.record(|s| s.errors += 1);
                return true;
            }
        }
        let first = !std::mem::replace(&mut self.got_segment, true);
        let stalled = self.stall.segment(now);
        if self.options.probe {
            self.stamps.clear();
            self.reader.read_segment(&self.segment, &mut self.stamps);
        }
        let mut stats = self.stats.borrow_mut();
        stats.segments += 1;
        stats.discontinuities += u64::from(due.discontinuity);
        stats.stalls += u64::from(stalled);
        if first {
            stats
                .startup
                .saturating_record(nanos(now.saturating_duration_since(self.joined)));
        }
        for &sent in &self.stamps {
            stats
                .frame_latency
                .saturating_record(received_ns.saturating_sub(sent));
        }
        if let Some(&last) = self.stamps.last() {
            stats
                .segment_latency
                .saturating_record(received_ns.saturating_sub(last));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast::hls::segmenter::Segmenter;
    use corecast::hls::ts::TsMuxer;
    use corecast::media::{Unit, UnitKind};
    use std::io::{BufRead, BufReader, Read, Write};

    /// AVC sequence header with one 4-byte SPS and one 2-byte PPS, 4-byte NALU lengths.
    const AVC_CONFIG: &[u8] = &[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68,
        0xee,
    ];
    /// AAC-LC, 44.1 kHz, mono.
    const AAC_CONFIG: &[u8] = &[0xaf, 0, 0x12, 0x08];

    /// An FLV AVC NALU body with one slice of `size` bytes, stamped with `stamp` if given.
    fn frame(key: bool, size: usize, stamp: Option<u64>) -> Vec<u8> {
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        // Slice data with zero runs, so that start-code emulation would show if mishandled.
        nal.extend((1..size).map(|i| if i % 7 < 3 { 0 } else { i as u8 | 1 }));
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        body.extend_from_slice(&nal);
        match stamp {
            Some(ns) => sei::stamp_flv_video(&body, ns),
            None => body,
        }
    }

    /// Stamps that exercise emulation prevention and every byte position.
    fn stamp(i: u64) -> u64 {
        1_795_547_244_000_000_000 + i * 40_000_000 + (i % 4) * 0x0000_0300_0000_0001
    }

    /// A segment from corecast's own muxer: tables, then `frames` video frames (every 25th a
    /// keyframe, every 5th unstamped, some larger than a TS packet) with AAC in between.
    /// Returns the bytes and the stamps in order.
    fn muxed_segment(
        muxer: &mut TsMuxer,
        tables: bool,
        first: u64,
        frames: u64,
    ) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        if tables {
            muxer.write_tables(&mut out).unwrap();
        }
        let mut stamps = Vec::new();
        for i in first..first + frames {
            let key = i % 25 == 0;
            let stamped = (i % 5 != 4).then(|| stamp(i));
            stamps.extend(stamped);
            let size = if key {
                3000
            } else {
                40 + (i as usize * 37) % 700
            };
            muxer
                .write_video(&mut out, i * 40, &frame(key, size, stamped), key)
                .unwrap();
            muxer
                .write_audio(&mut out, i * 40 + 10, &[0xaf, 1, 0x21, 0x10, 0x04])
                .unwrap();
        }
        (out, stamps)
    }

    fn muxer() -> TsMuxer {
        let mut muxer = TsMuxer::new();
        muxer.set_video_config(AVC_CONFIG).unwrap();
        muxer.set_audio_config(AAC_CONFIG).unwrap();
        muxer
    }

    #[test]
    fn stamps_round_trip_through_corecast_ts() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 60);
        assert_eq!(ts.len() % ts::PACKET_SIZE, 0);
        assert_eq!(stamps.len(), 48);
        assert_eq!(segment_stamps(&ts), stamps);
    }

    #[test]
    fn program_tables_carry_over_between_segments() {
        let mut m = muxer();
        let (first, mut expected) = muxed_segment(&mut m, true, 0, 10);
        let (second, more) = muxed_segment(&mut m, false, 10, 10);
        expected.extend(more);
        let mut reader = StampReader::new();
        let mut found = Vec::new();
        reader.read_segment(&first, &mut found);
        reader.read_segment(&second, &mut found);
        assert_eq!(found, expected);
        assert!(
            segment_stamps(&second).is_empty(),
            "no PAT/PMT: the video PID is unknown"
        );
    }

    #[test]
    fn lost_sync_is_skipped() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 5);
        let mut shifted = vec![0x00, 0x12, 0x34];
        shifted.extend_from_slice(&ts);
        assert_eq!(segment_stamps(&shifted), stamps);
    }

    #[test]
    fn garbage_and_truncated_ts_give_no_stamps_and_no_panic() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 8);
        for len in 0..ts.len() {
            let found = segment_stamps(&ts[..len]);
            // A cut PES may still hold its stamp (it comes first): never more, never others.
            assert!(stamps.starts_with(&found), "prefix of {len} bytes");
        }
        for at in (0..ts.len()).step_by(3) {
            let mut bad = ts.clone();
            bad[at] ^= 0xa5;
            let found = segment_stamps(&bad);
            assert!(found.len() <= stamps.len() + 1, "byte {at} flipped");
        }
        // Pseudo-random bytes, and pseudo-random packets with the sync byte.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in [0, 1, 187, 188, 189, 376, 5000] {
            let noise: Vec<u8> = (0..len).map(|_| random()).collect();
            assert!(segment_stamps(&noise).is_empty());
            let mut synced = noise.clone();
            for p in synced.chunks_mut(ts::PACKET_SIZE) {
                p[0] = ts::SYNC_BYTE;
            }
            assert!(segment_stamps(&synced).is_empty());
        }
        assert!(segment_stamps(&[ts::SYNC_BYTE; 188 * 4]).is_empty());
    }

    // ---- playlists ----------------------------------------------------------------------

    /// A live playlist in corecast's format: `count` segments from `first`, a discontinuity
    /// before the segment at index `discontinuity_at`.
    fn playlist(
        first: u64,
        count: u64,
        discontinuity_at: Option<u64>,
        ended: bool,
    ) -> MediaPlaylist {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        );
        for i in 0..count {
            if discontinuity_at == Some(i) {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            text.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.123Z\n#EXTINF:2.000,\ncam-7-{}.ts\n",
                first.wrapping_add(i)
            ));
        }
        if ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        parse_playlist(text.as_bytes()).expect("playlist")
    }

    fn seqs(step: &Step) -> Vec<u64> {
        step.due.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn first_load_starts_three_back_or_at_the_live_edge() {
        let p = playlist(10, 6, None, false);
        let three = plan(&p, None, HlsStart::default());
        assert_eq!(seqs(&three), vec![13, 14, 15]);
        assert_eq!(three.due[0].uri, "cam-7-13.ts");
        assert_eq!((three.next, three.skipped, three.ended), (16, 0, false));
        let edge = plan(&p, None, HlsStart::LiveEdge);
        assert_eq!(seqs(&edge), vec![15]);
        assert_eq!(edge.next, 16);
        assert_eq!(seqs(&plan(&p, None, HlsStart::SegmentsBack(1))), vec![15]);
        let all = plan(&p, None, HlsStart::SegmentsBack(10));
        assert_eq!(seqs(&all), (10..16).collect::<Vec<_>>());
        let wait = plan(&p, None, HlsStart::SegmentsBack(0));
        assert!(wait.due.is_empty());
        assert_eq!(wait.next, 16);
    }

    #[test]
    fn reloads_fetch_each_new_segment_once() {
        let mut next = Some(plan(&playlist(10, 6, None, false), None, HlsStart::default()).next);
        let step = plan(&playlist(11, 6, None, false), next, HlsStart::default());
        assert_eq!(seqs(&step), vec![16]);
        next = Some(step.next);
        let unchanged = plan(&playlist(11, 6, None, false), next, HlsStart::default());
        assert!(unchanged.due.is_empty());
        assert_eq!(unchanged.next, 17);
        let two = plan(&playlist(13, 6, None, false), next, HlsStart::default());
        assert_eq!(seqs(&two), vec![17, 18]);
    }

    #[test]
    fn a_slid_window_skips_to_what_is_listed() {
        let step = plan(&playlist(15, 6, None, false), Some(12), HlsStart::default());
        assert_eq!(seqs(&step), (15..21).collect::<Vec<_>>());
        assert_eq!((step.next, step.skipped), (21, 3));
    }

    #[test]
    fn a_stale_playlist_brings_nothing_and_keeps_the_cursor() {
        let step = plan(&playlist(10, 6, None, false), Some(20), HlsStart::default());
        assert!(step.due.is_empty());
        assert_eq!((step.next, step.skipped), (20, 0));
    }

    #[test]
    fn an_empty_live_playlist_waits_for_its_first_segments() {
        let step = plan(&playlist(0, 0, None, false), None, HlsStart::default());
        assert!(step.due.is_empty());
        assert_eq!(step.next, 0);
        let step = plan(
            &playlist(0, 2, None, false),
            Some(step.next),
            HlsStart::default(),
        );
        assert_eq!(seqs(&step), vec![0, 1]);
    }

    #[test]
    fn discontinuities_are_marked() {
        let step = plan(
            &playlist(4, 4, Some(2), false),
            Some(5),
            HlsStart::default(),
        );
        let marks: Vec<(u64, bool)> = step.due.iter().map(|d| (d.seq, d.discontinuity)).collect();
        assert_eq!(marks, vec![(5, false), (6, true), (7, false)]);
    }

    #[test]
    fn an_ended_playlist_is_fetched_to_its_end() {
        let first = plan(&playlist(3, 4, None, true), None, HlsStart::LiveEdge);
        assert_eq!(
            seqs(&first),
            vec![3, 4, 5, 6],
            "a finished stream plays from its start"
        );
        assert!(first.ended);
        let last = plan(&playlist(3, 4, None, true), Some(5), HlsStart::default());
        assert_eq!(seqs(&last), vec![5, 6]);
        assert!(last.ended);
        let done = plan(&playlist(3, 4, None, true), Some(7), HlsStart::default());
        assert!(done.due.is_empty() && done.ended);
    }

    #[test]
    fn absurd_sequence_numbers_do_not_overflow() {
        // Numbers past u64::MAX cannot exist: what matters is no overflow, and a cursor that
        // never goes back.
        for next in [None, Some(0), Some(u64::MAX - 1), Some(u64::MAX)] {
            for ended in [false, true] {
                let top = playlist(u64::MAX - 1, 5, None, ended);
                let step = plan(&top, next, HlsStart::default());
                assert!(step.due.len() <= 5);
                assert!(step.next >= next.unwrap_or(u64::MAX - 1), "{next:?}");
            }
        }
        let step = plan(
            &playlist(u64::MAX, 2, None, true),
            Some(3),
            HlsStart::LiveEdge,
        );
        assert_eq!((step.due.len(), step.skipped), (2, u64::MAX - 3));
    }

    #[test]
    fn reload_timing_follows_rfc_8216() {
        assert_eq!(reload_after(2, true), Duration::from_secs(2));
        assert_eq!(reload_after(2, false), Duration::from_secs(1));
        assert_eq!(reload_after(0, false), Duration::from_millis(500));
    }

    #[test]
    fn corecast_playlists_and_segments_parse() {
        let mut s = Segmenter::new("cam", 7, 1000, 4);
        let unit = |kind, dts, key, header, body: &[u8]| {
            Unit::serialize(kind, dts, key, header, body, 4096)
        };
        s.push(&unit(UnitKind::Video, 0, false, true, AVC_CONFIG), 0)
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..(25 * 6 + 1) {
            let key = i % 25 == 0;
            sent.push(stamp(u64::from(i)));
            let body = frame(key, 200, Some(stamp(u64::from(i))));
            s.push(
                &unit(UnitKind::Video, i * 40, key, false, &body),
                1_795_547_244_123,
            )
            .unwrap();
        }
        let p = parse_playlist(s.playlist().as_bytes()).expect("corecast's playlist");
        assert_eq!((p.target_duration, p.media_sequence), (1, 2));
        let step = plan(&p, None, HlsStart::default());
        assert_eq!(seqs(&step), vec![3, 4, 5]);
        let mut reader = StampReader::new();
        let mut found = Vec::new();
        for due in &step.due {
            assert_eq!(
                segment_path("/live/cam.m3u8", &due.uri).unwrap(),
                format!("/live/cam-7-{}.ts", due.seq)
            );
            let segment = s.segments().iter().find(|seg| seg.seq == due.seq).unwrap();
            reader.read_segment(&segment.bytes, &mut found);
        }
        // Segments 3..=5 hold frames 75..150 (one second, 25 frames, each).
        assert_eq!(found, sent[75..150]);
    }

    #[test]
    fn bad_playlists_are_errors() {
        assert!(parse_playlist(b"").is_err());
        assert!(parse_playlist(b"<html>nope</html>").is_err());
        assert!(parse_playlist(&[0xff, 0xfe, 0, 1]).is_err());
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1280000\nlow/index.m3u8\n";
        assert!(matches!(parse_playlist(master), Err(HlsError::Playlist(_))));
    }

    #[test]
    fn segment_uris_resolve_to_request_paths() {
        let p = "/live/cam.m3u8";
        assert_eq!(
            segment_path(p, "cam-1-2.ts").as_deref(),
            Some("/live/cam-1-2.ts")
        );
        assert_eq!(
            segment_path(p, "/other/x.ts").as_deref(),
            Some("/other/x.ts")
        );
        assert_eq!(
            segment_path(p, "http://cdn:8080/a/b.ts").as_deref(),
            Some("/a/b.ts")
        );
        assert_eq!(segment_path(p, "https://cdn/a/b.ts"), None);
        assert_eq!(segment_path(p, "x.ts HTTP/1.1\r\nEvil: 1"), None);
        assert_eq!(segment_path(p, "../secret.ts"), None);
        assert_eq!(segment_path(p, ""), None);
    }

    #[test]
    fn a_stall_is_a_long_gap_counted_once() {
        let t = Instant::now();
        let limit = Duration::from_secs(3);
        let mut clock = StallClock::new(limit);
        assert!(
            !clock.check(t + Duration::from_secs(60)),
            "not before the first segment"
        );
        assert!(!clock.segment(t));
        assert!(!clock.check(t + limit));
        assert!(clock.check(t + Duration::from_secs(4)));
        assert!(!clock.check(t + Duration::from_secs(5)), "once per gap");
        assert!(
            !clock.segment(t + Duration::from_secs(6)),
            "already counted"
        );
        assert!(
            clock.segment(t + Duration::from_secs(10)),
            "seen when the segment came"
        );
        assert!(!clock.segment(t + Duration::from_secs(11)));
    }

    #[test]
    fn stats_merge() {
        let mut a = HlsStats::default();
        let mut b = HlsStats::default();
        a.request.record(1_000_000).unwrap();
        b.request.record(3_000_000).unwrap();
        b.frame_latency.record(2_000_000).unwrap();
        (a.segments, b.segments, b.not_found, b.stalls) = (2, 3, 1, 1);
        a.merge(&b);
        assert_eq!((a.request.len(), a.frame_latency.len()), (2, 1));
        assert_eq!((a.segments, a.not_found, a.stalls), (5, 1, 1));
        let mut narrow = HlsStats {
            startup: Histogram::new_with_bounds(1, 1000, 2).unwrap(),
            ..HlsStats::default()
        };
        b.startup.record(5_000_000).unwrap();
        narrow.merge(&b);
        assert_eq!(narrow.startup.len(), 1, "clamped, not lost");
    }

    #[test]
    fn response_heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        let (head, len) = parse_head(ok).unwrap().unwrap();
        assert_eq!(
            (head.status, head.len, head.close, len),
            (200, 5, false, ok.len() - 5)
        );
        assert!(parse_head(&ok[..20]).unwrap().is_none());
        let close = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (head, _) = parse_head(close).unwrap().unwrap();
        assert_eq!((head.status, head.close), (404, true));
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_head(old).unwrap().unwrap().0.close);
        let old_kept = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(!parse_head(old_kept).unwrap().unwrap().0.close);
        let listed = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: upgrade, close\r\n\r\n";
        assert!(parse_head(listed).unwrap().unwrap().0.close);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(chunked), Err(HlsError::NoLength)));
        let none = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(parse_head(none), Err(HlsError::NoLength)));
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(parse_head(two), Err(HlsError::NoLength)));
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(parse_head(huge).is_err());
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HlsError::BadHead(_))
        ));
    }

    // ---- viewers against a scripted server ----------------------------------------------

    /// A server on a thread that answers requests from `responses` (path, status, body;
    /// 404 for others) and closes every connection after `per_connection` responses, saying
    /// so in the last response's head if `announce`. Returns its address and the thread,
    /// which ends after `connections` connections with the paths it answered.
    fn scripted(
        responses: Vec<(&'static str, u16, Vec<u8>)>,
        per_connection: usize,
        connections: usize,
        announce: bool,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for _ in 0..connections {
                let Ok((conn, _)) = listener.accept() else {
                    break;
                };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                for served in 1..=per_connection {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header == "\r\n" {
                            break;
                        }
                    }
                    let path = line.split(' ').nth(1).unwrap().to_string();
                    let (status, body) = responses
                        .iter()
                        .find(|(p, _, _)| *p == path)
                        .map_or((404, Vec::new()), |(_, s, b)| (*s, b.clone()));
                    let close = if served == per_connection && announce {
                        "close"
                    } else {
                        "keep-alive"
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: {close}\r\n\r\n",
                        body.len()
                    );
                    conn.write_all(head.as_bytes()).unwrap();
                    // The body in two writes, to exercise reads across them.
                    let half = body.len() / 2;
                    conn.write_all(&body[..half]).unwrap();
                    conn.flush().unwrap();
                    conn.write_all(&body[half..]).unwrap();
                    asked.push(path);
                }
                // Close our side, and drop whatever the client still sends until it closes.
                let _ = conn.shutdown(std::net::Shutdown::Write);
                let _ = reader.read_to_end(&mut Vec::new());
            }
            asked
        });
        (addr, thread)
    }

    fn run_view(
        addr: SocketAddr,
        options: HlsOptions,
        seconds: u64,
    ) -> (io::Result<()>, HlsStats, u64) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let stats = RefCell::new(HlsStats::default());
                let bytes = std::cell::Cell::new(0u64);
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let count = |n: usize| bytes.set(bytes.get() + n as u64);
                let result = view(addr, "live", "cam", &options, deadline, &count, &stats).await;
                (result, stats.into_inner(), bytes.get())
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_viewer_fetches_an_ended_stream_and_reconnects_after_an_announced_close() {
        ended_stream(true);
    }

    #[test]
    fn a_viewer_retries_on_a_new_connection_after_a_silent_close() {
        ended_stream(false);
    }

    fn ended_stream(announce: bool) {
        let mut m = muxer();
        let (seg0, stamps0) = muxed_segment(&mut m, true, 0, 25);
        let (seg2, stamps2) = muxed_segment(&mut m, true, 50, 25);
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:1.0,\ns-0.ts\n#EXTINF:1.0,\ns-1.ts\n#EXTINF:1.0,\ns-2.ts\n\
                    #EXT-X-ENDLIST\n";
        let responses = vec![
            ("/live/cam.m3u8", 200, text.as_bytes().to_vec()),
            ("/live/s-0.ts", 200, seg0.clone()),
            ("/live/s-2.ts", 200, seg2.clone()),
        ];
        // Two responses per connection: the playlist and s-0, then s-1 (404) and s-2.
        let (addr, server) = scripted(responses, 2, 2, announce);
        let options = HlsOptions {
            probe: true,
            ..HlsOptions::default()
        };
        let started = Instant::now();
        let (result, stats, bytes) = run_view(addr, options, 20);
        result.expect("started");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ends with the stream"
        );
        let asked = server.join().unwrap();
        assert_eq!(
            asked,
            [
                "/live/cam.m3u8",
                "/live/s-0.ts",
                "/live/s-1.ts",
                "/live/s-2.ts"
            ]
        );
        assert_eq!(
            (stats.playlists, stats.segments, stats.not_found),
            (1, 2, 1)
        );
        assert_eq!((stats.errors, stats.stalls, stats.skipped), (0, 0, 0));
        assert_eq!(
            bytes,
            (seg0.len() + seg2.len()) as u64,
            "segment bytes only"
        );
        assert_eq!(stats.request.len(), 4);
        assert_eq!(stats.startup.len(), 1);
        assert_eq!(
            stats.frame_latency.len(),
            (stamps0.len() + stamps2.len()) as u64
        );
        assert_eq!(stats.segment_latency.len(), 2);
    }

    #[test]
    fn a_viewer_that_cannot_start_is_an_error_and_records_nothing() {
        let (addr, server) = scripted(Vec::new(), 1, 1, true);
        let (result, stats, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            (stats.request.len(), stats.not_found, stats.errors),
            (0, 0, 0)
        );
        server.join().unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let (result, _, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);

        let (addr, server) = scripted(
            vec![("/live/cam.m3u8", 200, b"<html>".to_vec())],
            1,
            1,
            true,
        );
        let (result, _, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        server.join().unwrap();
    }
}
