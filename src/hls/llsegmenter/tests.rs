//! Unit tests of [`super`] (llsegmenter): where parts and segments end and when parts are
//! available, initialization segments across configuration changes, republish and end,
//! parts the window refuses. Every playlist is checked by the test kit's checker.

use super::*;
use crate::hls::fmp4::samples::{
    aac_frame, aac_header, av_units, avc_frame, avc_header, hex, parse_fragment, unit, AVCC,
};
use crate::hls::fmp4::{AUDIO_TRACK_ID, VIDEO_TIMESCALE};
use crate::hls::llhls::LlSegment;
use crate::hls::llhls::PlaylistRequest;
use crate::media::UnitKind;
use corecast_testkit::hls_check::{self, MediaPlaylist};

/// 2026-12-06T00:00:00.000Z
const T0: u64 = 1_796_515_200_000;

/// 2 s segments, 250 ms parts, 6 segments.
const SETTINGS: LlSettings = LlSettings {
    segment_target_ms: 2000,
    part_target_ms: 250,
    window: 6,
};

/// A segmenter with H.264 and AAC configured.
fn configured() -> LlSegmenter {
    let mut s = LlSegmenter::new("cam", 3, SETTINGS);
    for header in [
        unit(UnitKind::Video, 0, true, &avc_header()),
        unit(UnitKind::Audio, 0, true, &aac_header()),
    ] {
        assert_eq!(s.push(&header, T0).unwrap(), Changed::default());
    }
    s
}

/// Feeds `units`, the wall clock following their timestamps from `T0`; returns what
/// changed, summed.
fn feed(s: &mut LlSegmenter, units: &[Unit]) -> Changed {
    let mut total = Changed::default();
    for u in units {
        let changed = s.push(u, T0 + u64::from(u.dts)).unwrap();
        total.parts += changed.parts;
        total.closed = changed.closed.or(total.closed);
    }
    total
}

/// The full playlist and its delta update, checked.
fn checked(s: &LlSegmenter) -> MediaPlaylist {
    let check = |text: String| {
        hls_check::check(&text)
            .unwrap_or_else(|violations| panic!("{}{text}", hls_check::report(&violations)))
    };
    check(s.window().playlist(&PlaylistRequest {
        skip: true,
        query: None,
    }));
    check(s.window().playlist(&PlaylistRequest::default()))
}

/// Parts in the window: those of its complete segments and of the one being written.
fn part_count(s: &LlSegmenter) -> usize {
    let w = s.window();
    w.segments()
        .iter()
        .map(|seg| seg.parts.len())
        .sum::<usize>()
        + w.reached().parts as usize
}

#[test]
fn parts_fill_the_target_and_segments_start_at_keyframes() {
    let mut s = configured();
    // 12 s, a keyframe every second: segments of 2 s, parts of 240 ms (6 frames).
    let changed = feed(&mut s, &av_units(12_000, 25));
    assert!(changed.any());
    let playlist = checked(&s);
    assert_eq!(
        playlist.part_target,
        Some(std::time::Duration::from_millis(250))
    );
    let w = s.window();
    assert_eq!(
        w.segments().iter().map(|seg| seg.msn).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "the sixth segment is being written"
    );
    for seg in w.segments() {
        assert_eq!(seg.duration_ms, 2000, "segment {}", seg.msn);
        assert!(
            seg.parts[0].independent,
            "segment {} starts with one",
            seg.msn
        );
        let (last, full) = seg.parts.split_last().unwrap();
        for p in full {
            assert!(
                (210..=250).contains(&p.duration_ms),
                "segment {}: a part of {} ms",
                seg.msn,
                p.duration_ms
            );
        }
        assert!(last.duration_ms <= 250);
        // The keyframe in the middle of the segment (at 1 s) stays inside a part.
        assert_eq!(seg.parts.iter().filter(|p| p.independent).count(), 1);
        assert_eq!(
            seg.bytes.len(),
            seg.parts.iter().map(|p| p.bytes.len()).sum::<usize>()
        );
    }
    assert_eq!(s.inits().count(), 1);
    assert_eq!(s.init(0), s.writer().init_segment().as_ref());
    assert!(part_count(&s) > 40);
}

