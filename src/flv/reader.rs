//! Incremental FLV demuxer.
//!
//! [`FlvReader`] is a pure state machine: bytes are handed to it with
//! [`FlvReader::push`] in chunks of any size, and complete tags are pulled out
//! with [`FlvReader::next_tag`]. It performs no IO itself, so it can sit behind
//! a socket, a file or a test vector alike. [`read_file`] is a convenience for
//! loading a whole file (fixtures, tools).
//!
//! Layout handled (all integers big-endian):
//!
//! ```text
//! header:  "FLV" | version u8 | flags u8 | header size u32 | PreviousTagSize0 u32 (= 0)
//! tag:     type u8 | data size u24 | timestamp u24 | timestamp ext u8 | stream id u24
//!          | data | PreviousTagSize u32 (= 11 + data size)
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::codec;
use bytes::{Buf, Bytes, BytesMut};

/// Default upper bound for a single tag's data size (16 MiB).
pub const DEFAULT_MAX_TAG_SIZE: usize = 16 * 1024 * 1024;

/// Size of the fixed part of the FLV file header.
const FILE_HEADER_LEN: usize = 9;
/// Size of a tag header (type, data size, timestamp, extended timestamp, stream id).
const TAG_HEADER_LEN: usize = 11;
/// Size of a PreviousTagSize field.
const PREVIOUS_TAG_SIZE_LEN: usize = 4;

/// FLV video codec id for AVC (H.264).
const VIDEO_CODEC_AVC: u8 = 7;
/// FLV video frame type for a keyframe.
const FRAME_TYPE_KEY: u8 = 1;

/// Errors produced while demuxing FLV data.
#[derive(Debug, thiserror::Error)]
pub enum FlvError {
    /// The stream does not start with the `FLV` signature.
    #[error("invalid FLV signature {0:02x?}")]
    BadSignature([u8; 3]),
    /// The FLV header declares a version other than 1.
    #[error("unsupported FLV version {0}")]
    UnsupportedVersion(u8),
    /// The FLV header declares a header size smaller than the 9-byte minimum.
    #[error("invalid FLV header size {0}")]
    InvalidHeaderSize(u32),
    /// A tag declares a data size above the configured maximum.
    #[error("FLV tag data size {size} exceeds the maximum of {max} bytes")]
    TagTooLarge {
        /// Data size declared by the tag header.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A PreviousTagSize field does not match the size of the tag before it.
    #[error("FLV PreviousTagSize is {actual}, expected {expected}")]
    PreviousTagSizeMismatch {
        /// Value implied by the preceding tag (0 for PreviousTagSize0).
        expected: u32,
        /// Value found in the stream.
        actual: u32,
    },
}

/// Information carried by the FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// FLV version (always 1 for accepted streams).
    pub version: u8,
    /// The "audio tags present" flag.
    pub has_audio: bool,
    /// The "video tags present" flag.
    pub has_video: bool,
}

/// Kind of an FLV tag, from the tag type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Tag type 8.
    Audio,
    /// Tag type 9.
    Video,
    /// Tag type 18 (AMF0 script data, e.g. `onMetaData`).
    Script,
    /// Any other tag type byte, including tags with the filter (encryption) bit set.
    Other(u8),
}

impl TagKind {
    /// Maps a raw tag type byte to a kind.
    pub fn from_byte(byte: u8) -> Self {
        match byte {
            8 => Self::Audio,
            9 => Self::Video,
            18 => Self::Script,
            other => Self::Other(other),
        }
    }

    /// The raw tag type byte for this kind.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Audio => 8,
            Self::Video => 9,
            Self::Script => 18,
            Self::Other(byte) => byte,
        }
    }
}

/// One demuxed FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// Tag type.
    pub kind: TagKind,
    /// Timestamp in milliseconds: the 24-bit field extended by the upper byte.
    pub timestamp: u32,
    /// Tag body (for audio/video this starts with the FLV codec header byte).
    pub data: Bytes,
}

