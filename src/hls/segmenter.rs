//! Segments and the playlist (pure: wall-clock time is passed in).
//!
//! Units go in as they arrive on the owner shard; a segment closes at a keyframe once it is
//! at least the target duration long. The newest `window` segments are kept as immutable
//! `Bytes`, older ones are dropped; the playlist text is rendered once per change. Memory per
//! stream is therefore bounded by `window` segments plus the one being written.
//!
//! The container is a detail of [`TsMuxer`]; a fragmented-MP4 writer producing the same
//! segment boundaries (and partial segments for low-latency HLS) can replace it without
//! changing the windowing and playlist logic here.

use super::ts::{TsError, TsMuxer};
use super::Demand;
use crate::flv::codec;
use crate::media::{Tracks, Unit, UnitKind};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt::Write;

/// One finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub seq: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// A publisher reconnected (or the timeline jumped) right before this segment.
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first unit, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The MPEG-TS bytes.
    pub bytes: Bytes,
}

/// The segmenter of one stream.
#[derive(Debug)]
pub struct Segmenter {
    muxer: TsMuxer,
    /// Target segment duration.
    target_ms: u64,
    /// Segments kept.
    window: usize,
    /// Part of every segment name, unique per stream incarnation so that cached segments of
    /// an earlier stream with the same name are never served for this one.
    instance: u64,
    /// The stream's name, first part of segment names.
    name: String,
    /// The segment being written.
    open: Option<OpenSegment>,
    /// Finished segments, oldest first.
    segments: VecDeque<Segment>,
    /// Sequence number of the next segment.
    next_seq: u64,
    /// Bytes to reserve for the next segment: the last one's size and an eighth.
    next_capacity: usize,
    /// Discontinuities that slid out of the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_seq: u64,
    /// The next segment starts after a discontinuity.
    pending_discontinuity: bool,
    /// A video frame was malformed: inter frames are left out until the next keyframe.
    video_gap: bool,
    /// Last DTS seen (extends across the 32-bit wrap of unit timestamps).
    last_dts: Option<u64>,
    /// The stream ended: the playlist carries EXT-X-ENDLIST.
    ended: bool,
    /// Longest segment so far: EXT-X-TARGETDURATION never decreases while the stream lives
    /// (RFC 8216 wants it constant; it grows only if the encoder's GOP does).
    longest_ms: u64,
    /// The first track found that MPEG-TS here cannot carry (`"av1 video"`): from then on
    /// nothing more is muxed, and the stream's playlist answers that HLS is not available.
    unsupported: Option<String>,
    /// Last request served, shared with the snapshots (see [`Segmenter::demand`]).
    demand: Demand,
}

/// The segment being written.
#[derive(Debug)]
struct OpenSegment {
    bytes: Vec<u8>,
    /// DTS of its first unit.
    start_dts: u64,
    /// Wall-clock time of its first unit.
    started_at_ms: u64,
    /// It follows a discontinuity.
    discontinuity: bool,
    /// The tracks its PMT lists (video, audio): units of other tracks are left out of it.
    tracks: (bool, bool),
}

/// A segment that grows past this without a keyframe is closed anyway (bounds memory when an
/// encoder stops sending keyframes).
pub const MAX_SEGMENT_BYTES: usize = 32 * 1024 * 1024;

/// Bytes reserved for a stream's first segment (later ones: the size of the one before).
const FIRST_SEGMENT_CAPACITY: usize = 256 * 1024;

/// A finished segment's buffer as the shared bytes the window keeps. `Bytes::from` keeps the
/// whole allocation, and shrinking it in place does not always give memory back (mimalloc
/// keeps a block that shrinks by less than half: a 270 KB segment that had grown to
/// 512 KiB held 512 KiB): a buffer with more than an eighth to spare is copied into one of
/// its size.
fn seal(buf: Vec<u8>) -> Bytes {
    if buf.capacity() - buf.len() > buf.len() / 8 {
        Bytes::copy_from_slice(&buf)
    } else {
        Bytes::from(buf)
    }
}

