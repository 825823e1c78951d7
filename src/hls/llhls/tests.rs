//! Unit tests of [`super`] (llhls): names and directives, then the window, its playlists
//! and its answers to blocking reloads.

use super::*;

/// 2026-11-24T19:07:24.000Z
const T0: u64 = 1_795_547_244_000;

fn window(segment_target_ms: u64, part_target_ms: u64, window: usize) -> LlWindow {
    LlWindow::new(
        "cam",
        7,
        LlSettings {
            segment_target_ms,
            part_target_ms,
            window,
        },
    )
}

/// Distinct bytes for part `i`.
fn body(i: u32) -> Bytes {
    Bytes::from(format!("part {i};"))
}

/// Adds parts `from..from + count` of `part_ms` each, a keyframe every `gop` parts (part
/// `i` is independent when `i % gop == 0`), arriving in real time from `T0`.
fn feed(w: &mut LlWindow, from: u32, count: u32, part_ms: u64, gop: u32) {
    for i in from..from + count {
        let now = T0 + u64::from(i) * part_ms;
        w.add_part(body(i), part_ms, i % gop == 0, now).unwrap();
    }
}

fn lines_starting<'a>(playlist: &'a str, prefix: &str) -> Vec<&'a str> {
    playlist.lines().filter(|l| l.starts_with(prefix)).collect()
}

mod names {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name("my-cam", 17, 42), "my-cam-17-42.m4s");
        assert_eq!(part_name("my-cam", 17, 42, 3), "my-cam-17-42.3.m4s");
        assert_eq!(init_name("my-cam", 17, 2), "my-cam-17-init2.mp4");
        assert_eq!(
            parse_name("my-cam-17-42.m4s"),
            Some(("my-cam", 17, Resource::Segment(42)))
        );
        assert_eq!(
            parse_name("my-cam-17-42.3.m4s"),
            Some(("my-cam", 17, Resource::Part(PartId { msn: 42, part: 3 })))
        );
        assert_eq!(
            parse_name("my-cam-17-init2.mp4"),
            Some(("my-cam", 17, Resource::Init(2)))
        );
    }

    #[test]
    fn each_resource_has_one_name() {
        for other in [
            "cam-07-1.m4s",
            "cam-7-01.m4s",
            "cam-7-1.01.m4s",
            "cam-7-1..m4s",
            "cam-7-1.2.3.m4s",
            "cam-7-+1.m4s",
            "cam-7-init.mp4",
            "cam-7-init02.mp4",
            "cam-7-1.mp4",
            "cam-7-init1.m4s",
            "-7-1.m4s",
            "7-1.m4s",
            "cam-7-1.ts",
            "cam-7-1.4294967296.m4s",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}

mod directives {
    use super::*;

    #[test]
    fn directives_are_read_among_other_parameters() {
        assert_eq!(parse_directives(None), Ok(Directives::default()));
        assert_eq!(
            parse_directives(Some("token=9.ab")),
            Ok(Directives::default())
        );
        assert_eq!(
            parse_directives(Some("token=9.ab&_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")),
            Ok(Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            })
        );
        // Decimal integers may have leading zeros; `v2` is a delta update too; other
        // `_HLS_` parameters are reserved, not refused.
        assert_eq!(
            parse_directives(Some("_HLS_skip=v2&_HLS_msn=007&_HLS_future=1")),
            Ok(Directives {
                msn: Some(7),
                part: None,
                skip: true
            })
        );
    }

    #[test]
    fn malformed_repeated_and_partless_directives_are_refused() {
        for (query, error) in [
            ("_HLS_msn=", DirectiveError::Malformed("_HLS_msn")),
            ("_HLS_msn=-1", DirectiveError::Malformed("_HLS_msn")),
            ("_HLS_msn=1e3", DirectiveError::Malformed("_HLS_msn")),
            (
                "_HLS_msn=18446744073709551616",
                DirectiveError::Malformed("_HLS_msn"),
            ),
            (
                "_HLS_msn=1&_HLS_part=4294967296",
                DirectiveError::Malformed("_HLS_part"),
            ),
            (
                "_HLS_msn=1&_HLS_part= 1",
                DirectiveError::Malformed("_HLS_part"),
            ),
            ("_HLS_skip=NO", DirectiveError::Malformed("_HLS_skip")),
            ("_HLS_skip=yes", DirectiveError::Malformed("_HLS_skip")),
            (
                "_HLS_msn=1&_HLS_msn=2",
                DirectiveError::Repeated("_HLS_msn"),
            ),
            (
                "_HLS_msn=1&_HLS_part=0&_HLS_part=0",
                DirectiveError::Repeated("_HLS_part"),
            ),
            (
                "_HLS_skip=YES&_HLS_skip=v2",
                DirectiveError::Repeated("_HLS_skip"),
            ),
            ("_HLS_part=1", DirectiveError::PartWithoutMsn),
        ] {
            assert_eq!(parse_directives(Some(query)), Err(error), "{query}");
        }
    }
}