impl FlvTag {
    /// Whether this is a video tag whose frame type is "keyframe" (legacy or Enhanced RTMP).
    ///
    /// Sequence headers and end-of-sequence tags also carry this frame
    /// type; combine with [`is_sequence_header`](Self::is_sequence_header) to
    /// tell them apart.
    pub fn is_video_keyframe(&self) -> bool {
        let frame_type = |b: u8| {
            if b & 0x80 == 0 {
                b >> 4
            } else {
                (b >> 4) & 0x07
            }
        };
        self.kind == TagKind::Video
            && self
                .data
                .first()
                .is_some_and(|&b| frame_type(b) == FRAME_TYPE_KEY)
    }

    /// Whether this is a codec sequence header: an AVC (or codec id 12 HEVC) sequence header,
    /// an AAC AudioSpecificConfig, or an Enhanced RTMP sequence start, metadata or
    /// multichannel configuration (see [`crate::flv::codec`]).
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            TagKind::Video => codec::video(&self.data).is_some_and(|t| t.header),
            TagKind::Audio => codec::audio(&self.data).is_some_and(|t| t.header),
            _ => false,
        }
    }

    /// The AVC composition time offset (PTS - DTS) in milliseconds, or `None`
    /// if this is not an AVC video tag with a complete AVC packet header.
    pub fn composition_time(&self) -> Option<i32> {
        if self.kind != TagKind::Video {
            return None;
        }
        match self.data.get(..5) {
            Some(&[first, _, b0, b1, b2]) if first & 0x0f == VIDEO_CODEC_AVC => {
                // Place the 24-bit value in the top bytes, then shift back to sign-extend.
                Some(i32::from_be_bytes([b0, b1, b2, 0]) >> 8)
            }
            _ => None,
        }
    }
}

/// Incremental FLV demuxer; see the [module documentation](self).
///
/// Errors are sticky: the bytes at fault are never consumed, so calling
/// [`next_tag`](Self::next_tag) again returns the same error. (A call that
/// parses the file header and then fails on the first tag keeps the header
/// consumed.) Once an error has been returned the stream should be considered
/// unusable.
#[derive(Debug)]
pub struct FlvReader {
    buffer: BytesMut,
    header: Option<FlvHeader>,
    max_tag_size: usize,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    /// Creates a reader with the default maximum tag size ([`DEFAULT_MAX_TAG_SIZE`]).
    pub fn new() -> Self {
        Self::with_max_tag_size(DEFAULT_MAX_TAG_SIZE)
    }

