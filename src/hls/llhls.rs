//! Low-Latency HLS: the window of segments and partial segments of one stream, the media
//! and multivariant playlists that list them, and the answers to blocking playlist reloads
//! (pure: wall-clock time and requests are passed in).
//!
//! The fragmented-MP4 writer hands the window one part at a time ([`LlWindow::add_part`]):
//! the part's bytes (its `moof` and `mdat`), its duration, which is at most the part
//! target, and whether it starts with a keyframe (an *independent* part). The window decides
//! where segments begin and end, as the MPEG-TS segmenter does: a segment starts at an
//! independent part, and closes at the first independent part at which it is at least the
//! segment target long, which opens the next. Every segment therefore starts with a
//! keyframe, and lasts the target or longer, by up to one GOP.
//!
//! # Memory: a part is held once
//!
//! While a segment is being written, each of its parts is the `Bytes` the writer made. When
//! the segment closes, its parts are copied once into one buffer of the segment's exact size,
//! and each part is replaced by a slice of that buffer ([`Bytes::slice`]): the writer's
//! buffers are freed (once no response holds them), and a complete segment and its parts are
//! the same memory. The price is one copy of each segment's bytes when it closes; in return a
//! segment is served as one `Bytes`, like an MPEG-TS segment, and a part of it as a slice.
//! The window therefore holds its complete segments once, plus the parts of the segment being
//! written.
//!
//! Parts stay downloadable for as long as their segment is in the window, also after their
//! `EXT-X-PART` tags left the playlist (see below): RFC 8216bis 6.2.2 wants them available
//! for three target durations after that, which a window of six target durations or more
//! gives (the default `hls.window_segments = 6` at `hls.target_duration_ms = 2000` does).
//!
//! # The media playlist
//!
//! [`LlWindow::playlist`] renders, in this order:
//!
//! - `EXT-X-VERSION`: 6 (`EXT-X-MAP` outside an I-frame playlist needs 6), 9 in a delta
//!   update (`EXT-X-SKIP` needs 9); no higher than the tags need (RFC 8216bis 6.2.1).
//! - `EXT-X-TARGETDURATION`: the segment target rounded up to whole seconds, or the longest
//!   segment the stream has had rounded to the nearest second if that is more (RFC 8216bis
//!   4.4.3.1 compares each `EXTINF` rounded to the nearest integer). It never decreases, and
//!   stays constant unless the encoder's GOP is longer than the target.
//! - `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=..,CAN-SKIP-UNTIL=..`:
//!   `PART-HOLD-BACK` is three part targets (the specification's MUST is two, its SHOULD
//!   three), `CAN-SKIP-UNTIL` six target durations (its minimum).
//! - `EXT-X-PART-INF:PART-TARGET`, `EXT-X-MEDIA-SEQUENCE`, `EXT-X-DISCONTINUITY-SEQUENCE`.
//! - In a delta update, `EXT-X-SKIP:SKIPPED-SEGMENTS=n` in place of the segments that end
//!   more than `CAN-SKIP-UNTIL` before the end of the last complete segment.
//! - For each segment: `EXT-X-DISCONTINUITY` when it follows one, `EXT-X-MAP` (the
//!   initialization segment) before the first segment listed and after each discontinuity,
//!   `EXT-X-PROGRAM-DATE-TIME`, then its parts (`EXT-X-PART:DURATION=..,URI=..` with
//!   `INDEPENDENT=YES` on parts that start with a keyframe) if it is one of the last
//!   segments, then `EXTINF` and its URI. Parts are listed for the segments that start no
//!   more than three target durations before the end of the playlist (RFC 8216bis 6.2.2:
//!   `EXT-X-PART` tags further back SHOULD be removed), and always for the segment being
//!   written, which is listed last, by its parts alone.
//! - `EXT-X-PRELOAD-HINT:TYPE=PART,URI=..`, the next part, or `EXT-X-ENDLIST` once the
//!   stream ended (then without hint).
//!
//! `EXT-X-PROGRAM-DATE-TIME` follows the media timeline: the first segment, and the first
//! after each discontinuity, take the wall-clock time at which their first part arrived (but
//! never earlier than the end of the segment before); every other segment starts where the
//! one before ended. Dates therefore increase strictly and agree with the durations, also
//! when parts arrive in a burst (the ring replayed when a stream's HLS starts).
//!
//! # Blocking playlist reloads
//!
//! [`parse_directives`] reads `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a playlist
//! request's query; [`LlWindow::reload`] answers a request: render now ([`Reload::Ready`]),
//! hold it until the playlist contains what it asks for ([`Reload::Wait`], with the
//! [`Awaited`] the shard's held requests are ordered by, see [`crate::shard::held`]), or
//! refuse it with `400` ([`Reload::TooFarAhead`]). The bounds are RFC 8216bis 6.2.5.2's: a
//! request is too far ahead when its segment is more than one past the segment being
//! written (two past the last complete segment), or its part more than the Advance Part
//! Limit (three seconds of parts) past the last part listed. A request for a part past the
//! last part of a complete segment stands for part 0 of the next segment.