mod parts_and_segments {
    use super::*;

    #[test]
    fn segments_start_at_a_keyframe_and_close_at_the_first_one_past_the_target() {
        let mut w = window(1000, 500, 6);
        // Before the first keyframe there is no segment to add a part to.
        assert!(!w.starts_segment(false, 0));
        assert!(!w.starts_segment(false, 400));
        assert_eq!(
            w.add_part(body(99), 500, false, T0),
            Ok(Added {
                closed: None,
                part: None
            })
        );
        assert!(w.starts_segment(true, 0));
        let added = w.add_part(body(0), 500, true, T0).unwrap();
        assert_eq!(added.part, Some(PartId { msn: 0, part: 0 }));
        // Short of the target (less a tenth of it), a keyframe stays in the segment; after
        // 400 ms more that the writer has not handed over yet, it would start the next.
        assert!(!w.starts_segment(true, 0));
        assert!(!w.starts_segment(true, 399));
        assert!(w.starts_segment(true, 400));
        let added = w.add_part(body(1), 300, true, T0).unwrap();
        assert_eq!(added.part, Some(PartId { msn: 0, part: 1 }));
        let added = w.add_part(body(2), 200, false, T0).unwrap();
        assert_eq!(added.part, Some(PartId { msn: 0, part: 2 }));
        assert_eq!(w.reached(), Reached { msn: 0, parts: 3 });
        // At the target, an inter part still joins the segment; a keyframe starts the next.
        assert!(!w.starts_segment(false, 0));
        assert!(w.starts_segment(true, 0));
        assert_eq!(
            w.add_part(body(3), 100, false, T0).unwrap().part,
            Some(PartId { msn: 0, part: 3 })
        );
        assert_eq!(
            w.add_part(body(4), 500, true, T0),
            Ok(Added {
                closed: Some(0),
                part: Some(PartId { msn: 1, part: 0 })
            })
        );
        assert_eq!(w.reached(), Reached { msn: 1, parts: 1 });
        let segment = &w.segments()[0];
        assert_eq!((segment.msn, segment.duration_ms), (0, 1100));
        assert_eq!(&segment.bytes[..], b"part 0;part 1;part 2;part 3;");
        let independent: Vec<bool> = segment.parts.iter().map(|p| p.independent).collect();
        assert_eq!(independent, [true, true, false, false]);
    }

    #[test]
    fn a_complete_segment_and_its_parts_are_one_buffer() {
        let mut w = window(1000, 250, 6);
        feed(&mut w, 0, 5, 250, 4);
        let segment = &w.segments()[0];
        let range = segment.bytes.as_ptr_range();
        let mut at = 0;
        for (i, part) in segment.parts.iter().enumerate() {
            assert_eq!(part.bytes, body(i as u32));
            let start = part.bytes.as_ptr();
            assert!(range.contains(&start), "part {i} is a slice of its segment");
            assert_eq!(start, segment.bytes[at..].as_ptr());
            at += part.bytes.len();
        }
        assert_eq!(at, segment.bytes.len());
        // The open segment's part is still the writer's buffer.
        assert_eq!(w.bytes_held(), segment.bytes.len() + body(4).len());
        let id = PartId { msn: 0, part: 2 };
        assert_eq!(w.part(id), Some(&body(2)));
        assert_eq!(w.part(PartId { msn: 1, part: 0 }), Some(&body(4)));
        assert_eq!(w.part(PartId { msn: 1, part: 1 }), None);
        assert_eq!(w.part(PartId { msn: 0, part: 4 }), None);
        assert_eq!(w.segment(0).map(|b| b.len()), Some(segment.bytes.len()));
        assert_eq!(w.segment(1), None);
    }

