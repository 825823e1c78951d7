//! What the session sends, as the peer gets it (pure): rml_rtmp's packets are read back and
//! written again, each message with a full (type 0) chunk header and timestamp 0, without
//! the messages players must not see.
//!
//! Why: rml_rtmp stamps its messages with the time since the session began and compresses
//! their chunk headers against what it sent before, so a message can be neither left out
//! nor restamped in its bytes. Read back, each message stands alone. Two of them made ffmpeg
//! (and every player built on libavformat) list phantom streams on RTMP playback:
//! `|RtmpSampleAccess`, a data message that libavformat ignores only at timestamp 0 (at any
//! other time it becomes a text subtitle stream), and `onStatus` `NetStream.Data.Start` sent
//! as a data message, whose unknown name becomes a data stream of codec 0. The first is
//! stamped 0 like every other message (as nginx-rtmp sends it), the second is left out (as
//! nginx-rtmp does). The cost is a chunk-header read and write per control message; media
//! for players never goes through here (see [`crate::rtmp::chunk`]).

use crate::rtmp::chunk::{Limits, Reader, MAX_CHUNK_SIZE};
#[cfg(test)]
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

/// RTMP message type of Set Chunk Size.
const SET_CHUNK_SIZE: u8 = 1;

/// RTMP message type of an AMF0 data message.
const AMF0_DATA: u8 = 18;

/// Longest message of the session's output read back (its answers are a few hundred bytes).
const MAX_ANSWER_BYTES: u32 = 64 * 1024;

/// Why the session's own output could not be read back (a bug in the session or here,
/// never the peer's doing).
#[derive(Debug, thiserror::Error)]
#[error("the session's output could not be rewritten: {0}")]
pub struct OutputError(String);

/// The session's output, rewritten. See the module documentation.
pub struct SessionOutput {
    /// Reads the session's packets back, in step with the session's serializer. It holds
    /// nothing between packets but each chunk stream's last header (rml_rtmp's own reader
    /// keeps a 4 KiB buffer, for as long as a player plays).
    read: Reader,
    /// Writes the messages again, with full headers.
    write: ChunkSerializer,
    /// The next `_result` answers a `connect` of a client that announced Enhanced RTMP:
    /// corecast's support is added to its properties (see [`super::caps`]).
    amend_connect: bool,
}

impl Default for SessionOutput {
    fn default() -> Self {
        SessionOutput {
            read: Reader::new(MAX_CHUNK_SIZE),
            write: ChunkSerializer::new(),
            amend_connect: false,
        }
    }
}

impl SessionOutput {
    /// Whether the next `_result` (the `connect` answer) gets corecast's Enhanced RTMP
    /// support added.
    pub fn amend_connect_answer(&mut self, amend: bool) {
        self.amend_connect = amend;
    }

    /// Rewrites one packet of the session's output (whole messages) onto `out`.
    pub fn push(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), OutputError> {
        let mut input = packet;
        let limits = Limits::new(MAX_ANSWER_BYTES, MAX_ANSWER_BYTES);
        while let Some(message) = self.read.next(&mut input, limits).map_err(fail)? {
            let message = MessagePayload {
                timestamp: RtmpTimestamp::new(message.timestamp),
                type_id: message.type_id,
                message_stream_id: message.stream_id,
                data: message.payload.into_bytes(),
            };
            if message.type_id == SET_CHUNK_SIZE {
                // The reader follows it; so does the writer.
                let size = self.read.chunk_size();
                let packet = self
                    .write
                    .set_max_chunk_size(size, RtmpTimestamp::new(0))
                    .map_err(fail)?;
                out.extend_from_slice(&packet.bytes);
                continue;
            }
            if is_data_status(&message) {
                continue;
            }
            let message = MessagePayload {
                timestamp: RtmpTimestamp::new(0),
                ..self.amended(message)?
            };
            let packet = self.write.serialize(&message, true, false).map_err(fail)?;
            out.extend_from_slice(&packet.bytes);
        }
        Ok(())
    }
}

impl SessionOutput {
    /// The `connect` `_result`, with corecast's Enhanced RTMP support in its properties
    /// when asked for; any other message as it is.
    fn amended(&mut self, message: MessagePayload) -> Result<MessagePayload, OutputError> {
        const AMF0_COMMAND: u8 = 20;
        if !self.amend_connect || message.type_id != AMF0_COMMAND {
            return Ok(message);
        }
        let Ok(RtmpMessage::Amf0Command {
            command_name,
            transaction_id,
            command_object: Amf0Value::Object(mut properties),
            additional_arguments,
        }) = message.to_rtmp_message()
        else {
            return Ok(message);
        };
        if command_name != "_result" {
            return Ok(message);
        }
        self.amend_connect = false;
        super::caps::answer(&mut properties);
        let amended = RtmpMessage::Amf0Command {
            command_name,
            transaction_id,
            command_object: Amf0Value::Object(properties),
            additional_arguments,
        };
        amended
            .into_message_payload(message.timestamp, message.message_stream_id)
            .map_err(fail)
    }
}

/// An `onStatus` sent as a data message (rml_rtmp's `NetStream.Data.Start`): its name is
/// AMF0 string `onStatus` at the start of the body.
fn is_data_status(message: &MessagePayload) -> bool {
    const NAME: &[u8] = b"\x02\x00\x08onStatus";
    message.type_id == AMF0_DATA && message.data.starts_with(NAME)
}

fn fail(err: impl std::fmt::Display) -> OutputError {
    OutputError(err.to_string())
}

/// The messages in `bytes` (type, timestamp, body), as a peer reads them: for tests.
#[cfg(test)]
pub(super) fn messages(bytes: &[u8]) -> Vec<(u8, u32, bytes::Bytes)> {
    messages_after(&[], bytes)
}

/// The messages in `bytes`, read by a peer that read `before` first: for tests.
#[cfg(test)]
pub(super) fn messages_after(before: &[u8], bytes: &[u8]) -> Vec<(u8, u32, bytes::Bytes)> {
    let all = [before, bytes].concat();
    let skip = messages_in(before).len();
    messages_in(&all).into_iter().skip(skip).collect()
}

#[cfg(test)]
fn messages_in(bytes: &[u8]) -> Vec<(u8, u32, bytes::Bytes)> {
    let mut read = ChunkDeserializer::new();
    let mut out = Vec::new();
    let mut input = bytes;
    while let Ok(Some(message)) = read.get_next_message(input) {
        input = &[];
        if message.type_id == SET_CHUNK_SIZE {
            let size = u32::from_be_bytes([
                message.data[0],
                message.data[1],
                message.data[2],
                message.data[3],
            ]);
            let _ = read.set_max_chunk_size(size as usize);
        }
        out.push((message.type_id, message.timestamp.value, message.data));
    }
    out
}
