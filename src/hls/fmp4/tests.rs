//! Unit tests of [`super`] (fmp4): configurations and `CODECS` strings, picture sizes, the
//! init segment, fragments (hold-back, cuts, sequence numbers, `tfdt` continuity,
//! independence), then input: ignored, unsupported, changed, malformed, over the bounds.

use super::samples::*;
use super::*;
use mp4_atom::{Codec, Decode, Hvcc};

/// A writer configured with the AV1 sequence header [`AV1C`].
fn av1_writer() -> Fmp4Writer {
    let mut w = Fmp4Writer::new();
    w.push(&unit(
        UnitKind::Video,
        0,
        true,
        &ex_video(0x90, b"av01", &hex(AV1C)),
    ))
    .unwrap();
    w
}

/// x265's parameter sets for 320x240, Main profile, level 2 (VPS, SPS, PPS).
const HEVC_VPS: &str = "40010c01ffff01600000030090000003000003003c959409";
const HEVC_SPS: &str =
    "42010101600000030090000003000003003ca00a080f16595952930bc05a020000030002000003003210";
const HEVC_PPS: &str = "4401c073c189";

/// SVT-AV1's AV1CodecConfigurationRecord for 320x240, Main profile, level 2.0.
const AV1C: &str = "81000c000a0b0200000521e7fde017c002";

/// libopus's identification header: mono, pre-skip 312, 48 kHz.
const OPUS_HEAD: &str = "4f707573486561640101380180bb0000000000";

/// An HEVCDecoderConfigurationRecord of x265 (its SEI array left out), arrays not marked
/// complete (as ffmpeg writes them into FLV).
fn hvcc_record() -> Vec<u8> {
    let mut record = hex("0101600000009000000000003cf000fcfdf8f800000f03");
    for (nal_type, nal) in [(32u8, HEVC_VPS), (33, HEVC_SPS), (34, HEVC_PPS)] {
        let nal = hex(nal);
        record.push(nal_type);
        record.extend_from_slice(&1u16.to_be_bytes());
        record.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        record.extend_from_slice(&nal);
    }
    record
}

/// An Enhanced RTMP video tag: `frame type | packet type`, FourCC, then `rest`.
fn ex_video(first: u8, fourcc: &[u8; 4], rest: &[u8]) -> Vec<u8> {
    [&[first][..], fourcc, rest].concat()
}

fn opus_header() -> Vec<u8> {
    [&[0x90][..], b"Opus", &hex(OPUS_HEAD)].concat()
}

/// A writer with H.264 and AAC configured.
fn avc_aac() -> Fmp4Writer {
    let mut w = Fmp4Writer::new();
    w.push(&unit(UnitKind::Video, 0, true, &avc_header()))
        .unwrap();
    w.push(&unit(UnitKind::Audio, 0, true, &aac_header()))
        .unwrap();
    w
}

/// [`avc_aac`] with one keyframe (at 0 ms) queued.
fn avc_aac_with_keyframe() -> Fmp4Writer {
    let mut w = avc_aac();
    w.push(&unit(
        UnitKind::Video,
        0,
        false,
        &avc_frame(true, 0, &[0x65]),
    ))
    .unwrap();
    w
}

/// The boxes of an init segment.
fn parse_init(bytes: &[u8]) -> (mp4_atom::Ftyp, Moov) {
    let mut buf = bytes;
    let ftyp = mp4_atom::Ftyp::decode(&mut buf).expect("ftyp");
    let moov = Moov::decode(&mut buf).expect("moov");
    assert!(buf.is_empty(), "nothing after the moov");
    (ftyp, moov)
}

mod configurations {
    use super::*;

    #[test]
    fn h264_codecs_and_size_from_a_real_record() {
        let w = avc_aac();
        assert_eq!(w.codecs().as_deref(), Some("avc1.64000d,mp4a.40.2"));
        assert_eq!(w.video_size(), Some((320, 240)));
    }

    #[test]
    fn hevc_codecs_and_size_from_a_real_record() {
        let mut w = Fmp4Writer::new();
        let header = ex_video(0x90, b"hvc1", &hvcc_record());
        let pushed = w.push(&unit(UnitKind::Video, 0, true, &header)).unwrap();
        assert!(matches!(
            pushed,
            Pushed::Configured {
                changed: true,
                ref flushed,
            } if flushed.is_empty()
        ));
        // Main (compatible with Main and Main 10), level 2 (60), progressive and
        // frame-only source (0x90).
        assert_eq!(w.codecs().as_deref(), Some("hvc1.1.6.L60.90"));
        assert_eq!(w.video_size(), Some((320, 240)));
        // Legacy FLV (codec id 12) carries the same record.
        let mut legacy = Fmp4Writer::new();
        let header = [&[0x1c, 0, 0, 0, 0][..], &hvcc_record()].concat();
        legacy
            .push(&unit(UnitKind::Video, 0, true, &header))
            .unwrap();
        assert_eq!(legacy.codecs(), w.codecs());
    }

