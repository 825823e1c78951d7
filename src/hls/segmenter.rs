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
use crate::flv::codec;
use crate::media::{Unit, UnitKind};
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

impl Segmenter {
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
            discontinuity_seq: 0,
            pending_discontinuity: false,
            video_gap: false,
            last_dts: None,
            ended: false,
            longest_ms: 0,
            unsupported: None,
        }
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
    /// H.264 and HEVC video (legacy or Enhanced RTMP headers, one track) and AAC audio
    /// (legacy header) are muxed. The first unit of another codec (AV1, VP9, Opus, MP3, ...,
    /// multitrack video, enhanced audio) marks the stream
    /// [`unsupported`](Segmenter::unsupported): its open segment is dropped and nothing more
    /// is muxed, rather than serving segments that lack one of its tracks. (Empty or
    /// cut-short bodies are only left out.)
    pub fn push(&mut self, unit: &Unit, now_ms: u64) -> Result<bool, TsError> {
        let body = unit.body();
        let (known, unsupported) = match unit.kind {
            UnitKind::Video => match codec::video(body) {
                Some(v)
                    if v.multitrack
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
                if dts.saturating_sub(open.start_dts) >= self.target_ms || open.tracks != tracks {
                    closed = self.close_at(dts).is_some();
                }
            }
            if self.open.is_none() {
                let mut bytes = Vec::with_capacity(256 * 1024);
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
            bytes: mut buf,
            start_dts,
            started_at_ms,
            discontinuity,
            ..
        } = self.open.take()?;
        // `Bytes::from` keeps the allocation's spare capacity: give it back first.
        buf.shrink_to_fit();
        let duration_ms = end_dts.saturating_sub(start_dts);
        self.longest_ms = self.longest_ms.max(duration_ms);
        self.segments.push_back(Segment {
            seq: self.next_seq,
            duration_ms,
            discontinuity,
            started_at_ms,
            bytes: Bytes::from(buf),
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

/// How a track MPEG-TS cannot carry is named in logs and answers: `"av1 video"`.
fn track_name(codec: String, kind: &str, enhanced: bool) -> String {
    let header = if enhanced { " (Enhanced RTMP)" } else { "" };
    format!("{codec} {kind}{header}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_547_244_123), "2026-11-24T19:07:24.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn names_round_trip() {
        let name = segment_name("my-cam", 17, 42);
        assert_eq!(parse_segment_name(&name), Some(("my-cam", 17, 42)));
        assert_eq!(parse_segment_name("x.ts"), None);
        for other_spelling in ["my-cam-017-42.ts", "my-cam-17-+42.ts", "my-cam-17- 42.ts"] {
            assert_eq!(parse_segment_name(other_spelling), None, "{other_spelling}");
        }
    }
}

#[cfg(test)]
mod segment_tests {
    use super::*;
    use crate::media::UnitKind;

    fn unit(kind: UnitKind, dts: u32, key: bool, header: bool, body: &[u8]) -> Unit {
        Unit::serialize(kind, dts, key, header, body, 4096)
    }

    #[test]
    fn a_track_mpeg_ts_cannot_carry_keeps_the_stream_out_of_hls() {
        let mut seg = Segmenter::new("s", 1, 1000, 3);
        // Empty or cut-short bodies are only left out.
        assert!(!seg
            .push(&unit(UnitKind::Video, 0, false, false, &[]), 0)
            .unwrap());
        assert!(!seg
            .push(&unit(UnitKind::Video, 0, true, true, &[0x90, b'a']), 0)
            .unwrap());
        assert_eq!(seg.unsupported(), None);
        // AAC audio first, then an AV1 sequence start (Enhanced RTMP).
        let asc = [0xaf, 0, 0x12, 0x10];
        assert!(!seg
            .push(&unit(UnitKind::Audio, 0, false, true, &asc), 0)
            .unwrap());
        let av1 = [0x90, b'a', b'v', b'0', b'1', 0x81];
        assert!(!seg
            .push(&unit(UnitKind::Video, 0, false, true, &av1), 0)
            .unwrap());
        assert_eq!(seg.unsupported(), Some("av1 video (Enhanced RTMP)"));
        // Nothing more is muxed, whatever comes.
        let aac = [0xaf, 1, 0x21, 0x10];
        for ts in (0..3000).step_by(23) {
            assert!(!seg
                .push(&unit(UnitKind::Audio, ts, false, false, &aac), 0)
                .unwrap());
        }
        assert!(seg.segments().is_empty());
        let view = crate::hls::HlsView::of(&seg, 1, false);
        assert_eq!(
            view.unsupported.as_deref(),
            Some("av1 video (Enhanced RTMP)")
        );
        // Legacy codecs other than H.264 and AAC too.
        let mut seg = Segmenter::new("s", 1, 1000, 3);
        seg.push(
            &unit(UnitKind::Audio, 0, false, false, &[0x2f, 0xff, 0xfb]),
            0,
        )
        .unwrap();
        assert_eq!(seg.unsupported(), Some("mp3 audio"));
    }

    /// AVC sequence header with one 4-byte SPS and one 2-byte PPS, 4-byte NALU lengths.
    const AVC_CONFIG: &[u8] = &[
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68,
        0xee,
    ];

    fn frame(key: bool) -> Vec<u8> {
        let nal: &[u8] = if key {
            &[0x65, 0x88, 0x84]
        } else {
            &[0x41, 0x9a, 0x02]
        };
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        body.extend_from_slice(nal);
        body
    }

    /// A segmenter fed with `seconds` of 25 fps video with a keyframe every `gop` frames.
    fn fed(target_ms: u64, window: usize, frames: u32, gop: u32) -> Segmenter {
        let mut s = Segmenter::new("cam", 7, target_ms, window);
        s.push(&unit(UnitKind::Video, 0, false, true, AVC_CONFIG), 0)
            .unwrap();
        for i in 0..frames {
            let key = i % gop == 0;
            s.push(&unit(UnitKind::Video, i * 40, key, false, &frame(key)), 0)
                .unwrap();
        }
        s
    }

    #[test]
    fn segments_close_at_the_first_keyframe_after_the_target() {
        // GOP of 30 frames (1.2 s), target 2 s: segments of two GOPs, 2.4 s.
        let s = fed(2000, 10, 30 * 6 + 1, 30);
        let durations: Vec<u64> = s.segments().iter().map(|s| s.duration_ms).collect();
        assert_eq!(durations, vec![2400, 2400, 2400]);
        let playlist = s.playlist();
        assert!(playlist.contains("#EXT-X-TARGETDURATION:3\n"), "{playlist}");
        assert!(
            playlist.contains("#EXTINF:2.400,\ncam-7-0.ts\n"),
            "{playlist}"
        );
    }

    #[test]
    fn window_drops_old_segments_and_counts_discontinuities() {
        let mut s = fed(1000, 2, 25 * 3 + 1, 25);
        assert_eq!(s.segments().len(), 2);
        s.discontinuity();
        let dts = 25 * 3 * 40 + 40;
        for i in 0..60u32 {
            let key = i % 25 == 0;
            let u = unit(UnitKind::Video, dts + i * 40, key, false, &frame(key));
            s.push(&u, 0).unwrap();
        }
        assert!(s.playlist().contains("#EXT-X-DISCONTINUITY\n"));
        let first = s.segments().front().map(|s| s.seq).unwrap();
        assert!(first >= 2, "old segments dropped");
        s.end();
        let playlist = s.playlist();
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
        assert!(playlist.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", s.segments()[0].seq)));
    }

    /// Video PES packets (PID 0x100) in a segment's TS packets.
    fn video_packets(segment: &Segment) -> usize {
        segment
            .bytes
            .chunks(188)
            .filter(|p| p[1] & 0x1f == 0x01 && p[2] == 0x00)
            .count()
    }

    #[test]
    fn a_malformed_keyframe_neither_closes_nor_opens_a_segment() {
        // GOP of 25 frames (1 s), target 1 s: segments of one GOP.
        let mut s = fed(1000, 10, 50, 25);
        assert_eq!(s.segments().len(), 1);
        // The keyframe at 2 s announces a NAL unit longer than itself.
        let mut bad = frame(true);
        bad[5..9].copy_from_slice(&0x4000u32.to_be_bytes());
        let err = s.push(&unit(UnitKind::Video, 2000, true, false, &bad), 0);
        assert!(matches!(err, Err(TsError::TruncatedFrame)), "{err:?}");
        // Its GOP's inter frames are left out; the next keyframe closes the segment at 3 s.
        for i in 51..76u32 {
            let key = i % 25 == 0;
            let closed = s
                .push(&unit(UnitKind::Video, i * 40, key, false, &frame(key)), 0)
                .unwrap();
            assert_eq!(closed, key, "frame {i}");
        }
        let durations: Vec<u64> = s.segments().iter().map(|s| s.duration_ms).collect();
        assert_eq!(durations, vec![1000, 2000]);
        // The second segment holds its 25 frames and nothing of the broken GOP.
        let plain = fed(1000, 10, 51, 25);
        assert_eq!(
            video_packets(&s.segments()[1]),
            video_packets(&plain.segments()[1])
        );
    }

    #[test]
    fn a_track_configured_mid_segment_starts_the_next_segment() {
        let mut s = Segmenter::new("late", 1, 1000, 4);
        s.push(
            &unit(UnitKind::Audio, 0, false, true, &[0xaf, 0, 0x12, 0x08]),
            0,
        )
        .unwrap();
        for i in 0..10u32 {
            s.push(
                &unit(UnitKind::Audio, i * 23, true, false, &[0xaf, 1, 1, 2]),
                0,
            )
            .unwrap();
        }
        // Video arrives in the middle of the audio-only segment: its inter frames wait, its
        // first keyframe starts a segment whose PMT lists it.
        s.push(&unit(UnitKind::Video, 240, false, true, AVC_CONFIG), 0)
            .unwrap();
        s.push(&unit(UnitKind::Video, 240, false, false, &frame(false)), 0)
            .unwrap();
        s.push(
            &unit(UnitKind::Audio, 250, true, false, &[0xaf, 1, 1, 2]),
            0,
        )
        .unwrap();
        assert!(s.segments().is_empty());
        assert!(s
            .push(&unit(UnitKind::Video, 280, true, false, &frame(true)), 0)
            .unwrap());
        let audio_only = &s.segments()[0];
        assert_eq!(audio_only.duration_ms, 280);
        assert_eq!(video_packets(audio_only), 0);
        s.end();
        assert!(video_packets(&s.segments()[1]) > 0);
    }

    #[test]
    fn audio_only_streams_segment_on_any_frame() {
        let mut s = Segmenter::new("radio", 1, 1000, 4);
        s.push(
            &unit(UnitKind::Audio, 0, false, true, &[0xaf, 0, 0x12, 0x08]),
            0,
        )
        .unwrap();
        // 43 AAC frames per second (1024 samples at 44.1 kHz), every one a start point.
        for i in 0..130u32 {
            s.push(
                &unit(
                    UnitKind::Audio,
                    i * 1024 * 1000 / 44_100,
                    true,
                    false,
                    &[0xaf, 1, 1, 2],
                ),
                0,
            )
            .unwrap();
        }
        assert_eq!(s.segments().len(), 2);
        let seg = &s.segments()[0];
        assert!(
            (1000..1100).contains(&seg.duration_ms),
            "{}",
            seg.duration_ms
        );
        // The PMT lists only the audio PID, which carries the PCR.
        assert!(!seg
            .bytes
            .chunks(188)
            .any(|p| p[1] & 0x1f == 0x01 && p[2] == 0x00));
    }

    #[test]
    fn video_is_annex_b_with_parameter_sets_before_idr() {
        let s = fed(1000, 4, 26, 25);
        let seg = &s.segments()[0].bytes;
        assert_eq!(seg.len() % 188, 0);
        let needle = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 0, 1, 0x68,
        ];
        assert!(
            seg.windows(needle.len()).any(|w| w == needle),
            "AUD, SPS, PPS in order"
        );
        assert!(
            seg.windows(5).any(|w| w == [0, 0, 0, 1, 0x65]),
            "IDR in Annex B"
        );
    }

    #[test]
    fn trimming_the_window_drops_the_oldest_segments_and_moves_the_version() {
        // Seven 1 s segments in a window of six.
        let mut s = fed(1000, 6, 25 * 7 + 1, 25);
        assert_eq!(s.segments().len(), 6);
        let held = s.bytes_held();
        let (first, version) = (s.segments()[0].seq, s.version());
        assert!(s.trim_to(3));
        assert_eq!(s.segments().len(), 3);
        assert_eq!(s.segments()[0].seq, first + 3);
        assert!(
            s.version() > version,
            "a trimmed playlist replaces the old one"
        );
        assert!(s.bytes_held() < held);
        assert!(s
            .playlist()
            .contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", first + 3)));
        assert!(!s.trim_to(3), "nothing more to drop");
        assert!(s.trim_to(0));
        assert_eq!(s.segments().len(), 1, "the newest segment stays");
    }
}
