//! A small MPEG-TS checker for the HLS tests: structure, continuity, timestamps, keyframe
//! starts (H.264: AUD, SPS and PPS before the IDR; HEVC: AUD, VPS, SPS and PPS before the
//! IRAP picture).
//! The packets are read by the test kit's reader ([`corecast_testkit::ts`], on `mpeg2ts`);
//! every fault is an assertion.

use corecast_testkit::ts::{nal_type, nal_units, TsPayload, TsReader, PACKET_SIZE, SYNC_BYTE};
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
    /// Video PES packets (access units) in the segment.
    pub video_frames: usize,
    /// Audio PES packets in the segment.
    pub audio_frames: usize,
    /// First and last video DTS (90 kHz).
    pub video_span: Option<(u64, u64)>,
}

/// Checks one segment; `state` carries continuity across segments. Panics with a reason.
/// Every segment must be readable on its own: it starts with the PAT and the PMT.
pub fn check_segment(
    seg: &[u8],
    state: &mut TsState,
    video_pid: u16,
    audio_pid: u16,
) -> SegmentFacts {
    assert!(
        !seg.is_empty() && seg.len().is_multiple_of(PACKET_SIZE),
        "length {} not a multiple of {PACKET_SIZE}",
        seg.len()
    );
    let mut reader = TsReader::new();
    let mut facts = SegmentFacts::default();
    let mut first_video_es: Option<Vec<u8>> = None;
    let mut collecting_first = false;
    let mut listed: Vec<u16> = Vec::new();
    let mut hevc = false;
    for (i, p) in seg.chunks_exact(PACKET_SIZE).enumerate() {
        assert_eq!(p[0], SYNC_BYTE, "packet {i}: sync byte");
        let p: &[u8; PACKET_SIZE] = p.try_into().expect("chunks of PACKET_SIZE");
        let packet = reader
            .read(p)
            .unwrap_or_else(|e| panic!("packet {i}: not a valid TS packet: {e}"));
        let pid = packet.header.pid.as_u16();
        let cc = packet.header.continuity_counter.as_u8();
        if i == 0 {
            assert_eq!(pid, 0, "segment starts with the PAT");
        }
        if i == 1 {
            assert_eq!(pid, 0x1000, "PMT follows the PAT");
            listed = match &packet.payload {
                Some(TsPayload::Pmt(pmt)) => {
                    hevc = pmt.es_info.iter().any(|es| {
                        es.elementary_pid.as_u16() == video_pid && es.stream_type as u8 == 0x24
                    });
                    pmt.es_info
                        .iter()
                        .map(|es| es.elementary_pid.as_u16())
                        .collect()
                }
                other => panic!("packet 1: PMT expected, found {other:?}"),
            };
        }
        let Some(payload) = &packet.payload else {
            continue;
        };
        if let Some(prev) = state.cc.insert(pid, cc) {
            assert_eq!(
                cc,
                (prev + 1) & 0x0f,
                "packet {i}: continuity gap on PID {pid:#x}"
            );
        }
        if pid != video_pid && pid != audio_pid {
            continue;
        }
        assert!(
            listed.contains(&pid),
            "packet {i}: PID {pid:#x} carries media, but the PMT lists only {listed:x?}"
        );
        match payload {
            // The first packet of a PES packet (payload_unit_start_indicator): `mpeg2ts`
            // has checked its start code and read its header.
            TsPayload::Pes(pes) => {
                let pts = pes
                    .header
                    .pts
                    .unwrap_or_else(|| panic!("packet {i}: PES without PTS"))
                    .as_u64();
                let dts = pes.header.dts.map_or(pts, |dts| dts.as_u64());
                assert!(pts >= dts, "PTS before DTS");
                if let Some(prev) = state.last_dts.insert(pid, dts) {
                    assert!(dts >= prev, "PID {pid:#x}: DTS went back {prev} -> {dts}");
                }
                let es = &pes.data[..];
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
            }
            TsPayload::Raw(bytes) => {
                if pid == video_pid && collecting_first {
                    if let Some(es) = first_video_es.as_mut() {
                        es.extend_from_slice(bytes);
                    }
                }
            }
            other => panic!("packet {i}: PID {pid:#x} carries media, found {other:?}"),
        }
    }
    if let (true, Some(es)) = (hevc, &first_video_es) {
        let types: Vec<u8> = nal_units(es)
            .map(|nal| nal.first().map_or(0xff, |b| (b >> 1) & 0x3f))
            .collect();
        assert_eq!(
            types.first(),
            Some(&35),
            "HEVC access unit delimiter first: {types:?}"
        );
        let irap = types
            .iter()
            .position(|t| (16..=21).contains(t))
            .expect("first video access unit is an IRAP picture");
        for (set, name) in [(32, "VPS"), (33, "SPS"), (34, "PPS")] {
            assert!(
                types[..irap].contains(&set),
                "{name} before the IRAP: {types:?}"
            );
        }
    } else if let Some(es) = first_video_es {
        let types: Vec<u8> = nal_units(&es).map(nal_type).collect();
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