    /// Creates a reader that rejects tags whose data size exceeds `max_tag_size` bytes.
    pub fn with_max_tag_size(max_tag_size: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            header: None,
            max_tag_size,
        }
    }

    /// Appends input bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The file header, once it has been parsed.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Number of pushed bytes not yet consumed by a returned tag or the header.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// Returns the next complete tag, `Ok(None)` if more input is needed, or an
    /// error if the stream is malformed.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if self.header.is_none() && !self.parse_header()? {
            return Ok(None);
        }
        self.parse_tag()
    }

    /// Parses the file header plus PreviousTagSize0. Returns `Ok(false)` if more
    /// input is needed.
    fn parse_header(&mut self) -> Result<bool, FlvError> {
        let Some(fixed) = self.buffer.get(..FILE_HEADER_LEN) else {
            return Ok(false);
        };
        let signature = [fixed[0], fixed[1], fixed[2]];
        if &signature != b"FLV" {
            return Err(FlvError::BadSignature(signature));
        }
        let version = fixed[3];
        if version != 1 {
            return Err(FlvError::UnsupportedVersion(version));
        }
        let flags = fixed[4];
        let header_size = u32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
        let header_len = usize::try_from(header_size)
            .ok()
            .filter(|&len| len >= FILE_HEADER_LEN)
            .ok_or(FlvError::InvalidHeaderSize(header_size))?;

        let Some(total) = header_len.checked_add(PREVIOUS_TAG_SIZE_LEN) else {
            return Err(FlvError::InvalidHeaderSize(header_size));
        };
        let Some(prev) = self.buffer.get(header_len..total) else {
            return Ok(false);
        };
        let previous_tag_size = u32::from_be_bytes([prev[0], prev[1], prev[2], prev[3]]);
        if previous_tag_size != 0 {
            return Err(FlvError::PreviousTagSizeMismatch {
                expected: 0,
                actual: previous_tag_size,
            });
        }

        self.buffer.advance(total);
        self.header = Some(FlvHeader {
            version,
            has_audio: flags & 0x04 != 0,
            has_video: flags & 0x01 != 0,
        });
        Ok(true)
    }

    /// Parses one tag plus its trailing PreviousTagSize.
    fn parse_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        let Some(head) = self.buffer.get(..TAG_HEADER_LEN) else {
            return Ok(None);
        };
        let kind = TagKind::from_byte(head[0]);
        let data_size = u32::from_be_bytes([0, head[1], head[2], head[3]]);
        let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);

        // A u24 always fits in usize on supported targets; the maximum check
        // runs before waiting for the body so a bogus size fails fast.
        let data_len = data_size as usize;
        if data_len > self.max_tag_size {
            return Err(FlvError::TagTooLarge {
                size: data_len,
                max: self.max_tag_size,
            });
        }

        let body_end = TAG_HEADER_LEN + data_len;
        let Some(prev) = self.buffer.get(body_end..body_end + PREVIOUS_TAG_SIZE_LEN) else {
            return Ok(None);
        };
        let previous_tag_size = u32::from_be_bytes([prev[0], prev[1], prev[2], prev[3]]);
        // Cannot overflow: data_size < 2^24.
        let expected = TAG_HEADER_LEN as u32 + data_size;
        if previous_tag_size != expected {
            return Err(FlvError::PreviousTagSizeMismatch {
                expected,
                actual: previous_tag_size,
            });
        }

        self.buffer.advance(TAG_HEADER_LEN);
        let data = self.buffer.split_to(data_len).freeze();
        self.buffer.advance(PREVIOUS_TAG_SIZE_LEN);
        Ok(Some(FlvTag {
            kind,
            timestamp,
            data,
        }))
    }
}

