//! FLV H.264/HEVC and AAC to MPEG-TS (pure). The TS packet layer (headers, adaptation
//! fields, PSI tables, stuffing) is the `mpeg2ts` crate's; this module does what is specific
//! to the relay: length-prefixed NAL units to Annex B with an access unit delimiter and the
//! parameter sets (SPS/PPS; VPS/SPS/PPS for HEVC) before every keyframe, raw AAC to ADTS,
//! PES timestamps from FLV timing, PCR on the video PID, and continuity counters that run on
//! across segments. Video comes in legacy FLV headers (AVC, HEVC under codec id 12) or
//! Enhanced RTMP ones (`avc1`, `hvc1`), read by [`crate::flv::codec`].

use crate::flv::codec::{self, VideoCodec};
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{self, Pat, Pes, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};

/// PID of the PMT.
const PMT_PID: u16 = 0x1000;
/// PID of the video elementary stream (also carries the PCR).
const VIDEO_PID: u16 = 0x100;
/// PID of the audio elementary stream.
const AUDIO_PID: u16 = 0x101;
/// TS payload bytes per packet.
const PAYLOAD: usize = 184;
/// 33-bit PES timestamp range.
const TS_MASK: u64 = (1 << 33) - 1;
/// PES timestamps run this far (90 kHz units, 100 ms) ahead of the PCR, so that decoders have
/// each access unit before it is due, as the T-STD model expects.
const MUX_DELAY: u64 = 9_000;

/// Why a message could not be muxed.
#[derive(Debug, thiserror::Error)]
pub enum TsError {
    /// The AVC or HEVC decoder configuration record is malformed.
    #[error("bad video sequence header")]
    VideoConfig,
    /// The AAC AudioSpecificConfig is malformed.
    #[error("bad AAC sequence header")]
    AacConfig,
    /// A NAL unit length runs past the frame.
    #[error("truncated video frame")]
    TruncatedFrame,
    /// The TS layer refused a packet.
    #[error("TS packet: {0}")]
    Packet(String),
}

/// Video decoder configuration, from the FLV sequence header.
#[derive(Debug, Clone)]
struct VideoConfig {
    /// H.264 or HEVC.
    hevc: bool,
    /// Bytes of each NAL unit length prefix in frames (1, 2 or 4).
    length_size: usize,
    /// The parameter sets in Annex B form (SPS and PPS; VPS, SPS and PPS for HEVC), sent
    /// before every keyframe.
    parameter_sets: Vec<u8>,
}

impl VideoConfig {
    /// The access unit delimiter that starts every access unit.
    fn delimiter(&self) -> &'static [u8] {
        if self.hevc {
            &HEVC_AUD
        } else {
            &AUD
        }
    }

    /// Whether `nal` is an access unit delimiter (the encoder's: ours replace them).
    fn is_delimiter(&self, nal: &[u8]) -> bool {
        match nal.first() {
            Some(b) if self.hevc => (b >> 1) & 0x3f == 35,
            Some(b) => b & 0x1f == 9,
            None => false,
        }
    }
}

/// AAC configuration, from the FLV sequence header (fields of every ADTS header).
#[derive(Debug, Clone, Copy)]
struct AacConfig {
    /// Audio object type minus one (ADTS "profile").
    profile: u8,
    /// Sampling frequency index.
    freq_index: u8,
    /// Channel configuration.
    channels: u8,
}

/// A video frame converted by [`TsMuxer::video_frame`], ready to be written.
#[derive(Debug)]
pub struct VideoFrame {
    /// The Annex B access unit: delimiter, parameter sets before a keyframe, NAL units.
    es: Vec<u8>,
    /// Composition time offset, milliseconds.
    cts: i64,
    keyframe: bool,
}

/// A muxer for one stream: one video and one audio elementary stream in one program.
#[derive(Debug, Default)]
pub struct TsMuxer {
    video: Option<VideoConfig>,
    aac: Option<AacConfig>,
    /// Continuity counters by PID: PAT, PMT, video, audio.
    cc: [u8; 4],
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
/// HEVC access unit delimiter: NAL type 35, pic_type 2 (any slice type).
const HEVC_AUD: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];

impl TsMuxer {
    /// A muxer with no tracks configured.
    pub fn new() -> Self {
        TsMuxer::default()
    }

    /// True once video is configured.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// True once audio is configured.
    pub fn has_audio(&self) -> bool {
        self.aac.is_some()
    }

