//! The one MPEG-TS reader of the tests, benchmarks and load generator.
//!
//! The packet layer is the `mpeg2ts` crate's: [`TsReader`] hands each 188-byte packet to
//! its [`TsPacketReader`], which parses the header (PID, continuity counter, flags), the
//! adaptation field (PCR), PAT and PMT sections (CRC checked) and PES headers (PTS, DTS),
//! and learns from the PAT and PMT which PIDs carry tables and which carry PES packets.
//! What this module adds is what `mpeg2ts` leaves to its callers:
//!
//! - [`packets`]: the packets of a buffer, found by their sync byte (a buffer that lost sync
//!   is read on from the next sync byte, a trailing partial packet is dropped);
//! - [`TsReader`]: one packet at a time, with the program tables remembered from one call
//!   (and so one segment) to the next, and a packet `mpeg2ts` refuses reported as an error
//!   that leaves the reader usable;
//! - [`nal_units`] and [`nal_type`]: the Annex B NAL units of an H.264 elementary stream.
//!
//! Two kinds of callers use it: `tests/common/ts_check.rs`, for which every fault is an
//! assertion, and the load generator's `StampReader`, which must never panic on what a
//! server sends and reads what it can.

use mpeg2ts::ts::{ReadTsPacket, TsPacket, TsPacketReader};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;

pub use mpeg2ts::ts::TsPayload;

/// TS packet size.
pub const PACKET_SIZE: usize = 188;
/// TS sync byte, the first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;

/// The TS packets of `buf` (see [`Packets`]).
pub fn packets(buf: &[u8]) -> Packets<'_> {
    Packets(buf)
}

/// TS packets of a buffer, resynchronising on the sync byte; a trailing partial packet is
/// dropped.
#[derive(Debug, Clone)]
pub struct Packets<'a>(&'a [u8]);

impl<'a> Iterator for Packets<'a> {
    type Item = &'a [u8; PACKET_SIZE];

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (packet, rest) = self.0.split_first_chunk::<PACKET_SIZE>()?;
            if packet[0] == SYNC_BYTE {
                self.0 = rest;
                return Some(packet);
            }
            let skip = self.0[1..].iter().position(|&b| b == SYNC_BYTE)?;
            self.0 = &self.0[1 + skip..];
        }
    }
}

/// Why [`TsReader::read`] could not read a packet.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `mpeg2ts` refused the packet: a bad header, adaptation field, section (CRC
    /// included) or PES header, or a PID that no PAT or PMT read so far lists.
    #[error("{0}")]
    Ts(#[from] mpeg2ts::Error),
    /// `mpeg2ts` found no packet in the 188 bytes it was given.
    #[error("no TS packet")]
    NoPacket,
}

/// The bytes [`TsReader`] gives its `mpeg2ts` reader: the packet being read, shared with
/// the reader, which owns its byte source.
#[derive(Debug, Clone, Default)]
struct Source(Rc<RefCell<VecDeque<u8>>>);

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Reads TS packets one at a time with `mpeg2ts`. The PIDs that the PAT and PMT read so far
/// list are remembered from one call to the next: a segment without tables is read with those
/// of the segments before it, as a player would.
#[derive(Debug)]
pub struct TsReader {
    /// The packet being read; empty between calls.
    source: Source,
    /// `mpeg2ts`'s reader over `source`: it keeps the PIDs of tables and PES streams.
    inner: TsPacketReader<Source>,
}

impl Default for TsReader {
    fn default() -> Self {
        TsReader::new()
    }
}

impl TsReader {
    /// A reader that knows no program yet.
    pub fn new() -> Self {
        let source = Source::default();
        TsReader {
            inner: TsPacketReader::new(source.clone()),
            source,
        }
    }

    /// Parses one packet. A packet in error leaves the reader as it was, ready for the
    /// next one.
    pub fn read(&mut self, packet: &[u8; PACKET_SIZE]) -> Result<TsPacket, ReadError> {
        self.source.0.borrow_mut().extend(packet);
        let read = self.inner.read_ts_packet();
        // What `mpeg2ts` did not consume of a packet it refused.
        self.source.0.borrow_mut().clear();
        read?.ok_or(ReadError::NoPacket)
    }
}

/// The NAL units of an Annex B byte stream (start codes and trailing zero bytes removed).
pub fn nal_units(es: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = find_start_code(es).map_or(&[][..], |i| &es[i + 3..]);
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut nal = match find_start_code(rest) {
            Some(i) => {
                let nal = &rest[..i];
                rest = &rest[i + 3..];
                nal
            }
            None => std::mem::take(&mut rest),
        };
        while let [head @ .., 0] = nal {
            nal = head;
        }
        Some(nal)
    })
}

/// The H.264 `nal_unit_type` of a NAL unit; 0 (unspecified) for an empty one.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Where the next 3-byte start code begins.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_units() {
        let es = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 6, 5, 0, 0, 0, 0, 1, 0x41, 0, 0, 3, 1,
        ];
        let units: Vec<&[u8]> = nal_units(&es).collect();
        assert_eq!(units, vec![&[9, 0xf0][..], &[6, 5], &[0x41, 0, 0, 3, 1]]);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        let types: Vec<u8> = nal_units(&es).map(nal_type).collect();
        assert_eq!(types, vec![9, 6, 1]);
        assert_eq!(nal_type(&[]), 0);
    }

    #[test]
    fn packets_resynchronise_and_drop_a_partial_tail() {
        let mut buf = vec![0x00, 0x12];
        for fill in [1u8, 2, 3] {
            buf.push(SYNC_BYTE);
            buf.extend(std::iter::repeat_n(fill, PACKET_SIZE - 1));
        }
        buf.extend_from_slice(&[SYNC_BYTE, 4, 4]);
        let fills: Vec<u8> = packets(&buf).map(|p| p[1]).collect();
        assert_eq!(fills, vec![1, 2, 3]);
    }

    #[test]
    fn a_refused_packet_leaves_the_reader_usable() {
        let mut reader = TsReader::new();
        // PID 0x100, payload only: no PAT has listed it.
        let mut unknown = [0xffu8; PACKET_SIZE];
        unknown[..4].copy_from_slice(&[SYNC_BYTE, 0x01, 0x00, 0x10]);
        assert!(reader.read(&unknown).is_err());
        // A null packet (PID 0x1fff) reads.
        let mut null = [0xffu8; PACKET_SIZE];
        null[..4].copy_from_slice(&[SYNC_BYTE, 0x1f, 0xff, 0x10]);
        let packet = reader.read(&null).unwrap();
        assert_eq!(packet.header.pid.as_u16(), 0x1fff);
    }
}
