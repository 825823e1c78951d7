//! AMF0 nesting scanner (pure, iterative): how deeply the values of an RTMP message nest, read
//! as rml_rtmp's AMF0 reader reads them, before that reader sees the message.
//!
//! rml_rtmp decodes the payload of command (20), data (18) and "AMF3" command (17) and data
//! (15) messages with rml_amf0's reader, which is recursive: one nested object, ECMA array
//! or strict array costs it three stack frames (two for a strict array), about 0.7 KB of
//! stack in a release build. Measured on a 2 MiB thread stack (the default of a spawned Rust
//! thread), it overflows at 3,109 nested objects (4 bytes each: a 12 KB message) or ECMA
//! arrays, and at 8,161 strict arrays; on 8 MiB at 12,471 objects (a 50 KB message, under
//! the 64 KiB a connection may send before publishing); a debug build overflows 2 MiB at
//! 752 ECMA arrays.
//! A stack overflow aborts the process, and `catch_unwind` cannot contain it.
//!
//! [`Nesting`] reads the payload as it arrives, chunk by chunk, with an explicit stack of at
//! most [`MAX_AMF_DEPTH`] open containers, and refuses the message at the byte that would
//! open one more, whatever the chunking. It follows the reader's grammar exactly (markers
//! it knows, an object end marker ending the top-level values or a strict array early, a
//! strict array's count, an ECMA array's ignored count) and stops where the reader stops (an
//! unknown marker, a misplaced object end marker). It does not check UTF-8, so it may read
//! on where the reader fails on a string: it can only see deeper than the reader, never
//! less deep. The other message types are not AMF to rml_rtmp: shared objects (16, 19) reach
//! corecast as unhandled messages, which it ignores, and AMF3 is never decoded (an AMF3
//! value in a type 15 or 17 message is an unknown AMF0 marker to the reader).

use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::sessions::StreamMetadata;

/// Most AMF values a message may hold inside one another (containers open at once). Real
/// metadata and commands nest 1 to 3 levels (`connect`'s command object, onMetaData's ECMA
/// array, an encoder's track list); rml_rtmp's reader overflows a 2 MiB stack past 3,108
/// (release) or 751 (debug) levels. Overflow action: the message is refused
/// ([`crate::rtmp::guard::GuardError::AmfTooDeep`]) and the connection closed.
pub const MAX_AMF_DEPTH: usize = 32;

/// True for the message types whose payload rml_rtmp decodes with its AMF0 reader
/// (`MessagePayload::to_rtmp_message`).
pub fn decoded_as_amf0(type_id: u8) -> bool {
    matches!(type_id, 15 | 17 | 18 | 20)
}

/// The message type rml_rtmp reads as AMF0 after dropping one leading 0x00 byte, if any.
pub(crate) const AMF3_COMMAND: u8 = 17;

/// AMF0 markers rml_amf0 reads; any other marker is an error to it.
const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;

/// A message nests deeper than [`MAX_AMF_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AMF values nested deeper than {MAX_AMF_DEPTH} levels")]
pub struct TooDeep;

/// An open container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// An object or ECMA array: properties (key, value) until an empty key and 0x09.
    Object,
    /// A strict array with `left` elements still to read.
    Strict { left: u32 },
}

/// What a big-endian integer being read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Int {
    /// A string value's length: the string follows.
    StringLength,
    /// An object property's key length: the key follows, or (0) the object end marker.
    KeyLength,
    /// An ECMA array's count (ignored by the reader): the properties follow.
    EcmaCount,
    /// A strict array's count: that many values follow.
    StrictCount,
}

/// What comes after skipped bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// A value is complete.
    ValueDone,
    /// A key is complete: its value follows.
    KeyDone,
}

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Before the first byte of a type 17 message, which the reader drops when it is 0x00.
    Lead,
    /// A value's marker: at the top level, as a property value, or as an array element.
    Marker,
    /// Reading a `len`-byte big-endian integer, `have` bytes so far.
    Int {
        of: Int,
        value: u32,
        have: u8,
        len: u8,
    },
    /// Skipping `left` bytes (a number, a boolean, a string, a key).
    Skip { left: u32, then: Then },
    /// After an empty key: the object end marker.
    ObjectEnd,
    /// The reader stops here (its values ended, or it fails): the rest is not read.
    Stopped,
}