#[test]
fn a_part_is_available_at_its_end() {
    let mut s = configured();
    let units = av_units(4000, 50);
    let listed = |s: &LlSegmenter| {
        s.window()
            .segments()
            .iter()
            .map(|seg| seg.duration_ms)
            .sum::<u64>()
            + open_duration(s)
    };
    let (mut handed, mut at_their_end) = (0u32, 0);
    for u in &units {
        let before = listed(&s);
        handed += s.push(u, T0 + u64::from(u.dts)).unwrap().parts;
        let after = listed(&s);
        if u.kind == UnitKind::Video && after > before {
            // The frame that makes the last sample complete starts where the part ends:
            // the part goes out then, not a frame later.
            assert_eq!(
                after,
                u64::from(u.dts),
                "parts cover {after} ms at {} ms",
                u.dts
            );
            at_their_end += 1;
        }
        assert!(
            u64::from(u.dts) - after <= 250,
            "at {} ms only {after} ms are in parts",
            u.dts
        );
    }
    assert!(handed >= 15, "{handed} parts in 4 s");
    assert!(
        at_their_end >= 12,
        "{at_their_end} parts went out at their end"
    );
}

/// Duration of the parts of the segment being written (from the playlist).
fn open_duration(s: &LlSegmenter) -> u64 {
    let playlist = checked(s);
    playlist.open.as_ref().map_or(0, |open| {
        open.parts
            .iter()
            .map(|p| p.duration.as_millis() as u64)
            .sum()
    })
}

/// Presentation span (ms) of each track in a segment's parts, read back through their
/// boxes: `[video, audio]`, each `(start, end)`.
fn spans(segment: &LlSegment) -> [(f64, f64); 2] {
    let mut spans = [(f64::MAX, f64::MIN); 2];
    for part in &segment.parts {
        for run in parse_fragment(&part.bytes).1 {
            let (track, timescale) = match run.track == AUDIO_TRACK_ID {
                true => (1, 44_100.0),
                false => (0, f64::from(VIDEO_TIMESCALE)),
            };
            let mut decode = run.tfdt as f64;
            for (duration, _, _, cts, _) in &run.samples {
                let shown = decode + *cts as f64;
                let span = &mut spans[track];
                span.0 = span.0.min(shown * 1000.0 / timescale);
                span.1 = span
                    .1
                    .max((shown + f64::from(*duration)) * 1000.0 / timescale);
                decode += f64::from(*duration);
            }
        }
    }
    spans
}

#[test]
fn segments_carry_the_audio_of_their_pictures() {
    // Pictures shown 80 ms after their decode time (two B-frames): a segment's audio runs
    // from its keyframe's presentation time to the next one's, not from decode time to
    // decode time, so both tracks of a segment cover the same span (players that measure
    // a segment by what it buffered, hls.js among them, take a shorter one as not loaded).
    // The audio that came before the first picture is left out.
    let mut s = configured();
    feed(&mut s, &av_units(12_000, 25));
    checked(&s);
    let segments = s.window().segments();
    assert_eq!(segments.len(), 5);
    // One AAC frame at 44.1 kHz: the audio cannot end closer to a picture than that.
    const AAC_FRAME_MS: f64 = 1024.0 * 1000.0 / 44_100.0;
    for (i, segment) in segments.iter().enumerate() {
        let [video, audio] = spans(segment);
        assert_eq!(
            video,
            (80.0 + i as f64 * 2000.0, 2080.0 + i as f64 * 2000.0)
        );
        // A player's timeline starts at the earliest decode time it loads: the keyframe is
        // shown right there (its decode time runs its composition time after the DTS).
        let earliest = parse_fragment(&segment.parts[0].bytes)
            .1
            .iter()
            .map(|run| match run.track == AUDIO_TRACK_ID {
                true => run.tfdt as f64 * 1000.0 / 44_100.0,
                false => run.tfdt as f64 * 1000.0 / f64::from(VIDEO_TIMESCALE),
            })
            .fold(f64::MAX, f64::min);
        assert_eq!(earliest, video.0, "segment {}", segment.msn);
        assert!(
            audio.0 >= video.0 && audio.0 - video.0 < AAC_FRAME_MS,
            "segment {}: audio from {:.1} ms, video from {:.1} ms",
            segment.msn,
            audio.0,
            video.0
        );
        assert!(
            audio.1 >= video.1 && audio.1 - video.1 < AAC_FRAME_MS,
            "segment {}: audio to {:.1} ms, video to {:.1} ms",
            segment.msn,
            audio.1,
            video.1
        );
    }
}

