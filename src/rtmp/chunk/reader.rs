//! Reading chunks back into messages (pure), per chunk stream: each keeps the last header
//! it saw (for the compressed headers of types 1 to 3) and its own partial message, so
//! chunks of different chunk streams may interleave as the specification allows.
//!
//! Only what the reader is given is held: a chunk stream's last header, and the payload of
//! a message while its chunks arrive; nothing is buffered ahead. Input must end at a chunk
//! boundary (it is a sender's whole output, as the connection's read-back of its own session
//! gives it, see [`crate::rtmp::connection`]).

use super::EXTENDED;
use bytes::Bytes;

/// Chunk size before a Set Chunk Size (the specification's default).
const INITIAL_CHUNK_SIZE: usize = 128;

/// Most chunk streams one reader follows (a session's own output uses five): with the
/// message limit, this bounds what a reader can be made to hold.
pub const MAX_CHUNK_STREAMS: usize = 64;

/// Why chunks could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The input ended inside a chunk.
    #[error("input ends inside a chunk")]
    Truncated,
    /// A chunk with a compressed header (type 1, 2 or 3) on a chunk stream that had no
    /// header before.
    #[error("chunk stream {0} continues a header it never had")]
    NoPreviousHeader(u32),
    /// A type 0, 1 or 2 header on a chunk stream whose message is not complete.
    #[error("chunk stream {0} starts a message inside another")]
    MessageInterrupted(u32),
    /// More chunk streams than [`MAX_CHUNK_STREAMS`].
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyStreams,
    /// A message longer than the reader accepts.
    #[error("message of {0} bytes is too long")]
    TooLong(u32),
    /// A Set Chunk Size of 0, or above the specification's 2^31 - 1.
    #[error("invalid chunk size {0}")]
    ChunkSize(u32),
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
    /// The message body.
    pub payload: Bytes,
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
    /// The payload received so far of the message being read (empty between messages).
    partial: Vec<u8>,
}

/// Reads chunks into messages. See the module documentation.
#[derive(Debug)]
pub struct Reader {
    chunk_size: usize,
    max_message_bytes: usize,
    streams: Vec<ChunkStream>,
}

impl Reader {
    /// A reader of messages up to `max_message_bytes` long, at the initial chunk size.
    pub fn new(max_message_bytes: usize) -> Self {
        Reader {
            chunk_size: INITIAL_CHUNK_SIZE,
            max_message_bytes,
            streams: Vec::new(),
        }
    }

    /// Follows the sender's Set Chunk Size: its chunks after this one carry up to `size`
    /// payload bytes.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(ChunkError::ChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Reads chunks from the front of `input` (advanced past them) until a message is
    /// complete, which is returned; `None` when `input` ends at a chunk boundary first.
    /// After an error the reader is in no defined state: the input it was reading is
    /// broken, and so is the connection.
    pub fn next(&mut self, input: &mut &[u8]) -> Result<Option<Message>, ChunkError> {
        while !input.is_empty() {
            if let Some(message) = self.chunk(input)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// Reads one chunk; the message it completes, if it does.
    fn chunk(&mut self, input: &mut &[u8]) -> Result<Option<Message>, ChunkError> {
        let first = take(input, 1)?[0];
        let fmt = first >> 6;
        let csid = match first & 0x3f {
            0 => 64 + u32::from(take(input, 1)?[0]),
            1 => {
                let b = take(input, 2)?;
                64 + u32::from(b[0]) + 256 * u32::from(b[1])
            }
            n => u32::from(n),
        };
        let chunk_size = self.chunk_size;
        let index = match self.streams.iter().position(|s| s.csid == csid) {
            Some(index) => index,
            None if self.streams.len() == MAX_CHUNK_STREAMS => {
                return Err(ChunkError::TooManyStreams)
            }
            None if fmt == 0 => {
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    partial: Vec::new(),
                });
                self.streams.len() - 1
            }
            None => return Err(ChunkError::NoPreviousHeader(csid)),
        };
        let stream = &mut self.streams[index];
        let starts = stream.partial.is_empty();
        if fmt != 3 && !starts {
            return Err(ChunkError::MessageInterrupted(csid));
        }
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let header = take(input, header_len)?;
        if fmt < 3 {
            let field = be24(&header[0..3]);
            stream.extended = field == EXTENDED;
            stream.delta = field;
        }
        if fmt < 2 {
            stream.length = be24(&header[3..6]);
            stream.type_id = header[6];
            if stream.length as usize > self.max_message_bytes {
                return Err(ChunkError::TooLong(stream.length));
            }
        }
        if fmt == 0 {
            stream.stream_id = u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
        }
        if stream.extended {
            // Type 3 chunks repeat their header's extended timestamp.
            let b = take(input, 4)?;
            if fmt < 3 {
                stream.delta = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        if starts {
            stream.timestamp = match fmt {
                0 => stream.delta,
                _ => stream.timestamp.wrapping_add(stream.delta),
            };
        }
        let left = stream.length as usize - stream.partial.len();
        let payload = take(input, left.min(chunk_size))?;
        if payload.len() == left {
            let payload = if starts {
                Bytes::copy_from_slice(payload)
            } else {
                let mut whole = std::mem::take(&mut stream.partial);
                whole.extend_from_slice(payload);
                Bytes::from(whole)
            };
            return Ok(Some(Message {
                csid,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                timestamp: stream.timestamp,
                payload,
            }));
        }
        if starts {
            stream.partial.reserve_exact(stream.length as usize);
        }
        stream.partial.extend_from_slice(payload);
        Ok(None)
    }
}

/// The next `n` bytes of `input`, which is advanced past them.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], ChunkError> {
    if input.len() < n {
        return Err(ChunkError::Truncated);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

#[cfg(test)]
mod tests;