    #[test]
    fn hevc_codecs_follow_annex_e() {
        let hvcc = |space, tier, profile, compat: u32, level, constraints| Hvcc {
            configuration_version: 1,
            general_profile_space: space,
            general_tier_flag: tier,
            general_profile_idc: profile,
            general_profile_compatibility_flags: compat.to_be_bytes(),
            general_constraint_indicator_flags: constraints,
            general_level_idc: level,
            ..Default::default()
        };
        let b0 = [0xb0, 0, 0, 0, 0, 0];
        // Apple's HLS authoring examples: Main 10 and Main.
        assert_eq!(
            config::hevc_codecs(&hvcc(0, false, 2, 0x2000_0000, 123, b0)),
            "hvc1.2.4.L123.B0"
        );
        assert_eq!(
            config::hevc_codecs(&hvcc(0, false, 1, 0x6000_0000, 93, b0)),
            "hvc1.1.6.L93.B0"
        );
        // Profile space as a letter, high tier, constraint bytes up to the last non-zero
        // one, each without leading zeros.
        assert_eq!(
            config::hevc_codecs(&hvcc(1, true, 4, 0x0800_0000, 153, [0x90, 0, 8, 0, 0, 0])),
            "hvc1.A4.10.H153.90.0.8"
        );
        assert_eq!(
            config::hevc_codecs(&hvcc(0, false, 1, 0x6000_0000, 93, [0; 6])),
            "hvc1.1.6.L93"
        );
    }

    #[test]
    fn av1_codecs_and_size_from_a_real_record() {
        let mut w = Fmp4Writer::new();
        let header = ex_video(0x90, b"av01", &hex(AV1C));
        w.push(&unit(UnitKind::Video, 0, true, &header)).unwrap();
        assert_eq!(w.codecs().as_deref(), Some("av01.0.00M.08"));
        assert_eq!(w.video_size(), Some((320, 240)));
    }

    #[test]
    fn av1_codecs_follow_the_binding() {
        let av1c = |profile, level, tier, high, twelve| mp4_atom::Av1c {
            seq_profile: profile,
            seq_level_idx_0: level,
            seq_tier_0: tier,
            high_bitdepth: high,
            twelve_bit: twelve,
            ..Default::default()
        };
        // The binding's own example, short form: Main, level 3.0, Main tier, 10 bits.
        assert_eq!(
            config::av1_codecs(&av1c(0, 4, false, true, false)),
            "av01.0.04M.10"
        );
        assert_eq!(
            config::av1_codecs(&av1c(0, 13, true, false, false)),
            "av01.0.13H.08"
        );
        assert_eq!(
            config::av1_codecs(&av1c(2, 5, false, true, true)),
            "av01.2.05M.12"
        );
    }

    #[test]
    fn aac_codecs_name_the_audio_object_type() {
        let codecs = |asc: &[u8]| {
            let mut w = Fmp4Writer::new();
            let header = [&[0xaf, 0][..], asc].concat();
            w.push(&unit(UnitKind::Audio, 0, true, &header)).unwrap();
            w.codecs()
        };
        assert_eq!(codecs(&ASC).as_deref(), Some("mp4a.40.2"));
        // HE-AAC with explicit SBR signalling (object type 5).
        assert_eq!(
            codecs(&[0x2b, 0x92, 0x08, 0x00]).as_deref(),
            Some("mp4a.40.5")
        );
        // An escaped object type (31 + 6 bits): USAC, 42.
        assert_eq!(codecs(&[0xf9, 0x46, 0x40]).as_deref(), Some("mp4a.40.42"));
        // Enhanced RTMP `mp4a` carries the same AudioSpecificConfig.
        let mut w = Fmp4Writer::new();
        let header = [&[0x90][..], b"mp4a", &ASC].concat();
        w.push(&unit(UnitKind::Audio, 0, true, &header)).unwrap();
        assert_eq!(w.codecs().as_deref(), Some("mp4a.40.2"));
    }

