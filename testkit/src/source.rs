//! Synthetic media: FLV tags shaped like a real H.264/AAC encode, for load without files.

use bytes::Bytes;
use corecast::flv::reader::{FlvTag, TagKind};

/// The sequence header's AVCDecoderConfigurationRecord: x264's, High profile, with a
/// complete SPS and PPS, so that every muxer of the server (MPEG-TS, fMP4) takes the stream
/// as H.264 (the frames stay filler).
const AVCC: [u8; 46] = [
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41,
    0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

/// A synthetic H.264/AAC-shaped source of `kbps` (video and audio together), `fps` frames a
/// second and a keyframe every `gop_frames`: `seconds` of tags, looped by the publishers.
/// The payloads are filler (no decoder can show them); their sizes, timing and structure
/// (sequence headers, keyframes four times an average frame) are those of a real encode,
/// which is what a relay's cost depends on.
pub fn synthetic(kbps: u64, fps: u32, gop_frames: u32, seconds: u32) -> Vec<FlvTag> {
    const AUDIO_FPS: f64 = 44_100.0 / 1024.0;
    const AUDIO_BYTES: usize = 256;
    let audio_kbps = AUDIO_FPS * AUDIO_BYTES as f64 * 8.0 / 1000.0;
    let fps = fps.max(1);
    let gop = gop_frames.max(1);
    let frame_bytes =
        ((kbps as f64 - audio_kbps).max(8.0) * 1000.0 / 8.0 / f64::from(fps)) as usize;
    // Keyframes are 4 average frames; the others share the rest of a GOP's budget.
    let key_bytes = frame_bytes * 4;
    let inter_bytes =
        (frame_bytes * gop as usize).saturating_sub(key_bytes) / (gop as usize - 1).max(1);
    let tag = |kind, timestamp, data: Vec<u8>| FlvTag {
        kind,
        timestamp,
        data: Bytes::from(data),
    };
    let mut tags = vec![
        tag(TagKind::Video, 0, [&[0x17, 0, 0, 0, 0][..], &AVCC].concat()),
        tag(TagKind::Audio, 0, vec![0xaf, 0, 0x12, 0x10]),
    ];
    let (mut video, mut audio) = (0u32, 0u32);
    loop {
        let video_ms = u64::from(video) * 1000 / u64::from(fps);
        let audio_ms = (f64::from(audio) * 1000.0 / AUDIO_FPS) as u64;
        if video_ms.min(audio_ms) >= u64::from(seconds) * 1000 {
            return tags;
        }
        if video_ms <= audio_ms {
            let key = video % gop == 0;
            let len = if key { key_bytes } else { inter_bytes }.max(16);
            let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
            body.extend_from_slice(&((len - 9) as u32).to_be_bytes());
            body.push(if key { 0x65 } else { 0x41 });
            body.resize(len, 0x5a);
            tags.push(tag(TagKind::Video, video_ms as u32, body));
            video += 1;
        } else {
            let mut body = vec![0xaf, 1];
            body.resize(AUDIO_BYTES, 0x21);
            tags.push(tag(TagKind::Audio, audio_ms as u32, body));
            audio += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_source_has_the_asked_bitrate_and_gop() {
        let tags = synthetic(2600, 30, 60, 10);
        let bytes: usize = tags.iter().map(|t| t.data.len()).sum();
        let kbps = bytes as f64 * 8.0 / 1000.0 / 10.0;
        assert!((2500.0..2700.0).contains(&kbps), "{kbps} kbit/s");
        let keys: Vec<u32> = tags
            .iter()
            .filter(|t| t.is_video_keyframe() && !t.is_sequence_header())
            .map(|t| t.timestamp)
            .collect();
        assert_eq!(keys.len(), 5);
        assert_eq!(keys[1] - keys[0], 2000);
        assert!(tags.windows(2).all(|w| w[1].timestamp >= w[0].timestamp));
    }
}