use super::segmenter::{iso8601, long_enough, MAX_SEGMENT_BYTES};
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use std::collections::VecDeque;
use std::fmt::{self, Write};

/// What a held request waits for: part `part` of segment `msn`, or with `part` = `None`
/// the whole segment `msn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awaited {
    /// Media sequence number of the segment.
    pub msn: u64,
    /// Index of the part within the segment; `None` for the complete segment.
    pub part: Option<u32>,
}

/// How far a stream's playlist goes: every segment before `msn` is complete, and the first
/// `parts` parts of segment `msn` are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reached {
    /// The segment being written.
    pub msn: u64,
    /// Its parts listed so far.
    pub parts: u32,
}

impl Awaited {
    /// Its place in the order of [`Reached`]: part `p` of segment `m` is there once
    /// `Reached` passes `(m, p)`; the whole segment once it passes `(m, u32::MAX)`, that is
    /// once the next segment is being written.
    pub(crate) fn key(self) -> (u64, u32) {
        (self.msn, self.part.unwrap_or(u32::MAX))
    }

    /// Whether a playlist that reached `reached` contains it.
    pub fn is_in(self, reached: Reached) -> bool {
        self.key() < (reached.msn, reached.parts)
    }
}

/// Parts are listed for the segments that start no more than this many target durations
/// before the end of the playlist (RFC 8216bis 6.2.2: older `EXT-X-PART` tags SHOULD be
/// removed).
pub const PART_LISTING_TARGETS: u64 = 3;

/// `PART-HOLD-BACK`, in part targets (RFC 8216bis 4.4.3.8: at least two, SHOULD three).
pub const PART_HOLD_BACK_PARTS: u64 = 3;

/// `CAN-SKIP-UNTIL`, the Skip Boundary, in target durations (RFC 8216bis 4.4.3.8: at least
/// six).
pub const SKIP_BOUNDARY_TARGETS: u64 = 6;

/// The Advance Part Limit of RFC 8216bis 6.2.5.2, in milliseconds of parts: three parts when
/// the part target is a second or more, else as many parts as fit in three seconds.
const ADVANCE_PART_LIMIT_MS: u64 = 3000;

/// A segment that reaches this many parts without a keyframe closes anyway, and the next
/// one waits for a keyframe: bounds the playlist (which lists every part of the segment
/// being written) when an encoder stops sending keyframes. At a part target of 200 ms, about
/// 100 s.
pub const MAX_SEGMENT_PARTS: usize = 512;

/// What a query string may not carry into a URI of the playlist: controls, spaces, and what
/// would end a quoted attribute or start a fragment. Percent-encoded.
const QUERY_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#');

/// The settings of a window, fixed for its life (a playlist's target durations must not
/// change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlSettings {
    /// Segments close at the first independent part at which they are at least this long
    /// (ms).
    pub segment_target_ms: u64,
    /// The longest a part may be (ms): `EXT-X-PART-INF:PART-TARGET`.
    pub part_target_ms: u64,
    /// Complete segments kept.
    pub window: usize,
}

/// Which part: part `part` of segment `msn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartId {
    /// Media sequence number of the segment.
    pub msn: u64,
    /// Index of the part within the segment, from 0.
    pub part: u32,
}

/// One part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Duration (ms).
    pub duration_ms: u64,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// Its bytes: the writer's while its segment is written, then a slice of the segment's.
    pub bytes: Bytes,
}

/// One complete segment.
#[derive(Debug, Clone)]
pub struct LlSegment {
    /// Media sequence number.
    pub msn: u64,
    /// Duration (ms): the sum of its parts'.
    pub duration_ms: u64,
    /// A discontinuity (a republish) comes right before it.
    pub discontinuity: bool,
    /// Its discontinuity sequence number: discontinuities since the stream started. Names
    /// its initialization segment (the tracks may change at a discontinuity).
    pub discontinuity_seq: u64,
    /// `EXT-X-PROGRAM-DATE-TIME` of its start, ms since the Unix epoch.
    pub program_date_ms: u64,
    /// Its bytes: its parts' bytes, in order.
    pub bytes: Bytes,
    /// Its parts, slices of `bytes`.
    pub parts: Vec<Part>,
}

