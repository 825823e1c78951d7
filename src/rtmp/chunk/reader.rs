//! RTMP's chunk layer, receiving side (pure): chunks in, messages out, as the specification
//! defines them (section 5.3).
//!
//! Each chunk stream keeps the last header it saw (for the compressed headers of types 1 to
//! 3) and its own partial message, so chunks of different chunk streams may interleave at
//! any chunk boundary, as encoders, media servers and restreaming services send them. Input
//! may be cut anywhere: a header or a payload that one read ends inside continues with the
//! next. Set Chunk Size (type 1) and Abort (type 2) take effect in the reader, which also
//! returns them.
//!
//! Everything a sender can make it hold is bounded, and checked before it is held:
//! - at most [`MAX_CHUNK_STREAMS`] chunk stream ids over the reader's life, each keeping
//!   one header (about 40 bytes);
//! - a message at most [`Limits::message`] bytes long (checked at its first chunk; the
//!   limit may change between calls, as a connection's does when it starts to publish);
//! - at most [`MAX_PARTIAL_MESSAGES`] messages in progress at once, whose announced lengths
//!   add up to at most [`Limits::partial`] (a message's buffer is reserved at its length);
//! - a chunk size between 1 and the maximum the reader was made with.
//!
//! A header of type 0, 1 or 2 in the middle of its chunk stream's message that changes the
//! message's length or type, a compressed header on a chunk stream without a previous
//! header, and the bounds above are errors, after which the reader is in no defined state:
//! the connection must close. (A full header that repeats them continues the message, as
//! rml_rtmp's writer sends when forced to full headers.)
//!
//! Timestamps follow the specification and libavformat: a type 0 header carries the
//! message's timestamp, types 1 and 2 a delta from the chunk stream's previous message, and
//! a type 3 header that starts a message repeats the previous header's field (so after a
//! type 0 header, its timestamp is added again). When the field is 0xFFFFFF, a 4-byte
//! extended timestamp follows every header of the chunk stream, type 3 included. A header
//! of type 0, 1 or 2 that repeats a message in the middle restamps it the same way (as
//! rml_rtmp and libavformat read it).

use super::EXTENDED;
use crate::media::Body;

/// Chunk size before a Set Chunk Size (the specification's default).
const INITIAL_CHUNK_SIZE: u32 = 128;

/// Largest chunk size the specification allows (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;

/// Most chunk stream ids one reader follows (encoders use 2 to 8, a session's own output
/// five). Overflow action: [`ChunkError::TooManyStreams`].
pub const MAX_CHUNK_STREAMS: usize = 64;

/// Most messages in progress at once (interleaved encoders have two or three: video, audio,
/// data). Overflow action: [`ChunkError::TooManyPartial`].
pub const MAX_PARTIAL_MESSAGES: usize = 8;

/// Longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
const MAX_HEADER: usize = 3 + 11 + 4;

/// Message type of Set Chunk Size.
pub const SET_CHUNK_SIZE: u8 = 1;
/// Message type of Abort.
pub const ABORT: u8 = 2;

/// What the reader admits: the message limit and the total of partial messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest message.
    pub message: u32,
    /// Most bytes the messages in progress may announce together.
    pub partial: u64,
}

impl Limits {
    /// Messages of up to `message` bytes, one of them in progress at that length with
    /// others of up to `others` bytes together beside it.
    pub fn new(message: u32, others: u32) -> Self {
        Limits {
            message,
            partial: u64::from(message) + u64::from(others),
        }
    }
}

/// Why chunks could not be read. After any of these the input is broken for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk with a compressed header (type 1, 2 or 3) on a chunk stream that had no
    /// header before.
    #[error("chunk stream {0} continues a header it never had")]
    NoPreviousHeader(u32),
    /// A type 0, 1 or 2 header that changes the length or type of its chunk stream's
    /// message before it is complete.
    #[error("chunk stream {0} starts a message inside another")]
    MessageInterrupted(u32),
    /// More chunk streams than [`MAX_CHUNK_STREAMS`].
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyStreams,
    /// A message longer than [`Limits::message`].
    #[error("message of {length} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// The length in its header.
        length: u32,
        /// The limit in force.
        limit: u32,
    },
    /// More than [`MAX_PARTIAL_MESSAGES`] messages in progress.
    #[error("more than {MAX_PARTIAL_MESSAGES} messages in progress on as many chunk streams")]
    TooManyPartial,
    /// Messages in progress announcing more than [`Limits::partial`] bytes together.
    #[error("messages in progress would hold {bytes} bytes (limit {limit})")]
    PartialTooLarge {
        /// What they would announce with the new one.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A Set Chunk Size outside 1 ..= the reader's maximum.
    #[error("chunk size {size} refused (accepted: 1 ..= {max})")]
    ChunkSize {
        /// The size asked for.
        size: u32,
        /// The reader's maximum.
        max: u32,
    },
    /// A Set Chunk Size message without its 4-byte size.
    #[error("set chunk size message of {0} bytes")]
    ChunkSizeMalformed(usize),
}