/// The nesting scanner of one message.
#[derive(Debug, Clone)]
pub struct Nesting {
    step: Step,
    /// Open containers, innermost last (`depth` of them).
    stack: [Frame; MAX_AMF_DEPTH],
    depth: usize,
    /// The deepest nesting seen.
    deepest: usize,
}

impl Nesting {
    /// A scanner for the payload of a message of type `type_id` (one that
    /// [`decoded_as_amf0`]).
    pub fn new(type_id: u8) -> Self {
        Nesting {
            step: if type_id == AMF3_COMMAND {
                Step::Lead
            } else {
                Step::Marker
            },
            stack: [Frame::Object; MAX_AMF_DEPTH],
            depth: 0,
            deepest: 0,
        }
    }

    /// The deepest nesting read so far (containers open at once).
    pub fn deepest(&self) -> usize {
        self.deepest
    }

    /// Reads the next payload bytes. After an error the scanner must not be used.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), TooDeep> {
        let mut pos = 0;
        while pos < bytes.len() {
            match self.step {
                Step::Stopped => return Ok(()),
                Step::Skip { left, then } => {
                    let take = (bytes.len() - pos).min(left as usize);
                    pos += take;
                    self.step = self.skip(left - take as u32, then);
                }
                Step::Lead => {
                    if bytes[pos] == 0 {
                        pos += 1;
                    }
                    self.step = Step::Marker;
                }
                Step::Marker => {
                    self.step = self.marker(bytes[pos])?;
                    pos += 1;
                }
                Step::Int {
                    of,
                    value,
                    have,
                    len,
                } => {
                    let value = value << 8 | u32::from(bytes[pos]);
                    pos += 1;
                    self.step = if have + 1 < len {
                        Step::Int {
                            of,
                            value,
                            have: have + 1,
                            len,
                        }
                    } else {
                        self.int_done(of, value)?
                    };
                }
                Step::ObjectEnd => {
                    self.step = if bytes[pos] == OBJECT_END {
                        self.depth -= 1;
                        self.value_done()
                    } else {
                        Step::Stopped
                    };
                    pos += 1;
                }
            }
        }
        Ok(())
    }

    /// A value's marker.
    fn marker(&mut self, marker: u8) -> Result<Step, TooDeep> {
        let int = |of, len| Step::Int {
            of,
            value: 0,
            have: 0,
            len,
        };
        Ok(match marker {
            NUMBER => Step::Skip {
                left: 8,
                then: Then::ValueDone,
            },
            BOOLEAN => Step::Skip {
                left: 1,
                then: Then::ValueDone,
            },
            NULL | UNDEFINED => self.value_done(),
            STRING => int(Int::StringLength, 2),
            OBJECT => {
                self.open(Frame::Object)?;
                int(Int::KeyLength, 2)
            }
            ECMA_ARRAY => int(Int::EcmaCount, 4),
            STRICT_ARRAY => int(Int::StrictCount, 4),
            // Ends the top-level values and a strict array early; a property without a
            // value is an error to the reader.
            OBJECT_END => match self.top() {
                Some(Frame::Strict { .. }) => {
                    self.depth -= 1;
                    self.value_done()
                }
                _ => Step::Stopped,
            },
            _ => Step::Stopped,
        })
    }

    /// A complete integer.
    fn int_done(&mut self, of: Int, value: u32) -> Result<Step, TooDeep> {
        Ok(match of {
            Int::StringLength => self.skip(value, Then::ValueDone),
            Int::KeyLength if value == 0 => Step::ObjectEnd,
            Int::KeyLength => self.skip(value, Then::KeyDone),
            Int::EcmaCount => {
                self.open(Frame::Object)?;
                Step::Int {
                    of: Int::KeyLength,
                    value: 0,
                    have: 0,
                    len: 2,
                }
            }
            Int::StrictCount => {
                self.open(Frame::Strict { left: value })?;
                if value == 0 {
                    self.depth -= 1;
                    self.value_done()
                } else {
                    Step::Marker
                }
            }
        })
    }

    /// Skips `left` bytes, then goes on as `then` says.
    fn skip(&mut self, left: u32, then: Then) -> Step {
        match (left, then) {
            (0, Then::ValueDone) => self.value_done(),
            (0, Then::KeyDone) => Step::Marker,
            (left, then) => Step::Skip { left, then },
        }
    }

    /// Opens a container, unless that would nest deeper than the bound.
    fn open(&mut self, frame: Frame) -> Result<(), TooDeep> {
        let slot = self.stack.get_mut(self.depth).ok_or(TooDeep)?;
        *slot = frame;
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        Ok(())
    }

    fn top(&self) -> Option<Frame> {
        self.depth.checked_sub(1).map(|i| self.stack[i])
    }

    /// A value is complete: what its container (or the top level) expects next, closing
    /// strict arrays whose last element it was.
    fn value_done(&mut self) -> Step {
        loop {
            match self.top() {
                None => return Step::Marker,
                Some(Frame::Object) => {
                    return Step::Int {
                        of: Int::KeyLength,
                        value: 0,
                        have: 0,
                        len: 2,
                    }
                }
                Some(Frame::Strict { left }) if left > 1 => {
                    self.stack[self.depth - 1] = Frame::Strict { left: left - 1 };
                    return Step::Marker;
                }
                Some(Frame::Strict { .. }) => self.depth -= 1,
            }
        }
    }
}

