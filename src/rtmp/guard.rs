//! RTMP input limits (pure): a chunk-header reader that runs ahead of rml_rtmp's chunk
//! deserializer over the same bytes, and refuses input before the session buffers it.
//!
//! rml_rtmp buffers a message until it is complete (reserving room for all of it when its
//! first chunk arrives), accepts any chunk size a client announces, keeps a header for every
//! chunk stream id a client ever used (up to 65,599), and has one payload buffer for all
//! chunk streams, so interleaved messages corrupt each other (or, when a header shortens a
//! partly received message, make it panic). The guard reads every chunk header exactly as
//! that deserializer does (basic header, message header against the previous header of the
//! chunk stream, extended timestamp when the timestamp field is 0xFFFFFF, payload of
//! `min(remaining, chunk size)` bytes, Set Chunk Size applied once its message is complete)
//! and skips payloads without copying them, except that it reads the payload of the messages
//! rml_rtmp decodes as AMF0 (commands and data, not media) as it passes, with the iterative
//! [`Nesting`] scanner, because rml_rtmp's AMF0 reader is recursive. It stops at:
//!
//! - a message longer than the caller's limit ([`Scan::Blocked`]: the caller may raise the
//!   limit, for instance when the connection becomes a publisher, and scan on);
//! - a Set Chunk Size outside `1 ..= max_chunk_size`, or shorter than its 4 bytes;
//! - more than [`MAX_CHUNK_STREAMS`] chunk stream ids;
//! - a chunk of another message, or a changed message length or type, in the middle of a
//!   message (the deserializer takes the type of a message from its last chunk's header);
//! - a continuation header on a chunk stream that has no previous header;
//! - an extended timestamp delta below 0xFFFFFF, which the deserializer would underflow on;
//! - AMF values nested deeper than [`MAX_AMF_DEPTH`], which would overflow the thread's stack
//!   in rml_rtmp's AMF0 reader (at the byte that opens the level past the bound).
//!
//! Everything it lets through is input the deserializer handles without any of the above.

/// Longest message a connection may send before it publishes (commands and control
/// messages; `connect` and `publish` are well under 2 KiB).
pub const CONTROL_MESSAGE_LIMIT: u32 = 64 * 1024;

/// Most chunk stream ids one connection may use (encoders use a handful, 2 to 8).
pub const MAX_CHUNK_STREAMS: usize = 64;

/// Most `createStream` requests one connection may make over its life. rml_rtmp answers
/// each by itself and keeps a message stream for it until `deleteStream`; encoders and
/// players create one per publish or play (and a connection publishes at most
/// `limits.max_publishes_per_connection` times).
pub const MAX_CREATE_STREAMS: u32 = 16;

/// Message types of commands (AMF0, and "AMF3" with a leading byte).
const COMMAND: u8 = 20;

/// The first payload bytes of a `createStream` command: an AMF0 string of 12 bytes.
const CREATE_STREAM: &[u8] = b"\x02\x00\x0ccreateStream";

/// Payload bytes kept from the start of a Set Chunk Size message or a command: the size, or
/// a leading byte and the command's name up to `createStream`.
const HEAD_BYTES: usize = 1 + CREATE_STREAM.len();

use super::amf::{decoded_as_amf0, Nesting, TooDeep, AMF3_COMMAND, MAX_AMF_DEPTH};

/// RTMP's chunk size until the peer sets one.
const INITIAL_CHUNK_SIZE: u32 = 128;

/// A timestamp field with this value means a 4-byte extended timestamp follows.
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;

/// Message type of Set Chunk Size.
const SET_CHUNK_SIZE: u8 = 1;

/// Longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
const MAX_HEADER: usize = 3 + 11 + 4;

