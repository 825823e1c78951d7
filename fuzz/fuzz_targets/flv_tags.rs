//! FLV demuxing (`corecast::flv::reader::FlvReader`) with the input pushed in arbitrary
//! pieces, the tag helpers, corecast's classification of tag bodies, legacy and Enhanced
//! RTMP (`flv::codec::video` and `audio`, directly and through `media::has_payload`), the
//! reduction of multitrack tags to their default track, and the sequence-header parsers of
//! the TS muxer (AVCDecoderConfigurationRecord, AudioSpecificConfig). Seeds include FLV files of HEVC,
//! AV1, VP9 and Opus with enhanced headers, and one of two renditions (multitrack).
//!
//! Input: a mode byte (bit 0: prepend a valid FLV file header; bits 1-2: maximum tag size),
//! a byte that chooses how the rest is cut into pushes, then the bytes.
#![no_main]

use corecast::flv::reader::{FlvReader, TagKind};
use corecast::hls::ts::TsMuxer;
use corecast::flv::codec;
use corecast::media::{has_payload, UnitKind};
use corecast_fuzz::pieces;
use libfuzzer_sys::fuzz_target;

const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let max = [16 * 1024 * 1024, 1024, 64, 0][usize::from(mode >> 1 & 3)];
    let mut reader = FlvReader::with_max_tag_size(max);
    if mode & 1 == 1 {
        reader.push(&FILE_HEADER);
    }
    let mut pushed = 0;
    let mut taken = 0;
    let mut muxer = TsMuxer::new();
    for piece in pieces(rest, *seed) {
        reader.push(piece);
        pushed += piece.len();
        loop {
            let before = reader.buffered_len();
            match reader.next_tag() {
                Ok(Some(tag)) => {
                    assert!(tag.data.len() <= max);
                    taken += tag.data.len();
                    assert!(reader.buffered_len() < before);
                    let _ = tag.is_video_keyframe();
                    let _ = tag.composition_time();
                    let sequence_header = tag.is_sequence_header();
                    match tag.kind {
                        TagKind::Video => {
                            let info = codec::video(&tag.data);
                            assert!(info.is_none() || !tag.data.is_empty());
                            assert_eq!(info.is_some_and(|i| i.header), sequence_header);
                            if let Some(video) = codec::video(&tag.data) {
                                // A keyframe is coded frames: never a header too.
                                assert!(!(video.keyframe && video.header));
                                assert!(!video.metadata || video.header);
                                let _ = video.codec.name();
                                if let Some(tracks) = video.multitrack {
                                    // The default track alone is a plain tag of the same
                                    // kind, a keyframe when the multitrack tag is one.
                                    let single = tracks.default_body(&tag.data);
                                    if let Some(plain) = codec::video(&single) {
                                        assert_eq!(plain.multitrack, None);
                                        assert_eq!(plain.keyframe, video.keyframe);
                                        assert_eq!(plain.header, video.header);
                                    } else {
                                        assert!(single.is_empty() && !video.keyframe);
                                    }
                                }
                            }
                            let _ = has_payload(UnitKind::Video, &tag.data);
                            if sequence_header {
                                let _ = muxer.set_video_config(&tag.data);
                            }
                        }
                        TagKind::Audio => {
                            assert_eq!(
                                codec::audio(&tag.data).is_some_and(|a| a.header),
                                sequence_header
                            );
                            if let Some(audio) = codec::audio(&tag.data) {
                                assert!(!audio.multichannel || audio.header);
                                let _ = audio.codec.name();
                                if let Some(tracks) = audio.multitrack {
                                    let single = tracks.default_body(&tag.data);
                                    if let Some(plain) = codec::audio(&single) {
                                        assert_eq!(plain.multitrack, None);
                                        assert_eq!(plain.header, audio.header);
                                    } else {
                                        assert!(single.is_empty());
                                    }
                                }
                            }
                            let _ = has_payload(UnitKind::Audio, &tag.data);
                            if sequence_header {
                                let _ = muxer.set_audio_config(&tag.data);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(first) => {
                    // Sticky: the bytes at fault stay (only a file header parsed by this
                    // call may have been consumed), and the same error comes again.
                    let after = reader.buffered_len();
                    assert!(before - after == 0 || before - after >= 13);
                    let again = reader.next_tag().expect_err("sticky error");
                    assert_eq!(reader.buffered_len(), after);
                    assert_eq!(first.to_string(), again.to_string());
                    return;
                }
            }
        }
    }
    assert!(taken <= pushed);
    // Every body is also a candidate configuration record, whatever its tag said.
    let _ = muxer.set_video_config(rest);
    let _ = muxer.set_audio_config(rest);
});
