//! One message stored once, in a layout where both wire formats are slices of it (pure).
//!
//! ```text
//! [continuation][RTMP type 0 header][FLV tag header][body][FLV previous tag size]
//!   1 or 5 bytes   12 or 16 bytes      11 bytes              4 bytes
//! ```
//!
//! - HTTP-FLV: the tag is one slice, from the FLV tag header to the end.
//! - RTMP: the type 0 header, the body's first chunk, then for every further chunk the
//!   continuation (a type 3 chunk header, with the extended timestamp when there is one)
//!   and the chunk: slices of the same buffer, sent as a vectored write. With the default
//!   chunk size of 65536 almost every frame is one chunk (two slices).
//!
//! So a unit's memory is its body once plus 28 to 36 bytes, whatever the formats its
//! viewers read; the chunk headers are the rules of [`crate::rtmp::chunk`].

use super::{Format, UnitKind};
use crate::hub::budget::Meter;
use crate::rtmp::chunk::MEDIA_STREAM_ID;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;

/// FLV previous-tag-size trailer length.
const TRAILER_LEN: usize = 4;

/// Room kept before a [`Body`] for the longest headers of the layout: a continuation and a
/// type 0 header with extended timestamps, and the FLV tag header.
pub const HEADROOM: usize = crate::rtmp::chunk::MAX_CONTINUATION_LEN
    + crate::rtmp::chunk::MAX_HEADER_LEN
    + crate::flv::TAG_HEADER_LEN;

/// A message body in a buffer that keeps [`HEADROOM`] bytes before it and room for the
/// trailer after it: what the RTMP chunk layer reassembles a message into, so that
/// [`Wire::from_body`] stores the message without copying it. Reads as the body's bytes.
#[derive(Clone, Default)]
pub struct Body {
    /// The room, then the body; empty until the first bytes (no allocation).
    buf: Vec<u8>,
}

impl Body {
    /// An empty body with room for `len` bytes (and the headers and trailer around them).
    pub fn with_capacity(len: usize) -> Body {
        let mut buf = Vec::with_capacity(HEADROOM + len + TRAILER_LEN);
        buf.resize(HEADROOM, 0);
        Body { buf }
    }

    /// A body holding a copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Body {
        let mut body = Body::with_capacity(bytes.len());
        body.buf.extend_from_slice(bytes);
        body
    }

    /// Appends `bytes` (growing the buffer when needed).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.buf.is_empty() {
            *self = Body::with_capacity(bytes.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The body as shared bytes (no copy).
    pub fn into_bytes(self) -> Bytes {
        let start = HEADROOM.min(self.buf.len());
        Bytes::from(self.buf).slice(start..)
    }

    /// The buffer with the room in front (made when the body has none yet).
    fn into_room(self) -> Vec<u8> {
        match self.buf.is_empty() {
            true => vec![0; HEADROOM],
            false => self.buf,
        }
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.buf.get(HEADROOM..).unwrap_or_default()
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        **self == **other
    }
}

impl Eq for Body {}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.len())
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Body {
        Body::copy_from(bytes)
    }
}

impl<const N: usize> From<&[u8; N]> for Body {
    fn from(bytes: &[u8; N]) -> Body {
        Body::copy_from(bytes)
    }
}

impl From<&Vec<u8>> for Body {
    fn from(bytes: &Vec<u8>) -> Body {
        Body::copy_from(bytes)
    }
}

impl From<&Bytes> for Body {
    fn from(bytes: &Bytes) -> Body {
        Body::copy_from(bytes)
    }
}

/// A message in every wire format, stored once.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    /// The layout above; empty for a message a viewer has nothing of.
    buf: Bytes,
    /// Length of the continuation at the start (1, or 5 with an extended timestamp).
    continuation: u8,
    /// Length of the type 0 header after it (12, or 16 with an extended timestamp).
    head: u8,
    /// RTMP chunk size.
    chunk: u32,
    /// Bytes of the buffer before `buf`: the room its headers did not take.
    room: u8,
}

impl Wire {
    /// Serializes a message of `kind` stamped `timestamp` (`body` truncated to the 24-bit
    /// length both formats allow), with RTMP chunks of `chunk_size`; its bytes count
    /// against `meter` while anyone holds them. The body is copied once; a [`Body`] received
    /// with room for the headers is not copied at all ([`Wire::from_body`]).
    pub fn new(
        kind: UnitKind,
        timestamp: u32,
        body: &[u8],
        chunk_size: usize,
        meter: Option<&Arc<Meter>>,
    ) -> Wire {
        Wire::from_body(kind, timestamp, Body::copy_from(body), chunk_size, meter)
    }