    #[test]
    fn refused_parts_leave_the_window_as_it_was() {
        let mut w = window(1000, 500, 6);
        feed(&mut w, 0, 3, 500, 2);
        let version = w.version();
        assert_eq!(
            w.add_part(Bytes::new(), 100, true, T0),
            Err(PartError::Empty)
        );
        assert_eq!(w.add_part(body(9), 0, true, T0), Err(PartError::Empty));
        assert_eq!(
            w.add_part(body(9), 501, true, T0),
            Err(PartError::TooLong {
                duration_ms: 501,
                part_target_ms: 500
            })
        );
        assert_eq!(w.version(), version);
        assert_eq!(w.reached(), Reached { msn: 1, parts: 1 });
        w.end();
        assert_eq!(w.add_part(body(9), 100, true, T0), Err(PartError::Ended));
    }

    #[test]
    fn a_segment_without_keyframes_closes_at_its_bounds_and_the_next_waits_for_one() {
        // Parts: one keyframe, then inter parts only.
        let mut w = window(100_000, 10, 6);
        w.add_part(body(0), 10, true, T0).unwrap();
        for i in 1..MAX_SEGMENT_PARTS as u32 {
            assert!(w.add_part(body(i), 10, false, T0).unwrap().part.is_some());
        }
        assert!(!w.starts_segment(false, 0));
        assert_eq!(
            w.add_part(body(0), 10, false, T0),
            Ok(Added {
                closed: Some(0),
                part: None
            })
        );
        assert_eq!(w.segments()[0].parts.len(), MAX_SEGMENT_PARTS);
        assert_eq!(w.add_part(body(0), 10, false, T0).unwrap().part, None);
        assert!(w.starts_segment(true, 0));
        assert_eq!(
            w.add_part(body(0), 10, true, T0).unwrap().part,
            Some(PartId { msn: 1, part: 0 })
        );

        // 32 MiB in two parts: the next part finds the segment full.
        let mut w = window(100_000, 10, 6);
        let half = Bytes::from(vec![0u8; MAX_SEGMENT_BYTES / 2]);
        w.add_part(half.clone(), 10, true, T0).unwrap();
        w.add_part(half, 10, false, T0).unwrap();
        assert_eq!(
            w.add_part(body(0), 10, false, T0),
            Ok(Added {
                closed: Some(0),
                part: None
            })
        );
        assert_eq!(w.segments()[0].bytes.len(), MAX_SEGMENT_BYTES);
    }

    #[test]
    fn the_window_keeps_its_last_segments_over_many() {
        let mut w = window(2000, 500, 6);
        // 100 segments of 2 s (4 parts of 500 ms, a keyframe each 4), and one part more.
        feed(&mut w, 0, 4 * 100 + 1, 500, 4);
        let msns: Vec<u64> = w.segments().iter().map(|s| s.msn).collect();
        assert_eq!(msns, (94..100).collect::<Vec<_>>());
        assert_eq!(w.reached(), Reached { msn: 100, parts: 1 });
        let each = w.segments()[0].bytes.len();
        assert!(w.bytes_held() <= 7 * each, "six segments and a part");
        assert_eq!(w.segment(93), None);
        assert!(w.part(PartId { msn: 94, part: 3 }).is_some());
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(
            playlist.contains("#EXT-X-MEDIA-SEQUENCE:94\n"),
            "{playlist}"
        );
        assert_eq!(lines_starting(&playlist, "#EXTINF:2.000,").len(), 6);
        // Parts listed: segments 98 and 99 (they start 4.5 s and 2.5 s before the end, within
        // 3 x 2 s; 97 starts 6.5 s before), and the open segment's part.
        let parts = lines_starting(&playlist, "#EXT-X-PART:");
        assert_eq!(parts.len(), 4 + 4 + 1);
        assert!(parts[0].contains("URI=\"cam-7-98.0.m4s\""), "{playlist}");
        assert!(parts[8].contains("URI=\"cam-7-100.0.m4s\""), "{playlist}");
        // The media budget may trim further.
        assert!(w.trim_to(2));
        assert!(!w.trim_to(2));
        assert_eq!(w.segments().front().map(|s| s.msn), Some(98));
        assert!(w.trim_to(0));
        assert_eq!(w.segments().len(), 1, "at least one segment stays");
    }

