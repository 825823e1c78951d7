//! Media units and timestamps (pure: no IO; the one clock read is [`now_ns`], which drivers
//! call to stamp what they pass in).
//!
//! A [`Unit`] is one publisher message (audio frame, video frame, sequence header or
//! metadata) after ingest: classified, given a monotonic timestamp, and serialized once
//! ([`Wire`]: the FLV tag and the RTMP chunks are slices of one buffer). The `Bytes` inside
//! are shared by every viewer on every shard.

mod wire;

pub use wire::{Body, Wire, HEADROOM};

use crate::hub::budget::Meter;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What a unit carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// An FLV audio tag body.
    Audio,
    /// An FLV video tag body.
    Video,
    /// An FLV script tag (onMetaData).
    Script,
}

impl UnitKind {
    /// FLV tag type byte.
    pub fn flv_tag_type(self) -> u8 {
        match self {
            UnitKind::Audio => 8,
            UnitKind::Video => 9,
            UnitKind::Script => 18,
        }
    }
}

/// The wire formats a unit is serialized in, once per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A complete FLV tag (HTTP-FLV).
    Flv,
    /// A complete RTMP message in chunks with full headers (RTMP play).
    Rtmp,
}

/// Which tracks of an Enhanced RTMP multitrack stream a viewer receives.
///
/// The rule: multitrack tags go unchanged to viewers that said they read them (RTMP players
/// whose `connect` announced `capsEx` Multitrack, HTTP-FLV requests with `?tracks=all`);
/// every other viewer, and HLS, gets the default track (trackId 0) alone, as single-track
/// tags, and nothing of the tags that do not carry it. Tags that are not multitrack (the
/// default track, as encoders send it) go to everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tracks {
    /// Every track: multitrack tags unchanged.
    All,
    /// The default track only.
    #[default]
    Default,
}

/// One media unit, serialized once per stream and shared by every viewer.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Audio, video or metadata.
    pub kind: UnitKind,
    /// Per-stream sequence number assigned by the owner shard; a gap on a replica means units
    /// were dropped on the way (the replica then waits for a keyframe).
    pub seq: u64,
    /// Decode timestamp in milliseconds after rebasing (never decreases within a stream).
    pub dts: u32,
    /// A viewer may start here: a video keyframe, or any audio frame of an audio-only stream.
    pub key: bool,
    /// Codec configuration or metadata: kept aside to start new viewers, not a frame.
    pub header: bool,
    /// The message in every wire format, stored once.
    pub wire: Wire,
    /// For a multitrack tag, the unit as viewers of [`Tracks::Default`] receive it (empty
    /// when the tag carries no default track); `None` for every other unit, which all
    /// viewers receive as it is.
    pub default_track: Option<Arc<Wire>>,
    /// Monotonic time (ns, see [`now_ns`]) at which the publisher's bytes were read.
    pub ingest_ns: u64,
}

impl Unit {
    /// Serializes one message ([`Wire`], RTMP chunks of `chunk_size`), counted against
    /// `meter` while it lives. `seq` and `ingest_ns` are 0; the ingest path sets them.
    ///
    /// Script data (onMetaData) goes out with timestamp 0 whenever it comes, as in FLV files
    /// and from nginx-rtmp: libavformat's FLV reader (ffmpeg, and the players built on it)
    /// skips a known script tag only at timestamp 0, and turns one at any other time into a
    /// text subtitle stream. `dts` still places the unit in the stream.
    pub fn serialize(
        kind: UnitKind,
        dts: u32,
        key: bool,
        header: bool,
        body: impl Into<Body>,
        chunk_size: usize,
        meter: Option<&Arc<Meter>>,
    ) -> Unit {
        let wire_ts = wire_ts(kind, dts);
        Unit {
            kind,
            seq: 0,
            dts,
            key,
            header,
            wire: Wire::from_body(kind, wire_ts, body.into(), chunk_size, meter),
            default_track: None,
            ingest_ns: 0,
        }
    }

    /// The same unit, with `body` as its default track (see [`Tracks`]): a multitrack tag's
    /// [`crate::flv::codec::Multitrack::default_body`], serialized likewise (nothing when it
    /// is empty).
    pub fn with_default_track(
        mut self,
        body: &[u8],
        chunk_size: usize,
        meter: Option<&Arc<Meter>>,
    ) -> Unit {
        let wire = if body.is_empty() {
            Wire::default()
        } else {
            Wire::new(
                self.kind,
                wire_ts(self.kind, self.dts),
                body,
                chunk_size,
                meter,
            )
        };
        self.default_track = Some(Arc::new(wire));
        self
    }