    #[test]
    fn opus_becomes_dops() {
        let mut w = Fmp4Writer::new();
        w.push(&unit(UnitKind::Audio, 0, true, &opus_header()))
            .unwrap();
        assert_eq!(w.codecs().as_deref(), Some("opus"));
        let (_, moov) = parse_init(&w.init_segment().unwrap());
        let trak = &moov.trak[0];
        assert_eq!(trak.mdia.mdhd.timescale, 48_000);
        let Codec::Opus(opus) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("an Opus sample entry");
        };
        assert_eq!(opus.audio.channel_count, 1);
        assert_eq!(
            (
                opus.dops.output_channel_count,
                opus.dops.pre_skip,
                opus.dops.input_sample_rate,
                opus.dops.output_gain
            ),
            (1, 312, 48_000, 0)
        );
        assert!(opus.dops.channel_mapping.is_none());
        // The box itself: big-endian, no magic (version 0, 1 channel, pre-skip, rate, gain,
        // family 0).
        let init = w.init_segment().unwrap();
        let dops = hex("00000013644f7073000101380000bb80000000");
        assert!(init.windows(dops.len()).any(|w| w == &dops[..]), "dOps");
    }

    #[test]
    fn codecs_list_video_first_and_nothing_before_configuration() {
        let mut w = Fmp4Writer::new();
        assert_eq!(w.codecs(), None);
        assert!(w.init_segment().is_none());
        w.push(&unit(UnitKind::Audio, 0, true, &opus_header()))
            .unwrap();
        assert_eq!(w.codecs().as_deref(), Some("opus"));
        assert_eq!(w.video_size(), None);
        w.push(&unit(UnitKind::Video, 0, true, &avc_header()))
            .unwrap();
        assert_eq!(w.codecs().as_deref(), Some("avc1.64000d,opus"));
    }

    #[test]
    fn picture_sizes_with_cropping() {
        // x264 at 1920x1080 codes 1088 lines and crops 8.
        let sps = hex("67640028acd940780227e5c044000003000400000300c83c60c658");
        assert_eq!(config::avc_size(&sps), Some((1920, 1080)));
        // x265 at 1366x768 codes 1368 columns and crops 2 with a conformance window.
        let sps = hex("420101016000000300900000030000030078a002ac80301d796566924caf016808000003000800000300c840");
        assert_eq!(config::hevc_size(&sps), Some((1366, 768)));
        assert_eq!(config::hevc_size(&hex(HEVC_SPS)), Some((320, 240)));
    }

    #[test]
    fn cut_short_headers_never_panic() {
        let inputs = [
            hex("67640028acd940780227e5c044000003000400000300c83c60c658"),
            hex(HEVC_SPS),
            hex(AV1C),
            hvcc_record(),
            hex(AVCC),
            hex(OPUS_HEAD),
        ];
        for input in &inputs {
            for len in 0..input.len() {
                let cut = &input[..len];
                let _ = config::avc_size(cut);
                let _ = config::hevc_size(cut);
                let _ = config::av1_size(cut);
                let _ = config::avc(cut);
                let _ = config::hevc(cut);
                let _ = config::av1(cut);
                let _ = config::aac(cut);
                let _ = config::opus(cut);
                let _ = config::av1_data_start(cut);
            }
        }
        // All ones and all zeros: Exp-Golomb numbers that never end, or are too long.
        for fill in [0u8, 0xff] {
            let input = vec![fill; 64];
            let _ = config::avc_size(&input);
            let _ = config::hevc_size(&input);
            let _ = config::av1_size(&input);
        }
    }
}

mod init_segment {
    use super::*;

    #[test]
    fn h264_and_aac() {
        let w = avc_aac();
        let (ftyp, moov) = parse_init(&w.init_segment().unwrap());
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        assert!(ftyp.compatible_brands.contains(&FourCC::new(b"cmfc")));
        assert_eq!(moov.mvhd.timescale, 1000);
        assert_eq!(moov.mvhd.next_track_id, 3);
        let ids: Vec<u32> = moov.trak.iter().map(|t| t.tkhd.track_id).collect();
        assert_eq!(ids, vec![VIDEO_TRACK_ID, AUDIO_TRACK_ID]);
        let trex: Vec<(u32, u32)> = moov
            .mvex
            .as_ref()
            .unwrap()
            .trex
            .iter()
            .map(|t| (t.track_id, t.default_sample_description_index))
            .collect();
        assert_eq!(trex, vec![(1, 1), (2, 1)]);

        let video = &moov.trak[0];
        assert_eq!(video.mdia.hdlr.handler, FourCC::new(b"vide"));
        assert_eq!(video.mdia.mdhd.timescale, VIDEO_TIMESCALE);
        assert_eq!(
            (video.tkhd.width.integer(), video.tkhd.height.integer()),
            (320, 240)
        );
        assert!(video.tkhd.enabled && video.mdia.minf.vmhd.is_some());
        let stbl = &video.mdia.minf.stbl;
        assert!(stbl.stts.entries.is_empty() && stbl.stsc.entries.is_empty());
        assert!(stbl.stco.as_ref().is_some_and(|s| s.entries.is_empty()));
        let Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else {
            panic!("an avc1 sample entry");
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
        let mut avcc = Vec::new();
        mp4_atom::Atom::encode_body(&avc1.avcc, &mut avcc).unwrap();
        assert_eq!(avcc, hex(AVCC), "the record goes in as it came");

        let audio = &moov.trak[1];
        assert_eq!(audio.mdia.hdlr.handler, FourCC::new(b"soun"));
        assert_eq!(audio.mdia.mdhd.timescale, 44_100);
        assert!(audio.mdia.minf.smhd.is_some());
        let Codec::Mp4a(mp4a) = &audio.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("an mp4a sample entry");
        };
        assert_eq!(mp4a.audio.channel_count, 2);
        assert_eq!(mp4a.audio.sample_rate.integer(), 44_100);
        let config = &mp4a.esds.es_desc.dec_config;
        assert_eq!(
            (config.object_type_indication, config.stream_type),
            (0x40, 5)
        );
        assert_eq!(config.dec_specific.as_ref().unwrap().raw, ASC);
    }