/// The segment being written.
#[derive(Debug, Clone)]
struct OpenSegment {
    /// Media sequence number.
    msn: u64,
    /// Its parts so far, each the writer's own buffer.
    parts: Vec<Part>,
    /// Sum of the parts' durations (ms).
    duration_ms: u64,
    /// Sum of the parts' lengths.
    len: usize,
    /// A discontinuity comes right before it.
    discontinuity: bool,
    /// Its discontinuity sequence number.
    discontinuity_seq: u64,
    /// `EXT-X-PROGRAM-DATE-TIME` of its start.
    program_date_ms: u64,
}

/// What [`LlWindow::add_part`] did with a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The segment that closed because this part started the next one.
    pub closed: Option<u64>,
    /// Where the part went. `None`: left out, for want of a segment to add it to: it does
    /// not start with a keyframe and no segment is open (before the stream's first keyframe,
    /// after a discontinuity, after a segment closed for its size).
    pub part: Option<PartId>,
}

/// Why [`LlWindow::add_part`] refused a part (the window is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// The stream ended: its playlist is final.
    #[error("the stream ended")]
    Ended,
    /// A part needs bytes and a duration.
    #[error("a part without bytes or without duration")]
    Empty,
    /// Longer than the part target, which the playlist announces as every part's maximum
    /// (RFC 8216bis 4.4.4.9): the writer cuts parts before the sample that would take them
    /// past it.
    #[error("a part of {duration_ms} ms is longer than the part target ({part_target_ms} ms)")]
    TooLong {
        /// The part's duration.
        duration_ms: u64,
        /// The part target.
        part_target_ms: u64,
    },
}

/// What a playlist request asks for besides the playlist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaylistRequest<'a> {
    /// A delta update (`_HLS_skip=YES` or `v2`): old segments are replaced by `EXT-X-SKIP`.
    pub skip: bool,
    /// Appended to every URI of the playlist after a `?` (the credentials a player fetched
    /// the playlist with, so that it fetches the rest with them too). Controls, spaces,
    /// `"` and `#` are percent-encoded.
    pub query: Option<&'a str>,
}

/// The delivery directives of a playlist request (RFC 8216bis 6.2.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `_HLS_msn`: the segment the playlist must contain.
    pub msn: Option<u64>,
    /// `_HLS_part`: the part of segment `msn` the playlist must contain.
    pub part: Option<u32>,
    /// `_HLS_skip=YES` or `_HLS_skip=v2`: a delta update. `v2` also skips date ranges, which
    /// these playlists do not have.
    pub skip: bool,
}

/// Why a playlist request's directives are refused (`400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// Not a decimal integer in range (`_HLS_msn`, `_HLS_part`), nor `YES` or `v2`
    /// (`_HLS_skip`).
    #[error("{0}: malformed value")]
    Malformed(&'static str),
    /// The same directive twice.
    #[error("{0} given twice")]
    Repeated(&'static str),
    /// `_HLS_part` without `_HLS_msn` (RFC 8216bis 6.2.5.2: MUST be refused).
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
}

/// The answer to a playlist request with delivery directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Render the playlist now: it contains what the request asks for, or the request asks
    /// for nothing (no `_HLS_msn`), or the stream ended (RFC 8216bis 6.2.5.2: the
    /// directives are then ignored).
    Ready,
    /// Hold the request until the playlist contains this.
    Wait(Awaited),
    /// Refuse with `400`: further ahead than RFC 8216bis 6.2.5.2 lets a player ask.
    TooFarAhead,
}

/// The window of segments and parts of one stream. A clone is a snapshot of it (the
/// segments' and parts' bytes are shared, not copied).
#[derive(Debug, Clone)]
pub struct LlWindow {
    /// The stream's name, first part of every URI.
    name: String,
    /// The stream incarnation, part of every URI (see the MPEG-TS segmenter).
    instance: u64,
    /// Targets and window size.
    settings: LlSettings,
    /// Complete segments, oldest first.
    segments: VecDeque<LlSegment>,
    /// The segment being written.
    open: Option<OpenSegment>,
    /// Media sequence number of the next segment to open.
    next_msn: u64,
    /// Discontinuity sequence number of the last segment opened.
    discontinuity_seq: u64,
    /// The next segment follows a discontinuity.
    pending_discontinuity: bool,
    /// Program date of the end of the last complete segment (ms): where the next one starts.
    program_end_ms: Option<u64>,
    /// Longest segment so far (ms): `EXT-X-TARGETDURATION` never decreases.
    longest_ms: u64,
    /// The stream ended: the playlist carries `EXT-X-ENDLIST`.
    ended: bool,
    /// Counts the changes of the playlist (orders snapshots).
    version: u64,
}

