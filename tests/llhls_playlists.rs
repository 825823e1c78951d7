//! Low-Latency HLS playlists rendered by `corecast::hls::llhls`, checked by the test kit's
//! playlist checker (`corecast_testkit::hls_check`) after every change of streams that run,
//! change GOP, start with a burst, republish and end: each full playlist, its delta update,
//! and the playlist with credentials in its URIs; each full playlist also against the one
//! before it. The parsed playlists are compared with the window they came from: segments,
//! parts and which of them start with a keyframe, the preload hint, and the blocking-reload
//! answers for what they list and hint.
//!
//! Parts are cut as the fMP4 writer is to cut them: frames of 40 ms go into the part being
//! filled, which is handed over before a frame that would take it past the part target,
//! and before a keyframe at which the window says a segment starts.

use bytes::Bytes;
use corecast::hls::llhls::{
    parse_name, part_name, segment_name, Awaited, Directives, LlSettings, LlWindow, PartId,
    PlaylistRequest, Reload, Resource,
};
use corecast_testkit::hls_check::{self, MediaPlaylist, Part, Segment};
use std::time::Duration;

/// 2026-11-24T19:07:24.000Z
const T0: u64 = 1_795_547_244_000;

/// Frame interval: 25 fps.
const FRAME_MS: u64 = 40;

/// The query a protected stream's playlist carries into its URIs.
const QUERY: &str = "token=9.ab";

/// A stream's window fed frame by frame, checked after every change.
struct Stream {
    window: LlWindow,
    /// The part being filled: its bytes, duration, and whether it starts with a keyframe.
    part: Vec<u8>,
    part_ms: u64,
    part_independent: bool,
    /// The wall clock.
    now_ms: u64,
    /// The last full playlist checked.
    previous: Option<MediaPlaylist>,
    /// Playlists checked.
    checked: usize,
    /// Delta updates that skipped segments.
    deltas: usize,
}

impl Stream {
    fn new(segment_target_ms: u64, part_target_ms: u64, window: usize) -> Self {
        let settings = LlSettings {
            segment_target_ms,
            part_target_ms,
            window,
        };
        Stream {
            window: LlWindow::new("cam", 7, settings),
            part: Vec::new(),
            part_ms: 0,
            part_independent: false,
            now_ms: T0,
            previous: None,
            checked: 0,
            deltas: 0,
        }
    }

    /// `count` frames, a keyframe every `gop` (the first is one), the wall clock advancing
    /// with them unless `burst`.
    fn frames(&mut self, count: u32, gop: u32, burst: bool) {
        for i in 0..count {
            self.frame(i % gop == 0);
            if !burst {
                self.now_ms += FRAME_MS;
            }
        }
    }

    fn frame(&mut self, key: bool) {
        let part_target = self.window.settings().part_target_ms;
        let segment_starts = key && self.window.starts_segment(true, self.part_ms);
        if self.part_ms > 0 && (segment_starts || self.part_ms + FRAME_MS > part_target) {
            self.hand_over();
        }
        if self.part_ms == 0 {
            self.part_independent = key;
        }
        self.part
            .extend_from_slice(if key { b"key;" } else { b"inter;" });
        self.part_ms += FRAME_MS;
    }

    /// Hands the part being filled to the window.
    fn hand_over(&mut self) {
        if self.part_ms == 0 {
            return;
        }
        let bytes = Bytes::from(std::mem::take(&mut self.part));
        let duration = std::mem::take(&mut self.part_ms);
        self.window
            .add_part(bytes, duration, self.part_independent, self.now_ms)
            .unwrap();
        self.check();
    }

    /// The publisher reconnects `gap_ms` later.
    fn republish(&mut self, gap_ms: u64) {
        self.hand_over();
        self.window.discontinuity();
        self.now_ms += gap_ms;
        self.check();
    }

    fn end(&mut self) {
        self.hand_over();
        self.window.end();
        self.check();
        let last = self.previous.as_ref().unwrap();
        assert!(last.ended && last.preload_hints.is_empty());
    }

