//! Test fixtures shared by the HLS and LL-HLS modules' tests: FLV frames carrying SEI stamps,
//! MPEG-TS segments from corecast's own muxer, and a scripted HTTP server.

use super::Step;
use crate::sei;
use corecast::hls::ts::TsMuxer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;

/// AVC sequence header with one 4-byte SPS and one 2-byte PPS, 4-byte NALU lengths.
pub(crate) const AVC_CONFIG: &[u8] = &[
    0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
];
/// AAC-LC, 44.1 kHz, mono.
pub(crate) const AAC_CONFIG: &[u8] = &[0xaf, 0, 0x12, 0x08];

/// An FLV AVC NALU body with one slice of `size` bytes, stamped with `stamp` if given.
pub(crate) fn frame(key: bool, size: usize, stamp: Option<u64>) -> Vec<u8> {
    let mut nal = vec![if key { 0x65 } else { 0x41 }];
    // Slice data with zero runs, so that start-code emulation would show if mishandled.
    nal.extend((1..size).map(|i| if i % 7 < 3 { 0 } else { i as u8 | 1 }));
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    body.extend_from_slice(&nal);
    match stamp {
        Some(ns) => sei::stamp_flv_video(&body, ns),
        None => body,
    }
}

/// Stamps that exercise emulation prevention and every byte position.
pub(crate) fn stamp(i: u64) -> u64 {
    1_795_547_244_000_000_000 + i * 40_000_000 + (i % 4) * 0x0000_0300_0000_0001
}

/// A segment from corecast's own muxer: tables, then `frames` video frames (every 25th a
/// keyframe, every 5th unstamped, some larger than a TS packet) with AAC in between.
/// Returns the bytes and the stamps in order.
pub(crate) fn muxed_segment(
    muxer: &mut TsMuxer,
    tables: bool,
    first: u64,
    frames: u64,
) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    if tables {
        muxer.write_tables(&mut out).unwrap();
    }
    let mut stamps = Vec::new();
    for i in first..first + frames {
        let key = i % 25 == 0;
        let stamped = (i % 5 != 4).then(|| stamp(i));
        stamps.extend(stamped);
        let size = if key {
            3000
        } else {
            40 + (i as usize * 37) % 700
        };
        muxer
            .write_video(&mut out, i * 40, &frame(key, size, stamped), key)
            .unwrap();
        muxer
            .write_audio(&mut out, i * 40 + 10, &[0xaf, 1, 0x21, 0x10, 0x04])
            .unwrap();
    }
    (out, stamps)
}

pub(crate) fn muxer() -> TsMuxer {
    let mut muxer = TsMuxer::new();
    muxer.set_video_config(AVC_CONFIG).unwrap();
    muxer.set_audio_config(AAC_CONFIG).unwrap();
    muxer
}

/// The media sequence numbers a playlist load made due.
pub(crate) fn seqs(step: &Step) -> Vec<u64> {
    step.due.iter().map(|d| d.seq).collect()
}

/// A server on a thread that answers requests from `responses` (path, status, body;
/// 404 for others) and closes every connection after `per_connection` responses, saying
/// so in the last response's head if `announce`. Returns its address and the thread,
/// which ends after `connections` connections with the paths it answered.
pub(crate) fn scripted(
    responses: Vec<(String, u16, Vec<u8>)>,
    per_connection: usize,
    connections: usize,
    announce: bool,
) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..connections {
            let Ok((conn, _)) = listener.accept() else {
                break;
            };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut conn = conn;
            for served in 1..=per_connection {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header == "\r\n" {
                        break;
                    }
                }
                let path = line.split(' ').nth(1).unwrap().to_string();
                let (status, body) = responses
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map_or((404, Vec::new()), |(_, s, b)| (*s, b.clone()));
                let close = if served == per_connection && announce {
                    "close"
                } else {
                    "keep-alive"
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: {close}\r\n\r\n",
                    body.len()
                );
                conn.write_all(head.as_bytes()).unwrap();
                // The body in two writes, to exercise reads across them.
                let half = body.len() / 2;
                conn.write_all(&body[..half]).unwrap();
                conn.flush().unwrap();
                conn.write_all(&body[half..]).unwrap();
                asked.push(path);
            }
            // Close our side, and drop whatever the client still sends until it closes.
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let _ = reader.read_to_end(&mut Vec::new());
        }
        asked
    });
    (addr, thread)
}