impl LlWindow {
    /// A window for stream `name` (the last path component) of incarnation `instance`. A
    /// part target of 0 is taken as 1 ms, a segment target shorter than the part target as
    /// the part target, a window of 0 segments as 1.
    pub fn new(name: &str, instance: u64, settings: LlSettings) -> Self {
        let part_target_ms = settings.part_target_ms.max(1);
        LlWindow {
            name: name.to_string(),
            instance,
            settings: LlSettings {
                part_target_ms,
                segment_target_ms: settings.segment_target_ms.max(part_target_ms),
                window: settings.window.max(1),
            },
            segments: VecDeque::new(),
            open: None,
            next_msn: 0,
            discontinuity_seq: 0,
            pending_discontinuity: false,
            program_end_ms: None,
            longest_ms: 0,
            ended: false,
            version: 0,
        }
    }

    /// The settings in effect.
    pub fn settings(&self) -> LlSettings {
        self.settings
    }

    /// The stream incarnation.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Whether a part with this independence would be the first of a new segment if it came
    /// after `pending_ms` more of the segment being written: the part the writer is filling
    /// and has not handed over yet (0 when none). False for a part that would be left out.
    ///
    /// The writer asks this at each keyframe. When true, it ends the part it is filling there
    /// and starts the next segment's first part with the keyframe. When false, a part ended
    /// at the keyframe would be short in the middle of a segment, which RFC 8216bis 4.4.4.9
    /// forbids (every part but the last of its segment and the independent ones is at least
    /// 85% of the part target): the keyframe rather stays inside the part being filled,
    /// unless that part is full anyway.
    pub fn starts_segment(&self, independent: bool, pending_ms: u64) -> bool {
        let target = self.settings.segment_target_ms;
        independent
            && self.open.as_ref().is_none_or(|open| {
                self.full(open) || long_enough(open.duration_ms + pending_ms, target)
            })
    }

    /// Whether `open` reached a bound ([`MAX_SEGMENT_BYTES`], [`MAX_SEGMENT_PARTS`]).
    fn full(&self, open: &OpenSegment) -> bool {
        open.len >= MAX_SEGMENT_BYTES || open.parts.len() >= MAX_SEGMENT_PARTS
    }

    /// Whether `open` closes before a part with this independence.
    fn closes(&self, open: &OpenSegment, independent: bool) -> bool {
        self.full(open)
            || (independent && long_enough(open.duration_ms, self.settings.segment_target_ms))
    }

    /// Appends a part of `duration_ms` that arrived at `now_ms` (ms since the Unix epoch).
    /// An independent part (one that starts with a keyframe) closes the open segment if it
    /// is at least the segment target long, and starts the next. A segment also closes,
    /// without a keyframe, once it holds [`MAX_SEGMENT_BYTES`] or [`MAX_SEGMENT_PARTS`];
    /// the next then waits for a keyframe. A part that cannot start a segment when none is
    /// open is left out ([`Added::part`] is `None`).
    pub fn add_part(
        &mut self,
        bytes: Bytes,
        duration_ms: u64,
        independent: bool,
        now_ms: u64,
    ) -> Result<Added, PartError> {
        if self.ended {
            return Err(PartError::Ended);
        }
        if bytes.is_empty() || duration_ms == 0 {
            return Err(PartError::Empty);
        }
        if duration_ms > self.settings.part_target_ms {
            return Err(PartError::TooLong {
                duration_ms,
                part_target_ms: self.settings.part_target_ms,
            });
        }
        let closes = self
            .open
            .as_ref()
            .is_some_and(|open| self.closes(open, independent));
        let closed = if closes { self.close_segment() } else { None };
        if self.open.is_none() {
            if !independent {
                return Ok(Added { closed, part: None });
            }
            self.open_segment(now_ms);
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(Added { closed, part: None });
        };
        let id = PartId {
            msn: open.msn,
            part: open.parts.len() as u32,
        };
        open.duration_ms += duration_ms;
        open.len += bytes.len();
        open.parts.push(Part {
            duration_ms,
            independent,
            bytes,
        });
        self.version += 1;
        Ok(Added {
            closed,
            part: Some(id),
        })
    }

    /// Opens the next segment with a part that arrived at `now_ms`.
    fn open_segment(&mut self, now_ms: u64) {
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        if discontinuity {
            self.discontinuity_seq += 1;
        }
        let program_date_ms = match self.program_end_ms {
            Some(end) if !discontinuity => end,
            Some(end) => now_ms.max(end),
            None => now_ms,
        };
        self.open = Some(OpenSegment {
            msn: self.next_msn,
            parts: Vec::new(),
            duration_ms: 0,
            len: 0,
            discontinuity,
            discontinuity_seq: self.discontinuity_seq,
            program_date_ms,
        });
        self.next_msn += 1;
    }

