//! An HTTP-FLV pull as a sans-IO client: the request ([`FlvPull::request`]), then the
//! response read from the bytes the driver hands in ([`FlvPull::handle_input`]): its head
//! (status 200, or the reason it is not), its body (plain, or in chunks: origins that keep
//! the connection open send `Transfer-Encoding: chunked`), and the FLV tags in it, read by
//! the FLV reader that `flv::reader` fuzzes, as [`Pulled`] events.
//!
//! Bounds: the head ([`MAX_HEAD`]), a chunk-size line ([`MAX_CHUNK_LINE`]), a tag (the
//! caller's, `rtmp.max_message_bytes` as for a publisher's messages). A response that breaks
//! its protocol or a bound ends the pull with [`PullError::Protocol`].

use super::{PullError, Pulled};
use crate::flv::reader::{FlvReader, TagKind};
use crate::media::UnitKind;
use crate::net::host::Host;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// Longest chunk-size line accepted (with its extensions).
pub const MAX_CHUNK_LINE: usize = 1024;

/// Where the response's body framing stands (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The body runs to the end of the connection.
    Plain,
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF, this many bytes left.
    DataEnd(u8),
    /// The last chunk came: the response is complete.
    Done,
}

/// One HTTP-FLV pull's response.
#[derive(Debug)]
pub struct FlvPull {
    /// The head read so far; `None` once it was read.
    head: Option<Vec<u8>>,
    /// The body's framing.
    framing: Framing,
    /// A chunk-size line read so far.
    line: Vec<u8>,
    /// The FLV stream.
    reader: FlvReader,
}

impl FlvPull {
    /// The request for `path` (with its query) from the server `host`.
    pub fn request(host: &Host, path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast/{}\r\nAccept: \
             video/x-flv\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes()
    }

    /// A pull whose tags are at most `max_tag_bytes`.
    pub fn new(max_tag_bytes: usize) -> Self {
        FlvPull {
            head: Some(Vec::new()),
            framing: Framing::Plain,
            line: Vec::new(),
            reader: FlvReader::with_max_tag_size(max_tag_bytes),
        }
    }

    /// Bytes held: the head or chunk line being read, the FLV bytes not yet a whole tag.
    pub fn buffered_bytes(&self) -> usize {
        self.head.as_ref().map_or(0, Vec::len) + self.line.len() + self.reader.buffered_len()
    }

