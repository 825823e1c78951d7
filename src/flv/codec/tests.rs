//! Unit tests of [`super`] (codec): headers built as the enhanced-rtmp specification lays
//! them out.

use super::*;

/// An enhanced video header byte: `IsExHeader`, frame type, packet type.
fn ex(frame_type: u8, packet_type: u8) -> u8 {
    0x80 | frame_type << 4 | packet_type
}

fn body(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn legacy_avc_and_hevc_keep_their_meaning() {
    let seq = video(&[0x17, 0, 0, 0, 0, 1, 0x64]).unwrap();
    assert_eq!(
        (seq.codec, seq.header, seq.keyframe),
        (VideoCodec::Avc, true, false)
    );
    let key = video(&[0x17, 1, 0, 0, 0, 0x65]).unwrap();
    assert!(key.keyframe && key.payload && !key.header && !key.enhanced);
    let inter = video(&[0x27, 1, 0, 0, 0, 0x41]).unwrap();
    assert!(!inter.keyframe);
    let end = video(&[0x17, 2, 0, 0, 0]).unwrap();
    assert!(!end.keyframe && !end.payload);
    let hevc = video(&[0x1c, 1, 0, 0, 0, 0x26]).unwrap();
    assert_eq!((hevc.codec, hevc.keyframe), (VideoCodec::Hevc, true));
    // A codec without packet types: the frame type alone.
    let vp6 = video(&[0x14, 0x00]).unwrap();
    assert_eq!((vp6.codec, vp6.keyframe), (VideoCodec::Legacy(4), true));
    assert_eq!(video(&[]), None);
}

#[test]
fn enhanced_sequence_starts_are_headers_and_coded_keyframes_are_keyframes() {
    let start = video(&body(&[&[ex(1, 0)], b"hvc1", &[1, 2, 3]])).unwrap();
    assert_eq!(start.codec, VideoCodec::Hevc);
    assert!(start.header && !start.keyframe && start.enhanced);
    // CodedFrames of HEVC: a composition time, then the picture.
    let key = video(&body(&[&[ex(1, 1)], b"hvc1", &[0, 0, 0], &[0x26, 1]])).unwrap();
    assert!(key.keyframe && key.payload && !key.header);
    let bare = video(&body(&[&[ex(1, 1)], b"hvc1", &[0, 0, 0]])).unwrap();
    assert!(bare.keyframe && !bare.payload);
    // CodedFramesX: no composition time.
    let inter = video(&body(&[&[ex(2, 3)], b"hvc1", &[0x02]])).unwrap();
    assert!(!inter.keyframe && inter.payload);
    // AV1 and VP9 coded frames carry no composition time.
    let av1 = video(&body(&[&[ex(1, 1)], b"av01", &[0x12]])).unwrap();
    assert_eq!(
        (av1.codec, av1.keyframe, av1.payload),
        (VideoCodec::Av1, true, true)
    );
    let vp9 = video(&body(&[&[ex(2, 1)], b"vp09", &[0x86]])).unwrap();
    assert_eq!((vp9.codec, vp9.keyframe), (VideoCodec::Vp9, false));
    let end = video(&body(&[&[ex(1, 2)], b"av01"])).unwrap();
    assert!(!end.keyframe && !end.header && !end.payload);
}

#[test]
fn metadata_and_commands_are_never_keyframes() {
    // Colour metadata marked as a keyframe: a header, not a place to start.
    let meta = video(&body(&[&[ex(1, 4)], b"hvc1", &[0x02, 0, 0]])).unwrap();
    assert!(meta.header && meta.metadata && !meta.keyframe);
    // As ffmpeg sends it: frame type 5 with the metadata packet type is metadata, not a
    // command.
    let ffmpeg = video(&body(&[&[0xd4], b"hvc1", &[0x02, 0, 9]])).unwrap();
    assert!(ffmpeg.header && ffmpeg.metadata && !ffmpeg.keyframe);
    let mpeg2ts = video(&body(&[&[ex(1, 5)], b"av01", &[0x81]])).unwrap();
    assert!(mpeg2ts.header && !mpeg2ts.keyframe);
    // A command frame (frame type 5): one command byte, no FourCC.
    let command = video(&[ex(5, 0), 0]).unwrap();
    assert!(!command.keyframe && !command.header && !command.payload);
}

#[test]
fn mod_ex_blocks_are_skipped() {
    // One ModEx block of 3 bytes (size byte 2), then CodedFrames.
    let tag = body(&[&[ex(1, 7), 2, 9, 9, 9, 0x01], b"hvc1", &[0, 0, 0, 0x26]]);
    let info = video(&tag).unwrap();
    assert_eq!(
        (info.codec, info.keyframe, info.payload),
        (VideoCodec::Hevc, true, true)
    );
    // A 16-bit size: 255, then size - 1 = 299.
    let mut tag = vec![ex(1, 7), 255, 0x01, 0x2b];
    tag.extend([7u8; 300]);
    tag.push(0x00);
    tag.extend(b"av01");
    let info = video(&tag).unwrap();
    assert_eq!((info.codec, info.header), (VideoCodec::Av1, true));
    // Two blocks in a row.
    let tag = body(&[&[ex(2, 7), 0, 1, 0x17, 0, 2, 0x03], b"vp09", &[1]]);
    assert_eq!(video(&tag).unwrap().codec, VideoCodec::Vp9);
    // Cut short anywhere in the blocks: no classification.
    for end in 1..6 {
        assert_eq!(video(&[ex(1, 7), 2, 9, 9, 9, 0x01][..end]), None, "{end}");
    }
}

#[test]
fn multitrack_is_classified_by_the_packet_type_of_its_tracks() {
    // One codec for all tracks: multitrack type 0 (one track) | CodedFramesX, track 0.
    let tag = body(&[&[ex(1, 6), 0x03], b"av01", &[0, 0x12]]);
    let info = video(&tag).unwrap();
    assert_eq!((info.codec, info.keyframe), (VideoCodec::Av1, true));
    let tracks = info.multitrack.unwrap();
    assert_eq!((tracks.packet_type, tracks.track()), (3, 0));
    // Many tracks, many codecs: the FourCCs come per track; without track 0 the codec is
    // not one.
    let tag = body(&[&[ex(1, 6), 0x20], b"hvc1", &[2, 0, 0, 1, 9]]);
    let info = video(&tag).unwrap();
    assert_eq!((info.codec, info.header), (VideoCodec::Multiple, true));
    assert_eq!(info.multitrack.unwrap().track(), 2);
    assert_eq!(video(&[ex(1, 6), 0x03, b'a']), None);
    // Multitrack or ModEx as the tracks' packet type: malformed.
    assert_eq!(video(&body(&[&[ex(1, 6), 0x06], b"avc1", &[0, 1]])), None);
    assert_eq!(video(&body(&[&[ex(1, 6), 0x07], b"avc1", &[0, 1]])), None);
    assert_eq!(audio(&body(&[&[0x95, 0x05], b"mp4a", &[0, 1]])), None);
    assert_eq!(audio(&body(&[&[0x95, 0x07], b"mp4a", &[0, 1]])), None);
    // A track without an id, or a size past the body: cut short.
    assert_eq!(video(&body(&[&[ex(1, 6), 0x03], b"av01"])), None);
    assert_eq!(
        video(&body(&[&[ex(1, 6), 0x13], b"av01", &[0, 0, 0, 2, 9]])),
        None
    );
}

#[test]
fn a_multitrack_tag_is_a_keyframe_only_for_its_default_track() {
    // The second rendition's keyframe (track 1 alone, as ffmpeg sends it): no start point.
    let other = body(&[&[ex(1, 6), 0x01], b"avc1", &[1, 0, 0, 0, 0x65]]);
    let tag = video(&other).unwrap();
    assert!(!tag.keyframe && tag.payload && !tag.header);
    assert_eq!(
        tag.multitrack.unwrap().default_body(&other),
        Vec::<u8>::new()
    );
    // Both tracks in one tag (ManyTracks, sizes): a start point, and the default track.
    let both = body(&[
        &[ex(1, 6), 0x11],
        b"avc1",
        &[1, 0, 0, 5, 0, 0, 0, 0x65, 0x11],
        &[0, 0, 0, 6, 0, 0, 0x28, 0x65, 0x22, 0x33],
    ]);
    let tag = video(&both).unwrap();
    assert!(tag.keyframe);
    assert_eq!(tag.codec, VideoCodec::Avc);
    assert_eq!(
        tag.multitrack.unwrap().default_body(&both),
        body(&[&[ex(1, 1)], b"avc1", &[0, 0, 0x28, 0x65, 0x22, 0x33]])
    );
    let single = video(&tag.multitrack.unwrap().default_body(&both)).unwrap();
    assert_eq!((single.keyframe, single.composition_time), (true, 40));
    assert_eq!(single.multitrack, None);
}

#[test]
fn the_default_track_keeps_the_mod_ex_blocks() {
    // A ModEx block (a 3-byte nanosecond offset, type 0) before the multitrack header: the
    // block stays, its trailing packet type becomes the track's.
    let tag = body(&[
        &[ex(2, 7), 2, 0, 1, 0x2c, 0x06, 0x01],
        b"hvc1",
        &[0, 0, 0, 0, 0x01],
    ]);
    let info = video(&tag).unwrap();
    assert_eq!((info.codec, info.keyframe), (VideoCodec::Hevc, false));
    let single = info.multitrack.unwrap().default_body(&tag);
    assert_eq!(
        single,
        body(&[&[ex(2, 7), 2, 0, 1, 0x2c, 0x01], b"hvc1", &[0, 0, 0, 0x01]])
    );
    assert_eq!(video(&single).unwrap().multitrack, None);
}

#[test]
fn audio_tracks_reduce_to_the_default_track() {
    // Many tracks of one codec: track 1, then track 0.
    let tag = body(&[
        &[0x95, 0x11],
        b"Opus",
        &[1, 0, 0, 2, 0xfc, 0xfc],
        &[0, 0, 0, 1, 0xf8],
    ]);
    let info = audio(&tag).unwrap();
    assert_eq!((info.codec, info.header), (AudioCodec::Opus, false));
    assert_eq!(
        info.multitrack.unwrap().default_body(&tag),
        body(&[&[0x91], b"Opus", &[0xf8]])
    );
    // A sequence start of track 1 only: a header of track 1, nothing for the default.
    let other = body(&[&[0x95, 0x00], b"mp4a", &[1, 0x12, 0x10]]);
    let info = audio(&other).unwrap();
    assert!(info.header);
    assert_eq!(info.multitrack.unwrap().track(), 1);
    assert!(info.multitrack.unwrap().default_body(&other).is_empty());
}

#[test]
fn audio_legacy_and_enhanced() {
    let asc = audio(&[0xaf, 0, 0x12, 0x10]).unwrap();
    assert_eq!(
        (asc.codec, asc.header, asc.enhanced),
        (AudioCodec::Aac, true, false)
    );
    let frame = audio(&[0xaf, 1, 0x21]).unwrap();
    assert!(!frame.header && frame.payload);
    assert!(!audio(&[0xaf, 1]).unwrap().payload);
    assert_eq!(audio(&[0x2f, 0xff]).unwrap().codec, AudioCodec::Mp3);
    assert_eq!(audio(&[0x72, 0xd5]).unwrap().codec.name(), "pcma");
    // Enhanced: sound format 9, packet type in the low bits, then a FourCC.
    let head = audio(&body(&[&[0x90], b"Opus", b"OpusHead"])).unwrap();
    assert_eq!(
        (head.codec, head.header, head.enhanced),
        (AudioCodec::Opus, true, true)
    );
    let packet = audio(&body(&[&[0x91], b"Opus", &[0xfc]])).unwrap();
    assert!(!packet.header && packet.payload);
    let layout = audio(&body(&[&[0x94], b"ac-3", &[0, 2]])).unwrap();
    assert_eq!((layout.codec, layout.header), (AudioCodec::Ac3, true));
    assert!(layout.multichannel && !head.multichannel);
    for (fourcc, name) in [
        (b"fLaC", "flac"),
        (b"ec-3", "eac3"),
        (b".mp3", "mp3"),
        (b"mp4a", "aac"),
    ] {
        assert_eq!(
            audio(&body(&[&[0x91], fourcc, &[0]])).unwrap().codec.name(),
            name
        );
    }
    let tracks = audio(&body(&[&[0x95, 0x01], b"Opus", &[0, 0xfc]])).unwrap();
    assert_eq!((tracks.codec, tracks.header), (AudioCodec::Opus, false));
    let mod_ex = audio(&body(&[&[0x97, 0, 0x10, 0x11], b"Opus", &[0xfc]])).unwrap();
    assert_eq!((mod_ex.codec, mod_ex.payload), (AudioCodec::Opus, true));
    assert_eq!(audio(&[0x90, b'O']), None);
    assert_eq!(audio(&[]), None);
}

#[test]
fn unknown_fourccs_are_named_escaped() {
    let tag = video(&body(&[&[ex(1, 1)], b"x\n\"1", &[0]])).unwrap();
    assert_eq!(tag.codec.name(), "x\\n\\\"1");
}

#[test]
fn where_the_codec_bytes_start_and_the_composition_time() {
    let legacy = video(&[0x17, 1, 0xff, 0xff, 0xd8, 0x65]).unwrap();
    assert_eq!((legacy.data_at, legacy.composition_time), (5, -40));
    let seq = video(&[0x17, 0, 0, 0, 0, 1]).unwrap();
    assert_eq!((seq.data_at, seq.composition_time), (5, 0));
    let coded = video(&body(&[&[ex(1, 1)], b"hvc1", &[0, 0, 80], &[9]])).unwrap();
    assert_eq!((coded.data_at, coded.composition_time), (8, 80));
    let x = video(&body(&[&[ex(2, 3)], b"hvc1", &[9]])).unwrap();
    assert_eq!((x.data_at, x.composition_time), (5, 0));
    let av1 = video(&body(&[&[ex(1, 1)], b"av01", &[9]])).unwrap();
    assert_eq!(av1.data_at, 5);
    let start = video(&body(&[&[ex(1, 0)], b"avc1", &[1]])).unwrap();
    assert_eq!((start.codec, start.data_at), (VideoCodec::Avc, 5));
    let tracks = video(&body(&[&[ex(1, 6), 0x03], b"av01", &[0, 0x12]])).unwrap();
    assert!(tracks.multitrack.is_some());
}