    /// Closes the segment being written, if any, and returns its media sequence number: its
    /// parts become slices of one buffer (see the module's notes on memory), and the oldest
    /// segments beyond the window are dropped.
    pub fn close_segment(&mut self) -> Option<u64> {
        let open = self.open.take()?;
        let mut buf = Vec::with_capacity(open.len);
        for part in &open.parts {
            buf.extend_from_slice(&part.bytes);
        }
        let bytes = Bytes::from(buf);
        let mut at = 0;
        let parts = open
            .parts
            .into_iter()
            .map(|part| {
                let end = at + part.bytes.len();
                let sliced = Part {
                    bytes: bytes.slice(at..end),
                    ..part
                };
                at = end;
                sliced
            })
            .collect();
        self.longest_ms = self.longest_ms.max(open.duration_ms);
        self.program_end_ms = Some(open.program_date_ms + open.duration_ms);
        self.segments.push_back(LlSegment {
            msn: open.msn,
            duration_ms: open.duration_ms,
            discontinuity: open.discontinuity,
            discontinuity_seq: open.discontinuity_seq,
            program_date_ms: open.program_date_ms,
            bytes,
            parts,
        });
        self.version += 1;
        self.trim_to(self.settings.window);
        Some(open.msn)
    }

    /// Marks a discontinuity (the publisher reconnected): the segment being written closes,
    /// and the next one carries `EXT-X-DISCONTINUITY` and its own initialization segment.
    pub fn discontinuity(&mut self) {
        if self.close_segment().is_some() || self.next_msn > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// Ends the stream: the segment being written closes, and the playlist gets
    /// `EXT-X-ENDLIST` (and no more preload hint).
    pub fn end(&mut self) {
        self.close_segment();
        if !self.ended {
            self.ended = true;
            self.version += 1;
        }
    }

    /// The discontinuity sequence number of the segment being written, or of the last one
    /// opened (0 before any): names its initialization segment.
    pub fn discontinuity_seq(&self) -> u64 {
        self.discontinuity_seq
    }

    /// The stream ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Drops the oldest complete segments until at most `keep` (at least one) remain; true
    /// when some were dropped. The window does this after every segment; the server's media
    /// budget, when spent, may trim it further.
    pub fn trim_to(&mut self, keep: usize) -> bool {
        let excess = self.segments.len().saturating_sub(keep.max(1));
        self.segments.drain(..excess);
        if excess > 0 {
            self.version += 1;
        }
        excess > 0
    }

    /// Increases with every change of the playlist: a part, a segment closed, a trim, the
    /// end.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How far the playlist goes, in the terms of the shard's held requests: every segment
    /// before `msn` is complete, and `parts` parts of segment `msn` are listed.
    pub fn reached(&self) -> Reached {
        match &self.open {
            Some(open) => Reached {
                msn: open.msn,
                parts: open.parts.len() as u32,
            },
            None => Reached {
                msn: self.next_msn,
                parts: 0,
            },
        }
    }

    /// The complete segments, oldest first.
    pub fn segments(&self) -> &VecDeque<LlSegment> {
        &self.segments
    }

    /// Complete segment `msn`, if in the window.
    fn complete(&self, msn: u64) -> Option<&LlSegment> {
        let first = self.segments.front()?.msn;
        let index = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(index)
    }

    /// The bytes of complete segment `msn`, if in the window.
    pub fn segment(&self, msn: u64) -> Option<&Bytes> {
        self.complete(msn).map(|s| &s.bytes)
    }

    /// The bytes of a part, if it exists and its segment is in the window (listed or not).
    pub fn part(&self, id: PartId) -> Option<&Bytes> {
        let parts = match &self.open {
            Some(open) if open.msn == id.msn => &open.parts,
            _ => &self.complete(id.msn)?.parts,
        };
        parts.get(id.part as usize).map(|p| &p.bytes)
    }

    /// The part the preload hint names: the next part of the segment being written, or,
    /// when that segment has reached the target (the next keyframe closes it) or none is
    /// open, the first part of the next segment. `None` once the stream ended. The hint is
    /// a forecast: when the next part does not start with a keyframe, it goes to the open
    /// segment and the hinted part never comes (RFC 8216bis 6.2.6 lets a server drop a
    /// hinted resource; a request for it is then answered `404`).
    pub fn preload_hint(&self) -> Option<PartId> {
        if self.ended {
            return None;
        }
        Some(match &self.open {
            Some(open) if !self.closes(open, true) => PartId {
                msn: open.msn,
                part: open.parts.len() as u32,
            },
            _ => PartId {
                msn: self.next_msn,
                part: 0,
            },
        })
    }

    /// Bytes held: the complete segments (their parts are slices of them) and the parts of
    /// the segment being written.
    pub fn bytes_held(&self) -> usize {
        let open = self.open.as_ref().map_or(0, |o| o.len);
        open + self.segments.iter().map(|s| s.bytes.len()).sum::<usize>()
    }

    /// `EXT-X-TARGETDURATION`, seconds: the segment target rounded up, or the longest segment
    /// so far rounded to the nearest second if that is more.
    pub fn target_duration_s(&self) -> u64 {
        let configured = self.settings.segment_target_ms.div_ceil(1000);
        let longest = (self.longest_ms + 500) / 1000;
        configured.max(longest).max(1)
    }

    /// What `awaited` asks for, with a part past the last of a complete segment read as
    /// part 0 of the next segment (RFC 8216bis 6.2.5.2).
    fn normalize(&self, awaited: Awaited) -> Awaited {
        match (awaited.part, self.complete(awaited.msn)) {
            (Some(part), Some(segment)) if part as usize >= segment.parts.len() => Awaited {
                msn: awaited.msn + 1,
                part: Some(0),
            },
            _ => awaited,
        }
    }

    /// Whether the playlist contains `awaited` now (a held request checks this when woken).
    /// A segment that left the window counts as contained (RFC 8216bis 6.2.5.2: the playlist
    /// is then delivered).
    pub fn contains(&self, awaited: Awaited) -> bool {
        self.normalize(awaited).is_in(self.reached())
    }

    /// The answer to a playlist request with these directives (see the module's notes).
    pub fn reload(&self, directives: &Directives) -> Reload {
        let Some(msn) = directives.msn else {
            return Reload::Ready;
        };
        if self.ended {
            return Reload::Ready;
        }
        let reached = self.reached();
        if msn > reached.msn.saturating_add(1) {
            return Reload::TooFarAhead;
        }
        let awaited = self.normalize(Awaited {
            msn,
            part: directives.part,
        });
        if awaited.is_in(reached) {
            return Reload::Ready;
        }
        if let Some(part) = awaited.part {
            // Parts past the last one listed, counting the open segment as if it ended now.
            let ahead = if awaited.msn == reached.msn {
                (u64::from(part) + 1).saturating_sub(u64::from(reached.parts))
            } else {
                u64::from(part) + 1
            };
            let part_ms = self.settings.part_target_ms.min(1000);
            if ahead.saturating_mul(part_ms) > ADVANCE_PART_LIMIT_MS {
                return Reload::TooFarAhead;
            }
        }
        Reload::Wait(awaited)
    }

    /// The media playlist (see the module's notes).
    pub fn playlist(&self, request: &PlaylistRequest<'_>) -> String {
        let query = request.query.filter(|q| !q.is_empty());
        let target_s = self.target_duration_s();
        let target_ms = target_s * 1000;
        let skipped = if request.skip && !self.ended {
            self.skippable(SKIP_BOUNDARY_TARGETS * target_ms)
        } else {
            0
        };
        let parts_from = self.parts_listed_from(PART_LISTING_TARGETS * target_ms);
        // The header's numbers are those of the first segment listed, complete or open: a
        // discontinuity before it is counted by its tag, not by the header.
        let first = match (self.segments.front(), &self.open) {
            (Some(s), _) => Some((s.msn, s.discontinuity_seq, s.discontinuity)),
            (None, Some(o)) => Some((o.msn, o.discontinuity_seq, o.discontinuity)),
            (None, None) => None,
        };
        let (media_seq, discontinuity_seq) = match first {
            Some((msn, dsn, discontinuity)) => (msn, dsn - u64::from(discontinuity)),
            None => (self.next_msn, self.discontinuity_seq),
        };
        let part_target = self.settings.part_target_ms;
        let lines = self.segments.len() - skipped
            + self
                .segments
                .iter()
                .skip(parts_from)
                .map(|s| s.parts.len())
                .sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.parts.len());
        let mut out = String::with_capacity(384 + lines * (96 + query.map_or(0, str::len)));
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-TARGETDURATION:{target_s}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{media_seq}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}\n",
            if skipped > 0 { 9 } else { 6 },
            Seconds(PART_HOLD_BACK_PARTS * part_target),
            Seconds(SKIP_BOUNDARY_TARGETS * target_ms),
            Seconds(part_target),
        );
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let mut map = None;
        for (i, segment) in self.segments.iter().enumerate().skip(skipped) {
            self.segment_head(
                &mut out,
                &mut map,
                segment.discontinuity,
                segment.discontinuity_seq,
                segment.program_date_ms,
                query,
            );
            if i >= parts_from {
                self.write_parts(&mut out, segment.msn, &segment.parts, query);
            }
            let _ = writeln!(out, "#EXTINF:{},", Seconds(segment.duration_ms));
            write_uri(
                &mut out,
                &segment_name(&self.name, self.instance, segment.msn),
                query,
            );
            out.push('\n');
        }
        if let Some(open) = &self.open {
            self.segment_head(
                &mut out,
                &mut map,
                open.discontinuity,
                open.discontinuity_seq,
                open.program_date_ms,
                query,
            );
            self.write_parts(&mut out, open.msn, &open.parts, query);
        }
        match self.preload_hint() {
            Some(hint) => {
                out.push_str("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"");
                write_uri(
                    &mut out,
                    &part_name(&self.name, self.instance, hint.msn, hint.part),
                    query,
                );
                out.push_str("\"\n");
            }
            None => out.push_str("#EXT-X-ENDLIST\n"),
        }
        out
    }

    /// The tags before a segment's parts and `EXTINF`: discontinuity, initialization segment
    /// (when it differs from the one in effect), program date.
    fn segment_head(
        &self,
        out: &mut String,
        map: &mut Option<u64>,
        discontinuity: bool,
        discontinuity_seq: u64,
        program_date_ms: u64,
        query: Option<&str>,
    ) {
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if *map != Some(discontinuity_seq) {
            *map = Some(discontinuity_seq);
            out.push_str("#EXT-X-MAP:URI=\"");
            write_uri(
                out,
                &init_name(&self.name, self.instance, discontinuity_seq),
                query,
            );
            out.push_str("\"\n");
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(program_date_ms));
    }

    /// The `EXT-X-PART` tags of segment `msn`.
    fn write_parts(&self, out: &mut String, msn: u64, parts: &[Part], query: Option<&str>) {
        for (index, part) in parts.iter().enumerate() {
            let _ = write!(
                out,
                "#EXT-X-PART:DURATION={},URI=\"",
                Seconds(part.duration_ms)
            );
            write_uri(
                out,
                &part_name(&self.name, self.instance, msn, index as u32),
                query,
            );
            out.push('"');
            if part.independent {
                out.push_str(",INDEPENDENT=YES");
            }
            out.push('\n');
        }
    }

    /// How many of the oldest complete segments a delta update skips: those that end more
    /// than `boundary_ms` before the end of the last complete segment.
    fn skippable(&self, boundary_ms: u64) -> usize {
        let mut after = 0;
        for (i, segment) in self.segments.iter().enumerate().rev() {
            if after > boundary_ms {
                return i + 1;
            }
            after += segment.duration_ms;
        }
        0
    }

    /// The index of the first complete segment whose parts are listed: the segments that
    /// start no more than `limit_ms` before the end of the playlist.
    fn parts_listed_from(&self, limit_ms: u64) -> usize {
        let mut from_end = self.open.as_ref().map_or(0, |o| o.duration_ms);
        let mut first = self.segments.len();
        for (i, segment) in self.segments.iter().enumerate().rev() {
            from_end += segment.duration_ms;
            if from_end > limit_ms {
                break;
            }
            first = i;
        }
        first
    }
}