    #[test]
    fn hevc_parameter_sets_are_marked_complete() {
        let mut w = Fmp4Writer::new();
        w.push(&unit(
            UnitKind::Video,
            0,
            true,
            &ex_video(0x90, b"hvc1", &hvcc_record()),
        ))
        .unwrap();
        let (_, moov) = parse_init(&w.init_segment().unwrap());
        let Codec::Hvc1(hvc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("an hvc1 sample entry");
        };
        let arrays: Vec<(u8, bool, usize)> = hvc1
            .hvcc
            .arrays
            .iter()
            .map(|a| (a.nal_unit_type, a.completeness, a.nalus.len()))
            .collect();
        assert_eq!(arrays, vec![(32, true, 1), (33, true, 1), (34, true, 1)]);
        assert_eq!(hvc1.hvcc.arrays[1].nalus[0], hex(HEVC_SPS));
        assert_eq!((hvc1.visual.width, hvc1.visual.height), (320, 240));
    }

    #[test]
    fn av1_gets_its_brand_and_record() {
        let w = av1_writer();
        let (ftyp, moov) = parse_init(&w.init_segment().unwrap());
        assert!(ftyp.compatible_brands.contains(&FourCC::new(b"av01")));
        let Codec::Av01(av01) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!("an av01 sample entry");
        };
        let mut record = Vec::new();
        mp4_atom::Atom::encode_body(&av01.av1c, &mut record).unwrap();
        assert_eq!(record, hex(AV1C));
    }
}

mod fragments {
    use super::*;

    /// A writer with H.264 configured and `frames` frames pushed at 25 fps, a keyframe
    /// every `gop`.
    fn video(frames: u32, gop: u32) -> Fmp4Writer {
        let mut w = Fmp4Writer::new();
        w.push(&unit(UnitKind::Video, 0, true, &avc_header()))
            .unwrap();
        for i in 0..frames {
            let key = i % gop == 0;
            w.push(&unit(
                UnitKind::Video,
                i * 40,
                false,
                &avc_frame(key, 0, &[0x41, i as u8]),
            ))
            .unwrap();
        }
        w
    }

    #[test]
    fn the_last_sample_of_a_track_is_held_back() {
        let mut w = video(3, 25);
        assert_eq!(w.pending_ms(), 80);
        let fragment = w.take_fragment().unwrap().unwrap();
        let (sequence, runs) = parse_fragment(&fragment.bytes);
        assert_eq!(sequence, 1);
        assert_eq!(runs.len(), 1);
        let durations: Vec<u32> = runs[0].samples.iter().map(|s| s.0).collect();
        assert_eq!(durations, vec![3600, 3600]);
        assert_eq!(runs[0].samples[1].4, vec![0, 0, 0, 2, 0x41, 1]);
        assert_eq!(
            (
                fragment.first_dts_ms,
                fragment.duration_ms,
                fragment.independent
            ),
            (0, 80, true)
        );
        // The held sample is not complete yet.
        assert_eq!(w.pending_ms(), 0);
        assert!(w.take_fragment().unwrap().is_none());
        w.push(&unit(
            UnitKind::Video,
            120,
            false,
            &avc_frame(false, 0, &[0x41]),
        ))
        .unwrap();
        let fragment = w.take_fragment().unwrap().unwrap();
        let (sequence, runs) = parse_fragment(&fragment.bytes);
        assert_eq!(
            (sequence, runs[0].tfdt, runs[0].samples.len()),
            (2, 7200, 1)
        );
        assert!(!fragment.independent);
    }

    #[test]
    fn finishing_gives_held_samples_the_duration_before_them() {
        let mut w = video(3, 25);
        w.take_fragment().unwrap();
        let fragment = w.finish().unwrap().unwrap();
        let (_, runs) = parse_fragment(&fragment.bytes);
        assert_eq!(runs[0].samples.len(), 1);
        assert_eq!(runs[0].samples[0].0, 3600);
        assert_eq!(fragment.duration_ms, 40);
        assert!(w.finish().unwrap().is_none());
        // A track's only sample: one frame (40 ms of video, an AAC frame).
        let mut w = avc_aac_with_keyframe();
        w.push(&unit(UnitKind::Audio, 0, false, &aac_frame(1)))
            .unwrap();
        let (_, runs) = parse_fragment(&w.finish().unwrap().unwrap().bytes);
        assert_eq!(runs[0].samples[0].0, 3600);
        assert_eq!(runs[1].samples[0].0, 1024);
        // The next sample starts after the end given to the last one.
        w.push(&unit(
            UnitKind::Video,
            10,
            false,
            &avc_frame(false, 0, &[0x41]),
        ))
        .unwrap();
        let (_, runs) = parse_fragment(&w.finish().unwrap().unwrap().bytes);
        assert_eq!(runs[0].tfdt, 3600);
    }