    /// Bytes the unit stores, its cost in ring accounting.
    pub fn len(&self) -> usize {
        self.wire.stored() + self.default_track.as_ref().map_or(0, |d| d.stored())
    }

    /// True when nothing is stored (never for units built by the ingest path).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unit for a viewer of `tracks`; empty when it has nothing for that viewer.
    pub fn wire(&self, tracks: Tracks) -> &Wire {
        match (&self.default_track, tracks) {
            (Some(reduced), Tracks::Default) => reduced,
            _ => &self.wire,
        }
    }

    /// The message body (the FLV tag without its header and trailer) for a viewer of
    /// `tracks`; empty when the unit has nothing for that viewer.
    pub fn body(&self, tracks: Tracks) -> &[u8] {
        self.wire(tracks).body()
    }

    /// The unit's message with another timestamp, for a viewer of `tracks` (empty when the
    /// unit has nothing for that viewer). Not metered: a viewer's own copy.
    pub fn restamped(&self, tracks: Tracks, dts: u32, chunk_size: usize) -> Wire {
        let body = self.body(tracks);
        if body.is_empty() {
            return Wire::default();
        }
        Wire::new(self.kind, wire_ts(self.kind, dts), body, chunk_size, None)
    }
}

/// The timestamp a unit goes out with, as [`Unit::serialize`] says.
fn wire_ts(kind: UnitKind, dts: u32) -> u32 {
    if kind == UnitKind::Script {
        0
    } else {
        dts
    }
}

/// Monotonic nanoseconds since the first call in this process. Every shard uses the same
/// origin, so times taken on different shards compare.
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// True when an FLV audio or video tag body carries media beyond its codec headers: what
/// counts as a publisher's activity (an empty body, or a bare header such as `0xAF 0x01`, is
/// no sign of a live encoder). Sequence headers count.
pub fn has_payload(kind: UnitKind, body: &[u8]) -> bool {
    match kind {
        UnitKind::Video => crate::flv::codec::video(body).is_some_and(|t| t.payload),
        UnitKind::Audio => crate::flv::codec::audio(body).is_some_and(|t| t.payload),
        UnitKind::Script => !body.is_empty(),
    }
}

/// Turns a publisher's 32-bit RTMP timestamps into the stream's outgoing timestamps.
///
/// - 32-bit wrap-around is unwrapped (the difference between consecutive timestamps is taken
///   as a signed 32-bit value).
/// - The first timestamp of a publishing session maps to `base`, so a stream published again
///   continues after where the previous publisher stopped instead of jumping back.
/// - A jump forward by more than [`MAX_FORWARD_JUMP_MS`] or back by more than
///   [`MAX_BACKWARD_JUMP_MS`] (an encoder restarting its clock, a camera glitch) is a
///   discontinuity: the timeline continues [`REPUBLISH_GAP_MS`] after the last timestamp.
/// - Outgoing timestamps never decrease: a unit slightly older than the previous one (audio
///   and video interleaving) is stamped with the previous one's time.
#[derive(Debug, Clone, Default)]
pub struct Rebaser {
    /// Last raw timestamp of the current session; `None` before its first unit.
    last_raw: Option<u32>,
    /// Unwrapped value of `last_raw` (64-bit, so wraps accumulate).
    last_unwrapped: i64,
    /// Added to unwrapped raw timestamps to get outgoing ones.
    offset: i64,
    /// Outgoing timestamp of the next session's first unit.
    base: i64,
    /// Last outgoing timestamp.
    last_out: i64,
    /// True once any unit has been stamped (over all sessions).
    started: bool,
}

/// Gap inserted between the last unit before a discontinuity (a republish, a jump) and the
/// first one after it, so that the two never share a timestamp.
pub const REPUBLISH_GAP_MS: u64 = 40;

/// Largest forward step between consecutive timestamps taken as real time passing.
pub const MAX_FORWARD_JUMP_MS: i64 = 10_000;

/// Largest backward step taken as interleaving jitter (clamped) rather than a reset.
pub const MAX_BACKWARD_JUMP_MS: i64 = 1_000;

