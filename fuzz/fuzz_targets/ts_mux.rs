//! The HLS segmenter and MPEG-TS muxer (`corecast::hls::segmenter::Segmenter`,
//! `corecast::hls::ts::TsMuxer`) fed with arbitrary units.
//!
//! Input: a settings byte (target duration, window, whether units are classified by
//! `Origin` as on the ingest path or take their flags from the input), then units, each:
//! a flags byte (kind, keyframe, header, a canned FLV codec prefix, a discontinuity, a
//! timestamp jump), a 16-bit timestamp step (or a 32-bit timestamp after a jump flag), a
//! 16-bit length, and that many payload bytes (all big-endian).
#![no_main]

use corecast::hls::segmenter::{parse_segment_name, Segmenter, MAX_SEGMENT_BYTES};
use corecast::hls::HlsView;
use corecast::hub::origin::Origin;
use corecast::media::{Unit, UnitKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [settings, rest @ ..] = data else {
        return;
    };
    let mut rest: &[u8] = rest;
    let target_ms = u64::from(settings & 0x07) * 500;
    let window = usize::from(settings >> 3 & 0x03);
    let classify = settings & 0x20 != 0;
    let mut segmenter = Segmenter::new("cam-1", 7, target_ms, window);
    let mut origin = Origin::new(1, 128, None);
    origin.rebaser.new_session();
    let mut dts: u32 = 0;
    let mut now_ms = 0;
    let mut last_seq = None;
    while let [flags, a, b, rest_after @ ..] = rest {
        rest = rest_after;
        let step = u16::from_be_bytes([*a, *b]);
        if flags & 0x80 != 0 {
            // A jump: a full 32-bit timestamp.
            let [c, d, tail @ ..] = rest else { break };
            rest = tail;
            dts = u32::from_be_bytes([*a, *b, *c, *d]);
        } else {
            dts = dts.wrapping_add(u32::from(step));
        }
        let [l0, l1, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let kind = match flags & 0x03 {
            0 => UnitKind::Video,
            1 => UnitKind::Audio,
            _ => UnitKind::Script,
        };
        let (key, header) = (flags & 0x04 != 0, flags & 0x08 != 0);
        // A canned FLV codec prefix, so that payloads reach the AVC and AAC paths.
        let mut body = Vec::with_capacity(payload.len() + 5);
        if flags & 0x10 != 0 {
            match kind {
                UnitKind::Video => body.extend_from_slice(&[
                    if key { 0x17 } else { 0x27 },
                    u8::from(!header),
                    0,
                    0,
                    0,
                ]),
                UnitKind::Audio => body.extend_from_slice(&[0xaf, u8::from(!header)]),
                UnitKind::Script => {}
            }
        }
        body.extend_from_slice(payload);
        if flags & 0x20 != 0 && flags & 0x40 != 0 {
            segmenter.discontinuity();
            origin.rebaser.new_session();
        }
        let unit = if classify {
            let Some(unit) = origin.media(kind, dts, &body, 0) else {
                continue;
            };
            unit
        } else {
            Unit::serialize(kind, dts, key, header, &body, 128, None)
        };
        now_ms += u64::from(step);
        // A unit that cannot be muxed is left out (the shard counts it); never a panic.
        let _ = segmenter.push(&unit, now_ms);
        if flags & 0x60 == 0x40 {
            let _ = segmenter.playlist();
        }
    }
    segmenter.end();
    let playlist = segmenter.playlist();
    assert!(playlist.starts_with("#EXTM3U\n") && playlist.ends_with("#EXT-X-ENDLIST\n"));
    for segment in segmenter.segments() {
        assert_eq!(segment.bytes.len() % 188, 0, "whole TS packets");
        assert!(
            segment.bytes.chunks(188).all(|p| p[0] == 0x47),
            "sync bytes"
        );
        assert!(segment.bytes.len() <= MAX_SEGMENT_BYTES + 2 * 1024 * 1024);
        let name = segmenter.segment_name(segment.seq);
        assert_eq!(parse_segment_name(&name), Some(("cam-1", 7, segment.seq)));
        assert!(playlist.contains(&name));
        if let Some(last) = last_seq.replace(segment.seq) {
            assert_eq!(segment.seq, last + 1);
        }
    }
    let view = HlsView::of(&segmenter, segmenter.instance(), true);
    assert_eq!(view.segments.len(), segmenter.segments().len());
});
