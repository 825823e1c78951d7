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

pub use reader::{
    ChunkError, Limits, Message, Reader, ABORT, MAX_CHUNK_SIZE, MAX_CHUNK_STREAMS,
    MAX_PARTIAL_MESSAGES, SET_CHUNK_SIZE,
};

use crate::media::UnitKind;
use bytes::{BufMut, Bytes, BytesMut};

/// Chunk stream of protocol control messages (the specification's).
pub const CSID_CONTROL: u8 = 2;
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

/// Longest continuation ([`put_continuation`]): a type 3 header with an extended timestamp.
pub const MAX_CONTINUATION_LEN: usize = 5;
/// Longest message header ([`put_header`]): type 0 with an extended timestamp.
pub const MAX_HEADER_LEN: usize = 16;

/// Appends the type 0 chunk header that starts a shared media message of `len` body bytes:
/// 12 bytes, 16 when the timestamp needs the extended field.
pub fn put_header(out: &mut impl BufMut, kind: UnitKind, timestamp: u32, len: usize) {
    put_type0(
        out,
        csid(kind),
        message_type(kind),
        MEDIA_STREAM_ID,
        timestamp,
        len,
    );
}

/// Appends a type 0 chunk header on chunk stream `csid` (2 to 63: a one-byte basic header).
fn put_type0(
    out: &mut impl BufMut,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    len: usize,
) {
    out.put_u8(csid & 0x3f);
    out.put_slice(&timestamp.min(EXTENDED).to_be_bytes()[1..]);
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(type_id);
    out.put_slice(&stream_id.to_le_bytes());
    if timestamp >= EXTENDED {
        out.put_slice(&timestamp.to_be_bytes());
    }
}

/// Appends a whole message as one chunk (a type 0 header on chunk stream `csid`, 2 to 63,
/// then the payload): for a reader whose chunk size is at least the payload's length, or
/// payloads of at most 128 bytes (the initial chunk size).
pub fn put_message(
    out: &mut impl BufMut,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
) {
    put_type0(out, csid, type_id, stream_id, timestamp, payload.len());
    out.put_slice(payload);
}

/// RTMP message types corecast tells apart (specification, sections 5.4 and 7.1).
pub mod message_type {
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    /// Data and commands marked AMF3, which clients send as AMF0 (with a leading 0x00 byte
    /// before a command).
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA: u8 = 18;
    pub const COMMAND: u8 = 20;
    /// Several FLV-tag-shaped audio and video messages in one.
    pub const AGGREGATE: u8 = 22;
}

/// The chunk stream a protocol session (rml_rtmp's) reads whole messages on: corecast's
/// chunk layer reassembles them, and the session gets each again as one chunk.
pub const SESSION_CSID: u8 = 3;

/// What makes a protocol session read every message as one chunk: a Set Chunk Size of the
/// largest size, to feed it before any message (see [`whole_message`]).
pub fn whole_messages() -> Vec<u8> {
    let mut out = Vec::new();
    put_message(
        &mut out,
        SESSION_CSID,
        SET_CHUNK_SIZE,
        0,
        0,
        &MAX_CHUNK_SIZE.to_be_bytes(),
    );
    out
}

/// A reassembled message written again as one chunk, for a protocol session that was fed
/// [`whole_messages`].
pub fn whole_message(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + message.payload.len());
    put_message(
        &mut out,
        SESSION_CSID,
        message.type_id,
        message.stream_id,
        message.timestamp,
        &message.payload,
    );
    out
}

/// Offset of the message stream id in a type 0 header with a one-byte basic header.
const STREAM_ID_AT: usize = 8;

/// Rewrites the message stream id of a shared message that starts at `header` (its type 0
/// header, as [`put_header`] writes it) for a player on message stream `stream_id`.
pub fn set_stream_id(header: &mut [u8], stream_id: u32) {
    if let Some(field) = header.get_mut(STREAM_ID_AT..STREAM_ID_AT + 4) {
        field.copy_from_slice(&stream_id.to_le_bytes());
    }
}

/// Appends the type 3 chunk header that goes before every chunk of a message but the first:
/// one byte, five when the timestamp is extended (repeated in every chunk, as the
/// specification and common players expect).
pub fn put_continuation(out: &mut impl BufMut, kind: UnitKind, timestamp: u32) {
    out.put_u8(0xc0 | csid(kind));
    if timestamp >= EXTENDED {
        out.put_slice(&timestamp.to_be_bytes());
    }
}

/// One media message in chunks of at most `chunk_size` payload bytes, as one buffer: a
/// type 0 header ([`put_header`]), then a continuation ([`put_continuation`]) before every
/// further chunk. Bodies longer than the 24-bit length field allows are truncated (RTMP
/// cannot have delivered them). Units keep this in [`crate::media::Wire`] without the copy.
pub fn media_message(kind: UnitKind, timestamp: u32, body: &[u8], chunk_size: usize) -> Bytes {
    let wire = crate::media::Wire::new(kind, timestamp, body, chunk_size, None);
    wire.slices(crate::media::Format::Rtmp)
        .fold(BytesMut::new(), |mut out, piece| {
            out.extend_from_slice(&piece);
            out
        })
        .freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    /// The messages in `bytes`, read with rml_rtmp at `chunk_size`: type, timestamp, message
    /// stream and body.
    pub(crate) fn decode(bytes: &[u8], chunk_size: usize) -> Vec<(u8, u32, u32, Vec<u8>)> {
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
