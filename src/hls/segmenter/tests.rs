//! Unit tests of [`super`] (segmenter): names and dates, then segments.

use super::*;

mod names {
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

mod segment_tests {
    use super::*;
    use crate::media::UnitKind;

    #[test]
    fn a_sealed_segment_holds_no_more_than_an_eighth_to_spare() {
        // Grown past its reservation (capacity about twice its length): copied out.
        let mut grown = Vec::with_capacity(1000);
        grown.extend_from_slice(&[7; 1001]);
        let at = grown.as_ptr();
        let sealed = seal(grown);
        assert_eq!((sealed.len(), sealed[1000]), (1001, 7));
        assert_ne!(sealed.as_ptr(), at, "a buffer with half to spare is copied");
        // Within its reservation: handed over as it is.
        let mut tight = Vec::with_capacity(1100);
        tight.extend_from_slice(&[9; 1000]);
        let at = tight.as_ptr();
        assert_eq!(
            seal(tight).as_ptr(),
            at,
            "a buffer with a tenth to spare is kept"
        );
    }

    fn unit(kind: UnitKind, dts: u32, key: bool, header: bool, body: &[u8]) -> Unit {
        Unit::serialize(kind, dts, key, header, body, 4096, None)
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
    fn the_next_segment_reserves_the_last_ones_size_and_an_eighth() {
        assert_eq!(
            Segmenter::new("cam", 7, 1000, 3).next_capacity,
            FIRST_SEGMENT_CAPACITY
        );
        let s = fed(1000, 3, 25 * 2 + 1, 25);
        let last = s
            .segments()
            .back()
            .expect("two segments closed")
            .bytes
            .len();
        assert_eq!(s.next_capacity, last + last / 8);
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

    #[test]
    fn a_new_window_applies_from_the_next_segment_and_the_target_stays() {
        // 1 s segments, a window of 5: 6 keyframes a second apart close 5 segments.
        let mut s = fed(1000, 5, 25 * 6 + 1, 25);
        assert_eq!(s.segments().len(), 5);
        let target = |s: &Segmenter| {
            let playlist = s.playlist();
            let line = playlist
                .lines()
                .find(|l| l.starts_with("#EXT-X-TARGETDURATION"));
            line.map(str::to_owned)
        };
        let before = target(&s);
        s.set_window(2);
        assert_eq!(
            s.segments().len(),
            5,
            "nothing changes before the next segment"
        );
        // The frames of one more second, to the next keyframe.
        for i in 25 * 6 + 1..=25 * 7 {
            let key = i % 25 == 0;
            let u = unit(UnitKind::Video, i * 40, key, false, &frame(key));
            s.push(&u, 0).unwrap();
        }
        assert_eq!(s.segments().len(), 2);
        assert_eq!(target(&s), before);
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
        // Segments close at the first frame at 90% of the target or more.
        assert_eq!(s.segments().len(), 3);
        let seg = &s.segments()[0];
        assert!(
            (900..1000).contains(&seg.duration_ms),
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