/// The metadata of an `onMetaData` data message (message type `type_id`, 18 or 15), with or
/// without `@setDataFrame` before it; `None` for other data, and for values nested deeper
/// than [`MAX_AMF_DEPTH`] (checked here, before rml_amf0's recursive reader sees them).
pub fn stream_metadata(type_id: u8, payload: &[u8]) -> Option<StreamMetadata> {
    Nesting::new(type_id).read(payload).ok()?;
    let values = rml_amf0::deserialize(&mut std::io::Cursor::new(payload)).ok()?;
    let is = |value: &Amf0Value, name: &str| matches!(value, Amf0Value::Utf8String(s) if s == name);
    let mut values = values.into_iter().peekable();
    values.next_if(|first| is(first, "@setDataFrame"));
    if !is(&values.next()?, "onMetaData") {
        return None;
    }
    let mut metadata = StreamMetadata::new();
    if let Some(properties) = values.next().and_then(Amf0Value::get_object_properties) {
        metadata.apply_metadata_values(properties);
    }
    Some(metadata)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{self, Amf0Value};
    use rml_rtmp::sessions::{ServerSession, ServerSessionConfig};
    use std::collections::HashMap;

    /// Nesting of decoded values (recursive: only for values within the bound).
    fn depth(value: &Amf0Value) -> usize {
        match value {
            Amf0Value::Object(properties) => 1 + properties.values().map(depth).max().unwrap_or(0),
            Amf0Value::StrictArray(values) => 1 + values.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// `levels` containers of `kind` (0 object, 1 ECMA array, 2 strict array), each holding
    /// the next, around a null: all ASCII, so that it may also stand as a string or key.
    pub(crate) fn nested(kind: usize, levels: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..levels {
            match kind {
                0 => out.extend_from_slice(&[OBJECT, 0, 1, b'a']),
                1 => out.extend_from_slice(&[ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'a']),
                _ => out.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]),
            }
        }
        out.push(NULL);
        for _ in 0..levels {
            if kind < 2 {
                out.extend_from_slice(&[0, 0, OBJECT_END]);
            }
        }
        out
    }

    fn scan(type_id: u8, bytes: &[u8], piece: usize) -> Result<usize, TooDeep> {
        let mut nesting = Nesting::new(type_id);
        for chunk in bytes.chunks(piece.max(1)) {
            nesting.read(chunk)?;
        }
        Ok(nesting.deepest())
    }

    /// Values of every kind the reader knows, nested a few levels, as encoders send them.
    fn realistic() -> Vec<Amf0Value> {
        let track = Amf0Value::Object(HashMap::from([
            ("type".to_string(), Amf0Value::Utf8String("video".into())),
            ("id".to_string(), Amf0Value::Number(1.0)),
            ("default".to_string(), Amf0Value::Boolean(true)),
            ("lang".to_string(), Amf0Value::Null),
            ("x".to_string(), Amf0Value::Undefined),
        ]));
        vec![
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(HashMap::from([
                ("width".to_string(), Amf0Value::Number(1280.0)),
                ("encoder".to_string(), Amf0Value::Utf8String("obs".into())),
                (
                    "trackinfo".to_string(),
                    Amf0Value::StrictArray(vec![track.clone(), Amf0Value::StrictArray(vec![])]),
                ),
                ("empty".to_string(), Amf0Value::Object(HashMap::new())),
            ])),
            Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), track]),
        ]
    }

    #[test]
    fn measures_what_the_reader_decodes_in_any_pieces() {
        let values = realistic();
        let bytes = rml_amf0::serialize(&values).unwrap();
        let expected = values.iter().map(depth).max().unwrap();
        assert_eq!(expected, 3);
        for piece in [1, 2, 3, 5, 7, bytes.len()] {
            assert_eq!(scan(20, &bytes, piece), Ok(expected), "pieces of {piece}");
        }
    }

    #[test]
    fn accepts_the_bound_and_refuses_one_more_level() {
        for kind in 0..3 {
            let at_bound = nested(kind, MAX_AMF_DEPTH);
            let decoded = rml_amf0::deserialize(&mut &at_bound[..]).unwrap();
            assert_eq!(depth(&decoded[0]), MAX_AMF_DEPTH);
            for piece in [1, 3, at_bound.len()] {
                assert_eq!(scan(18, &at_bound, piece), Ok(MAX_AMF_DEPTH));
                assert_eq!(
                    scan(18, &nested(kind, MAX_AMF_DEPTH + 1), piece),
                    Err(TooDeep)
                );
            }
            // Refused as soon as the level past the bound opens, with the rest not sent.
            let deep = nested(kind, 10_000);
            assert_eq!(scan(20, &deep[..deep.len() / 2], 4096), Err(TooDeep));
        }
    }

    #[test]
    fn type_17_drops_one_leading_zero_as_rml_rtmp_does() {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&nested(0, MAX_AMF_DEPTH));
        assert_eq!(scan(17, &bytes, 1), Ok(MAX_AMF_DEPTH));
        // Without the leading zero the payload is read whole.
        assert_eq!(scan(17, &nested(2, MAX_AMF_DEPTH + 1)[..], 2), Err(TooDeep));
        // For other types the zero is a number marker: the number swallows 8 bytes.
        assert_eq!(scan(20, &bytes, 1), Ok(MAX_AMF_DEPTH - 2));
    }

    #[test]
    fn follows_the_reader_where_values_end_early() {
        // An object end marker ends the top-level values: what follows is not read.
        let mut bytes = vec![NULL, OBJECT_END];
        bytes.extend_from_slice(&nested(0, MAX_AMF_DEPTH + 1));
        assert_eq!(scan(20, &bytes, 1), Ok(0));
        assert_eq!(rml_amf0::deserialize(&mut &bytes[..]).unwrap().len(), 1);
        // ... and ends a strict array early, whatever its count.
        let mut bytes = vec![STRICT_ARRAY, 0, 0, 0, 9, OBJECT_END];
        bytes.extend_from_slice(&nested(2, MAX_AMF_DEPTH));
        assert_eq!(scan(20, &bytes, 1), Ok(MAX_AMF_DEPTH));
        let decoded = rml_amf0::deserialize(&mut &bytes[..]).unwrap();
        assert_eq!(decoded.iter().map(depth).max(), Some(MAX_AMF_DEPTH));
        // A strict array of count 0 holds nothing: the next value is a sibling.
        let mut bytes = vec![STRICT_ARRAY, 0, 0, 0, 0];
        bytes.extend_from_slice(&nested(2, MAX_AMF_DEPTH));
        assert_eq!(scan(20, &bytes, 1), Ok(MAX_AMF_DEPTH));
        // An unknown marker (an AMF3 switch, a date) stops the reader.
        for marker in [0x11u8, 0x0b, 0x0c, 0x04] {
            let mut bytes = vec![OBJECT, 0, 1, b'a', marker];
            bytes.extend_from_slice(&nested(0, MAX_AMF_DEPTH + 1));
            assert_eq!(scan(20, &bytes, 1), Ok(1));
            assert!(rml_amf0::deserialize(&mut &bytes[..]).is_err());
        }
    }

    /// Found by the `amf0` fuzz target (its check was too strict): the reader reads every
    /// property, but keeps only the last of those with the same key, so the values it
    /// returns may nest less deeply than it recursed, and than the scanner counts.
    #[test]
    fn counts_the_nesting_the_reader_reads_not_the_one_it_keeps() {
        let mut bytes = vec![OBJECT, 0, 1, b'a'];
        bytes.extend_from_slice(&nested(2, 17));
        bytes.extend_from_slice(&[0, 1, b'a', NULL, 0, 0, OBJECT_END]);
        assert_eq!(scan(18, &bytes, 1), Ok(18));
        let decoded = rml_amf0::deserialize(&mut &bytes[..]).unwrap();
        assert_eq!(decoded.iter().map(depth).max(), Some(1));
    }

    #[test]
    fn strings_and_keys_are_skipped_whole() {
        // Bytes that look like containers inside a string or a key are not containers.
        let fake = nested(0, 100);
        let mut bytes = vec![STRING];
        bytes.extend_from_slice(&(fake.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&fake);
        bytes.extend_from_slice(&[OBJECT]);
        bytes.extend_from_slice(&(fake.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&fake);
        bytes.extend_from_slice(&[NULL, 0, 0, OBJECT_END]);
        assert_eq!(scan(18, &bytes, 7), Ok(1));
        assert_eq!(rml_amf0::deserialize(&mut &bytes[..]).unwrap().len(), 2);
    }

    /// The bound leaves a wide margin: on a thread with a shard's stack, rml_rtmp's session
    /// decodes sixteen times as many levels of each kind (in this build, debug or release;
    /// a debug build needs about four times the stack per level).
    #[test]
    fn rml_rtmp_decodes_far_past_the_bound_on_a_shard_stack() {
        let levels = 16 * MAX_AMF_DEPTH;
        let run = move || {
            for kind in 0..3 {
                let mut body = vec![STRING, 0, 4];
                body.extend_from_slice(b"deep");
                body.extend_from_slice(&[NUMBER, 0, 0, 0, 0, 0, 0, 0, 0]);
                body.extend_from_slice(&nested(kind, levels));
                let mut input = vec![3, 0, 0, 0];
                input.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
                input.extend_from_slice(&[20, 0, 0, 0, 0]);
                for (i, piece) in body.chunks(128).enumerate() {
                    if i > 0 {
                        input.push(0xc3);
                    }
                    input.extend_from_slice(piece);
                }
                let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
                crate::rtmp::session_input(&mut session, &input).unwrap();
            }
        };
        std::thread::Builder::new()
            .stack_size(crate::server::SHARD_STACK_BYTES)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn decoded_types_are_rml_rtmps() {
        let amf: Vec<u8> = (0..=255).filter(|&t| decoded_as_amf0(t)).collect();
        assert_eq!(amf, vec![15, 17, 18, 20]);
    }
}