    /// Takes an FLV video sequence header body: an AVCDecoderConfigurationRecord or an
    /// HEVCDecoderConfigurationRecord, after the legacy or Enhanced RTMP header. Other
    /// headers (Enhanced RTMP colour metadata) change nothing.
    pub fn set_video_config(&mut self, flv_body: &[u8]) -> Result<(), TsError> {
        let tag = codec::video(flv_body).ok_or(TsError::VideoConfig)?;
        if tag.metadata {
            return Ok(());
        }
        if !tag.header || tag.multitrack.is_some() {
            return Err(TsError::VideoConfig);
        }
        let record = flv_body.get(tag.data_at..).ok_or(TsError::VideoConfig)?;
        self.video = Some(match tag.codec {
            VideoCodec::Avc => avc_config(record)?,
            VideoCodec::Hevc => hevc_config(record)?,
            _ => return Err(TsError::VideoConfig),
        });
        Ok(())
    }

    /// Takes an FLV AAC sequence header body (AudioSpecificConfig after the 2-byte header).
    pub fn set_audio_config(&mut self, flv_body: &[u8]) -> Result<(), TsError> {
        let asc = flv_body.get(2..4).ok_or(TsError::AacConfig)?;
        let object_type = asc[0] >> 3;
        let freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        if object_type == 0 || freq_index > 12 {
            return Err(TsError::AacConfig);
        }
        self.aac = Some(AacConfig {
            profile: (object_type - 1).min(3),
            freq_index,
            channels,
        });
        Ok(())
    }

    /// Writes PAT and PMT (the start of every segment).
    pub fn write_tables(&mut self, out: &mut Vec<u8>) -> Result<(), TsError> {
        let pat = Pat {
            transport_stream_id: 1,
            version_number: VersionNumber::default(),
            table: vec![ProgramAssociation {
                program_num: 1,
                program_map_pid: pid(PMT_PID),
            }],
        };
        let cc = self.next_cc(0);
        write(out, packet(0, cc, None, TsPayload::Pat(pat)))?;
        let mut es_info = Vec::new();
        if let Some(video) = &self.video {
            es_info.push(EsInfo {
                stream_type: if video.hevc {
                    StreamType::H265
                } else {
                    StreamType::H264
                },
                elementary_pid: pid(VIDEO_PID),
                descriptors: Vec::new(),
            });
        }
        if self.aac.is_some() {
            es_info.push(EsInfo {
                stream_type: StreamType::AdtsAac,
                elementary_pid: pid(AUDIO_PID),
                descriptors: Vec::new(),
            });
        }
        let pmt = Pmt {
            program_num: 1,
            pcr_pid: Some(pid(if self.video.is_some() {
                VIDEO_PID
            } else {
                AUDIO_PID
            })),
            version_number: VersionNumber::default(),
            program_info: Vec::new(),
            es_info,
        };
        let cc = self.next_cc(1);
        write(out, packet(PMT_PID, cc, None, TsPayload::Pmt(pmt)))
    }

    /// Writes one video frame (an FLV video body of coded frames) as a PES on the video PID.
    pub fn write_video(
        &mut self,
        out: &mut Vec<u8>,
        dts_ms: u64,
        flv_body: &[u8],
        keyframe: bool,
    ) -> Result<(), TsError> {
        match self.video_frame(flv_body, keyframe)? {
            Some(frame) => self.write_video_frame(out, dts_ms, frame),
            None => Ok(()),
        }
    }

