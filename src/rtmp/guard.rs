//! RTMP input limits (pure): the connection's chunk layer ([`Reader`]) under the
//! connection's bounds, the checks rml_rtmp needs on a complete message before it decodes
//! one, and acknowledgements.
//!
//! The chunk layer reassembles each chunk stream apart (chunks may interleave as the
//! specification allows) and bounds what a client can make it hold: chunk stream ids,
//! messages in progress and their announced lengths, the message length (64 KiB until the
//! connection publishes, `rtmp.max_message_bytes` then), the chunk size. Then, on each
//! complete message:
//!
//! - AMF values nested deeper than [`MAX_AMF_DEPTH`] are refused in the messages decoded
//!   with rml_amf0 (commands and data), because its reader is recursive and would overflow
//!   the thread's stack ([`Nesting`]);
//! - more than [`MAX_CREATE_STREAMS`] `createStream` requests are refused, because the
//!   session keeps a message stream for each.
//!
//! [`Acknowledgements`] counts the bytes received and says when to acknowledge them
//! (section 5.4.3 of the specification).

use super::amf::{decoded_as_amf0, Nesting, TooDeep, AMF3_COMMAND, MAX_AMF_DEPTH};
use super::chunk::{ChunkError, Limits, Message, Reader};

/// Longest message a connection may send before it publishes (commands and control
/// messages; `connect` and `publish` are well under 2 KiB). Messages in progress beside the
/// longest one may hold this much too.
pub const CONTROL_MESSAGE_LIMIT: u32 = 64 * 1024;

/// Most `createStream` requests one connection may make over its life. rml_rtmp answers
/// each by itself and keeps a message stream for it until `deleteStream`; encoders and
/// players create one per publish or play (and a connection publishes at most
/// `limits.max_publishes_per_connection` times).
pub const MAX_CREATE_STREAMS: u32 = 16;

/// Message types of commands (AMF0, and "AMF3" with a leading byte).
const COMMAND: u8 = 20;

/// The first payload bytes of a `createStream` command: an AMF0 string of 12 bytes.
const CREATE_STREAM: &[u8] = b"\x02\x00\x0ccreateStream";

/// Input the guard refuses. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Chunks that break the specification or the connection's bounds.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// More than [`MAX_CREATE_STREAMS`] `createStream` requests on one connection.
    #[error("more than {MAX_CREATE_STREAMS} createStream requests on one connection")]
    TooManyCreateStreams,
    /// AMF values nested deeper than [`MAX_AMF_DEPTH`] in a message decoded as AMF0.
    #[error("AMF values nested deeper than {MAX_AMF_DEPTH} levels in a message of type {type_id}")]
    AmfTooDeep {
        /// The message type (15, 17, 18 or 20).
        type_id: u8,
    },
}

impl GuardError {
    /// True for a limit being hit (as opposed to input no peer should send).
    pub fn is_limit(&self) -> bool {
        match self {
            GuardError::Chunk(err) => err.is_limit(),
            GuardError::TooManyCreateStreams | GuardError::AmfTooDeep { .. } => true,
        }
    }
}

/// One connection's input: chunks to messages, within its bounds.
#[derive(Debug)]
pub struct InputGuard {
    reader: Reader,
    /// `createStream` requests so far.
    create_streams: u32,
    messages: u64,
}

impl InputGuard {
    /// A guard for a new connection that accepts Set Chunk Size up to `max_chunk_size`.
    pub fn new(max_chunk_size: u32) -> Self {
        InputGuard {
            reader: Reader::new(max_chunk_size),
            create_streams: 0,
            messages: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.reader.chunk_size()
    }

    /// Complete messages read so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Payload bytes held for messages in progress.
    pub fn partial_bytes(&self) -> u64 {
        self.reader.partial_bytes()
    }

    /// True once the peer interleaved messages of different chunk streams.
    pub fn interleaved(&self) -> bool {
        self.reader.interleaved()
    }

    /// Reads from the front of `input` (advanced past what was read) until a message of at
    /// most `limit` bytes is complete and passes the checks; `None` once all of `input` is
    /// read without completing one.
    pub fn next(&mut self, input: &mut &[u8], limit: u32) -> Result<Option<Message>, GuardError> {
        let limits = Limits::new(limit, CONTROL_MESSAGE_LIMIT);
        let Some(message) = self.reader.next(input, limits)? else {
            return Ok(None);
        };
        self.messages += 1;
        let type_id = message.type_id;
        if decoded_as_amf0(type_id) {
            Nesting::new(type_id)
                .read(&message.payload)
                .map_err(|TooDeep| GuardError::AmfTooDeep { type_id })?;
        }
        if is_create_stream(type_id, &message.payload) {
            self.create_streams += 1;
            if self.create_streams > MAX_CREATE_STREAMS {
                return Err(GuardError::TooManyCreateStreams);
            }
        }
        Ok(Some(message))
    }

    /// Every message `input` completes ([`InputGuard::next`] until it is read).
    pub fn read(&mut self, mut input: &[u8], limit: u32) -> Result<Vec<Message>, GuardError> {
        let mut messages = Vec::new();
        while let Some(message) = self.next(&mut input, limit)? {
            messages.push(message);
        }
        Ok(messages)
    }
}

/// True for a `createStream` command (rml_rtmp drops one leading 0x00 byte of a type 17
/// message).
fn is_create_stream(type_id: u8, payload: &[u8]) -> bool {
    match (type_id, payload.first()) {
        (AMF3_COMMAND, Some(0)) => payload[1..].starts_with(CREATE_STREAM),
        (COMMAND | AMF3_COMMAND, _) => payload.starts_with(CREATE_STREAM),
        _ => false,
    }
}

/// When to acknowledge the bytes received (section 5.4.3), with the number of bytes
/// received so far (modulo 2^32, the handshake's included) as the sequence number: each time
/// half the window the peer set (Window Acknowledgement Size) has arrived since the last
/// acknowledgement. The specification asks for one at least every window; a sender that
/// never lets a whole window go unacknowledged (it does not start a message that would pass
/// it) stops short of the window, and would wait forever for an acknowledgement due only
/// there. Counting the handshake errs the same way: a sender that counts it too is never
/// behind, one that does not only sees its bytes acknowledged early.
#[derive(Debug, Default, Clone, Copy)]
pub struct Acknowledgements {
    window: Option<u32>,
    received: u32,
    acknowledged: u32,
}

impl Acknowledgements {
    /// The peer's Window Acknowledgement Size (0: no acknowledgements).
    pub fn set_window(&mut self, size: u32) {
        self.window = (size > 0).then_some(size);
    }

    /// `bytes` more were received: the sequence number to acknowledge now, if one is due.
    pub fn received(&mut self, bytes: usize) -> Option<u32> {
        self.received = self.received.wrapping_add(bytes as u32);
        let half = self.window?.div_ceil(2);
        if self.received.wrapping_sub(self.acknowledged) < half {
            return None;
        }
        self.acknowledged = self.received;
        Some(self.received)
    }
}

#[cfg(test)]
mod tests;
