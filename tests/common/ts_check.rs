//! A small MPEG-TS checker for the HLS tests: structure, continuity, timestamps, IDR starts.

use std::collections::HashMap;

/// What the checker carries from one segment to the next of the same stream.
#[derive(Debug, Default)]
pub struct TsState {
    /// Last continuity counter per PID.
    cc: HashMap<u16, u8>,
    /// Last DTS (or PTS) per PID.
    last_dts: HashMap<u16, u64>,
}

/// Facts about one checked segment.
#[derive(Debug, Default)]
pub struct SegmentFacts {
    pub video_frames: usize,
    pub audio_frames: usize,
    /// First and last video DTS (90 kHz).
    pub video_span: Option<(u64, u64)>,
}

fn pes_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// NAL unit types in an Annex B buffer.
fn nal_types(es: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            types.push(es[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

/// The elementary PIDs a PMT packet (one section, in one packet) lists.
fn pmt_pids(packet: &[u8]) -> Vec<u16> {
    let start = match (packet[3] >> 4) & 0x03 {
        3 => 5 + usize::from(packet[4]),
        _ => 4,
    };
    let pointer = usize::from(packet[start]);
    let section = &packet[start + 1 + pointer..];
    let section_len = usize::from(u16::from_be_bytes([section[1] & 0x0f, section[2]]));
    let program_info_len = usize::from(u16::from_be_bytes([section[10] & 0x0f, section[11]]));
    let end = (3 + section_len).saturating_sub(4).min(section.len());
    let mut at = 12 + program_info_len;
    let mut pids = Vec::new();
    while at + 5 <= end {
        pids.push(u16::from_be_bytes([
            section[at + 1] & 0x1f,
            section[at + 2],
        ]));
        at += 5 + usize::from(u16::from_be_bytes([
            section[at + 3] & 0x0f,
            section[at + 4],
        ]));
    }
    pids
}

/// Checks one segment; `state` carries continuity across segments. Panics with a reason.
pub fn check_segment(
    seg: &[u8],
    state: &mut TsState,
    video_pid: u16,
    audio_pid: u16,
) -> SegmentFacts {
    assert!(
        !seg.is_empty() && seg.len() % 188 == 0,
        "length {} not a multiple of 188",
        seg.len()
    );
    let mut facts = SegmentFacts::default();
    let mut first_video_es: Option<Vec<u8>> = None;
    let mut collecting_first = false;
    let mut listed: Vec<u16> = Vec::new();
    for (i, p) in seg.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "packet {i}: sync byte");
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let pusi = p[1] & 0x40 != 0;
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if i == 0 {
            assert_eq!(pid, 0, "segment starts with the PAT");
        }
        if i == 1 {
            assert_eq!(pid, 0x1000, "PMT follows the PAT");
            listed = pmt_pids(p);
        }
        if afc & 0x01 != 0 {
            if let Some(prev) = state.cc.insert(pid, cc) {
                assert_eq!(
                    cc,
                    (prev + 1) & 0x0f,
                    "packet {i}: continuity gap on PID {pid:#x}"
                );
            }
        }
        let payload_start = match afc {
            1 => 4,
            3 => 5 + usize::from(p[4]),
            _ => continue,
        };
        let payload = &p[payload_start.min(188)..];
        if pid != video_pid && pid != audio_pid {
            continue;
        }
        assert!(
            listed.contains(&pid),
            "packet {i}: PID {pid:#x} carries media, but the PMT lists only {listed:x?}"
        );
        if pusi {
            assert_eq!(&payload[..3], &[0, 0, 1], "packet {i}: PES start code");
            let flags = payload[7];
            let header_len = usize::from(payload[8]);
            let pts = pes_timestamp(&payload[9..14]);
            let dts = if flags & 0x40 != 0 {
                pes_timestamp(&payload[14..19])
            } else {
                pts
            };
            assert!(pts >= dts, "PTS before DTS");
            if let Some(prev) = state.last_dts.insert(pid, dts) {
                assert!(dts >= prev, "PID {pid:#x}: DTS went back {prev} -> {dts}");
            }
            let es = &payload[9 + header_len..];
            if pid == video_pid {
                facts.video_frames += 1;
                facts.video_span = Some(match facts.video_span {
                    None => (dts, dts),
                    Some((a, _)) => (a, dts),
                });
                if first_video_es.is_none() {
                    first_video_es = Some(es.to_vec());
                    collecting_first = true;
                } else {
                    collecting_first = false;
                }
            } else {
                facts.audio_frames += 1;
                assert_eq!(&es[..2], &[0xff, 0xf1], "ADTS sync");
            }
        } else if pid == video_pid && collecting_first {
            if let Some(es) = first_video_es.as_mut() {
                es.extend_from_slice(payload);
            }
        }
    }
    if let Some(es) = first_video_es {
        let types = nal_types(&es);
        assert_eq!(
            types.first(),
            Some(&9),
            "access unit delimiter first: {types:?}"
        );
        let idr = types
            .iter()
            .position(|&t| t == 5)
            .expect("first video access unit is an IDR");
        assert!(
            types[..idr].contains(&7) && types[..idr].contains(&8),
            "SPS and PPS before the IDR: {types:?}"
        );
    }
    facts
}