    /// Converts one video frame (an FLV video body of coded frames) to an Annex B access
    /// unit, without writing it: `None` when there is nothing to write (video not
    /// configured, or a tag that carries no coded frames), an error when the frame is
    /// malformed.
    pub fn video_frame(
        &self,
        flv_body: &[u8],
        keyframe: bool,
    ) -> Result<Option<VideoFrame>, TsError> {
        let Some(video) = &self.video else {
            return Ok(None);
        };
        // Only coded frames carry NAL units (not configurations, metadata or sequence ends).
        let Some(tag) = codec::video(flv_body).filter(|t| !t.header && t.payload) else {
            return Ok(None);
        };
        if tag.multitrack.is_some() {
            return Ok(None);
        }
        let mut es = Vec::with_capacity(flv_body.len() + 64);
        es.extend_from_slice(video.delimiter());
        if keyframe {
            es.extend_from_slice(&video.parameter_sets);
        }
        let mut nalus = flv_body.get(tag.data_at..).unwrap_or_default();
        while !nalus.is_empty() {
            let len_bytes = nalus
                .get(..video.length_size)
                .ok_or(TsError::TruncatedFrame)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |n, &b| (n << 8) | usize::from(b));
            let nal = nalus
                .get(video.length_size..video.length_size + len)
                .ok_or(TsError::TruncatedFrame)?;
            // Access unit delimiters are ours; drop the encoder's.
            if !nal.is_empty() && !video.is_delimiter(nal) {
                es.extend_from_slice(&START_CODE);
                es.extend_from_slice(nal);
            }
            nalus = &nalus[video.length_size + len..];
        }
        let cts = i64::from(tag.composition_time);
        Ok(Some(VideoFrame { es, cts, keyframe }))
    }

    /// Writes a converted video frame as a PES on the video PID.
    pub fn write_video_frame(
        &mut self,
        out: &mut Vec<u8>,
        dts_ms: u64,
        frame: VideoFrame,
    ) -> Result<(), TsError> {
        let pcr = dts_ms * 90;
        let dts = pcr + MUX_DELAY;
        let pts = (dts as i64 + frame.cts * 90).max(0) as u64;
        let header = pes_header(0xe0, pts, Some(dts));
        // Video PES packets may leave their length unset (0): they run to the next start.
        self.write_pes(
            out,
            VIDEO_PID,
            2,
            header,
            0,
            &frame.es,
            Some(pcr),
            frame.keyframe,
        )
    }

    /// Writes one AAC frame (an FLV AAC raw body) as an ADTS frame in a PES on the audio PID.
    pub fn write_audio(
        &mut self,
        out: &mut Vec<u8>,
        dts_ms: u64,
        flv_body: &[u8],
    ) -> Result<(), TsError> {
        let Some(aac) = self.aac else {
            return Ok(());
        };
        let raw = flv_body.get(2..).unwrap_or_default();
        let frame_len = raw.len() + 7;
        let mut es = Vec::with_capacity(frame_len);
        es.extend_from_slice(&[
            0xff,
            0xf1,
            (aac.profile << 6) | (aac.freq_index << 2) | (aac.channels >> 2),
            ((aac.channels & 3) << 6) | ((frame_len >> 11) & 0x03) as u8,
            ((frame_len >> 3) & 0xff) as u8,
            (((frame_len & 0x07) << 5) as u8) | 0x1f,
            0xfc,
        ]);
        es.extend_from_slice(raw);
        let pts = dts_ms * 90 + MUX_DELAY;
        let header = pes_header(0xc0, pts, None);
        let pes_len = u16::try_from(8 + es.len()).unwrap_or(0);
        // Without video, the audio PID carries the PCR.
        let pcr = self.video.is_none().then_some(dts_ms * 90);
        self.write_pes(
            out,
            AUDIO_PID,
            3,
            header,
            pes_len,
            &es,
            pcr,
            self.video.is_none(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write_pes(
        &mut self,
        out: &mut Vec<u8>,
        pid_value: u16,
        cc_index: usize,
        header: PesHeader,
        pes_len: u16,
        es: &[u8],
        pcr_90k: Option<u64>,
        random_access: bool,
    ) -> Result<(), TsError> {
        let adaptation = (pcr_90k.is_some() || random_access).then(|| AdaptationField {
            discontinuity_indicator: false,
            random_access_indicator: random_access,
            es_priority_indicator: false,
            pcr: pcr_90k.map(|t| ClockReference::new((t & TS_MASK) * 300).expect("masked")),
            opcr: None,
            splice_countdown: None,
            transport_private_data: Vec::new(),
            extension: None,
        });
        // Adaptation field: length and flags bytes, plus 6 bytes of PCR.
        let adaptation_len = adaptation
            .as_ref()
            .map_or(0, |a| 2 + if a.pcr.is_some() { 6 } else { 0 });
        // PES: start code, stream id, length; flags and header length; 5 bytes per stamp.
        let pes_header_len =
            9 + 5 * (usize::from(header.pts.is_some()) + usize::from(header.dts.is_some()));
        let first = es.len().min(PAYLOAD - pes_header_len - adaptation_len);
        let cc = self.next_cc(cc_index);
        let pes = Pes {
            header,
            pes_packet_len: pes_len,
            data: ts_bytes(&es[..first])?,
        };
        write(out, packet(pid_value, cc, adaptation, TsPayload::Pes(pes)))?;
        for chunk in es[first..].chunks(PAYLOAD) {
            let cc = self.next_cc(cc_index);
            if chunk.len() == PAYLOAD {
                write_full(out, pid_value, cc, chunk);
            } else {
                // Stuffed with an adaptation field: mpeg2ts lays it out.
                write(
                    out,
                    packet(pid_value, cc, None, TsPayload::Raw(ts_bytes(chunk)?)),
                )?;
            }
        }
        Ok(())
    }

    fn next_cc(&mut self, index: usize) -> u8 {
        let cc = self.cc[index];
        self.cc[index] = (cc + 1) & 0x0f;
        cc
    }
}

/// Reads an AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.3.3.1).
fn avc_config(record: &[u8]) -> Result<VideoConfig, TsError> {
    let length_size = usize::from(record.get(4).ok_or(TsError::VideoConfig)? & 0x03) + 1;
    let mut at = 5;
    let mut parameter_sets = Vec::new();
    for mask in [0x1f, 0xff] {
        let count = record.get(at).ok_or(TsError::VideoConfig)? & mask;
        at += 1;
        for _ in 0..count {
            let nal = length_prefixed(record, &mut at)?;
            parameter_sets.extend_from_slice(&START_CODE);
            parameter_sets.extend_from_slice(nal);
        }
    }
    Ok(VideoConfig {
        hevc: false,
        length_size,
        parameter_sets,
    })
}

/// Reads an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15, 8.3.3.1): its arrays of VPS
/// (NAL type 32), SPS (33) and PPS (34), in that order whatever order the record uses, as
/// decoders expect them before a keyframe.
fn hevc_config(record: &[u8]) -> Result<VideoConfig, TsError> {
    let length_size = usize::from(record.get(21).ok_or(TsError::VideoConfig)? & 0x03) + 1;
    let arrays = *record.get(22).ok_or(TsError::VideoConfig)?;
    let mut at = 23;
    let mut by_type: [Vec<u8>; 3] = Default::default();
    for _ in 0..arrays {
        let nal_type = record.get(at).ok_or(TsError::VideoConfig)? & 0x3f;
        let count = record.get(at + 1..at + 3).ok_or(TsError::VideoConfig)?;
        let count = u16::from_be_bytes([count[0], count[1]]);
        at += 3;
        for _ in 0..count {
            let nal = length_prefixed(record, &mut at)?;
            if let Some(sets) = nal_type
                .checked_sub(32)
                .and_then(|i| by_type.get_mut(usize::from(i)))
            {
                sets.extend_from_slice(&START_CODE);
                sets.extend_from_slice(nal);
            }
        }
    }
    if by_type.iter().any(Vec::is_empty) {
        return Err(TsError::VideoConfig);
    }
    Ok(VideoConfig {
        hevc: true,
        length_size,
        parameter_sets: by_type.concat(),
    })
}

/// A NAL unit with a 16-bit length prefix at `at`, which moves past it.
fn length_prefixed<'a>(record: &'a [u8], at: &mut usize) -> Result<&'a [u8], TsError> {
    let len = record.get(*at..*at + 2).ok_or(TsError::VideoConfig)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let nal = record
        .get(*at + 2..*at + 2 + len)
        .ok_or(TsError::VideoConfig)?;
    *at += 2 + len;
    Ok(nal)
}