    #[test]
    fn parts_are_cut_within_their_target_and_follow_each_other() {
        let mut w = avc_aac();
        let mut fragments = Vec::new();
        for u in av_units(3000, 25) {
            w.push(&u).unwrap();
            while w.pending_ms() >= 200 {
                fragments.push(w.take_fragment_within(200).unwrap().unwrap());
            }
        }
        fragments.extend(w.finish().unwrap());
        let mut next_tfdt = [None, None];
        let mut frames = [0, 0];
        for (i, fragment) in fragments.iter().enumerate() {
            let (sequence, runs) = parse_fragment(&fragment.bytes);
            assert_eq!(sequence, fragment.sequence);
            assert_eq!(
                sequence,
                i as u32 + 1,
                "mfhd sequence numbers count up from 1"
            );
            assert!(fragment.duration_ms <= 200, "fragment {i}");
            for run in &runs {
                let t = (run.track - 1) as usize;
                if let Some(expected) = next_tfdt[t] {
                    assert_eq!(run.tfdt, expected, "track {} fragment {i}", run.track);
                }
                next_tfdt[t] =
                    Some(run.tfdt + run.samples.iter().map(|s| u64::from(s.0)).sum::<u64>());
                frames[t] += run.samples.len();
                for s in &run.samples {
                    assert!(s.0 > 0, "every sample has a duration");
                }
            }
            // Video at 90 kHz from millisecond timestamps: durations are whole frames; the
            // composition time (80 ms, 7200 ticks) of every frame is the first keyframe's,
            // so decode times run 80 ms later and the offsets are 0.
            let video = runs.iter().find(|r| r.track == VIDEO_TRACK_ID).unwrap();
            assert!(video.samples.iter().all(|s| s.0 == 3600 && s.3 == 0));
            assert_eq!(video.tfdt, (fragment.first_dts_ms + 80) * 90);
            assert_eq!(fragment.independent, video.samples[0].2);
        }
        // Every frame went out once: 75 video frames, 130 AAC frames in 3 s.
        assert_eq!(frames, [75, 130]);
        // 200 ms parts: five frames each, except at the start of a part after a keyframe.
        assert_eq!(fragments[0].duration_ms, 200);
        // Audio stays within the video of its fragment.
        let (_, runs) = parse_fragment(&fragments[1].bytes);
        let audio = runs.iter().find(|r| r.track == AUDIO_TRACK_ID).unwrap();
        let audio_end = audio.tfdt + audio.samples.iter().map(|s| u64::from(s.0)).sum::<u64>();
        assert!(audio_end * 1000 / 44_100 <= fragments[1].first_dts_ms + 200 + 23);
    }

    #[test]
    fn a_fragment_taken_at_a_keyframe_ends_before_it() {
        let mut w = video(0, 25);
        let mut fragments = Vec::new();
        for i in 0..60u32 {
            let key = i % 25 == 0;
            let pushed = w
                .push(&unit(
                    UnitKind::Video,
                    i * 40,
                    false,
                    &avc_frame(key, 0, &[0x41]),
                ))
                .unwrap();
            assert!(matches!(pushed, Pushed::Sample { independent } if independent == key));
            if key {
                // The keyframe is held: the fragment is everything before it.
                fragments.extend(w.take_fragment().unwrap());
                assert!(w.next_independent());
            }
        }
        assert_eq!(fragments.len(), 2);
        for fragment in &fragments {
            let (_, runs) = parse_fragment(&fragment.bytes);
            let syncs: Vec<bool> = runs[0].samples.iter().map(|s| s.2).collect();
            assert_eq!(syncs.len(), 25);
            assert!(syncs[0] && syncs[1..].iter().all(|s| !s));
            assert!(fragment.independent);
            assert_eq!(fragment.duration_ms, 1000);
        }
        // A part in the middle of a GOP is not independent.
        let part = w.take_fragment_within(200).unwrap().unwrap();
        assert!(part.independent);
        let part = w.take_fragment_within(200).unwrap().unwrap();
        assert!(!part.independent);
    }

    #[test]
    fn a_frame_longer_than_the_target_still_makes_a_part() {
        let mut w = video(0, 25);
        for dts in [0, 500, 540] {
            w.push(&unit(
                UnitKind::Video,
                dts,
                false,
                &avc_frame(dts == 0, 0, &[1]),
            ))
            .unwrap();
        }
        let fragment = w.take_fragment_within(200).unwrap().unwrap();
        assert_eq!(fragment.duration_ms, 500);
        let fragment = w.take_fragment_within(200).unwrap().unwrap();
        assert_eq!((fragment.first_dts_ms, fragment.duration_ms), (500, 40));
    }

    #[test]
    fn audio_only_fragments_are_independent() {
        let mut w = Fmp4Writer::new();
        w.push(&unit(UnitKind::Audio, 0, true, &opus_header()))
            .unwrap();
        for i in 0..11u32 {
            let frame = [&[0x91][..], b"Opus", &[0xfc, i as u8]].concat();
            let pushed = w
                .push(&unit(UnitKind::Audio, i * 20, false, &frame))
                .unwrap();
            assert!(matches!(pushed, Pushed::Sample { independent: true }));
        }
        let fragment = w.take_fragment_within(100).unwrap().unwrap();
        assert_eq!((fragment.duration_ms, fragment.independent), (100, true));
        let (_, runs) = parse_fragment(&fragment.bytes);
        assert_eq!(runs[0].track, AUDIO_TRACK_ID);
        assert_eq!(runs[0].samples.len(), 5);
        assert!(runs[0].samples.iter().all(|s| s.0 == 960 && s.2));
        assert_eq!(runs[0].samples[0].4, vec![0xfc, 0]);
    }