/// Milliseconds written as seconds with three decimals (`2.000`).
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Writes `name`, and `?query` when there is one (see [`PlaylistRequest::query`]).
fn write_uri(out: &mut String, name: &str, query: Option<&str>) {
    out.push_str(name);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        let _ = write!(out, "{}", utf8_percent_encode(query, QUERY_ESCAPES));
    }
}

/// Reads the delivery directives of a playlist request's query string. Other parameters
/// (credentials) are ignored, and so are other `_HLS_` parameters, reserved for directives
/// this server does not know.
pub fn parse_directives(query: Option<&str>) -> Result<Directives, DirectiveError> {
    let mut directives = Directives::default();
    let mut skip = None;
    for (name, value) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
    {
        match name {
            "_HLS_msn" => {
                let msn = decimal(value).ok_or(DirectiveError::Malformed("_HLS_msn"))?;
                if directives.msn.replace(msn).is_some() {
                    return Err(DirectiveError::Repeated("_HLS_msn"));
                }
            }
            "_HLS_part" => {
                let part = decimal(value)
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or(DirectiveError::Malformed("_HLS_part"))?;
                if directives.part.replace(part).is_some() {
                    return Err(DirectiveError::Repeated("_HLS_part"));
                }
            }
            "_HLS_skip" => {
                let yes = matches!(value, "YES" | "v2");
                if !yes {
                    return Err(DirectiveError::Malformed("_HLS_skip"));
                }
                if skip.replace(yes).is_some() {
                    return Err(DirectiveError::Repeated("_HLS_skip"));
                }
            }
            _ => {}
        }
    }
    if directives.part.is_some() && directives.msn.is_none() {
        return Err(DirectiveError::PartWithoutMsn);
    }
    directives.skip = skip.unwrap_or(false);
    Ok(directives)
}