/// Reads a whole FLV file into memory and demuxes it.
///
/// Malformed data is reported as [`io::ErrorKind::InvalidData`] (wrapping the
/// [`FlvError`]); a file that ends in the middle of the header or of a tag is
/// reported as [`io::ErrorKind::UnexpectedEof`].
pub fn read_file(path: impl AsRef<Path>) -> io::Result<(FlvHeader, Vec<FlvTag>)> {
    let mut contents = Vec::new();
    File::open(path)?.read_to_end(&mut contents)?;

    let mut reader = FlvReader::new();
    reader.push(&contents);
    let mut tags = Vec::new();
    while let Some(tag) = reader
        .next_tag()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
    {
        tags.push(tag);
    }

    match reader.header() {
        Some(header) if reader.buffered_len() == 0 => Ok((header, tags)),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "FLV file ends in the middle of a tag",
        )),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "FLV file ends before the end of its header",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FLV file header with audio+video flags and PreviousTagSize0.
    const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

    /// Encodes a tag followed by its PreviousTagSize.
    fn encode_tag(kind: TagKind, timestamp: u32, data: &[u8]) -> Vec<u8> {
        let size = u32::try_from(data.len()).unwrap();
        let ts = timestamp.to_be_bytes();
        let mut out = vec![kind.to_byte()];
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&(11 + size).to_be_bytes());
        out
    }

    fn sample_stream() -> (Vec<u8>, Vec<FlvTag>) {
        let tags = vec![
            FlvTag {
                kind: TagKind::Script,
                timestamp: 0,
                data: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
            },
            FlvTag {
                kind: TagKind::Video,
                timestamp: 0,
                data: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            },
            FlvTag {
                kind: TagKind::Audio,
                timestamp: 0x0123_4567,
                data: Bytes::from_static(&[0xaf, 1, 0x21, 0x10]),
            },
            FlvTag {
                kind: TagKind::Other(0x28),
                timestamp: 7,
                data: Bytes::new(),
            },
        ];
        let mut bytes = FILE_HEADER.to_vec();
        for tag in &tags {
            bytes.extend(encode_tag(tag.kind, tag.timestamp, &tag.data));
        }
        (bytes, tags)
    }

    fn drain(reader: &mut FlvReader) -> Vec<FlvTag> {
        let mut out = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            out.push(tag);
        }
        out
    }

    #[test]
    fn round_trips_hand_built_tags() {
        let (bytes, expected) = sample_stream();
        let mut reader = FlvReader::new();
        reader.push(&bytes);
        assert_eq!(drain(&mut reader), expected);
        assert_eq!(
            reader.header(),
            Some(FlvHeader {
                version: 1,
                has_audio: true,
                has_video: true
            })
        );
        assert_eq!(reader.buffered_len(), 0);
    }

    #[test]
    fn byte_at_a_time_matches_bulk() {
        let (bytes, expected) = sample_stream();
        let mut reader = FlvReader::new();
        let mut got = Vec::new();
        for byte in &bytes {
            reader.push(std::slice::from_ref(byte));
            got.extend(drain(&mut reader));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn truncated_input_needs_more() {
        let (bytes, _) = sample_stream();
        let mut reader = FlvReader::new();
        reader.push(&bytes[..5]);
        assert!(reader.next_tag().unwrap().is_none());
        assert!(reader.header().is_none());

        // Header complete, first tag cut off before its PreviousTagSize.
        let first_tag_end = FILE_HEADER.len() + 11 + 13;
        reader.push(&bytes[5..first_tag_end]);
        assert!(reader.next_tag().unwrap().is_none());
        assert!(reader.header().is_some());

        reader.push(&bytes[first_tag_end..first_tag_end + 4]);
        assert_eq!(reader.next_tag().unwrap().unwrap().kind, TagKind::Script);
        assert!(reader.next_tag().unwrap().is_none());
    }

    #[test]
    fn corrupted_previous_tag_size_is_an_error() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(encode_tag(TagKind::Audio, 0, &[0xaf, 1]));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut reader = FlvReader::new();
        reader.push(&bytes);
        let err = reader.next_tag().unwrap_err();
        assert!(matches!(
            err,
            FlvError::PreviousTagSizeMismatch { expected: 13, .. }
        ));
        // Sticky: nothing was consumed.
        assert!(reader.next_tag().is_err());
    }

    #[test]
    fn nonzero_previous_tag_size0_is_an_error() {
        let mut bytes = FILE_HEADER.to_vec();
        bytes[12] = 1;
        let mut reader = FlvReader::new();
        reader.push(&bytes);
        assert!(matches!(
            reader.next_tag(),
            Err(FlvError::PreviousTagSizeMismatch {
                expected: 0,
                actual: 1
            })
        ));
    }

    #[test]
    fn bad_signature_is_an_error() {
        let mut reader = FlvReader::new();
        reader.push(b"FLX\x01\x05\x00\x00\x00\x09");
        assert!(matches!(
            reader.next_tag(),
            Err(FlvError::BadSignature(sig)) if &sig == b"FLX"
        ));
    }

    #[test]
    fn oversized_tag_fails_before_body_arrives() {
        let mut reader = FlvReader::with_max_tag_size(100);
        reader.push(&FILE_HEADER);
        reader.push(&[9, 0, 0, 101, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            reader.next_tag(),
            Err(FlvError::TagTooLarge {
                size: 101,
                max: 100
            })
        ));
    }

    #[test]
    fn larger_header_size_is_skipped() {
        let mut bytes = vec![b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 12, 0xaa, 0xbb, 0xcc];
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend(encode_tag(TagKind::Video, 40, &[0x27, 1, 0, 0, 0]));
        let mut reader = FlvReader::new();
        reader.push(&bytes);
        let tags = drain(&mut reader);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].timestamp, 40);
        let header = reader.header().unwrap();
        assert!(header.has_video && !header.has_audio);
    }

    #[test]
    fn tag_helpers() {
        let tag = |kind, data: &'static [u8]| FlvTag {
            kind,
            timestamp: 0,
            data: Bytes::from_static(data),
        };
        let avc_seq = tag(TagKind::Video, &[0x17, 0, 0, 0, 0]);
        assert!(avc_seq.is_sequence_header() && avc_seq.is_video_keyframe());

        let inter = tag(TagKind::Video, &[0x27, 1, 0, 0, 80]);
        assert!(!inter.is_sequence_header() && !inter.is_video_keyframe());
        assert_eq!(inter.composition_time(), Some(80));

        let negative = tag(TagKind::Video, &[0x27, 1, 0xff, 0xff, 0xd8]);
        assert_eq!(negative.composition_time(), Some(-40));

        assert!(tag(TagKind::Audio, &[0xaf, 0, 0x12, 0x10]).is_sequence_header());
        assert!(!tag(TagKind::Audio, &[0xaf, 1, 0x21]).is_sequence_header());
        assert!(!tag(TagKind::Audio, &[0x2f, 0]).is_sequence_header());
        assert!(!tag(TagKind::Script, &[0x17, 0]).is_video_keyframe());
        assert_eq!(tag(TagKind::Video, &[0x17, 1, 0]).composition_time(), None);
        assert_eq!(
            tag(TagKind::Audio, &[0xaf, 1, 0, 0, 1]).composition_time(),
            None
        );
        assert!(!tag(TagKind::Video, &[]).is_video_keyframe());
    }

    #[test]
    fn fixture_clip_structure() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clip.flv");
        let (header, tags) = read_file(path).unwrap();
        assert!(header.has_audio && header.has_video);

        assert_eq!(tags[0].kind, TagKind::Script);
        let heads: Vec<_> = tags[1..3].iter().map(|t| t.kind).collect();
        assert!(heads.contains(&TagKind::Video) && heads.contains(&TagKind::Audio));
        assert!(tags[1..3].iter().all(FlvTag::is_sequence_header));

        let first_frame = tags[3..].iter().find(|t| t.kind == TagKind::Video).unwrap();
        assert!(first_frame.is_video_keyframe());
        assert!(!first_frame.is_sequence_header());

        let video = tags.iter().filter(|t| t.kind == TagKind::Video).count();
        let audio = tags.iter().filter(|t| t.kind == TagKind::Audio).count();
        // 150 frames + sequence header + end-of-sequence; ~6 s of 1024-sample
        // AAC frames + sequence header.
        assert_eq!(video, 152);
        assert!(audio > 250, "audio tags: {audio}");
        let last_video = tags.iter().rfind(|t| t.kind == TagKind::Video).unwrap();
        assert_eq!(last_video.data.get(1), Some(&2), "AVC end of sequence");

        // B-frames show up as positive composition offsets.
        assert!(tags.iter().any(|t| t.composition_time().unwrap_or(0) > 0));
        let keyframes = tags
            .iter()
            .filter(|t| t.is_video_keyframe() && t.data.get(1) == Some(&1))
            .count();
        assert_eq!(keyframes, 6);
    }

    #[test]
    fn read_file_reports_truncation() {
        let path = std::env::temp_dir().join(format!("flv-trunc-{}.flv", std::process::id()));
        let (bytes, _) = sample_stream();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let err = read_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