#[test]
fn a_segment_end_waits_for_its_audio_within_bounds() {
    let mut s = configured();
    // Audio stops at 3 s; the video goes on. The segment that ends at the keyframe at 4 s
    // (shown at 4.08 s) waits for audio up to 4.08 s, then, without it, one part target
    // of video more.
    feed(&mut s, &av_units(3000, 25));
    let listed = |s: &LlSegmenter| {
        s.window()
            .segments()
            .iter()
            .map(|seg| seg.duration_ms)
            .sum::<u64>()
            + open_duration(s)
    };
    for i in 75..125u32 {
        let dts = i * 40;
        let frame = avc_frame(i % 25 == 0, 80, &[0x41, i as u8]);
        s.push(
            &unit(UnitKind::Video, dts, false, &frame),
            T0 + u64::from(dts),
        )
        .unwrap();
        let covered = listed(&s);
        match dts {
            4000..4330 => assert!(covered < 4000, "at {dts} ms: {covered} ms in parts"),
            4360.. => assert!(covered >= 4000, "at {dts} ms: {covered} ms in parts"),
            _ => {}
        }
    }
    checked(&s);
    assert_eq!(s.window().segments().len(), 2);
    // When the audio comes, a segment end waits for no more than it.
    let mut s = configured();
    feed(&mut s, &av_units(2000, 25));
    let key = unit(
        UnitKind::Video,
        2000,
        false,
        &avc_frame(true, 80, &[0x65, 0]),
    );
    s.push(&key, T0 + 2000).unwrap();
    assert_eq!(
        s.window().segments().len(),
        0,
        "the audio to 2.08 s is missing"
    );
    let audio = unit(UnitKind::Audio, 2090, false, &aac_frame(0));
    let changed = s.push(&audio, T0 + 2090).unwrap();
    assert!(changed.parts > 0, "{changed:?}");
    checked(&s);
}

#[test]
fn a_new_configuration_after_parts_starts_a_discontinuity_with_its_own_map() {
    let mut s = configured();
    feed(&mut s, &av_units(3000, 25));
    let first_init = s.init(0).cloned().unwrap();
    // The encoder restarts at another level.
    let mut record = hex(AVCC);
    record[3] = 0x1f;
    let header = [&[0x17, 0, 0, 0, 0][..], &record].concat();
    let changed = s
        .push(&unit(UnitKind::Video, 3000, true, &header), T0 + 3000)
        .unwrap();
    assert!(changed.closed.is_some(), "the segment being written closes");
    for i in 0..75u32 {
        let dts = 3000 + i * 40;
        let frame = avc_frame(i % 25 == 0, 0, &[0x65, i as u8]);
        s.push(
            &unit(UnitKind::Video, dts, false, &frame),
            T0 + u64::from(dts),
        )
        .unwrap();
    }
    let playlist = checked(&s);
    let seqs: Vec<u64> = s.inits().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(s.init(0), Some(&first_init));
    assert_ne!(s.init(1), Some(&first_init));
    assert_eq!(s.init(1), s.writer().init_segment().as_ref());
    let mut maps: Vec<&str> = playlist
        .segments
        .iter()
        .filter_map(|seg| seg.map.as_deref())
        .chain(playlist.open.iter().filter_map(|open| open.map.as_deref()))
        .collect();
    maps.dedup();
    assert_eq!(maps, ["cam-3-init0.mp4", "cam-3-init1.mp4"]);
    assert!(playlist.segments.iter().any(|seg| seg.discontinuity));
}

#[test]
fn repeated_headers_change_nothing() {
    // Some encoders send their sequence headers again before every keyframe.
    let mut s = configured();
    let init = s.writer().init_segment();
    for u in av_units(9000, 25) {
        let at = T0 + u64::from(u.dts);
        if u.kind == UnitKind::Video && u.wire.body().first() == Some(&0x17) {
            for header in [avc_header(), aac_header()] {
                let kind = if header[0] == 0x17 {
                    UnitKind::Video
                } else {
                    UnitKind::Audio
                };
                s.push(&unit(kind, u.dts, true, &header), at).unwrap();
            }
        }
        s.push(&u, at).unwrap();
    }
    // Parts of 240 ms (the checker refuses a short one inside a segment), one map.
    let playlist = checked(&s);
    assert_eq!(s.inits().map(|(seq, _)| *seq).collect::<Vec<_>>(), [0]);
    assert_eq!(s.writer().init_segment(), init);
    assert!(!playlist.segments.iter().any(|seg| seg.discontinuity));
    assert_eq!(s.window().segments().len(), 4);
}

