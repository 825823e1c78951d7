//! Shared RTMP chunking (pure): a media message serialized once per stream and sent, as the
//! same bytes, to every RTMP player.
//!
//! A player's own `ServerSession` compresses chunk headers against what it sent before on
//! each chunk stream, so its bytes depend on that player's history. Shared bytes must not:
//! every media message here starts with a full (type 0) header, continues with type 3
//! headers, and uses chunk stream ids that the session never uses (it uses 2 to 6). The
//! output then decodes the same way whatever the player received before, and can sit between
//! the session's own messages as long as whole messages are kept together.
//!
//! [`Reader`] reads chunks back into messages, one chunk stream apart from another.

mod reader;

pub use reader::{ChunkError, Message, Reader};

use crate::media::UnitKind;
use bytes::{BufMut, Bytes, BytesMut};

/// Chunk stream for shared script data (onMetaData).
pub const CSID_DATA: u8 = 7;
/// Chunk stream for shared audio.
pub const CSID_AUDIO: u8 = 8;
/// Chunk stream for shared video.
pub const CSID_VIDEO: u8 = 9;

/// Message stream id of shared media: the stream a player's first `createStream` returns.
/// Players that play on another message stream cannot share these bytes.
pub const MEDIA_STREAM_ID: u32 = 1;

/// Timestamps from this value on go in the extended timestamp field.
const EXTENDED: u32 = 0x00ff_ffff;

/// RTMP message type of a unit kind.
pub fn message_type(kind: UnitKind) -> u8 {
    match kind {
        UnitKind::Audio => 8,
        UnitKind::Video => 9,
        UnitKind::Script => 18,
    }
}

fn csid(kind: UnitKind) -> u8 {
    match kind {
        UnitKind::Audio => CSID_AUDIO,
        UnitKind::Video => CSID_VIDEO,
        UnitKind::Script => CSID_DATA,
    }
}

/// Serializes one media message into chunks of at most `chunk_size` payload bytes: a type 0
/// header, then type 3 headers (each repeating the extended timestamp when there is one, as
/// the specification and common players expect). Bodies longer than the 24-bit length field
/// allows are truncated (RTMP cannot have delivered them).
pub fn media_message(kind: UnitKind, timestamp: u32, body: &[u8], chunk_size: usize) -> Bytes {
    let body = &body[..body.len().min(0x00ff_ffff)];
    let chunk_size = chunk_size.max(1);
    let extended = timestamp >= EXTENDED;
    let chunks = body.len().div_ceil(chunk_size).max(1);
    let ext_len = if extended { 4 } else { 0 };
    let mut out = BytesMut::with_capacity(body.len() + 11 + chunks * (1 + ext_len) + ext_len);
    out.put_u8(csid(kind)); // fmt 0, one-byte basic header
    out.put_uint(u64::from(timestamp.min(EXTENDED)), 3);
    out.put_uint(body.len() as u64, 3);
    out.put_u8(message_type(kind));
    out.put_u32_le(MEDIA_STREAM_ID);
    if extended {
        out.put_u32(timestamp);
    }
    for (i, piece) in body.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.put_u8(0xc0 | csid(kind)); // fmt 3
            if extended {
                out.put_u32(timestamp);
            }
        }
        out.put_slice(piece);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    fn decode(bytes: &[u8], chunk_size: usize) -> Vec<(u8, u32, u32, Vec<u8>)> {
        let mut de = ChunkDeserializer::new();
        de.set_max_chunk_size(chunk_size).unwrap();
        let mut out = Vec::new();
        let mut input = bytes;
        while let Some(p) = de.get_next_message(input).unwrap() {
            out.push((
                p.type_id,
                p.timestamp.value,
                p.message_stream_id,
                p.data.to_vec(),
            ));
            input = &[];
        }
        out
    }

    #[test]
    fn small_message_is_one_chunk() {
        let bytes = media_message(UnitKind::Audio, 1234, &[0xaf, 1, 2, 3], 4096);
        assert_eq!(bytes.len(), 12 + 4);
        assert_eq!(bytes[0], CSID_AUDIO);
        assert_eq!(
            decode(&bytes, 4096),
            vec![(8, 1234, 1, vec![0xaf, 1, 2, 3])]
        );
    }

    #[test]
    fn large_message_spans_chunks_and_decodes_after_anything() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let video = media_message(UnitKind::Video, 40, &body, 4096);
        assert_eq!(video.len(), 12 + 10_000 + 2);
        // The same bytes decode after other shared messages, in any order.
        let audio = media_message(UnitKind::Audio, 20, &[0xaf, 1], 4096);
        let stream = [&audio[..], &video[..], &audio[..], &video[..]].concat();
        let got = decode(&stream, 4096);
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], (9, 40, 1, body.clone()));
        assert_eq!(got[3], (9, 40, 1, body));
    }

    #[test]
    fn extended_timestamps_repeat_in_every_chunk() {
        let body = vec![0x27u8; 300];
        let bytes = media_message(UnitKind::Video, 0x0100_0000, &body, 128);
        // 12 + 4 ext, then two type-3 chunks with 1 + 4 header bytes each.
        assert_eq!(bytes.len(), 16 + 300 + 2 * 5);
        assert_eq!(decode(&bytes, 128), vec![(9, 0x0100_0000, 1, body)]);
    }

    #[test]
    fn empty_body_is_one_header() {
        assert_eq!(media_message(UnitKind::Script, 0, &[], 4096).len(), 12);
    }
}