/// Input the guard refuses. The connection must be closed: the session has not seen the
/// offending bytes, and cannot continue without them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A message longer than the connection may send.
    #[error("message of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The message length in its header.
        length: u32,
        /// The limit in force.
        limit: u32,
    },
    /// A Set Chunk Size outside the accepted range.
    #[error("chunk size {size} refused (accepted: 1 ..= {max})")]
    ChunkSizeRefused {
        /// The size the peer asked for.
        size: u32,
        /// `rtmp.max_chunk_size`.
        max: u32,
    },
    /// A Set Chunk Size message without its 4-byte size.
    #[error("set chunk size message of {length} bytes")]
    ChunkSizeMalformed {
        /// The message length.
        length: u32,
    },
    /// More distinct chunk stream ids than [`MAX_CHUNK_STREAMS`].
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// More than [`MAX_CREATE_STREAMS`] `createStream` requests on one connection.
    #[error("more than {MAX_CREATE_STREAMS} createStream requests on one connection")]
    TooManyCreateStreams,
    /// A chunk of another chunk stream in the middle of a message.
    #[error("chunk stream {csid} interleaved into a message on chunk stream {current}")]
    Interleaved {
        /// The chunk stream of the new chunk.
        csid: u32,
        /// The chunk stream of the unfinished message.
        current: u32,
    },
    /// A header that changes the length of a partly received message.
    #[error("message length changed from {from} to {to} in the middle of the message")]
    LengthChanged {
        /// The length the message started with.
        from: u32,
        /// The length in the new header.
        to: u32,
    },
    /// A header that changes the type of a partly received message. The deserializer would
    /// deliver the message with the last type, the guard would have read it as the first
    /// (media it skips instead of AMF0 it checks, or a Set Chunk Size it does not apply).
    #[error("message type changed from {from} to {to} in the middle of the message")]
    TypeChanged {
        /// The type the message started with.
        from: u8,
        /// The type in the new header.
        to: u8,
    },
    /// An extended timestamp delta below 0xFFFFFF (the 24-bit field would have held it).
    #[error("extended timestamp delta {value} is below 0xFFFFFF")]
    ExtendedTimestamp {
        /// The extended field's value.
        value: u32,
    },
    /// A compressed header (format 1 to 3) on a chunk stream with no previous header.
    #[error("chunk stream {csid} continues, but has no previous chunk")]
    NoPreviousChunk {
        /// The chunk stream id.
        csid: u32,
    },
    /// AMF values nested deeper than [`MAX_AMF_DEPTH`] in a message rml_rtmp decodes as AMF0.
    #[error("AMF values nested deeper than {MAX_AMF_DEPTH} levels in a message of type {type_id}")]
    AmfTooDeep {
        /// The message type (15, 17, 18 or 20).
        type_id: u8,
    },
}

impl GuardError {
    /// True for a limit being hit (as opposed to input no peer should send).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            GuardError::MessageTooLarge { .. }
                | GuardError::ChunkSizeRefused { .. }
                | GuardError::TooManyChunkStreams
                | GuardError::TooManyCreateStreams
                | GuardError::AmfTooDeep { .. }
        )
    }
}

/// How far a scan got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every byte was read: all of them may go to the session.
    Done,
    /// ([`InputGuard::scan_message`] only) A message ended after `consumed` bytes.
    Message {
        /// Bytes read up to the end of the message.
        consumed: usize,
    },
    /// Stopped after `consumed` bytes (which may go to the session), at the complete header
    /// of a message of `length` bytes, over the limit. Scanning again with a larger limit
    /// continues from there; otherwise the connection must be closed.
    Blocked {
        /// Bytes read before stopping (the header's included).
        consumed: usize,
        /// The message length in the header.
        length: u32,
    },
}

/// The last header seen on a chunk stream, as far as later headers depend on it.
#[derive(Debug, Clone, Copy)]
struct ChunkStream {
    csid: u32,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
}

/// The message being received.
#[derive(Debug, Clone, Copy)]
struct Message {
    csid: u32,
    length: u32,
    type_id: u8,
    /// Payload bytes received so far, this chunk's excluded.
    received: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting a chunk header in `head`.
    Header,
    /// The header is complete; the message length is checked against the limit next.
    Limit,
    /// Skipping the rest of the chunk's payload.
    Payload { left: u32 },
}

/// The chunk-level state of one connection's input, mirroring rml_rtmp's deserializer.
#[derive(Debug, Clone)]
pub struct InputGuard {
    max_chunk_size: u32,
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    stage: Stage,
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// The message the current chunk belongs to (received counts earlier chunks).
    message: Option<Message>,
    /// This chunk's payload length.
    chunk_len: u32,
    /// The first payload bytes of a Set Chunk Size message or a command.
    payload_head: [u8; HEAD_BYTES],
    /// `createStream` requests so far.
    create_streams: u32,
    /// The nesting of the current message, when rml_rtmp decodes it as AMF0.
    amf: Option<Nesting>,
    messages: u64,
}