    #[test]
    fn composition_offsets_and_equal_timestamps() {
        let mut w = video(0, 25);
        // I P B B: DTS 0 40 80 120, composition 40 120 0 -40 (a negative offset too).
        for (dts, cts) in [(0, 40), (40, 120), (80, 0), (80, -40), (160, 0)] {
            w.push(&unit(
                UnitKind::Video,
                dts,
                false,
                &avc_frame(dts == 0, cts, &[1]),
            ))
            .unwrap();
        }
        let (_, runs) = parse_fragment(&w.take_fragment().unwrap().unwrap().bytes);
        let got: Vec<(u32, i64)> = runs[0].samples.iter().map(|s| (s.0, s.3)).collect();
        // Decode times run 40 ms (the keyframe's composition time) after the DTS, so the
        // keyframe is shown at its decode time; every picture at its own presentation time.
        // Two frames at 80 ms: the second is one tick later, its presentation time kept.
        assert_eq!(
            got,
            vec![(3600, 0), (3600, 7200), (1, -3600), (7199, -7201)]
        );
        assert_eq!(runs[0].tfdt, 40 * 90);
    }

    #[test]
    fn timestamps_wrap_past_32_bits() {
        let mut w = video(0, 25);
        let start = u32::MAX - 39;
        for (i, dts) in [start, start.wrapping_add(40), start.wrapping_add(80)]
            .into_iter()
            .enumerate()
        {
            w.push(&unit(
                UnitKind::Video,
                dts,
                false,
                &avc_frame(i == 0, 0, &[1]),
            ))
            .unwrap();
        }
        let fragment = w.take_fragment().unwrap().unwrap();
        assert_eq!(fragment.duration_ms, 80);
        let (_, runs) = parse_fragment(&fragment.bytes);
        assert_eq!(runs[0].tfdt, u64::from(start) * 90);
        assert!(runs[0].samples.iter().all(|s| s.0 == 3600));
    }

    #[test]
    fn av1_temporal_delimiters_are_left_out() {
        let mut w = av1_writer();
        // A temporal delimiter (type 2, empty), then a frame OBU.
        let tu = [0x12, 0x00, 0x32, 0x02, 0xaa, 0xbb];
        for dts in [0, 40] {
            w.push(&unit(
                UnitKind::Video,
                dts,
                false,
                &ex_video(0x91, b"av01", &tu),
            ))
            .unwrap();
        }
        let (_, runs) = parse_fragment(&w.take_fragment().unwrap().unwrap().bytes);
        assert_eq!(runs[0].samples[0].4, vec![0x32, 0x02, 0xaa, 0xbb]);
        assert!(runs[0].samples[0].2, "a keyframe");
        // A unit of delimiters alone carries nothing.
        let pushed = w
            .push(&unit(
                UnitKind::Video,
                80,
                false,
                &ex_video(0xa1, b"av01", &[0x12, 0]),
            ))
            .unwrap();
        assert!(matches!(pushed, Pushed::Ignored));
    }
}

mod input {
    use super::*;

    #[test]
    fn what_carries_no_sample_is_ignored() {
        let mut w = Fmp4Writer::new();
        let ignored = |w: &mut Fmp4Writer, kind, body: &[u8]| {
            matches!(
                w.push(&unit(kind, 0, false, body)).unwrap(),
                Pushed::Ignored
            )
        };
        // Frames before their track's configuration.
        assert!(ignored(
            &mut w,
            UnitKind::Video,
            &avc_frame(true, 0, &[0x65])
        ));
        assert!(ignored(&mut w, UnitKind::Audio, &aac_frame(0)));
        let mut w = avc_aac();
        assert!(ignored(&mut w, UnitKind::Script, b"\x02\x00\x0aonMetaData"));
        assert!(ignored(&mut w, UnitKind::Video, &[]));
        assert!(
            ignored(&mut w, UnitKind::Video, &[0x17, 2, 0, 0, 0]),
            "end of sequence"
        );
        assert!(
            ignored(&mut w, UnitKind::Video, &[0x17, 1, 0, 0, 0]),
            "no NAL unit"
        );
        // Enhanced RTMP colour metadata, and a command frame.
        assert!(ignored(
            &mut w,
            UnitKind::Video,
            &ex_video(0x94, b"avc1", &[2, 0, 9])
        ));
        assert!(ignored(&mut w, UnitKind::Video, &[0xd0, 0]));
        assert!(ignored(&mut w, UnitKind::Audio, &[0xaf, 1]));
        // A frame of another codec than the track's.
        assert!(ignored(
            &mut w,
            UnitKind::Video,
            &ex_video(0x91, b"av01", &[0x32, 0])
        ));
        assert_eq!(w.queued_bytes(), 0);
    }