    #[test]
    fn target_duration_is_the_rounded_up_target_and_grows_only_with_the_gop() {
        assert_eq!(window(2000, 500, 6).target_duration_s(), 2);
        assert_eq!(window(1500, 500, 6).target_duration_s(), 2);
        assert_eq!(window(200, 100, 6).target_duration_s(), 1);
        // A GOP of 2.4 s at a 2 s target: EXTINF 2.400 rounds to 2.
        let mut w = window(2000, 200, 6);
        feed(&mut w, 0, 12 * 3 + 1, 200, 12);
        assert_eq!(w.segments()[0].duration_ms, 2400);
        assert_eq!(w.target_duration_s(), 2);
        // A GOP of 2.6 s: 3.
        let mut w = window(2000, 200, 6);
        feed(&mut w, 0, 13 * 2 + 1, 200, 13);
        assert_eq!(w.target_duration_s(), 3);
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(playlist.contains("#EXT-X-TARGETDURATION:3\n"));
        // It never decreases, also after the long segments left the window.
        feed(&mut w, 100, 10 * 8 + 1, 200, 10);
        assert!(w.segments().iter().all(|s| s.duration_ms == 2000));
        assert_eq!(w.target_duration_s(), 3);
    }
}

mod playlist {
    use super::*;

    #[test]
    fn a_playlist_in_full() {
        let mut w = window(1000, 500, 3);
        feed(&mut w, 0, 6, 500, 2);
        let expected = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=6.000
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"cam-7-init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.000Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-0.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-0.1.m4s\"
#EXTINF:1.000,
cam-7-0.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:25.000Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-1.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-1.1.m4s\"
#EXTINF:1.000,
cam-7-1.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:26.000Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-2.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-2.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-3.0.m4s\"
";
        assert_eq!(w.playlist(&PlaylistRequest::default()), expected);
    }

    #[test]
    fn the_hint_names_the_next_part_or_the_next_segment_once_the_target_is_reached() {
        let mut w = window(1000, 250, 6);
        assert_eq!(w.preload_hint(), Some(PartId { msn: 0, part: 0 }));
        feed(&mut w, 0, 3, 250, 4);
        assert_eq!(w.preload_hint(), Some(PartId { msn: 0, part: 3 }));
        feed(&mut w, 3, 1, 250, 4);
        assert_eq!(w.preload_hint(), Some(PartId { msn: 1, part: 0 }));
        // An inter part proves the forecast wrong: the next one is hinted again.
        w.add_part(body(4), 250, false, T0).unwrap();
        assert_eq!(w.preload_hint(), Some(PartId { msn: 1, part: 0 }));
        assert!(w.playlist(&PlaylistRequest::default()).ends_with(
            "#EXT-X-PART:DURATION=0.250,URI=\"cam-7-0.4.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-1.0.m4s\"\n"
        ));
        w.close_segment();
        assert_eq!(w.preload_hint(), Some(PartId { msn: 1, part: 0 }));
        w.end();
        assert_eq!(w.preload_hint(), None);
    }