    /// [`Wire::new`] on a body in its own buffer: the headers go in the room before it, the
    /// trailer after it, and the buffer becomes the message's.
    pub fn from_body(
        kind: UnitKind,
        timestamp: u32,
        body: Body,
        chunk_size: usize,
        meter: Option<&Arc<Meter>>,
    ) -> Wire {
        let len = body.len().min(crate::flv::MAX_BODY_LEN);
        // The headers, written on the stack (this runs once per unit), then into the room.
        let mut head = [0u8; HEADROOM];
        let mut free = &mut head[..];
        crate::rtmp::chunk::put_continuation(&mut free, kind, timestamp);
        let continuation = HEADROOM - free.len();
        crate::rtmp::chunk::put_header(&mut free, kind, timestamp, len);
        let rtmp_head = HEADROOM - free.len() - continuation;
        crate::flv::put_tag_header(&mut free, kind, timestamp, len);
        let used = HEADROOM - free.len();
        let mut buf = body.into_room();
        buf.truncate(HEADROOM + len);
        let start = HEADROOM - used;
        buf[start..HEADROOM].copy_from_slice(&head[..used]);
        buf.extend_from_slice(&((crate::flv::TAG_HEADER_LEN + len) as u32).to_be_bytes());
        let buf = match meter {
            Some(meter) => meter.hold(buf),
            None => Bytes::from(buf),
        };
        Wire {
            buf: buf.slice(start..),
            continuation: continuation as u8,
            head: rtmp_head as u8,
            chunk: chunk_size.clamp(1, u32::MAX as usize) as u32,
            room: start as u8,
        }
    }

    /// A message whose FLV serialization is `tag` as it is (tests of what carries units,
    /// where only lengths matter).
    #[cfg(test)]
    pub(crate) fn raw(tag: Bytes) -> Wire {
        Wire {
            buf: tag,
            continuation: 0,
            head: 0,
            chunk: u32::MAX,
            room: 0,
        }
    }

    /// Bytes stored (what the message costs in memory, the room before its headers
    /// included: its body and 36 bytes).
    pub fn stored(&self) -> usize {
        self.buf.len() + usize::from(self.room)
    }

    /// True for a message a viewer has nothing of.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The stored buffer, which [`Wire::pieces`] index.
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// The chunk size (at least 1).
    fn chunk(&self) -> usize {
        self.chunk.max(1) as usize
    }

    /// RTMP chunks of the body (none for an empty body: its message is the header alone).
    fn chunks(&self) -> usize {
        self.body_range().len().div_ceil(self.chunk())
    }

    /// Where the FLV tag starts in the buffer.
    fn tag_start(&self) -> usize {
        usize::from(self.continuation) + usize::from(self.head)
    }

    /// The body's range in the buffer.
    fn body_range(&self) -> Range<usize> {
        let end = self.buf.len().saturating_sub(TRAILER_LEN);
        (self.tag_start() + crate::flv::TAG_HEADER_LEN).min(end)..end
    }