impl InputGuard {
    /// A guard for a new connection that accepts Set Chunk Size up to `max_chunk_size`.
    pub fn new(max_chunk_size: u32) -> Self {
        InputGuard {
            max_chunk_size,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: Vec::new(),
            stage: Stage::Header,
            head: [0; MAX_HEADER],
            head_len: 0,
            message: None,
            chunk_len: 0,
            payload_head: [0; HEAD_BYTES],
            create_streams: 0,
            amf: None,
            messages: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Complete messages read so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Payload bytes received so far of the message in progress, which the session holds
    /// until the message is complete.
    pub fn partial_bytes(&self) -> u64 {
        let Some(message) = self.message else {
            return 0;
        };
        let in_chunk = match self.stage {
            Stage::Payload { left } => self.chunk_len.saturating_sub(left),
            _ => 0,
        };
        u64::from(message.received) + u64::from(in_chunk)
    }

    /// Reads `bytes`, which follow everything scanned before, admitting messages of at most
    /// `limit` bytes.
    pub fn scan(&mut self, bytes: &[u8], limit: u32) -> Result<Scan, GuardError> {
        self.read(bytes, limit, false)
    }

    /// Like [`InputGuard::scan`], but stops at the end of the first message that completes,
    /// so that the caller can act on it before reading on.
    pub fn scan_message(&mut self, bytes: &[u8], limit: u32) -> Result<Scan, GuardError> {
        self.read(bytes, limit, true)
    }

    fn read(&mut self, bytes: &[u8], limit: u32, to_message_end: bool) -> Result<Scan, GuardError> {
        let mut pos = 0;
        loop {
            match self.stage {
                Stage::Header => {
                    if !self.read_header(bytes, &mut pos)? {
                        return Ok(Scan::Done);
                    }
                    self.begin_chunk()?;
                    self.stage = Stage::Limit;
                }
                Stage::Limit => {
                    let length = self.message.map_or(0, |m| m.length);
                    if length > limit {
                        return Ok(Scan::Blocked {
                            consumed: pos,
                            length,
                        });
                    }
                    self.stage = Stage::Payload {
                        left: self.chunk_len,
                    };
                }
                Stage::Payload { left: 0 } => {
                    self.stage = Stage::Header;
                    if self.end_chunk()? && to_message_end {
                        return Ok(Scan::Message { consumed: pos });
                    }
                }
                Stage::Payload { left } => {
                    let take = (bytes.len() - pos).min(left as usize);
                    if take == 0 {
                        return Ok(Scan::Done);
                    }
                    self.capture(&bytes[pos..pos + take], left)?;
                    pos += take;
                    self.stage = Stage::Payload {
                        left: left - take as u32,
                    };
                }
            }
        }
    }

    /// Collects header bytes from `bytes[*pos..]`; true once the header is complete.
    fn read_header(&mut self, bytes: &[u8], pos: &mut usize) -> Result<bool, GuardError> {
        loop {
            let need = self.header_len()?;
            if self.head_len == need {
                return Ok(true);
            }
            let take = (bytes.len() - *pos).min(need - self.head_len);
            if take == 0 {
                return Ok(false);
            }
            self.head[self.head_len..self.head_len + take]
                .copy_from_slice(&bytes[*pos..*pos + take]);
            self.head_len += take;
            *pos += take;
        }
    }

    /// The header's length as far as the bytes collected so far tell it (it grows as the
    /// basic header, message header and timestamp field arrive).
    fn header_len(&self) -> Result<usize, GuardError> {
        let head = &self.head[..self.head_len];
        let Some(&first) = head.first() else {
            return Ok(1);
        };
        let basic = basic_len(first);
        if head.len() < basic {
            return Ok(basic);
        }
        let format = first >> 6;
        let message_header = [11, 7, 3, 0][usize::from(format)];
        let previous = self.stream(csid(head));
        if format != 0 && previous.is_none() {
            return Err(GuardError::NoPreviousChunk { csid: csid(head) });
        }
        let fixed = basic + message_header;
        if head.len() < fixed {
            return Ok(fixed);
        }
        let timestamp_field = match previous {
            Some(previous) if format == 3 => previous.timestamp_field,
            _ => u24(&head[basic..]),
        };
        Ok(fixed
            + if timestamp_field >= EXTENDED_TIMESTAMP {
                4
            } else {
                0
            })
    }

    /// A complete header: records it for its chunk stream and works out the chunk.
    fn begin_chunk(&mut self) -> Result<(), GuardError> {
        let head = &self.head[..self.head_len];
        let csid = csid(head);
        let format = head[0] >> 6;
        let fields = &head[basic_len(head[0])..];
        let previous = self.stream(csid);
        let stream = match (format, previous) {
            (0, _) | (1, _) => ChunkStream {
                csid,
                timestamp_field: u24(fields),
                length: u24(&fields[3..]),
                type_id: fields[6],
            },
            (2, Some(previous)) => ChunkStream {
                timestamp_field: u24(fields),
                ..previous
            },
            (_, Some(previous)) => previous,
            (_, None) => return Err(GuardError::NoPreviousChunk { csid }),
        };
        // The deserializer subtracts 0xFFFFFF from the extended field of a delta that starts
        // a message (overflowing below it); a delta that needs the field is never below.
        if format != 0 && self.message.is_none() && stream.timestamp_field >= EXTENDED_TIMESTAMP {
            let extended =
                u32::from_be_bytes(head[head.len() - 4..].try_into().unwrap_or_default());
            if extended < EXTENDED_TIMESTAMP {
                return Err(GuardError::ExtendedTimestamp { value: extended });
            }
        }
        let message = match self.message {
            Some(message) if message.csid != csid => {
                return Err(GuardError::Interleaved {
                    csid,
                    current: message.csid,
                })
            }
            Some(message) if message.length != stream.length => {
                return Err(GuardError::LengthChanged {
                    from: message.length,
                    to: stream.length,
                })
            }
            Some(message) if message.type_id != stream.type_id => {
                return Err(GuardError::TypeChanged {
                    from: message.type_id,
                    to: stream.type_id,
                })
            }
            Some(message) => message,
            None => Message {
                csid,
                length: stream.length,
                type_id: stream.type_id,
                received: 0,
            },
        };
        if self.message.is_none() {
            self.amf = decoded_as_amf0(message.type_id).then(|| Nesting::new(message.type_id));
            self.payload_head = [0; HEAD_BYTES];
        }
        let full = self.streams.len() >= MAX_CHUNK_STREAMS;
        match self.streams.iter_mut().find(|s| s.csid == csid) {
            Some(slot) => *slot = stream,
            None if full => return Err(GuardError::TooManyChunkStreams),
            None => self.streams.push(stream),
        }
        // As rml_rtmp's deserializer: a message that fits in a chunk is one chunk; a longer
        // one is cut at the chunk size.
        self.chunk_len = if message.length > self.chunk_size {
            (message.length - message.received).min(self.chunk_size)
        } else {
            message.length
        };
        self.message = Some(message);
        self.head_len = 0;
        Ok(())
    }

    /// Reads payload bytes where the guard needs them: the nesting of an AMF0 message, the
    /// first bytes of a Set Chunk Size message. Other payloads (media) are not touched.
    fn capture(&mut self, bytes: &[u8], left: u32) -> Result<(), GuardError> {
        let Some(message) = self.message else {
            return Ok(());
        };
        if matches!(message.type_id, SET_CHUNK_SIZE | COMMAND | AMF3_COMMAND) {
            let offset = (message.received + self.chunk_len - left) as usize;
            for (i, &byte) in bytes.iter().enumerate() {
                if let Some(slot) = self.payload_head.get_mut(offset + i) {
                    *slot = byte;
                }
            }
        }
        if let Some(nesting) = &mut self.amf {
            return nesting
                .read(bytes)
                .map_err(|TooDeep| GuardError::AmfTooDeep {
                    type_id: message.type_id,
                });
        }
        Ok(())
    }

    /// True when the message whose first bytes are in `payload_head` is a `createStream` command
    /// (rml_rtmp drops one leading 0x00 byte of a type 17 message).
    fn is_create_stream(&self, type_id: u8) -> bool {
        let head = &self.payload_head;
        let name = match (type_id, head[0]) {
            (AMF3_COMMAND, 0) => &head[1..],
            (COMMAND | AMF3_COMMAND, _) => &head[..CREATE_STREAM.len()],
            _ => return false,
        };
        name == CREATE_STREAM
    }

    /// The chunk's payload is read: completes the message when it was the last chunk (and
    /// then returns true).
    fn end_chunk(&mut self) -> Result<bool, GuardError> {
        let Some(mut message) = self.message else {
            return Ok(false);
        };
        message.received += self.chunk_len;
        if message.received < message.length {
            self.message = Some(message);
            return Ok(false);
        }
        self.message = None;
        self.amf = None;
        self.messages += 1;
        if message.type_id == SET_CHUNK_SIZE {
            if message.length < 4 {
                return Err(GuardError::ChunkSizeMalformed {
                    length: message.length,
                });
            }
            let [a, b, c, d, ..] = self.payload_head;
            let size = u32::from_be_bytes([a, b, c, d]);
            if size == 0 || size > self.max_chunk_size {
                return Err(GuardError::ChunkSizeRefused {
                    size,
                    max: self.max_chunk_size,
                });
            }
            self.chunk_size = size;
        }
        if self.is_create_stream(message.type_id) {
            self.create_streams += 1;
            if self.create_streams > MAX_CREATE_STREAMS {
                return Err(GuardError::TooManyCreateStreams);
            }
        }
        Ok(true)
    }

    fn stream(&self, csid: u32) -> Option<ChunkStream> {
        self.streams.iter().find(|s| s.csid == csid).copied()
    }
}

/// Length of the basic header that starts with `first`.
fn basic_len(first: u8) -> usize {
    match first & 0x3f {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

/// The chunk stream id of a complete basic header.
fn csid(head: &[u8]) -> u32 {
    match head[0] & 0x3f {
        0 => u32::from(head[1]) + 64,
        1 => u32::from(head[2]) * 256 + u32::from(head[1]) + 64,
        id => u32::from(id),
    }
}

fn u24(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]])
}

#[cfg(test)]
mod tests;