    /// Takes the bytes the origin sent next; what they complete, in order.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<Vec<Pulled>, PullError> {
        let mut body = bytes;
        let rest;
        if let Some(head) = self.head.as_mut() {
            head.extend_from_slice(bytes);
            let Some(len) = self.read_head()? else {
                return Ok(Vec::new());
            };
            rest = self.head.take().unwrap_or_default().split_off(len);
            body = &rest;
        }
        let mut out = Vec::new();
        self.read_body(body, &mut out)?;
        Ok(out)
    }

    /// Reads the head, once complete: its length, after checking the status and framing.
    fn read_head(&mut self) -> Result<Option<usize>, PullError> {
        let Some(head) = self.head.as_ref() else {
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(head) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => {
                return Err(PullError::Protocol(format!(
                    "a response head over {MAX_HEAD} bytes"
                )))
            }
            Err(err) => return Err(PullError::Protocol(format!("response head: {err}"))),
        };
        match response.code.unwrap_or(0) {
            200 => {}
            404 => return Err(PullError::NotFound("404".into())),
            code => {
                let reason = response.reason.unwrap_or_default();
                return Err(PullError::Refused(format!("HTTP {code} {reason}")));
            }
        }
        let chunked = response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked")
        });
        self.framing = match chunked {
            true => Framing::Size,
            false => Framing::Plain,
        };
        Ok(Some(len))
    }

    /// Reads body bytes: the chunk framing off, the FLV tags out.
    fn read_body(&mut self, mut input: &[u8], out: &mut Vec<Pulled>) -> Result<(), PullError> {
        while !input.is_empty() {
            match self.framing {
                Framing::Plain => {
                    self.reader.push(input);
                    input = &[];
                }
                Framing::Size => {
                    let end = input.iter().position(|&b| b == b'\n');
                    let take = end.map_or(input.len(), |at| at + 1);
                    self.line.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err(PullError::Protocol("a chunk-size line too long".into()));
                    }
                    if end.is_some() {
                        let size = match httparse::parse_chunk_size(&self.line) {
                            Ok(httparse::Status::Complete((_, size))) => size,
                            _ => return Err(PullError::Protocol("a bad chunk size".into())),
                        };
                        self.line.clear();
                        self.framing = match size {
                            0 => Framing::Done,
                            size => Framing::Data(size),
                        };
                    }
                }
                Framing::Data(left) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.reader.push(&input[..take]);
                    input = &input[take..];
                    self.framing = match left - take as u64 {
                        0 => Framing::DataEnd(2),
                        left => Framing::Data(left),
                    };
                }
                Framing::DataEnd(left) => {
                    input = &input[1..];
                    self.framing = match left {
                        1 => Framing::Size,
                        _ => Framing::DataEnd(left - 1),
                    };
                }
                Framing::Done => input = &[],
            }
            self.take_tags(out)?;
        }
        if self.framing == Framing::Done {
            out.push(Pulled::Ended("the origin ended its response".into()));
        }
        Ok(())
    }

    /// The complete tags read, as events.
    fn take_tags(&mut self, out: &mut Vec<Pulled>) -> Result<(), PullError> {
        loop {
            let tag = self
                .reader
                .next_tag()
                .map_err(|err| PullError::Protocol(err.to_string()))?;
            let Some(tag) = tag else {
                return Ok(());
            };
            let kind = match tag.kind {
                TagKind::Audio => UnitKind::Audio,
                TagKind::Video => UnitKind::Video,
                TagKind::Script => {
                    if let Some(metadata) = crate::rtmp::amf::stream_metadata(18, &tag.data) {
                        out.push(Pulled::Metadata(Box::new(metadata)));
                    }
                    continue;
                }
                TagKind::Other(_) => continue,
            };
            out.push(Pulled::Media {
                kind,
                timestamp: tag.timestamp,
                body: (&tag.data).into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::{file_header, tag};

    /// An FLV stream: header, then a script, a video and an audio tag.
    fn flv() -> Vec<u8> {
        let mut out = file_header(true, true).to_vec();
        let metadata = b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09";
        for (kind, ts, body) in [
            (UnitKind::Script, 0u32, &metadata[..]),
            (UnitKind::Video, 0, &[0x17, 0, 0, 0, 0, 1][..]),
            (UnitKind::Audio, 23, &[0xaf, 1, 0x21][..]),
        ] {
            out.extend_from_slice(&tag(kind, ts, body));
        }
        out
    }

    fn media(events: &[Pulled]) -> Vec<(UnitKind, u32, usize)> {
        events
            .iter()
            .filter_map(|e| match e {
                Pulled::Media {
                    kind,
                    timestamp,
                    body,
                } => Some((*kind, *timestamp, body.len())),
                _ => None,
            })
            .collect()
    }

    /// Feeds `response` cut at every `step` bytes; every event.
    fn feed(response: &[u8], step: usize) -> Result<Vec<Pulled>, PullError> {
        let mut pull = FlvPull::new(1 << 20);
        let mut events = Vec::new();
        for piece in response.chunks(step) {
            events.extend(pull.handle_input(piece)?);
        }
        Ok(events)
    }

    #[test]
    fn a_plain_and_a_chunked_body_give_the_same_tags_however_cut() {
        let body = flv();
        let plain = [
            &b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n"[..],
            &body,
        ]
        .concat();
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(7) {
            chunked.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let expected = vec![(UnitKind::Video, 0, 6), (UnitKind::Audio, 23, 3)];
        for step in [1, 2, 5, 64, 4096] {
            let events = feed(&plain, step).unwrap();
            assert_eq!(media(&events), expected, "plain, step {step}");
            assert!(matches!(events[0], Pulled::Metadata(_)), "{events:?}");
            let events = feed(&chunked, step).unwrap();
            assert_eq!(media(&events), expected, "chunked, step {step}");
            assert!(
                matches!(events.last(), Some(Pulled::Ended(_))),
                "{events:?}"
            );
        }
    }

    #[test]
    fn statuses_and_bad_framing_end_the_pull() {
        let not_found = feed(b"HTTP/1.1 404 Not Found\r\n\r\n", 3);
        assert!(
            matches!(not_found, Err(PullError::NotFound(_))),
            "{not_found:?}"
        );
        let looped = feed(b"HTTP/1.1 508 Loop Detected\r\n\r\n", 100);
        assert!(
            matches!(&looped, Err(PullError::Refused(r)) if r.contains("508")),
            "{looped:?}"
        );
        let long_head = [&b"HTTP/1.1 200 OK\r\nX: "[..], &[b'a'; MAX_HEAD]].concat();
        assert!(matches!(
            feed(&long_head, 1000),
            Err(PullError::Protocol(_))
        ));
        let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(feed(bad_size, 4), Err(PullError::Protocol(_))));
        let long_line = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..],
            &[b'x'; MAX_CHUNK_LINE],
        ]
        .concat();
        assert!(matches!(feed(&long_line, 100), Err(PullError::Protocol(_))));
        let not_flv = b"HTTP/1.1 200 OK\r\n\r\n<html><body>not a stream</body></html>";
        assert!(matches!(feed(not_flv, 100), Err(PullError::Protocol(_))));
        // A tag over the bound.
        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.extend_from_slice(file_header(true, true));
        big.extend_from_slice(&tag(UnitKind::Video, 0, &vec![0x17; 2 << 20]));
        assert!(matches!(feed(&big, 65536), Err(PullError::Protocol(_))));
    }
}