    /// The message body.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body_range()]
    }

    /// The complete FLV tag (a slice of the stored buffer, no copy).
    pub fn flv(&self) -> Bytes {
        self.buf.slice(self.tag_start().min(self.buf.len())..)
    }

    /// Length of the message in `format`.
    pub fn len(&self, format: Format) -> usize {
        if self.buf.is_empty() {
            return 0;
        }
        match format {
            Format::Flv => self.buf.len() - self.tag_start(),
            Format::Rtmp => {
                let continuations = self.chunks().saturating_sub(1);
                usize::from(self.head)
                    + self.body_range().len()
                    + continuations * usize::from(self.continuation)
            }
        }
    }

    /// How many pieces the message has in `format`: none when empty; for HTTP-FLV one (the
    /// tag); for RTMP the type 0 header and the first chunk, then a continuation and a chunk
    /// per further chunk.
    pub fn piece_count(&self, format: Format) -> usize {
        match format {
            _ if self.buf.is_empty() => 0,
            Format::Flv => 1,
            Format::Rtmp => match self.chunks() {
                0 => 1,
                chunks => 2 * chunks,
            },
        }
    }

    /// Piece `i` (below [`Wire::piece_count`]) of the message in `format`, as a range of
    /// [`Wire::buf`].
    pub fn piece(&self, format: Format, i: usize) -> Range<usize> {
        match (format, i) {
            (Format::Flv, _) => self.tag_start()..self.buf.len(),
            (Format::Rtmp, 0) => usize::from(self.continuation)..self.tag_start(),
            (Format::Rtmp, i) if i % 2 == 0 => 0..usize::from(self.continuation),
            (Format::Rtmp, i) => {
                let body = self.body_range();
                let start = body.start + (i / 2) * self.chunk();
                start..(start + self.chunk()).min(body.end)
            }
        }
    }

    /// The message in `format` as ranges of [`Wire::buf`], in sending order.
    pub fn pieces(&self, format: Format) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.piece_count(format)).map(move |i| self.piece(format, i))
    }

    /// The message in `format` as shared slices of the stored buffer.
    pub fn slices(&self, format: Format) -> impl Iterator<Item = Bytes> + '_ {
        self.pieces(format).map(|range| self.buf.slice(range))
    }

    /// Piece `i` of the message in `format` for a viewer on RTMP message stream
    /// `stream_id`: a shared slice, except the type 0 header for a player on another stream
    /// than the shared bytes' ([`MEDIA_STREAM_ID`]), which is a copy with its stream id set.
    pub fn piece_on(&self, format: Format, i: usize, stream_id: u32) -> Bytes {
        let range = self.piece(format, i);
        if format == Format::Rtmp && i == 0 && stream_id != MEDIA_STREAM_ID {
            let mut header = self.buf[range].to_vec();
            crate::rtmp::chunk::set_stream_id(&mut header, stream_id);
            return Bytes::from(header);
        }
        self.buf.slice(range)
    }

    /// The message in `format` for a viewer on RTMP message stream `stream_id` (see
    /// [`Wire::piece_on`]).
    pub fn slices_on(&self, format: Format, stream_id: u32) -> impl Iterator<Item = Bytes> + '_ {
        (0..self.piece_count(format)).map(move |i| self.piece_on(format, i, stream_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::tests::decode;

    fn joined(wire: &Wire, format: Format) -> Vec<u8> {
        wire.pieces(format)
            .flat_map(|r| wire.buf()[r].to_vec())
            .collect()
    }

    #[test]
    fn the_flv_tag_is_one_slice() {
        let wire = Wire::new(UnitKind::Video, 0x0102_0304, &[0x17, 1, 2, 3], 4096, None);
        let tag = joined(&wire, Format::Flv);
        assert_eq!(wire.pieces(Format::Flv).count(), 1);
        assert_eq!(
            tag,
            [
                &[9, 0, 0, 4, 0x02, 0x03, 0x04, 0x01, 0, 0, 0][..],
                &[0x17, 1, 2, 3],
                &[0, 0, 0, 15]
            ]
            .concat()
        );
        assert_eq!(wire.flv(), tag);
        assert_eq!(wire.len(Format::Flv), tag.len());
        assert_eq!(wire.body(), &[0x17, 1, 2, 3]);
    }

    #[test]
    fn rtmp_chunks_decode_at_every_size_and_timestamp() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for timestamp in [40, 0x00ff_fffe, 0x00ff_ffff, 0x0100_0000] {
            for chunk in [1, 128, 4095, 4096, 10_000, 65_536] {
                let wire = Wire::new(UnitKind::Video, timestamp, &body, chunk, None);
                let bytes = joined(&wire, Format::Rtmp);
                assert_eq!(bytes.len(), wire.len(Format::Rtmp), "{timestamp} {chunk}");
                assert_eq!(
                    decode(&bytes, chunk),
                    vec![(9, timestamp, 1, body.clone())],
                    "{timestamp} {chunk}"
                );
            }
        }
        // One chunk: the header and the body, two slices.
        let small = Wire::new(UnitKind::Audio, 20, &[0xaf, 1], 4096, None);
        assert_eq!(small.pieces(Format::Rtmp).count(), 2);
        assert_eq!(joined(&small, Format::Rtmp).len(), 12 + 2);
        // An empty body is a header alone.
        let empty = Wire::new(UnitKind::Script, 0, &[], 4096, None);
        assert_eq!(joined(&empty, Format::Rtmp).len(), 12);
        assert_eq!(decode(&joined(&empty, Format::Rtmp), 4096).len(), 1);
    }

    #[test]
    fn the_body_is_stored_once() {
        let body = vec![7u8; 50_000];
        let wire = Wire::new(UnitKind::Video, 40, &body, 4096, None);
        assert_eq!(wire.stored(), HEADROOM + 50_000 + 4);
        assert_eq!(wire.flv().len(), 11 + 50_000 + 4);
        let extended = Wire::new(UnitKind::Video, 0x0100_0000, &body, 4096, None);
        assert_eq!(extended.stored(), 5 + 16 + 11 + 50_000 + 4);
        // A body received with room for the headers is stored as it is, not copied.
        let received = Body::copy_from(&body);
        let at = received.as_ptr();
        let wire = Wire::from_body(UnitKind::Video, 40, received, 4096, None);
        assert_eq!(wire.body().as_ptr(), at);
        assert_eq!(wire.body(), &body[..]);
    }

    #[test]
    fn an_empty_wire_has_no_pieces() {
        let wire = Wire::default();
        assert_eq!(wire.pieces(Format::Flv).count(), 0);
        assert_eq!(wire.pieces(Format::Rtmp).count(), 0);
        assert_eq!((wire.len(Format::Flv), wire.len(Format::Rtmp)), (0, 0));
        assert!(wire.body().is_empty());
    }

    #[test]
    fn a_metered_message_counts_while_held() {
        let budget = crate::hub::budget::MediaBudget::new(1 << 20);
        let meter = Meter::new(budget.clone());
        let wire = Wire::new(UnitKind::Audio, 0, &[0xaf, 1, 2], 4096, Some(&meter));
        let stored = wire.stored();
        assert_eq!((meter.held(), budget.held()), (stored, stored));
        let slice = wire.flv();
        drop(wire);
        assert_eq!(meter.held(), stored, "a slice keeps the buffer");
        drop(slice);
        assert_eq!((meter.held(), budget.held()), (0, 0));
    }
}