    #[test]
    fn a_codec_it_cannot_carry_stops_the_writer() {
        let mut w = avc_aac_with_keyframe();
        assert!(w.queued_bytes() > 0);
        let vp9 = ex_video(0x90, b"vp09", &[1, 0, 0, 0]);
        let pushed = w.push(&unit(UnitKind::Video, 0, true, &vp9)).unwrap();
        assert!(matches!(&pushed, Pushed::Unsupported(t) if t == "vp9 video (Enhanced RTMP)"));
        assert_eq!(w.unsupported(), Some("vp9 video (Enhanced RTMP)"));
        assert_eq!(w.queued_bytes(), 0, "what was queued is dropped");
        let pushed = w
            .push(&unit(UnitKind::Audio, 40, false, &aac_frame(1)))
            .unwrap();
        assert!(matches!(pushed, Pushed::Ignored));
        assert!(w.finish().unwrap().is_none());
        // Legacy audio other than AAC.
        let mut w = Fmp4Writer::new();
        let pushed = w
            .push(&unit(UnitKind::Audio, 0, false, &[0x2f, 0xff, 0xfb]))
            .unwrap();
        assert!(matches!(&pushed, Pushed::Unsupported(t) if t == "mp3 audio"));
    }

    #[test]
    fn a_changed_configuration_flushes_the_old_one() {
        let mut w = avc_aac();
        let first_init = w.init_segment().unwrap();
        // The same header again changes nothing.
        let pushed = w
            .push(&unit(UnitKind::Video, 0, true, &avc_header()))
            .unwrap();
        assert!(matches!(
            pushed,
            Pushed::Configured {
                changed: false,
                ref flushed,
            } if flushed.is_empty()
        ));
        for i in 0..3u32 {
            w.push(&unit(
                UnitKind::Video,
                i * 40,
                false,
                &avc_frame(i == 0, 0, &[1]),
            ))
            .unwrap();
        }
        // A new resolution: the three frames, the held one included, end the old init.
        let mut record = hex(AVCC);
        let sps = hex("67640028acd940780227e5c044000003000400000300c83c60c658");
        record.truncate(6);
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(&sps);
        record.extend_from_slice(&hex("010004deadbeef"));
        let header = [&[0x17, 0, 0, 0, 0][..], &record].concat();
        let pushed = w.push(&unit(UnitKind::Video, 120, true, &header)).unwrap();
        let Pushed::Configured {
            changed: true,
            flushed,
        } = pushed
        else {
            panic!("a changed configuration: {pushed:?}");
        };
        let [flushed] = &flushed[..] else {
            panic!("one fragment: {flushed:?}");
        };
        let (_, runs) = parse_fragment(&flushed.bytes);
        assert_eq!(runs[0].samples.len(), 3);
        assert_eq!(flushed.duration_ms, 120);
        assert_eq!(w.video_size(), Some((1920, 1080)));
        assert_ne!(w.init_segment().unwrap(), first_init);
        assert_eq!(w.queued_bytes(), 0);
    }

    #[test]
    fn with_a_part_target_the_flush_comes_in_parts() {
        let mut w = Fmp4Writer::with_part_target(100);
        w.push(&unit(UnitKind::Video, 0, true, &avc_header()))
            .unwrap();
        for i in 0..8u32 {
            let frame = avc_frame(i == 0, 0, &[1, i as u8]);
            w.push(&unit(UnitKind::Video, i * 40, false, &frame))
                .unwrap();
        }
        // Another SPS (level 3.1): the 8 frames go out, the held one included, in parts of
        // two frames (80 ms; three would be 120).
        let mut record = hex(AVCC);
        record[3] = 0x1f;
        let header = [&[0x17, 0, 0, 0, 0][..], &record].concat();
        let Pushed::Configured {
            changed: true,
            flushed,
        } = w.push(&unit(UnitKind::Video, 320, true, &header)).unwrap()
        else {
            panic!("a changed configuration");
        };
        let durations: Vec<u64> = flushed.iter().map(|f| f.duration_ms).collect();
        assert_eq!(durations, [80, 80, 80, 80]);
        assert!(flushed[0].independent && !flushed[1].independent);
        let dts: Vec<u64> = flushed.iter().map(|f| f.first_dts_ms).collect();
        assert_eq!(dts, [0, 80, 160, 240]);
        assert_eq!(w.queued_bytes(), 0);
        // finish_within cuts the same way, and leaves nothing.
        for i in 8..13u32 {
            let frame = avc_frame(i == 8, 0, &[1, i as u8]);
            w.push(&unit(UnitKind::Video, i * 40, false, &frame))
                .unwrap();
        }
        let durations: Vec<u64> = w
            .finish_within(100)
            .unwrap()
            .iter()
            .map(|f| f.duration_ms)
            .collect();
        assert_eq!(durations, [80, 80, 40]);
        assert!(w.finish_within(100).unwrap().is_empty());
        assert_eq!(w.pending_ms(), 0);
    }