    #[test]
    fn program_dates_follow_the_media_and_start_over_at_a_discontinuity() {
        let mut w = window(1000, 500, 10);
        // A burst: the parts of three segments arrive at once.
        for i in 0..6 {
            w.add_part(body(i), 500, i % 2 == 0, T0).unwrap();
        }
        let dates: Vec<u64> = w.segments().iter().map(|s| s.program_date_ms).collect();
        assert_eq!(dates, [T0, T0 + 1000]);
        w.discontinuity();
        // The open segment closed at T0 + 3000; a part that arrives earlier (by the wall
        // clock) starts after it, one that arrives later at its arrival.
        w.add_part(body(6), 500, true, T0 + 100).unwrap();
        w.discontinuity();
        w.add_part(body(7), 500, true, T0 + 60_000).unwrap();
        w.add_part(body(8), 500, false, T0 + 60_000).unwrap();
        w.add_part(body(9), 500, true, T0 + 60_000).unwrap();
        let dates: Vec<u64> = w.segments().iter().map(|s| s.program_date_ms).collect();
        assert_eq!(dates, [T0, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 60_000]);
        let playlist = w.playlist(&PlaylistRequest::default());
        let pdt = lines_starting(&playlist, "#EXT-X-PROGRAM-DATE-TIME:");
        assert_eq!(pdt.len(), 6);
        assert_eq!(pdt[5], "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:08:25.000Z");
    }