impl ChunkError {
    /// True for a bound being hit (as opposed to input no peer should send).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ChunkError::TooManyStreams
                | ChunkError::TooLong { .. }
                | ChunkError::TooManyPartial
                | ChunkError::PartialTooLarge { .. }
                | ChunkError::ChunkSize { .. }
        )
    }
}

/// One message read from chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it came on.
    pub csid: u32,
    /// RTMP message type.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Timestamp (ms), absolute.
    pub timestamp: u32,
    /// The message body, in a buffer with room for the headers of its wire forms (media
    /// is stored without a copy, see [`crate::media::Wire::from_body`]).
    pub payload: Body,
}

/// The state of one chunk stream.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// The timestamp field of the last header (type 0: the timestamp; 1 and 2: a delta),
    /// added again by a type 3 header that starts a message.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header had an extended timestamp: its type 3 chunks carry it too.
    extended: bool,
    /// A message is in progress (its first chunk's header was read).
    receiving: bool,
    /// The payload received so far of the message in progress.
    partial: Body,
}

/// Where the reader is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting a chunk header.
    Header,
    /// Reading `left` more payload bytes of a chunk of `streams[index]`.
    Payload { index: usize, left: u32 },
}

/// Reads chunks into messages. See the module documentation.
#[derive(Debug)]
pub struct Reader {
    chunk_size: u32,
    max_chunk_size: u32,
    streams: Vec<ChunkStream>,
    stage: Stage,
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Messages in progress, and the lengths they announced together.
    partial_messages: usize,
    announced: u64,
    /// A message started while another was in progress, at least once.
    interleaved: bool,
}

impl Reader {
    /// A reader at the initial chunk size that accepts Set Chunk Size up to
    /// `max_chunk_size` (at most [`MAX_CHUNK_SIZE`]).
    pub fn new(max_chunk_size: u32) -> Self {
        Reader {
            chunk_size: INITIAL_CHUNK_SIZE,
            max_chunk_size: max_chunk_size.clamp(1, MAX_CHUNK_SIZE),
            streams: Vec::new(),
            stage: Stage::Header,
            head: [0; MAX_HEADER],
            head_len: 0,
            partial_messages: 0,
            announced: 0,
            interleaved: false,
        }
    }

    /// The sender's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// True once the sender interleaved messages: started one on a chunk stream while
    /// another chunk stream's was in progress.
    pub fn interleaved(&self) -> bool {
        self.interleaved
    }