/// A decimal-integer (RFC 8216bis 4.2): ASCII digits, leading zeros allowed, fitting a u64.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The multivariant playlist's file name, in the stream's directory
/// (`/{app}/{stream}/index.m3u8`).
pub const MULTIVARIANT_NAME: &str = "index.m3u8";

/// The media playlist's file name, in the stream's directory (`/{app}/{stream}/ll.m3u8`); the
/// multivariant playlist lists it, and the resources below are relative to it.
pub const PLAYLIST_NAME: &str = "ll.m3u8";

/// `{stream}-{instance}-{msn}.m4s`: a complete segment.
pub fn segment_name(stream: &str, instance: u64, msn: u64) -> String {
    format!("{stream}-{instance}-{msn}.m4s")
}

/// `{stream}-{instance}-{msn}.{part}.m4s`: a part.
pub fn part_name(stream: &str, instance: u64, msn: u64, part: u32) -> String {
    format!("{stream}-{instance}-{msn}.{part}.m4s")
}

/// `{stream}-{instance}-init{discontinuity_seq}.mp4`: the initialization segment of the
/// segments of that discontinuity sequence number (the tracks may change at a discontinuity,
/// so each has its own).
pub fn init_name(stream: &str, instance: u64, discontinuity_seq: u64) -> String {
    format!("{stream}-{instance}-init{discontinuity_seq}.mp4")
}