fn pid(value: u16) -> Pid {
    Pid::new(value).expect("PIDs here are below 0x1fff")
}

fn pes_header(stream_id: u8, pts: u64, dts: Option<u64>) -> PesHeader {
    let stamp = |t: u64| Timestamp::new(t & TS_MASK).expect("masked to 33 bits");
    PesHeader {
        stream_id: StreamId::new(stream_id),
        priority: false,
        data_alignment_indicator: true,
        copyright: false,
        original_or_copy: false,
        pts: Some(stamp(pts)),
        dts: dts.filter(|&d| d != pts).map(stamp),
        escr: None,
    }
}

fn ts_bytes(data: &[u8]) -> Result<payload::Bytes, TsError> {
    payload::Bytes::new(data).map_err(|e| TsError::Packet(e.to_string()))
}

fn packet(
    pid_value: u16,
    cc: u8,
    adaptation_field: Option<AdaptationField>,
    payload: TsPayload,
) -> TsPacket {
    TsPacket {
        header: TsHeader {
            transport_error_indicator: false,
            transport_priority: false,
            pid: pid(pid_value),
            transport_scrambling_control: TransportScramblingControl::NotScrambled,
            continuity_counter: ContinuityCounter::from_u8(cc).expect("4-bit counter"),
        },
        adaptation_field,
        payload: Some(payload),
    }
}

/// Writes a packet that continues a PES with a full payload (no adaptation field): most of
/// a stream's packets. Its four header bytes are written here rather than through mpeg2ts,
/// which copies the payload into a zeroed array and moves the packet by value on the way
/// (half of the TS muxing's time, see docs/BENCHMARKS.md); the unit tests check that both
/// write the same bytes.
fn write_full(out: &mut Vec<u8>, pid: u16, cc: u8, payload: &[u8]) {
    debug_assert_eq!(payload.len(), PAYLOAD);
    // Sync byte; no error, no unit start, no priority, the PID; not scrambled, payload only,
    // the continuity counter.
    out.extend_from_slice(&[0x47, (pid >> 8) as u8 & 0x1f, pid as u8, 0x10 | (cc & 0x0f)]);
    out.extend_from_slice(payload);
}

fn write(out: &mut Vec<u8>, packet: TsPacket) -> Result<(), TsError> {
    TsPacketWriter::new(out)
        .write_ts_packet(&packet)
        .map_err(|e| TsError::Packet(e.to_string()))
}

#[cfg(test)]
mod tests;
