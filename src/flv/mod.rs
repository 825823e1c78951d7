//! FLV serialization (pure) and the demuxer used by clients and tests.
//!
//! A unit's FLV tag is a slice of its one stored serialization ([`crate::media::Wire`]),
//! whose tag header [`put_tag_header`] writes; [`tag`] builds a tag alone.

pub mod codec;
pub mod reader;

use crate::media::UnitKind;
use bytes::{BufMut, Bytes};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::StreamMetadata;
use std::collections::HashMap;

/// FLV tag header length.
pub const TAG_HEADER_LEN: usize = 11;

/// The FLV file header (signature, version 1, track flags, header size 9), followed by
/// PreviousTagSize0, for each combination of tracks. Players such as mpegts.js wait for every
/// track the header announces, so it must not announce a missing one.
const FILE_HEADERS: [[u8; 13]; 3] = [
    [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0],
    [b'F', b'L', b'V', 1, 0x04, 0, 0, 0, 9, 0, 0, 0, 0],
    [b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0],
];

/// The FLV file header for a stream with the given tracks. A stream whose tracks are not
/// known yet (no sequence header seen) is announced with both.
pub fn file_header(has_audio: bool, has_video: bool) -> &'static [u8] {
    match (has_audio, has_video) {
        (true, false) => &FILE_HEADERS[1],
        (false, true) => &FILE_HEADERS[2],
        _ => &FILE_HEADERS[0],
    }
}

/// Largest body an FLV tag can describe (24-bit size field).
pub const MAX_BODY_LEN: usize = 0x00ff_ffff;

/// Serializes one complete FLV tag. Bodies longer than [`MAX_BODY_LEN`] cannot come from RTMP
/// (its message length field is 24 bits too) and are truncated to it.
pub fn tag(kind: UnitKind, timestamp_ms: u32, body: &[u8]) -> Bytes {
    crate::media::Wire::new(kind, timestamp_ms, body, usize::MAX, None).flv()
}

/// Appends the 11-byte header of a tag of `kind` with a body of `len` bytes (at most
/// [`MAX_BODY_LEN`]): type, size, timestamp (24 bits and its upper byte), stream id 0.
pub fn put_tag_header(out: &mut impl BufMut, kind: UnitKind, timestamp_ms: u32, len: usize) {
    out.put_u8(kind.flv_tag_type());
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp_ms.to_be_bytes()[1..]);
    out.put_u8((timestamp_ms >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
}

/// Builds the body of an `onMetaData` script tag from what the publisher announced.
pub fn metadata_body(meta: &StreamMetadata) -> Vec<u8> {
    let mut props: HashMap<String, Amf0Value> = HashMap::new();
    let mut number = |key: &str, value: Option<f64>| {
        if let Some(v) = value {
            props.insert(key.to_string(), Amf0Value::Number(v));
        }
    };
    number("width", meta.video_width.map(f64::from));
    number("height", meta.video_height.map(f64::from));
    number("videocodecid", meta.video_codec_id.map(f64::from));
    number("framerate", meta.video_frame_rate.map(f64::from));
    number("videodatarate", meta.video_bitrate_kbps.map(f64::from));
    number("audiocodecid", meta.audio_codec_id.map(f64::from));
    number("audiodatarate", meta.audio_bitrate_kbps.map(f64::from));
    number("audiosamplerate", meta.audio_sample_rate.map(f64::from));
    number("audiochannels", meta.audio_channels.map(f64::from));
    if let Some(stereo) = meta.audio_is_stereo {
        props.insert("stereo".into(), Amf0Value::Boolean(stereo));
    }
    if let Some(encoder) = &meta.encoder {
        props.insert("encoder".into(), Amf0Value::Utf8String(encoder.clone()));
    }
    let values = vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(props),
    ];
    // Serializing numbers, booleans, strings and a flat object cannot fail.
    rml_amf0::serialize(&values).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_layout() {
        let t = tag(UnitKind::Video, 0x0102_0304, &[0x17, 1, 2]);
        assert_eq!(t.len(), 11 + 3 + 4);
        assert_eq!(t[0], 9);
        assert_eq!(&t[1..4], &[0, 0, 3]);
        assert_eq!(&t[4..7], &[0x02, 0x03, 0x04]);
        assert_eq!(t[7], 0x01);
        assert_eq!(&t[11..14], &[0x17, 1, 2]);
        assert_eq!(&t[14..], &14u32.to_be_bytes());
    }

    #[test]
    fn tag_round_trips_through_reader() {
        let mut r = reader::FlvReader::new();
        r.push(file_header(true, true));
        r.push(&tag(UnitKind::Audio, 70_000, &[0xaf, 1, 9]));
        let t = r.next_tag().unwrap().unwrap();
        assert_eq!(t.kind, reader::TagKind::Audio);
        assert_eq!(t.timestamp, 70_000);
        assert_eq!(&t.data[..], &[0xaf, 1, 9]);
    }

    #[test]
    fn file_header_announces_present_tracks() {
        assert_eq!(file_header(true, false)[4], 0x04);
        assert_eq!(file_header(false, true)[4], 0x01);
        assert_eq!(file_header(true, true)[4], 0x05);
        assert_eq!(file_header(false, false)[4], 0x05);
        let mut r = reader::FlvReader::new();
        r.push(file_header(true, false));
        assert!(r.next_tag().unwrap().is_none());
        let h = r.header().unwrap();
        assert!(h.has_audio && !h.has_video);
    }

    #[test]
    fn metadata_is_amf0() {
        let mut meta = StreamMetadata::new();
        meta.video_width = Some(320);
        meta.encoder = Some("x".into());
        let body = metadata_body(&meta);
        let values = rml_amf0::deserialize(&mut &body[..]).unwrap();
        assert_eq!(values[0], Amf0Value::Utf8String("onMetaData".into()));
    }
}