    /// Payload bytes held for messages in progress.
    pub fn partial_bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.partial.len() as u64).sum()
    }

    /// Reads from the front of `input` (advanced past what was read) until a message is
    /// complete, which is returned; `None` once all of `input` is read without completing
    /// one (what it ended inside is kept for the next call).
    pub fn next(
        &mut self,
        input: &mut &[u8],
        limits: Limits,
    ) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.stage {
                Stage::Header => {
                    if !self.read_header(input)? {
                        return Ok(None);
                    }
                    let (index, left) = self.begin_chunk(limits)?;
                    self.stage = Stage::Payload { index, left };
                }
                Stage::Payload { index, left } => {
                    let take = input.len().min(left as usize);
                    if take == 0 && left > 0 {
                        return Ok(None);
                    }
                    let (bytes, rest) = input.split_at(take);
                    *input = rest;
                    let left = left - take as u32;
                    self.stage = match left {
                        0 => Stage::Header,
                        _ => Stage::Payload { index, left },
                    };
                    if let Some(message) = self.receive(index, bytes)? {
                        return Ok(Some(message));
                    }
                    if left > 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Collects header bytes from `input`; true once the header is complete.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<bool, ChunkError> {
        loop {
            let need = self.header_len()?;
            if self.head_len == need {
                return Ok(true);
            }
            let take = input.len().min(need - self.head_len);
            if take == 0 {
                return Ok(false);
            }
            self.head[self.head_len..self.head_len + take].copy_from_slice(&input[..take]);
            self.head_len += take;
            *input = &input[take..];
        }
    }

    /// The header's length as far as the bytes collected so far tell it (it grows as the
    /// basic header, message header and timestamp field arrive).
    fn header_len(&self) -> Result<usize, ChunkError> {
        let head = &self.head[..self.head_len];
        let Some(&first) = head.first() else {
            return Ok(1);
        };
        let basic = basic_len(first);
        if head.len() < basic {
            return Ok(basic);
        }
        let fmt = first >> 6;
        let fixed = basic + [11, 7, 3, 0][usize::from(fmt)];
        if head.len() < fixed {
            return Ok(fixed);
        }
        let extended = match fmt {
            3 => {
                let csid = csid(head);
                self.stream(csid)
                    .ok_or(ChunkError::NoPreviousHeader(csid))?
                    .extended
            }
            _ => be24(&head[basic..]) == EXTENDED,
        };
        Ok(fixed + if extended { 4 } else { 0 })
    }

    /// A complete header: updates its chunk stream, starts a message when it is the first
    /// chunk of one; the stream's index and the chunk's payload length.
    fn begin_chunk(&mut self, limits: Limits) -> Result<(usize, u32), ChunkError> {
        let head = &self.head[..self.head_len];
        self.head_len = 0;
        let fmt = head[0] >> 6;
        let csid = csid(head);
        let fields = &head[basic_len(head[0])..];
        let index = match self.streams.iter().position(|s| s.csid == csid) {
            Some(index) => index,
            None if fmt != 0 => return Err(ChunkError::NoPreviousHeader(csid)),
            None if self.streams.len() == MAX_CHUNK_STREAMS => {
                return Err(ChunkError::TooManyStreams)
            }
            None => {
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    receiving: false,
                    partial: Body::default(),
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[index];
        let starts = !stream.receiving;
        let (length, type_id) = match fmt {
            0 | 1 => (be24(&fields[3..]), fields[6]),
            _ => (stream.length, stream.type_id),
        };
        // A full header inside a message may only repeat it (rml_rtmp's writer, forced to
        // full headers, puts one on every chunk).
        if !starts && (length, type_id) != (stream.length, stream.type_id) {
            return Err(ChunkError::MessageInterrupted(csid));
        }
        (stream.length, stream.type_id) = (length, type_id);
        if fmt < 3 {
            let field = be24(fields);
            stream.extended = field == EXTENDED;
            stream.delta = field;
        }
        if fmt == 0 {
            stream.stream_id = u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]);
        }
        if stream.extended && fmt < 3 {
            let at = [11, 7, 3][usize::from(fmt)];
            stream.delta =
                u32::from_be_bytes([fields[at], fields[at + 1], fields[at + 2], fields[at + 3]]);
        }
        if starts {
            if stream.length > limits.message {
                return Err(ChunkError::TooLong {
                    length: stream.length,
                    limit: limits.message,
                });
            }
            if self.partial_messages == MAX_PARTIAL_MESSAGES {
                return Err(ChunkError::TooManyPartial);
            }
            let bytes = self.announced + u64::from(stream.length);
            if bytes > limits.partial {
                return Err(ChunkError::PartialTooLarge {
                    bytes,
                    limit: limits.partial,
                });
            }
            stream.receiving = true;
            self.interleaved |= self.partial_messages > 0;
            self.partial_messages += 1;
            self.announced = bytes;
        }
        // A type 3 header inside a message leaves its timestamp.
        if starts || fmt < 3 {
            stream.timestamp = match fmt {
                0 => stream.delta,
                _ => stream.timestamp.wrapping_add(stream.delta),
            };
        }
        let left = stream.length - stream.partial.len() as u32;
        Ok((index, left.min(self.chunk_size)))
    }

    /// Payload bytes of a chunk of `streams[index]`: the message, once they complete it.
    fn receive(&mut self, index: usize, bytes: &[u8]) -> Result<Option<Message>, ChunkError> {
        let stream = &mut self.streams[index];
        let length = stream.length as usize;
        let payload = if stream.partial.is_empty() && bytes.len() == length {
            Body::copy_from(bytes)
        } else {
            if stream.partial.is_empty() {
                stream.partial = Body::with_capacity(length);
            }
            stream.partial.extend_from_slice(bytes);
            if stream.partial.len() < length {
                return Ok(None);
            }
            std::mem::take(&mut stream.partial)
        };
        stream.receiving = false;
        self.partial_messages -= 1;
        self.announced -= length as u64;
        let message = Message {
            csid: stream.csid,
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload,
        };
        self.control(&message)?;
        Ok(Some(message))
    }

    /// Applies a Set Chunk Size or an Abort.
    fn control(&mut self, message: &Message) -> Result<(), ChunkError> {
        if !matches!(message.type_id, SET_CHUNK_SIZE | ABORT) {
            return Ok(());
        }
        let Some(&[a, b, c, d]) = message.payload.first_chunk::<4>() else {
            return match message.type_id {
                SET_CHUNK_SIZE => Err(ChunkError::ChunkSizeMalformed(message.payload.len())),
                _ => Ok(()),
            };
        };
        let value = u32::from_be_bytes([a, b, c, d]);
        if message.type_id == SET_CHUNK_SIZE {
            if value == 0 || value > self.max_chunk_size {
                return Err(ChunkError::ChunkSize {
                    size: value,
                    max: self.max_chunk_size,
                });
            }
            self.chunk_size = value;
            return Ok(());
        }
        let aborted = self
            .streams
            .iter_mut()
            .position(|s| s.csid == value && s.receiving);
        // (Between chunks: no chunk of the aborted message is being read.)
        if let Some(index) = aborted {
            let stream = &mut self.streams[index];
            stream.receiving = false;
            stream.partial = Body::default();
            self.partial_messages -= 1;
            self.announced -= u64::from(stream.length);
        }
        Ok(())
    }

    fn stream(&self, csid: u32) -> Option<&ChunkStream> {
        self.streams.iter().find(|s| s.csid == csid)
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

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

#[cfg(test)]
mod tests;
