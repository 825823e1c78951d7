//! Test fixtures of the LL-HLS modules: a live stream through corecast's own LL-HLS
//! segmenter ([`LlSegmenter`]), with stamped H.264 frames (the HLS fixtures' frames) and
//! AAC in between: its playlist, initialization segment and parts.

use crate::hls::fixtures::{frame, stamp, AAC_CONFIG};
use bytes::Bytes;
use corecast::hls::llhls::{LlSettings, PartId, PlaylistRequest};
use corecast::hls::llsegmenter::LlSegmenter;
use corecast::media::{Unit, UnitKind};

/// x264's AVCDecoderConfigurationRecord for 320x240 (High, level 1.3, 4-byte NAL lengths):
/// corecast's fMP4 writer reads the picture size from its SPS.
const AVCC: &str =
    "0164000dffe100196764000dacd94141fb011000000300100000030320f142996001000668ebe3cb22c0fdf8f800";

/// Program date of the stream's first frame, ms since the Unix epoch
/// (2026-11-24T19:07:24.000Z).
pub(crate) const START_MS: u64 = 1_795_547_244_000;

/// One part as the segmenter made it.
pub(crate) struct FixturePart {
    /// Which part.
    pub(crate) id: PartId,
    /// Its `moof` and `mdat`.
    pub(crate) bytes: Bytes,
}

/// A stream made by corecast's LL-HLS segmenter.
pub(crate) struct Stream {
    /// The media playlist while live (after the last frame), as corecast serves it without
    /// directives.
    pub(crate) live: String,
    /// The media playlist once the stream ended (`EXT-X-ENDLIST`).
    pub(crate) ended: String,
    /// The initialization segment.
    pub(crate) init: Bytes,
    /// Every part of the ended stream, in order.
    pub(crate) parts: Vec<FixturePart>,
    /// The stamps of the frames pushed, in order: those of the parts' video samples.
    pub(crate) stamps: Vec<u64>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `seconds` of 25 fps video (a keyframe a second, every 5th frame unstamped) and AAC, in
/// 1 s segments of 250 ms parts, each unit arriving at its timestamp after [`START_MS`];
/// then the end of the stream.
pub(crate) fn stream(seconds: u64) -> Stream {
    let settings = LlSettings {
        segment_target_ms: 1000,
        part_target_ms: 250,
        window: 8,
    };
    let mut segmenter = LlSegmenter::new("cam", 7, settings);
    let unit = |kind, dts: u64, header, body: &[u8]| {
        Unit::serialize(kind, dts as u32, false, header, body, 4096, None)
    };
    let avc_header = [&[0x17, 0, 0, 0, 0][..], &hex(AVCC)].concat();
    segmenter
        .push(&unit(UnitKind::Video, 0, true, &avc_header), START_MS)
        .expect("video header");
    segmenter
        .push(&unit(UnitKind::Audio, 0, true, AAC_CONFIG), START_MS)
        .expect("audio header");
    let mut stamps = Vec::new();
    for i in 0..seconds * 25 {
        let stamped = (i % 5 != 4).then(|| stamp(i));
        stamps.extend(stamped);
        let key = i % 25 == 0;
        let size = if key {
            3000
        } else {
            40 + (i as usize * 37) % 700
        };
        let dts = i * 40;
        segmenter
            .push(
                &unit(UnitKind::Video, dts, false, &frame(key, size, stamped)),
                START_MS + dts,
            )
            .expect("frame");
        segmenter
            .push(
                &unit(
                    UnitKind::Audio,
                    dts + 10,
                    false,
                    &[0xaf, 1, 0x21, 0x10, 0x04],
                ),
                START_MS + dts + 10,
            )
            .expect("audio");
    }
    let live = segmenter.window().playlist(&PlaylistRequest::default());
    segmenter
        .end(START_MS + seconds * 1000)
        .expect("end of the stream");
    let window = segmenter.window();
    let mut parts = Vec::new();
    let first = window.segments().front().map_or(0, |s| s.msn);
    for msn in first..=window.reached().msn {
        for part in 0.. {
            let id = PartId { msn, part };
            match window.part(id) {
                Some(bytes) => parts.push(FixturePart {
                    id,
                    bytes: bytes.clone(),
                }),
                None => break,
            }
        }
    }
    Stream {
        live,
        ended: window.playlist(&PlaylistRequest::default()),
        init: segmenter.init(0).expect("init segment").clone(),
        parts,
        stamps,
    }
}
