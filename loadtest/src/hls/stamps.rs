//! MPEG-TS segments to the publisher's SEI send-time stamps (pure): [`StampReader`], on the
//! test kit's TS reader.

use crate::sei;
use corecast_testkit::ts::{self, TsPayload, TsReader};
use mpeg2ts::es::StreamType;
use mpeg2ts::ts::TransportScramblingControl;

/// Reads SEI send-time stamps out of MPEG-TS segments with the test kit's TS reader
/// ([`corecast_testkit::ts`]): PAT, then PMT, then the first H.264 stream (stream_type
/// 0x1b), its PES packets reassembled, split into Annex B NAL units, and every SEI NAL unit
/// read with [`sei::parse_nal`].
///
/// The program tables carry over from one segment to the next (a segment without PAT and
/// PMT is read with the previous segment's); PES packets do not. Never panics: bad or
/// truncated input yields fewer stamps, or none. Packets that lost sync are skipped up to the
/// next sync byte; packets the reader refuses, and packets marked in error or scrambled, are
/// skipped. Program tables must fit in one packet, as they do for a program with a few
/// streams.
#[derive(Debug, Default)]
pub struct StampReader {
    /// The TS reader: it keeps the PIDs the PAT and PMT listed.
    ts: TsReader,
    /// PID of the first H.264 stream of the last PMT read.
    video_pid: Option<u16>,
    /// Elementary stream bytes of the open video PES packet.
    pes: Vec<u8>,
    /// A video PES packet is open (its header was read).
    in_pes: bool,
}

impl StampReader {
    /// A reader that knows no program yet.
    pub fn new() -> Self {
        StampReader::default()
    }

    /// Appends the stamps in segment `ts` to `out`, in stream order.
    pub fn read_segment(&mut self, ts: &[u8], out: &mut Vec<u64>) {
        for packet in ts::packets(ts) {
            self.packet(packet, out);
        }
        self.end_pes(out);
    }

    fn packet(&mut self, p: &[u8; ts::PACKET_SIZE], out: &mut Vec<u64>) {
        let Ok(packet) = self.ts.read(p) else {
            return;
        };
        let header = &packet.header;
        if header.transport_error_indicator
            || header.transport_scrambling_control != TransportScramblingControl::NotScrambled
        {
            return;
        }
        let pid = header.pid.as_u16();
        match packet.payload {
            Some(TsPayload::Pmt(pmt)) => {
                let h264 = pmt
                    .es_info
                    .iter()
                    .find(|es| es.stream_type == StreamType::H264)
                    .map(|es| es.elementary_pid.as_u16());
                if let Some(video) = h264 {
                    if self.video_pid != Some(video) {
                        self.end_pes(out);
                        self.video_pid = Some(video);
                    }
                }
            }
            Some(TsPayload::Pes(pes)) if Some(pid) == self.video_pid => {
                self.end_pes(out);
                self.pes.extend_from_slice(&pes.data);
                self.in_pes = true;
            }
            Some(TsPayload::Raw(bytes)) if Some(pid) == self.video_pid && self.in_pes => {
                self.pes.extend_from_slice(&bytes);
            }
            _ => {}
        }
    }

    /// Closes the open PES packet and reads its stamps.
    fn end_pes(&mut self, out: &mut Vec<u64>) {
        if std::mem::take(&mut self.in_pes) {
            out.extend(
                ts::nal_units(&self.pes)
                    .filter(|nal| ts::nal_type(nal) == 6)
                    .filter_map(sei::parse_nal),
            );
        }
        self.pes.clear();
    }
}