impl Rebaser {
    /// Starts a new publishing session: its first timestamp continues after the last one out.
    pub fn new_session(&mut self) {
        self.last_raw = None;
        self.base = if self.started {
            self.last_out + REPUBLISH_GAP_MS as i64
        } else {
            0
        };
    }

    /// Maps a raw RTMP timestamp to the outgoing timestamp (milliseconds, truncated to the
    /// 32 bits FLV and RTMP carry).
    pub fn map(&mut self, raw: u32) -> u32 {
        match self.last_raw {
            None => {
                self.last_unwrapped = i64::from(raw);
                self.offset = self.base - self.last_unwrapped;
            }
            Some(prev) => {
                let step = i64::from(raw.wrapping_sub(prev) as i32);
                self.last_unwrapped += step;
                if !(-MAX_BACKWARD_JUMP_MS..=MAX_FORWARD_JUMP_MS).contains(&step) {
                    self.offset = self.last_out + REPUBLISH_GAP_MS as i64 - self.last_unwrapped;
                }
            }
        }
        self.last_raw = Some(raw);
        let out = (self.last_unwrapped + self.offset).max(self.last_out);
        self.last_out = out;
        self.started = true;
        out as u32
    }

    /// Maps the timestamp of a decoder header or script data. Before the session's first
    /// frame it does not start the session's timeline: a relay that replays a stream (an
    /// origin answering an edge's pull, a restream) sends the stream's headers stamped 0,
    /// then frames stamped where the stream is, and the frames must not come seconds after
    /// the headers. Such a header goes out at the time the session starts at. Once the
    /// session has a frame, as [`Rebaser::map`].
    pub fn map_header(&mut self, raw: u32) -> u32 {
        if self.last_raw.is_some() {
            return self.map(raw);
        }
        let out = self.base.max(self.last_out);
        self.last_out = out;
        self.started = true;
        out as u32
    }

    /// The last outgoing timestamp.
    pub fn last_out(&self) -> u64 {
        self.last_out as u64
    }
}

/// One audio or video message carried inside an RTMP aggregate message (type 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    /// Audio or video.
    pub kind: UnitKind,
    /// Timestamp: the aggregate's, plus this message's offset from the first one inside.
    pub timestamp: u32,
    /// The message body (an FLV tag body).
    pub body: Bytes,
}

/// Why an aggregate message could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// A sub-message header or body runs past the end of the aggregate.
    #[error("aggregate message truncated at byte {0}")]
    Truncated(usize),
}