    /// Checks the playlists of the window as it is now.
    fn check(&mut self) {
        let full_text = self.window.playlist(&PlaylistRequest::default());
        let full = checked(&full_text);
        self.compare(&full);
        if let Some(previous) = &self.previous {
            let violations = hls_check::check_update(previous, &full);
            assert!(
                violations.is_empty(),
                "{}{full_text}",
                hls_check::report(&violations)
            );
        }

        let delta_text = self.window.playlist(&PlaylistRequest {
            skip: true,
            query: None,
        });
        let delta = checked(&delta_text);
        self.compare(&delta);
        if delta.skipped_segments == 0 {
            assert_eq!(delta_text, full_text);
        } else {
            self.deltas += 1;
            assert_eq!(delta.version, Some(9));
            let skipped = delta.skipped_segments as usize;
            let listed: Vec<_> = delta.segments.iter().map(segment_shape).collect();
            let kept: Vec<_> = full.segments[skipped..].iter().map(segment_shape).collect();
            assert_eq!(listed, kept);
            let open: Vec<_> = delta
                .open
                .iter()
                .flat_map(|o| &o.parts)
                .map(part_shape)
                .collect();
            let full_open: Vec<_> = full
                .open
                .iter()
                .flat_map(|o| &o.parts)
                .map(part_shape)
                .collect();
            assert_eq!(open, full_open);
            assert_eq!(delta.part_hint(), full.part_hint());
            // Nothing within the Skip Boundary is skipped.
            let boundary = full.server_control.can_skip_until.unwrap();
            let after: Duration = full.segments[skipped..].iter().map(|s| s.duration).sum();
            assert!(after > boundary, "{delta_text}");
        }

        let query_text = self.window.playlist(&PlaylistRequest {
            skip: false,
            query: Some(QUERY),
        });
        checked(&query_text);
        let suffix = format!("?{QUERY}");
        assert_eq!(query_text.replace(&suffix, ""), full_text);
        let uris = query_text.lines().filter(|l| !l.starts_with('#')).count()
            + query_text.matches("URI=\"").count();
        assert_eq!(query_text.matches(&suffix).count(), uris);

        self.checked += 3;
        self.previous = Some(full);
    }

    /// The playlist says what the window holds.
    fn compare(&self, p: &MediaPlaylist) {
        let w = &self.window;
        let listed: Vec<_> = w
            .segments()
            .iter()
            .skip(p.skipped_segments as usize)
            .collect();
        assert_eq!(p.segments.len(), listed.len());
        for (segment, held) in p.segments.iter().zip(listed) {
            assert_eq!(segment.msn, held.msn);
            assert_eq!(segment.uri, segment_name("cam", 7, held.msn));
            assert_eq!(segment.duration, Duration::from_millis(held.duration_ms));
            assert_eq!(segment.discontinuity, held.discontinuity);
            assert!(w.segment(held.msn).is_some());
            if segment.parts.is_empty() {
                continue;
            }
            assert_eq!(segment.parts.len(), held.parts.len());
            for (i, (part, held)) in segment.parts.iter().zip(&held.parts).enumerate() {
                assert_eq!(part.uri, part_name("cam", 7, segment.msn, i as u32));
                assert_eq!(part.duration, Duration::from_millis(held.duration_ms));
                assert_eq!(part.independent, held.independent);
            }
            assert!(
                segment.parts[0].independent,
                "a segment starts at a keyframe"
            );
        }
        let reached = w.reached();
        match &p.open {
            Some(open) => {
                assert_eq!(
                    (open.msn, open.parts.len() as u32),
                    (reached.msn, reached.parts)
                );
                assert!(open.parts[0].independent);
            }
            None => assert_eq!(reached.parts, 0),
        }
        for (msn, part) in p.parts() {
            let (_, _, resource) = parse_name(&part.uri).unwrap();
            let Resource::Part(id) = resource else {
                panic!("{} names no part", part.uri);
            };
            assert_eq!(id.msn, msn);
            assert!(w.part(id).is_some());
            let awaited = Awaited {
                msn,
                part: Some(id.part),
            };
            assert!(w.contains(awaited));
            let directives = Directives {
                msn: Some(msn),
                part: Some(id.part),
                skip: false,
            };
            assert_eq!(w.reload(&directives), Reload::Ready);
        }
        let hint = w.preload_hint();
        let hinted = hint.map(|h| part_name("cam", 7, h.msn, h.part));
        assert_eq!(p.part_hint(), hinted.as_deref());
        if let Some(PartId { msn, part }) = hint {
            let awaited = Awaited {
                msn,
                part: Some(part),
            };
            assert!(!w.contains(awaited) && w.part(PartId { msn, part }).is_none());
            let directives = Directives {
                msn: Some(msn),
                part: Some(part),
                skip: false,
            };
            assert_eq!(w.reload(&directives), Reload::Wait(awaited));
        }
    }
}