/// The stamps in one segment read on its own (see [`StampReader`]).
pub fn segment_stamps(ts: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    StampReader::new().read_segment(ts, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fixtures::{frame, muxed_segment, muxer, seqs, stamp, AVC_CONFIG};
    use crate::hls::{parse_playlist, plan, segment_path, HlsStart};
    use corecast::hls::segmenter::Segmenter;
    use corecast::media::{Unit, UnitKind};

    #[test]
    fn stamps_round_trip_through_corecast_ts() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 60);
        assert_eq!(ts.len() % ts::PACKET_SIZE, 0);
        assert_eq!(stamps.len(), 48);
        assert_eq!(segment_stamps(&ts), stamps);
    }

    #[test]
    fn program_tables_carry_over_between_segments() {
        let mut m = muxer();
        let (first, mut expected) = muxed_segment(&mut m, true, 0, 10);
        let (second, more) = muxed_segment(&mut m, false, 10, 10);
        expected.extend(more);
        let mut reader = StampReader::new();
        let mut found = Vec::new();
        reader.read_segment(&first, &mut found);
        reader.read_segment(&second, &mut found);
        assert_eq!(found, expected);
        assert!(
            segment_stamps(&second).is_empty(),
            "no PAT/PMT: the video PID is unknown"
        );
    }

    #[test]
    fn lost_sync_is_skipped() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 5);
        let mut shifted = vec![0x00, 0x12, 0x34];
        shifted.extend_from_slice(&ts);
        assert_eq!(segment_stamps(&shifted), stamps);
    }

    #[test]
    fn garbage_and_truncated_ts_give_no_stamps_and_no_panic() {
        let mut m = muxer();
        let (ts, stamps) = muxed_segment(&mut m, true, 0, 8);
        for len in 0..ts.len() {
            let found = segment_stamps(&ts[..len]);
            // A cut PES may still hold its stamp (it comes first): never more, never others.
            assert!(stamps.starts_with(&found), "prefix of {len} bytes");
        }
        for at in (0..ts.len()).step_by(3) {
            let mut bad = ts.clone();
            bad[at] ^= 0xa5;
            let found = segment_stamps(&bad);
            assert!(found.len() <= stamps.len() + 1, "byte {at} flipped");
        }
        // Pseudo-random bytes, and pseudo-random packets with the sync byte.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in [0, 1, 187, 188, 189, 376, 5000] {
            let noise: Vec<u8> = (0..len).map(|_| random()).collect();
            assert!(segment_stamps(&noise).is_empty());
            let mut synced = noise.clone();
            for p in synced.chunks_mut(ts::PACKET_SIZE) {
                p[0] = ts::SYNC_BYTE;
            }
            assert!(segment_stamps(&synced).is_empty());
        }
        assert!(segment_stamps(&[ts::SYNC_BYTE; 188 * 4]).is_empty());
    }

    #[test]
    fn corecast_playlists_and_segments_parse() {
        let mut s = Segmenter::new("cam", 7, 1000, 4);
        let unit = |kind, dts, key, header, body: &[u8]| {
            Unit::serialize(kind, dts, key, header, body, 4096, None)
        };
        s.push(&unit(UnitKind::Video, 0, false, true, AVC_CONFIG), 0)
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..(25 * 6 + 1) {
            let key = i % 25 == 0;
            sent.push(stamp(u64::from(i)));
            let body = frame(key, 200, Some(stamp(u64::from(i))));
            s.push(
                &unit(UnitKind::Video, i * 40, key, false, &body),
                1_795_547_244_123,
            )
            .unwrap();
        }
        let p = parse_playlist(s.playlist().as_bytes()).expect("corecast's playlist");
        assert_eq!((p.target_duration, p.media_sequence), (1, 2));
        let step = plan(&p, None, HlsStart::default());
        assert_eq!(seqs(&step), vec![3, 4, 5]);
        let mut reader = StampReader::new();
        let mut found = Vec::new();
        for due in &step.due {
            assert_eq!(
                segment_path("/live/cam.m3u8", &due.uri).unwrap(),
                format!("/live/cam-7-{}.ts", due.seq)
            );
            let segment = s.segments().iter().find(|seg| seg.seq == due.seq).unwrap();
            reader.read_segment(&segment.bytes, &mut found);
        }
        // Segments 3..=5 hold frames 75..150 (one second, 25 frames, each).
        assert_eq!(found, sent[75..150]);
    }
}