/// Splits an RTMP aggregate message: a run of FLV-tag-shaped sub-messages (type, size,
/// timestamp, stream id, body, back pointer). Messages other than audio and video are
/// skipped.
pub fn split_aggregate(timestamp: u32, data: &Bytes) -> Result<Vec<SubMessage>, AggregateError> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut first_ts = None;
    while at < data.len() {
        let header = data.get(at..at + 11).ok_or(AggregateError::Truncated(at))?;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let ts = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let body_start = at + 11;
        let body_end = body_start + size;
        if body_end + 4 > data.len() {
            return Err(AggregateError::Truncated(at));
        }
        let first = *first_ts.get_or_insert(ts);
        let kind = match header[0] & 0x1f {
            8 => Some(UnitKind::Audio),
            9 => Some(UnitKind::Video),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(SubMessage {
                kind,
                timestamp: timestamp.wrapping_add(ts.wrapping_sub(first)),
                body: data.slice(body_start..body_end),
            });
        }
        at = body_end + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_data_goes_out_at_timestamp_zero_and_media_at_its_own() {
        let first = |unit: &Unit| unit.wire.slices(Format::Rtmp).next().unwrap_or_default();
        let meta = Unit::serialize(UnitKind::Script, 61_234, false, true, b"\x02", 4096, None);
        assert_eq!(meta.dts, 61_234);
        // FLV tag header: type, size (3), timestamp (3), extension, stream id (3).
        assert_eq!(&meta.wire.flv()[4..8], &[0, 0, 0, 0]);
        // RTMP: one-byte basic header, then the type 0 message header's timestamp.
        assert_eq!(&first(&meta)[1..4], &[0, 0, 0]);
        let video = Unit::serialize(UnitKind::Video, 61_234, true, false, &[0x17, 1], 4096, None);
        assert_eq!(&video.wire.flv()[4..8], &[0x00, 0xef, 0x32, 0x00]);
        assert_eq!(&first(&video)[1..4], &[0x00, 0xef, 0x32]);
    }

    #[test]
    fn video_classification() {
        use crate::flv::codec::{audio, video};
        // (keyframe, sequence header) of a body.
        let facts = |body: &[u8]| video(body).map(|t| (t.keyframe, t.header));
        assert_eq!(facts(&[0x17, 0, 0, 0, 0]), Some((false, true)));
        assert_eq!(facts(&[0x17, 1, 0, 0, 0]), Some((true, false)));
        assert_eq!(facts(&[0x27, 1]), Some((false, false)));
        assert_eq!(
            facts(&[0x17, 2, 0, 0, 0]),
            Some((false, false)),
            "end of sequence is not a start point"
        );
        assert_eq!(facts(&[]), None);
        let audio_header = |body: &[u8]| audio(body).is_some_and(|t| t.header);
        assert!(audio_header(&[0xaf, 0, 0x12, 0x10]));
        assert!(!audio_header(&[0xaf, 1, 0x21]));
        assert!(!audio_header(&[0x2f, 0]));
    }

    #[test]
    fn first_session_starts_at_zero() {
        let mut r = Rebaser::default();
        r.new_session();
        assert_eq!(r.map(5000), 0);
        assert_eq!(r.map(5040), 40);
    }

    #[test]
    fn republish_continues_forward() {
        let mut r = Rebaser::default();
        r.new_session();
        r.map(1000);
        assert_eq!(r.map(3000), 2000);
        r.new_session();
        // The new publisher starts from 0 again; viewers see time continue.
        assert_eq!(r.map(0), 2000 + REPUBLISH_GAP_MS as u32);
        assert_eq!(r.map(100), 2100 + REPUBLISH_GAP_MS as u32);
    }

    #[test]
    fn headers_before_a_session_s_first_frame_do_not_start_its_timeline() {
        let mut r = Rebaser::default();
        r.new_session();
        // A relay's replay: headers stamped 0, then the GOP where the stream is.
        assert_eq!(r.map_header(0), 0);
        assert_eq!(r.map(7_000), 0);
        assert_eq!(r.map(7_040), 40);
        // Mid-session, a header is stamped like any unit.
        assert_eq!(r.map_header(7_080), 80);
        // The next session (another origin) replays its headers, then frames at 7 s.
        r.new_session();
        let base = 80 + REPUBLISH_GAP_MS as u32;
        assert_eq!(r.map_header(0), base);
        assert_eq!(r.map_header(0), base);
        assert_eq!(r.map(7_000), base);
        assert_eq!(r.map(7_040), base + 40);
    }

    #[test]
    fn wraps_at_32_bits() {
        let mut r = Rebaser::default();
        r.new_session();
        assert_eq!(r.map(u32::MAX - 10), 0);
        assert_eq!(r.map(5), 16);
    }

    #[test]
    fn jumps_are_discontinuities() {
        let mut r = Rebaser::default();
        r.new_session();
        r.map(1_000);
        assert_eq!(r.map(1_040), 40);
        // The encoder's clock leaps an hour ahead: the timeline continues.
        assert_eq!(r.map(3_601_040), 80);
        assert_eq!(r.map(3_601_080), 120);
        // ... and resets to zero: still forward.
        assert_eq!(r.map(0), 160);
        assert_eq!(r.map(40), 200);
    }

    #[test]
    fn aggregate_is_split_with_relative_timestamps() {
        fn sub(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
            let mut v = vec![kind];
            v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            v.extend_from_slice(&ts.to_be_bytes()[1..]);
            v.push((ts >> 24) as u8);
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(body);
            v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
            v
        }
        let data = Bytes::from(
            [
                sub(9, 500, &[0x17, 1, 0, 0, 0]),
                sub(18, 510, b"x"),
                sub(8, 523, &[0xaf, 1, 7]),
            ]
            .concat(),
        );
        let got = split_aggregate(10_000, &data).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].kind, got[0].timestamp), (UnitKind::Video, 10_000));
        assert_eq!((got[1].kind, got[1].timestamp), (UnitKind::Audio, 10_023));
        assert_eq!(&got[1].body[..], &[0xaf, 1, 7]);
        let cut = data.slice(..data.len() - 2);
        assert_eq!(split_aggregate(0, &cut), Err(AggregateError::Truncated(36)));
    }

    #[test]
    fn never_decreases() {
        let mut r = Rebaser::default();
        r.new_session();
        r.map(1000);
        assert_eq!(r.map(900), 0);
        assert_eq!(r.map(1100), 100);
    }
}