/// What a part says, apart from its line: URI, duration, independent.
type PartShape<'a> = (&'a str, Duration, bool);

/// What a segment says, apart from its lines: media sequence number, URI, duration,
/// discontinuity, program date, parts.
type SegmentShape<'a> = (
    u64,
    &'a str,
    Duration,
    bool,
    Option<i64>,
    Vec<PartShape<'a>>,
);

fn segment_shape(s: &Segment) -> SegmentShape<'_> {
    let parts = s.parts.iter().map(part_shape).collect();
    let Segment {
        msn,
        duration,
        discontinuity,
        program_date_ms,
        ..
    } = *s;
    (msn, &s.uri, duration, discontinuity, program_date_ms, parts)
}

fn part_shape(p: &Part) -> PartShape<'_> {
    (&p.uri, p.duration, p.independent)
}

/// The playlist, checked.
fn checked(text: &str) -> MediaPlaylist {
    hls_check::check(text)
        .unwrap_or_else(|violations| panic!("{}{text}", hls_check::report(&violations)))
}

#[test]
fn a_steady_stream() {
    // 2 s segments of 500 ms parts (12 frames, 480 ms), a keyframe every 2 s, 90 s.
    let mut stream = Stream::new(2000, 500, 6);
    stream.frames(25 * 90, 50, false);
    stream.end();
    assert!(stream.checked > 3 * 190, "{}", stream.checked);
    assert!(
        stream.deltas == 0,
        "6 segments of 2 s never reach past the Skip Boundary"
    );
    let last = stream.previous.unwrap();
    assert_eq!((last.target_duration, last.segments.len()), (2, 6));
}

#[test]
fn keyframes_inside_segments_and_gops_longer_than_the_target() {
    // A keyframe every second in 2 s segments: the mid-segment ones stay inside parts. Then
    // a GOP of 2.4 s: segments of 2.4 s, whose EXTINF still rounds to 2.
    let mut stream = Stream::new(2000, 500, 12);
    stream.frames(25 * 40, 25, false);
    stream.frames(60 * 20, 60, false);
    stream.end();
    let last = stream.previous.unwrap();
    assert_eq!(last.target_duration, 2);
    assert!(last
        .segments
        .iter()
        .all(|s| s.duration == Duration::from_millis(2400)));
    assert!(
        stream.deltas > 0,
        "12 segments reach past 6 target durations"
    );
}

#[test]
fn a_burst_then_live() {
    // The ring replayed when HLS starts: 4 s of frames at once, then live.
    let mut stream = Stream::new(1000, 200, 10);
    stream.frames(25 * 4, 25, true);
    stream.frames(25 * 30, 25, false);
    assert!(stream.deltas > 0);
    let last = stream.previous.unwrap();
    assert_eq!(last.part_target, Some(Duration::from_millis(200)));
}

#[test]
fn republishes_and_the_end() {
    let mut stream = Stream::new(2000, 500, 8);
    stream.frames(25 * 7 + 13, 50, false);
    // In the middle of a part, and again before any keyframe came.
    stream.republish(3000);
    stream.republish(500);
    // The new publisher starts with inter frames, left out until its first keyframe.
    stream.frame(false);
    stream.frame(false);
    stream.frames(25 * 9, 25, false);
    // Once more, without a pause.
    stream.republish(0);
    stream.frames(25 * 30, 50, false);
    stream.end();
    let last = stream.previous.unwrap();
    assert_eq!(last.discontinuity_sequence, 2);
    assert!(last
        .segments
        .iter()
        .all(|s| s.map.as_deref() == Some("cam-7-init2.mp4")));
}