impl Segmenter {
    /// Keeps `window` segments from the next one on (a reload). The target duration stays:
    /// a playlist's `EXT-X-TARGETDURATION` must not change, so a new one applies to the
    /// segmenters made after.
    pub fn set_window(&mut self, window: usize) {
        self.window = window.max(1);
    }

    /// A segmenter for stream `name` (the last path component), with a unique `instance`.
    pub fn new(name: &str, instance: u64, target_ms: u64, window: usize) -> Self {
        Segmenter {
            muxer: TsMuxer::new(),
            target_ms,
            window: window.max(1),
            instance,
            name: name.to_string(),
            open: None,
            segments: VecDeque::new(),
            next_seq: 0,
            next_capacity: FIRST_SEGMENT_CAPACITY,
            discontinuity_seq: 0,
            pending_discontinuity: false,
            video_gap: false,
            last_dts: None,
            ended: false,
            longest_ms: 0,
            unsupported: None,
            demand: Demand::default(),
        }
    }

    /// When a request for the stream's HLS was last served, shared with every snapshot:
    /// written by the shards that serve them (the start of the segmenter counts as one).
    pub fn demand(&self) -> &Demand {
        &self.demand
    }

    /// The track that keeps this stream out of HLS, if any (see [`Segmenter::push`]).
    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    /// Marks a discontinuity (the publisher reconnected): the current segment closes and the
    /// next one carries EXT-X-DISCONTINUITY.
    pub fn discontinuity(&mut self) {
        if self.close().is_some() || self.next_seq > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// Adds a unit. Returns true when a segment closed (the playlist changed).
    ///
    /// H.264 and HEVC video (legacy or Enhanced RTMP headers) and AAC audio (legacy header)
    /// are muxed; of a multitrack stream, the default track
    /// ([`Tracks::Default`](crate::media::Tracks)). The first unit of another codec (AV1,
    /// VP9, Opus, MP3, ..., enhanced audio) marks the stream
    /// [`unsupported`](Segmenter::unsupported): its open segment is dropped and nothing more
    /// is muxed, rather than serving segments that lack one of its tracks. (Empty or
    /// cut-short bodies are only left out.)
    pub fn push(&mut self, unit: &Unit, now_ms: u64) -> Result<bool, TsError> {
        let body = unit.body(Tracks::Default);
        let (known, unsupported) = match unit.kind {
            UnitKind::Video => match codec::video(body) {
                Some(v)
                    if v.multitrack.is_some()
                        || !matches!(v.codec, codec::VideoCodec::Avc | codec::VideoCodec::Hevc) =>
                {
                    (true, Some(track_name(v.codec.name(), "video", v.enhanced)))
                }
                other => (other.is_some(), None),
            },
            UnitKind::Audio => match codec::audio(body) {
                Some(a) if a.codec != codec::AudioCodec::Aac || a.enhanced => {
                    (true, Some(track_name(a.codec.name(), "audio", a.enhanced)))
                }
                other => (other.is_some(), None),
            },
            UnitKind::Script => (true, None),
        };
        if let Some(track) = unsupported {
            if self.unsupported.is_none() {
                self.unsupported = Some(track);
                self.open = None;
            }
            return Ok(false);
        }
        if !known || self.unsupported.is_some() {
            return Ok(false);
        }
        if unit.header {
            match unit.kind {
                UnitKind::Video => self.muxer.set_video_config(body)?,
                UnitKind::Audio => self.muxer.set_audio_config(body)?,
                UnitKind::Script => {}
            }
            return Ok(false);
        }
        let dts = self.extend(unit.dts);
        // A video frame is converted first: one the muxer cannot use (malformed, or before
        // the video configuration) must neither close nor start a segment. After a malformed
        // frame, the frames that depend on it are left out until the next keyframe.
        let video = match unit.kind {
            UnitKind::Video => match self.muxer.video_frame(body, unit.key) {
                Ok(Some(frame)) if unit.key || !self.video_gap => {
                    self.video_gap = false;
                    Some(frame)
                }
                Ok(_) => return Ok(false),
                Err(err) => {
                    self.video_gap = true;
                    return Err(err);
                }
            },
            _ => None,
        };
        let tracks = (self.muxer.has_video(), self.muxer.has_audio());
        // With video, segments start at video keyframes; audio-only units are all keys.
        let start_point = unit.key && (unit.kind == UnitKind::Video || !tracks.0);
        let mut closed = false;
        if start_point {
            if let Some(open) = &self.open {
                // At the target duration, or early when a track was configured since the
                // segment started (its PMT does not list it).
                if long_enough(dts.saturating_sub(open.start_dts), self.target_ms)
                    || open.tracks != tracks
                {
                    closed = self.close_at(dts).is_some();
                }
            }
            if self.open.is_none() {
                let mut bytes = Vec::with_capacity(self.next_capacity);
                self.muxer.write_tables(&mut bytes)?;
                self.open = Some(OpenSegment {
                    bytes,
                    start_dts: dts,
                    started_at_ms: now_ms,
                    discontinuity: std::mem::take(&mut self.pending_discontinuity),
                    tracks,
                });
            }
        }
        let Some(open) = &mut self.open else {
            // Before the first keyframe there is nowhere to start a segment.
            return Ok(closed);
        };
        if open.bytes.len() > MAX_SEGMENT_BYTES {
            // No keyframe for far too long: close here; the next segment waits for one.
            return Ok(self.close_at(dts).is_some() || closed);
        }
        match (unit.kind, video) {
            // A track the segment's PMT does not list waits for the next segment.
            (UnitKind::Video, _) if !open.tracks.0 => {}
            (UnitKind::Audio, _) if !open.tracks.1 => {}
            (UnitKind::Video, Some(frame)) => {
                self.muxer.write_video_frame(&mut open.bytes, dts, frame)?
            }
            (UnitKind::Audio, _) => self.muxer.write_audio(&mut open.bytes, dts, body)?,
            _ => {}
        }
        Ok(closed)
    }

    /// Ends the stream: the open segment closes and the playlist gets EXT-X-ENDLIST.
    pub fn end(&mut self) {
        self.close();
        self.ended = true;
    }

    fn extend(&mut self, dts: u32) -> u64 {
        let extended = match self.last_dts {
            Some(last) => {
                let step = i64::from(dts.wrapping_sub(last as u32) as i32);
                (last as i64 + step).max(0) as u64
            }
            None => u64::from(dts),
        };
        self.last_dts = Some(extended);
        extended
    }

    /// Closes the open segment, ending at the last DTS seen.
    fn close(&mut self) -> Option<&Segment> {
        let end = self.last_dts.unwrap_or(0);
        self.close_at(end)
    }

    fn close_at(&mut self, end_dts: u64) -> Option<&Segment> {
        let OpenSegment {
            bytes: buf,
            start_dts,
            started_at_ms,
            discontinuity,
            ..
        } = self.open.take()?;
        self.next_capacity = (buf.len() + buf.len() / 8).min(MAX_SEGMENT_BYTES);
        let duration_ms = end_dts.saturating_sub(start_dts);
        self.longest_ms = self.longest_ms.max(duration_ms);
        self.segments.push_back(Segment {
            seq: self.next_seq,
            duration_ms,
            discontinuity,
            started_at_ms,
            bytes: seal(buf),
        });
        self.next_seq += 1;
        self.trim_to(self.window);
        self.segments.back()
    }

    /// Drops the oldest segments until at most `keep` (at least one) remain; true when some
    /// were dropped. The window does this after every segment; the server's media budget,
    /// when spent, trims it further.
    pub fn trim_to(&mut self, keep: usize) -> bool {
        let mut trimmed = false;
        while self.segments.len() > keep.max(1) {
            if let Some(old) = self.segments.pop_front() {
                trimmed = true;
                if old.discontinuity {
                    self.discontinuity_seq += 1;
                }
            }
        }
        trimmed
    }

    /// Increases with every change of the playlist (ordering of snapshots): a new segment,
    /// a trim of the window, the end.
    pub fn version(&self) -> u64 {
        let first = self.segments.front().map_or(self.next_seq, |s| s.seq);
        (self.next_seq + first) * 2 + u64::from(self.ended)
    }

    /// The stream incarnation (part of segment names).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Bytes held: the segments in the window and the one being written.
    pub fn bytes_held(&self) -> usize {
        let open = self.open.as_ref().map_or(0, |o| o.bytes.len());
        open + self.segments.iter().map(|s| s.bytes.len()).sum::<usize>()
    }

    /// The finished segments, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The name of segment `seq` (relative to the playlist's URL).
    pub fn segment_name(&self, seq: u64) -> String {
        segment_name(&self.name, self.instance, seq)
    }

    /// Renders the playlist.
    pub fn playlist(&self) -> String {
        let target = self.longest_ms.max(self.target_ms).div_ceil(1000);
        let first = self.segments.front().map_or(self.next_seq, |s| s.seq);
        let mut out = String::with_capacity(128 + self.segments.len() * 96);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.discontinuity_seq
        );
        for segment in &self.segments {
            if segment.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = write!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{}.{:03},\n{}\n",
                iso8601(segment.started_at_ms),
                segment.duration_ms / 1000,
                segment.duration_ms % 1000,
                self.segment_name(segment.seq)
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// `{stream}-{instance}-{seq}.ts`
pub fn segment_name(stream: &str, instance: u64, seq: u64) -> String {
    format!("{stream}-{instance}-{seq}.ts")
}

/// Whether a segment of `duration_ms` may close at a keyframe with a target of `target_ms`:
/// once it lasts the target less a tenth of it. Encoders whose GOP is the target duration
/// send a keyframe a frame or two early now and then (timestamps rounded to milliseconds, a
/// publisher's clock, a loop in a playout): without the margin, such a GOP would join the
/// next one into a segment of twice the target, whose `EXTINF` would raise
/// `EXT-X-TARGETDURATION`, which must not change while the playlist lives. A segment that
/// closes early is shorter than the target, which the playlist allows.
pub fn long_enough(duration_ms: u64, target_ms: u64) -> bool {
    duration_ms + target_ms / 10 >= target_ms
}

/// Splits a segment file name into stream name, instance and sequence number. The numbers
/// must be written as [`segment_name`] writes them (decimal, no sign, no leading zeros), so
/// each segment has one name. Unambiguous for any stream name: the last two `-` separate
/// the numbers, which hold no `-`.
pub fn parse_segment_name(file: &str) -> Option<(&str, u64, u64)> {
    use crate::util::parse_canonical_u64;
    let stem = file.strip_suffix(".ts")?;
    let mut parts = stem.rsplitn(3, '-');
    let seq = parse_canonical_u64(parts.next()?)?;
    let instance = parse_canonical_u64(parts.next()?)?;
    Some((parts.next()?, instance, seq))
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC (`2026-11-24T19:07:24.000Z`).
pub fn iso8601(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// How a track a writer here cannot carry is named in logs and answers: `"av1 video"`
/// (MPEG-TS here; the fMP4 writer, [`crate::hls::fmp4`], names its own the same way).
pub(crate) fn track_name(codec: String, kind: &str, enhanced: bool) -> String {
    let header = if enhanced { " (Enhanced RTMP)" } else { "" };
    format!("{codec} {kind}{header}")
}

#[cfg(test)]
mod tests;
