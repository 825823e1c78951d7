//! Units of a test stream, for the tests of the fMP4 writer and of the LL-HLS segmenter:
//! real codec configurations, frames that carry their index; and fragments read back.

use super::SYNC_FLAGS;
use crate::media::{Unit, UnitKind};
use mp4_atom::{Decode, Moof};

/// Bytes from hexadecimal.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A unit as the origin makes it (never a keyframe flag: the writer reads the body).
pub(crate) fn unit(kind: UnitKind, dts: u32, header: bool, body: &[u8]) -> Unit {
    Unit::serialize(kind, dts, false, header, body, 4096, None)
}

/// x264's AVCDecoderConfigurationRecord for 320x240, High profile, level 1.3.
pub(crate) const AVCC: &str =
    "0164000dffe100196764000dacd94141fb011000000300100000030320f142996001000668ebe3cb22c0fdf8f800";

/// AAC-LC, 44.1 kHz, stereo.
pub(crate) const ASC: [u8; 2] = [0x12, 0x10];

/// The AVC sequence header of [`AVCC`].
pub(crate) fn avc_header() -> Vec<u8> {
    [&[0x17, 0, 0, 0, 0][..], &hex(AVCC)].concat()
}

/// The AAC sequence header of [`ASC`].
pub(crate) fn aac_header() -> Vec<u8> {
    [&[0xaf, 0][..], &ASC].concat()
}

/// A legacy AVC frame of one NAL unit `nal`, with composition time `cts`.
pub(crate) fn avc_frame(key: bool, cts: i32, nal: &[u8]) -> Vec<u8> {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1];
    body.extend_from_slice(&cts.to_be_bytes()[1..]);
    body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    body.extend_from_slice(nal);
    body
}

/// An AAC frame of two bytes `fill`.
pub(crate) fn aac_frame(fill: u8) -> Vec<u8> {
    vec![0xaf, 1, 0x21, fill, fill]
}

/// 25 fps video with a keyframe every `gop` frames and 44.1 kHz AAC, interleaved by DTS as
/// a publisher sends them, for `ms`.
pub(crate) fn av_units(ms: u32, gop: u32) -> Vec<Unit> {
    let mut units = Vec::new();
    let (mut video, mut audio) = (0u32, 0u32);
    loop {
        let v_dts = video * 40;
        let a_dts = (u64::from(audio) * 1024 * 1000 / 44_100) as u32;
        if v_dts.min(a_dts) >= ms {
            return units;
        }
        if v_dts <= a_dts {
            let key = video % gop == 0;
            units.push(unit(
                UnitKind::Video,
                v_dts,
                false,
                &avc_frame(key, 80, &[if key { 0x65 } else { 0x41 }, video as u8]),
            ));
            video += 1;
        } else {
            units.push(unit(UnitKind::Audio, a_dts, false, &aac_frame(audio as u8)));
            audio += 1;
        }
    }
}

/// One track's samples in a fragment, read back through its boxes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub(crate) track: u32,
    pub(crate) tfdt: u64,
    /// (duration, size, sync, cts, bytes)
    pub(crate) samples: Vec<(u32, u32, bool, i64, Vec<u8>)>,
}

/// Reads a fragment back: its `mfhd` sequence number and its runs, the sample bytes found
/// through the data offsets (from the moof's start, as default-base-is-moof says).
pub(crate) fn parse_fragment(bytes: &[u8]) -> (u32, Vec<Run>) {
    let mut buf = bytes;
    let moof = Moof::decode(&mut buf).expect("moof");
    let mdat_at = bytes.len() - buf.len();
    assert_eq!(&buf[4..8], b"mdat");
    assert_eq!(
        u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        buf.len(),
        "the mdat runs to the end"
    );
    let mut runs = Vec::new();
    let mut expected_offset = mdat_at + 8;
    for traf in &moof.traf {
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.trun.len(), 1);
        let trun = &traf.trun[0];
        let mut at = trun.data_offset.expect("data offset") as usize;
        assert_eq!(at, expected_offset, "track data follow each other");
        let mut samples = Vec::new();
        for entry in trun.samples.iter() {
            let size = entry.size.expect("size");
            let flags = entry
                .flags
                .or(traf.tfhd.default_sample_flags)
                .expect("flags");
            let data = bytes[at..at + size as usize].to_vec();
            at += size as usize;
            samples.push((
                entry.duration.expect("duration"),
                size,
                flags == SYNC_FLAGS,
                entry.cts.unwrap_or(0),
                data,
            ));
        }
        expected_offset = at;
        runs.push(Run {
            track: traf.tfhd.track_id,
            tfdt: traf.tfdt.as_ref().expect("tfdt").base_media_decode_time,
            samples,
        });
    }
    assert_eq!(
        expected_offset,
        bytes.len(),
        "every mdat byte is a sample's"
    );
    (moof.mfhd.sequence_number, runs)
}