    #[test]
    fn a_discontinuity_is_marked_with_its_own_initialization_segment() {
        let mut w = window(1000, 500, 3);
        // A discontinuity before any segment marks nothing.
        w.discontinuity();
        feed(&mut w, 0, 4, 500, 2);
        w.discontinuity();
        feed(&mut w, 4, 3, 500, 2);
        let playlist = w.playlist(&PlaylistRequest::default());
        let marks = playlist.lines().filter(|l| *l == "#EXT-X-DISCONTINUITY");
        assert_eq!(marks.count(), 1);
        assert!(playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
        assert!(playlist
            .contains("cam-7-1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"cam-7-init1.mp4\"\n"));
        // The open segment 3 uses the same initialization segment as 2.
        assert_eq!(lines_starting(&playlist, "#EXT-X-MAP:").len(), 2);
        let dsns: Vec<u64> = w.segments().iter().map(|s| s.discontinuity_seq).collect();
        assert_eq!(dsns, [0, 0, 1]);
        // Segment 3 closes, segment 0 leaves.
        feed(&mut w, 7, 2, 500, 2);
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{playlist}");
        // Segment 2, after the discontinuity, becomes the first: the tag stays with it, and
        // the header does not count it yet.
        feed(&mut w, 9, 2, 500, 2);
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(
            playlist.contains(
                "#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n\
                 #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"cam-7-init1.mp4\"\n"
            ),
            "{playlist}"
        );
        // Once it slid out, the header counts it.
        feed(&mut w, 11, 2, 500, 2);
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(
            playlist.contains(
                "#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
                 #EXT-X-MAP:URI=\"cam-7-init1.mp4\"\n"
            ),
            "{playlist}"
        );
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"));
    }

    #[test]
    fn the_end_closes_the_segment_and_the_playlist() {
        let mut w = window(1000, 500, 6);
        feed(&mut w, 0, 5, 500, 2);
        w.end();
        assert!(w.ended());
        let version = w.version();
        w.end();
        assert_eq!(w.version(), version);
        assert_eq!(w.segments().len(), 3);
        let playlist = w.playlist(&PlaylistRequest::default());
        assert!(playlist.ends_with("#EXTINF:0.500,\ncam-7-2.m4s\n#EXT-X-ENDLIST\n"));
        assert!(!playlist.contains("PRELOAD-HINT"));
        // A delta update is not made of a final playlist.
        let delta = w.playlist(&PlaylistRequest {
            skip: true,
            query: None,
        });
        assert_eq!(delta, playlist);
        // Directives are ignored.
        let far = Directives {
            msn: Some(100),
            part: None,
            skip: false,
        };
        assert_eq!(w.reload(&far), Reload::Ready);
    }

    #[test]
    fn a_delta_update_skips_the_segments_past_the_skip_boundary() {
        let mut w = window(1000, 500, 20);
        // Segments 0 to 14 of 1 s, and one part of segment 15.
        feed(&mut w, 0, 31, 500, 2);
        let delta = w.playlist(&PlaylistRequest {
            skip: true,
            query: None,
        });
        // CAN-SKIP-UNTIL is 6 s: segments that end more than 6 s before the end of segment
        // 14 (0 to 7) are skipped.
        assert!(delta.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n"), "{delta}");
        assert!(delta.contains(
            "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n\
             #EXT-X-SKIP:SKIPPED-SEGMENTS=8\n#EXT-X-MAP:URI=\"cam-7-init0.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:32.000Z\n#EXTINF:1.000,\ncam-7-8.m4s\n"
        ));
        assert_eq!(lines_starting(&delta, "#EXTINF").len(), 7);
        let full = w.playlist(&PlaylistRequest::default());
        assert!(full.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"));
        assert!(!full.contains("#EXT-X-SKIP"));
        assert_eq!(lines_starting(&full, "#EXTINF").len(), 15);
        // The rest is the same.
        let tail = |p: &str| p[p.find("cam-7-8.m4s").unwrap()..].to_string();
        assert_eq!(tail(&delta), tail(&full));
        // With nothing to skip, a delta update is the full playlist.
        let mut w = window(1000, 500, 20);
        feed(&mut w, 0, 15, 500, 2);
        let delta = w.playlist(&PlaylistRequest {
            skip: true,
            query: None,
        });
        assert_eq!(delta, w.playlist(&PlaylistRequest::default()));
    }

    #[test]
    fn the_query_goes_into_every_uri() {
        let mut w = window(1000, 500, 3);
        feed(&mut w, 0, 5, 500, 2);
        let playlist = w.playlist(&PlaylistRequest {
            skip: false,
            query: Some("token=9.ab&key=\"x y#"),
        });
        let q = "?token=9.ab&key=%22x%20y%23";
        for line in playlist.lines() {
            if let Some((_, uri)) = line.split_once("URI=\"") {
                let uri = uri.split('"').next().unwrap();
                assert!(uri.ends_with(q), "{line}");
            } else if !line.starts_with('#') {
                assert!(line.ends_with(q), "{line}");
            }
        }
        assert_eq!(playlist.matches(q).count(), 1 + 5 + 2 + 1);
        // An empty query adds nothing.
        let empty = w.playlist(&PlaylistRequest {
            skip: false,
            query: Some(""),
        });
        assert_eq!(empty, w.playlist(&PlaylistRequest::default()));
    }

    #[test]
    fn a_multivariant_playlist() {
        let variants = [
            Variant {
                uri: "cam.m3u8",
                bandwidth: 2_500_000,
                average_bandwidth: Some(2_000_000),
                codecs: "avc1.64001f,mp4a.40.2",
                resolution: Some((1280, 720)),
                frame_rate: Some(29.97),
            },
            Variant {
                uri: "radio.m3u8",
                bandwidth: 128_000,
                average_bandwidth: None,
                codecs: "mp4a.40.2\"\n",
                resolution: None,
                frame_rate: Some(f64::NAN),
            },
        ];
        assert_eq!(
            multivariant(&variants, Some("token=9.ab")),
            "#EXTM3U\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970\n\
             cam.m3u8?token=9.ab\n\
             #EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n\
             radio.m3u8?token=9.ab\n"
        );
    }
}

mod blocking {
    use super::*;

    fn ask(w: &LlWindow, msn: u64, part: Option<u32>) -> Reload {
        w.reload(&Directives {
            msn: Some(msn),
            part,
            skip: false,
        })
    }

    fn wait(msn: u64, part: Option<u32>) -> Reload {
        Reload::Wait(Awaited { msn, part })
    }

    /// Segments 0 to 9 of 1 s (4 parts of 250 ms), the open segment 10 with 2 parts.
    fn live() -> LlWindow {
        let mut w = window(1000, 250, 6);
        feed(&mut w, 0, 42, 250, 4);
        assert_eq!(w.reached(), Reached { msn: 10, parts: 2 });
        w
    }

    #[test]
    fn what_exists_is_answered_at_once() {
        let w = live();
        assert_eq!(w.reload(&Directives::default()), Reload::Ready);
        assert_eq!(ask(&w, 9, None), Reload::Ready);
        assert_eq!(ask(&w, 9, Some(3)), Reload::Ready);
        assert_eq!(ask(&w, 10, Some(0)), Reload::Ready);
        assert_eq!(ask(&w, 10, Some(1)), Reload::Ready);
        // Segments and parts that left the window: the playlist is delivered.
        assert_eq!(ask(&w, 0, Some(9)), Reload::Ready);
        assert_eq!(ask(&w, 2, None), Reload::Ready);
        assert!(w.contains(Awaited {
            msn: 10,
            part: Some(1)
        }));
        assert!(!w.contains(Awaited {
            msn: 10,
            part: Some(2)
        }));
    }

    #[test]
    fn what_comes_next_is_held() {
        let w = live();
        assert_eq!(ask(&w, 10, Some(2)), wait(10, Some(2)));
        assert_eq!(ask(&w, 10, None), wait(10, None));
        assert_eq!(ask(&w, 11, Some(0)), wait(11, Some(0)));
        assert_eq!(ask(&w, 11, None), wait(11, None));
        // A part past the last of a complete segment is part 0 of the next one.
        assert_eq!(ask(&w, 9, Some(4)), Reload::Ready);
        let mut w = w;
        feed(&mut w, 42, 2, 250, 4);
        w.close_segment();
        assert_eq!(w.reached(), Reached { msn: 11, parts: 0 });
        assert_eq!(ask(&w, 10, Some(4)), wait(11, Some(0)));
        assert_eq!(ask(&w, 10, Some(3)), Reload::Ready);
        assert!(!w.contains(Awaited {
            msn: 10,
            part: Some(7)
        }));
    }

    #[test]
    fn too_far_ahead_is_refused() {
        let w = live();
        // More than two segments past the last complete one (9).
        assert_eq!(ask(&w, 12, None), Reload::TooFarAhead);
        assert_eq!(ask(&w, 12, Some(0)), Reload::TooFarAhead);
        assert_eq!(ask(&w, u64::MAX, None), Reload::TooFarAhead);
        // The Advance Part Limit at 250 ms parts: 12 parts past the last listed one (10.1).
        assert_eq!(ask(&w, 10, Some(13)), wait(10, Some(13)));
        assert_eq!(ask(&w, 10, Some(14)), Reload::TooFarAhead);
        assert_eq!(ask(&w, 11, Some(11)), wait(11, Some(11)));
        assert_eq!(ask(&w, 11, Some(12)), Reload::TooFarAhead);
        assert_eq!(ask(&w, 11, Some(u32::MAX)), Reload::TooFarAhead);
        // At parts of a second or more: 3 parts.
        let mut w = window(4000, 1000, 6);
        feed(&mut w, 0, 5, 1000, 4);
        assert_eq!(w.reached(), Reached { msn: 1, parts: 1 });
        assert_eq!(ask(&w, 1, Some(3)), wait(1, Some(3)));
        assert_eq!(ask(&w, 1, Some(4)), Reload::TooFarAhead);
        assert_eq!(ask(&w, 2, Some(2)), wait(2, Some(2)));
        assert_eq!(ask(&w, 2, Some(3)), Reload::TooFarAhead);
    }

    #[test]
    fn before_the_first_part() {
        let w = window(1000, 250, 6);
        assert_eq!(w.reached(), Reached { msn: 0, parts: 0 });
        assert_eq!(ask(&w, 0, Some(0)), wait(0, Some(0)));
        assert_eq!(ask(&w, 1, None), wait(1, None));
        assert_eq!(ask(&w, 2, None), Reload::TooFarAhead);
    }
}