/// What an LL-HLS file name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The initialization segment of a discontinuity sequence number ([`init_name`]).
    Init(u64),
    /// A complete segment ([`segment_name`]).
    Segment(u64),
    /// A part ([`part_name`]).
    Part(PartId),
}

/// Splits an LL-HLS file name into stream name, instance and what it names. The numbers must
/// be written as the names above write them (decimal, no sign, no leading zeros), so that
/// each resource has one name. Unambiguous for any stream name: the last two `-` separate
/// the numbers, which hold none.
pub fn parse_name(file: &str) -> Option<(&str, u64, Resource)> {
    use crate::util::parse_canonical_u64;
    let (stem, init) = match file.strip_suffix(".mp4") {
        Some(stem) => (stem, true),
        None => (file.strip_suffix(".m4s")?, false),
    };
    let mut fields = stem.rsplitn(3, '-');
    let last = fields.next()?;
    let instance = parse_canonical_u64(fields.next()?)?;
    let stream = fields.next().filter(|s| !s.is_empty())?;
    let resource = if init {
        Resource::Init(parse_canonical_u64(last.strip_prefix("init")?)?)
    } else {
        match last.split_once('.') {
            None => Resource::Segment(parse_canonical_u64(last)?),
            Some((msn, part)) => Resource::Part(PartId {
                msn: parse_canonical_u64(msn)?,
                part: u32::try_from(parse_canonical_u64(part)?).ok()?,
            }),
        }
    };
    Some((stream, instance, resource))
}

/// One variant of a multivariant playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant<'a> {
    /// The media playlist's URI, relative to the multivariant playlist's.
    pub uri: &'a str,
    /// `BANDWIDTH`: peak bits per second.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`: average bits per second, if known.
    pub average_bandwidth: Option<u64>,
    /// `CODECS`, as the fMP4 writer describes its tracks (RFC 6381: `avc1.64001f,mp4a.40.2`).
    pub codecs: &'a str,
    /// `RESOLUTION`: width and height, if the stream has video.
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE`, if known: written with three decimals.
    pub frame_rate: Option<f64>,
}

/// A multivariant playlist listing `variants`, with `query` appended to their URIs as in
/// [`PlaylistRequest::query`]. A `"` or control character in `codecs` is left out (it could
/// not be quoted); a frame rate that is not a positive finite number is left out.
pub fn multivariant(variants: &[Variant<'_>], query: Option<&str>) -> String {
    let mut out = String::from("#EXTM3U\n");
    for variant in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", variant.bandwidth);
        if let Some(average) = variant.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
        }
        let codecs: String = variant
            .codecs
            .chars()
            .filter(|c| *c != '"' && !c.is_control())
            .collect();
        let _ = write!(out, ",CODECS=\"{codecs}\"");
        if let Some((width, height)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some(rate) = variant.frame_rate.filter(|r| r.is_finite() && *r > 0.0) {
            let _ = write!(out, ",FRAME-RATE={rate:.3}");
        }
        out.push('\n');
        write_uri(&mut out, variant.uri, query);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