    #[test]
    fn malformed_configurations_are_refused_and_change_nothing() {
        let mut w = Fmp4Writer::new();
        let video = |w: &mut Fmp4Writer, body: Vec<u8>| {
            matches!(
                w.push(&unit(UnitKind::Video, 0, true, &body)),
                Err(Fmp4Error::VideoConfig(_))
            )
        };
        let audio = |w: &mut Fmp4Writer, body: Vec<u8>| {
            matches!(
                w.push(&unit(UnitKind::Audio, 0, true, &body)),
                Err(Fmp4Error::AudioConfig(_))
            )
        };
        let avcc = hex(AVCC);
        assert!(video(
            &mut w,
            [&[0x17, 0, 0, 0, 0][..], &avcc[..10]].concat()
        ));
        // An SPS that ends before the picture size.
        let mut short_sps = avcc[..6].to_vec();
        short_sps.extend_from_slice(&[0, 4, 0x67, 0x64, 0, 0x0d, 0]);
        assert!(video(
            &mut w,
            [&[0x17, 0, 0, 0, 0][..], &short_sps].concat()
        ));
        // An HEVC record without SPS.
        let no_sps = hex("0101600000009000000000003cf000fcfdf8f800000f00");
        assert!(video(&mut w, ex_video(0x90, b"hvc1", &no_sps)));
        // An AV1 record without its marker.
        assert!(video(&mut w, ex_video(0x90, b"av01", &hex("01000c00"))));
        // AudioSpecificConfigs: empty, object type 0, sampling frequency index 13.
        assert!(audio(&mut w, vec![0xaf, 0]));
        assert!(audio(&mut w, vec![0xaf, 0, 0x02, 0x10]));
        assert!(audio(&mut w, vec![0xaf, 0, 0x16, 0x90]));
        // Opus headers: wrong magic, three channels without a mapping, a mapping table cut
        // short, a table naming more channels than the streams have.
        let opus = |head: &str| [&[0x90][..], b"Opus", &hex(head)].concat();
        assert!(audio(
            &mut w,
            opus("4f707573546167730101380180bb0000000000")
        ));
        assert!(audio(
            &mut w,
            opus("4f707573486561640103380180bb0000000000")
        ));
        assert!(audio(
            &mut w,
            opus("4f707573486561640102380180bb000000000101")
        ));
        assert!(audio(
            &mut w,
            opus("4f707573486561640102380180bb000000000101010005")
        ));
        assert!(w.init_segment().is_none());
        assert_eq!(w.codecs(), None);
        // A refused header leaves the configuration in force.
        let mut w = avc_aac();
        assert!(video(&mut w, vec![0x17, 0, 0, 0, 0, 1]));
        assert_eq!(w.codecs().as_deref(), Some("avc1.64000d,mp4a.40.2"));
    }

    #[test]
    fn the_queue_is_bounded_and_video_resumes_at_a_keyframe() {
        let mut w = avc_aac();
        let big = vec![0x41; 12 * 1024 * 1024];
        for i in 0..2u32 {
            w.push(&unit(
                UnitKind::Video,
                i * 40,
                false,
                &avc_frame(i == 0, 0, &big),
            ))
            .unwrap();
        }
        let refused = w.push(&unit(
            UnitKind::Video,
            80,
            false,
            &avc_frame(false, 0, &big),
        ));
        assert!(matches!(
            refused,
            Err(Fmp4Error::QueueFull { samples: 2, .. })
        ));
        assert!(w.queued_bytes() <= MAX_QUEUED_BYTES);
        // Inter frames after the refused one are left out; audio goes on.
        let small = avc_frame(false, 0, &[0x41]);
        let pushed = w.push(&unit(UnitKind::Video, 120, false, &small)).unwrap();
        assert!(matches!(pushed, Pushed::Ignored));
        let pushed = w
            .push(&unit(UnitKind::Audio, 120, false, &aac_frame(0)))
            .unwrap();
        assert!(matches!(pushed, Pushed::Sample { independent: false }));
        w.take_fragment().unwrap().unwrap();
        let pushed = w
            .push(&unit(
                UnitKind::Video,
                160,
                false,
                &avc_frame(true, 0, &[0x65]),
            ))
            .unwrap();
        assert!(matches!(pushed, Pushed::Sample { independent: true }));
    }

    #[test]
    fn the_sample_count_is_bounded_too() {
        let mut w = Fmp4Writer::new();
        w.push(&unit(UnitKind::Audio, 0, true, &opus_header()))
            .unwrap();
        let frame = [&[0x91][..], b"Opus", &[0xfc]].concat();
        let mut refused = None;
        for i in 0..=MAX_QUEUED_SAMPLES as u32 {
            if let Err(err) = w.push(&unit(UnitKind::Audio, i * 20, false, &frame)) {
                refused = Some((i, err));
                break;
            }
        }
        let (at, err) = refused.expect("a sample refused");
        assert_eq!(at as usize, MAX_QUEUED_SAMPLES);
        assert!(matches!(err, Fmp4Error::QueueFull { .. }));
        // Taking a fragment makes room.
        w.take_fragment().unwrap().unwrap();
        assert!(w
            .push(&unit(UnitKind::Audio, at * 20, false, &frame))
            .is_ok());
    }
}