#[test]
fn republish_and_end_hand_over_the_held_samples() {
    let mut s = configured();
    let units = av_units(3000, 25);
    feed(&mut s, &units);
    let listed = part_count;
    let before = listed(&s);
    let changed = s.discontinuity(T0 + 3000).unwrap();
    assert!(changed.parts >= 1, "the last samples went out");
    assert!(changed.closed.is_some());
    assert!(listed(&s) > before);
    assert_eq!(s.writer().queued_bytes(), 0);
    // The new publisher: the same configuration, timestamps going on.
    for header in [
        unit(UnitKind::Video, 3100, true, &avc_header()),
        unit(UnitKind::Audio, 3100, true, &aac_header()),
    ] {
        s.push(&header, T0 + 4000).unwrap();
    }
    for i in 0..60u32 {
        let dts = 3100 + i * 40;
        let frame = avc_frame(i % 25 == 0, 0, &[0x65, i as u8]);
        s.push(
            &unit(UnitKind::Video, dts, false, &frame),
            T0 + 1000 + u64::from(dts),
        )
        .unwrap();
    }
    let playlist = checked(&s);
    assert!(playlist.segments.iter().any(|seg| seg.discontinuity));
    assert_eq!(s.inits().map(|(seq, _)| *seq).collect::<Vec<_>>(), [0, 1]);
    let ended = s.end(T0 + 7000).unwrap();
    assert!(ended.parts >= 1 && ended.closed.is_some());
    let playlist = checked(&s);
    assert!(playlist.ended && playlist.open.is_none());
    assert_eq!(s.writer().queued_bytes(), 0);
    // Nothing changes after the end.
    let frame = unit(UnitKind::Video, 6000, false, &avc_frame(true, 0, &[0x65]));
    assert_eq!(s.push(&frame, T0 + 8000).unwrap(), Changed::default());
    assert_eq!(s.end(T0 + 8000).unwrap(), Changed::default());
}

#[test]
fn a_publisher_that_leaves_has_its_last_frames_handed_over_at_once() {
    let mut s = configured();
    feed(&mut s, &av_units(3000, 25));
    let before = part_count(&s);
    let flushed = s.flush(T0 + 3000).unwrap();
    assert!(flushed.parts >= 1, "{flushed:?}");
    assert_eq!(part_count(&s), before + flushed.parts as usize);
    assert_eq!(s.writer().queued_bytes(), 0);
    let playlist = checked(&s);
    assert!(
        !playlist.ended && playlist.open.is_some(),
        "the segment stays open"
    );
    // The republish that follows has nothing left to hand over, and marks its
    // discontinuity.
    let republished = s.discontinuity(T0 + 4000).unwrap();
    assert_eq!(republished.parts, 0);
    assert!(republished.closed.is_some());
    for i in 0..60u32 {
        let dts = 3100 + i * 40;
        let frame = avc_frame(i % 25 == 0, 0, &[0x65, i as u8]);
        s.push(
            &unit(UnitKind::Video, dts, false, &frame),
            T0 + 4000 + u64::from(i) * 40,
        )
        .unwrap();
    }
    assert!(checked(&s).segments.iter().any(|seg| seg.discontinuity));
}

#[test]
fn a_part_longer_than_the_target_is_left_out_and_the_stream_goes_on() {
    let mut s = configured();
    let frame =
        |dts: u32, key: bool| unit(UnitKind::Video, dts, false, &avc_frame(key, 0, &[0x65]));
    for i in 0..10 {
        s.push(&frame(i * 40, i == 0), T0).unwrap();
    }
    // A 600 ms gap: the frame before it lasts 600 ms, a part longer than the target.
    let mut refused = 0;
    for dts in [960, 1000, 1040, 1080, 1120, 1160, 1200, 1240] {
        match s.push(&frame(dts, false), T0) {
            Err(LlError::Part(PartError::TooLong { duration_ms, .. })) => {
                assert_eq!(duration_ms, 600);
                refused += 1;
            }
            other => {
                other.unwrap();
            }
        }
    }
    assert_eq!(refused, 1);
    checked(&s);
    assert!(part_count(&s) >= 2, "parts before and after the gap");
}

#[test]
fn old_maps_leave_with_their_segments() {
    let mut s = configured();
    let mut dts = 0u32;
    for republish in 0..4u64 {
        for i in 0..100u32 {
            let frame = avc_frame(i % 50 == 0, 0, &[0x65, i as u8]);
            s.push(
                &unit(UnitKind::Video, dts, false, &frame),
                T0 + u64::from(dts),
            )
            .unwrap();
            dts += 40;
        }
        s.discontinuity(T0 + u64::from(dts)).unwrap();
        let oldest = s.window().segments().front().unwrap().discontinuity_seq;
        let held: Vec<u64> = s.inits().map(|(seq, _)| *seq).collect();
        assert_eq!(
            held.first(),
            Some(&oldest),
            "after republish {republish}: {held:?}"
        );
        checked(&s);
    }
    // Two segments of 4 s per publisher, six kept: the first publishers' maps are gone.
    assert!(s.init(0).is_none());
    assert!(s.bytes_held() >= s.window().bytes_held());
}
