//! Codec configurations of the fMP4 writer (pure): FLV sequence headers to ISOBMFF sample
//! entries, RFC 6381 `CODECS` strings and picture sizes.
//!
//! The configuration records are read by `mp4-atom` (`avcC`, `hvcC`, `av1C`), which also
//! writes them back into the sample entries. The picture size, which the visual sample
//! entry and the track header carry (and players built on MSE read), comes from the first
//! SPS (H.264, HEVC) or the sequence header OBU (AV1), read here up to the fields that give
//! it: a few dozen lines per codec, with a reader that returns `None` at the end of its
//! input instead of panicking. The crates that parse these headers read all of them (VUI,
//! HRD, extensions) to give the same two numbers, and some compute with shifts that hostile
//! input can overflow.

use super::Fmp4Error;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dops, Esds, Hvc1, Hvcc, Mp4a, Opus,
    OpusChannelMapping, Visual,
};

/// The track ID of audio, which the ES descriptor repeats.
const AUDIO_ES_ID: u16 = super::AUDIO_TRACK_ID as u16;

/// A configured video track.
#[derive(Debug, Clone)]
pub(super) struct VideoConfig {
    /// The sample entry (`avc1`, `hvc1`, `av01`) with its configuration box.
    pub entry: Codec,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Picture width in pixels (after cropping); 0 when the record does not say.
    pub width: u16,
    /// Picture height in pixels (after cropping); 0 when the record does not say.
    pub height: u16,
}

/// A configured audio track.
#[derive(Debug, Clone)]
pub(super) struct AudioConfig {
    /// The sample entry (`mp4a` with `esds`, `Opus` with `dOps`).
    pub entry: Codec,
    /// RFC 6381 codec string.
    pub codecs: String,
    /// Media timescale: the sampling rate (48 kHz for Opus, as its mapping requires).
    pub timescale: u32,
    /// A frame's duration in timescale units, given to the last sample of a stream whose
    /// track had no sample before it to measure.
    pub frame_ticks: u32,
}

/// Reads an AVCDecoderConfigurationRecord.
pub(super) fn avc(record: &[u8]) -> Result<VideoConfig, Fmp4Error> {
    let avcc = Avcc::decode_body(&mut &record[..])
        .map_err(|_| Fmp4Error::VideoConfig("malformed AVCDecoderConfigurationRecord"))?;
    let sps = avcc
        .sequence_parameter_sets
        .first()
        .ok_or(Fmp4Error::VideoConfig("AVC record without SPS"))?;
    let (width, height) = avc_size(sps).ok_or(Fmp4Error::VideoConfig("malformed H.264 SPS"))?;
    let codecs = format!(
        "avc1.{:02x}{:02x}{:02x}",
        avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
    );
    Ok(VideoConfig {
        entry: Codec::Avc1(Avc1 {
            visual: visual(width, height),
            avcc,
            btrt: None,
            colr: None,
            pasp: None,
            taic: None,
            fiel: None,
            spatial: None,
        }),
        codecs,
        width,
        height,
    })
}

/// NAL unit types of the HEVC parameter sets.
const HEVC_VPS: u8 = 32;
const HEVC_SPS: u8 = 33;
const HEVC_PPS: u8 = 34;

/// Reads an HEVCDecoderConfigurationRecord. Under the `hvc1` sample entry every parameter
/// set is in the record, and its VPS, SPS and PPS arrays say so (`array_completeness`, which
/// encoders writing FLV often leave 0).
pub(super) fn hevc(record: &[u8]) -> Result<VideoConfig, Fmp4Error> {
    let mut hvcc = Hvcc::decode_body(&mut &record[..])
        .map_err(|_| Fmp4Error::VideoConfig("malformed HEVCDecoderConfigurationRecord"))?;
    if hvcc.configuration_version != 1 {
        return Err(Fmp4Error::VideoConfig("HEVC record of an unknown version"));
    }
    let sps = hvcc
        .arrays
        .iter()
        .filter(|a| a.nal_unit_type == HEVC_SPS)
        .find_map(|a| a.nalus.first())
        .ok_or(Fmp4Error::VideoConfig("HEVC record without SPS"))?;
    let (width, height) = hevc_size(sps).ok_or(Fmp4Error::VideoConfig("malformed HEVC SPS"))?;
    for array in &mut hvcc.arrays {
        if matches!(array.nal_unit_type, HEVC_VPS | HEVC_SPS | HEVC_PPS) {
            array.completeness = true;
        }
    }
    let codecs = hevc_codecs(&hvcc);
    Ok(VideoConfig {
        entry: Codec::Hvc1(Hvc1 {
            visual: visual(width, height),
            hvcc,
            ..Default::default()
        }),
        codecs,
        width,
        height,
    })
}

/// `hvc1.[A|B|C]<profile_idc>.<compatibility>.<L|H><level_idc>[.<constraint byte>]*`
/// (ISO/IEC 14496-15 Annex E): the profile space as a letter (none for 0), the 32
/// compatibility flags in reverse bit order in hexadecimal, the tier and the level, then
/// the six constraint bytes in hexadecimal, trailing zero bytes left out.
pub(super) fn hevc_codecs(hvcc: &Hvcc) -> String {
    let space = match hvcc.general_profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let compatibility = u32::from_be_bytes(hvcc.general_profile_compatibility_flags).reverse_bits();
    let tier = if hvcc.general_tier_flag { 'H' } else { 'L' };
    let mut out = format!(
        "hvc1.{space}{}.{compatibility:X}.{tier}{}",
        hvcc.general_profile_idc, hvcc.general_level_idc
    );
    let constraints = &hvcc.general_constraint_indicator_flags;
    let kept = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for byte in &constraints[..kept] {
        out += &format!(".{byte:X}");
    }
    out
}

/// Reads an AV1CodecConfigurationRecord (the `av1C` body). The picture size comes from the
/// sequence header OBU among its configuration OBUs; a record without one (they are
/// optional) leaves it 0, and decoders take it from the first keyframe.
pub(super) fn av1(record: &[u8]) -> Result<VideoConfig, Fmp4Error> {
    let av1c = Av1c::decode_body(&mut &record[..])
        .map_err(|_| Fmp4Error::VideoConfig("malformed AV1CodecConfigurationRecord"))?;
    let (width, height) = match sequence_header(&av1c.config_obus) {
        Some(header) => {
            av1_size(header).ok_or(Fmp4Error::VideoConfig("malformed AV1 sequence header"))?
        }
        None => (0, 0),
    };
    let codecs = av1_codecs(&av1c);
    Ok(VideoConfig {
        entry: Codec::Av01(Av01 {
            visual: visual(width, height),
            av1c,
            ..Default::default()
        }),
        codecs,
        width,
        height,
    })
}

/// `av01.<profile>.<level><tier>.<bit depth>` (AV1 Codec ISO Media File Format Binding,
/// "Codecs Parameter String"), the short form: the optional colour fields are left out,
/// which stands for their defaults.
pub(super) fn av1_codecs(av1c: &Av1c) -> String {
    let depth = match (av1c.high_bitdepth, av1c.twelve_bit) {
        (false, _) => 8,
        (true, true) if av1c.seq_profile == 2 => 12,
        (true, _) => 10,
    };
    let tier = if av1c.seq_tier_0 { 'H' } else { 'M' };
    format!(
        "av01.{}.{:02}{tier}.{depth:02}",
        av1c.seq_profile, av1c.seq_level_idx_0
    )
}

/// AAC sampling frequencies by index (ISO/IEC 14496-3, 1.6.3.4).
const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Samples in an AAC frame.
const AAC_FRAME: u32 = 1024;

/// Reads an AudioSpecificConfig: `mp4a` with an `esds` that carries it unchanged, the
/// timescale its sampling rate, and `mp4a.40.<audio object type>`.
pub(super) fn aac(asc: &[u8]) -> Result<AudioConfig, Fmp4Error> {
    const BAD: Fmp4Error = Fmp4Error::AudioConfig("malformed AAC AudioSpecificConfig");
    let mut bits = Bits::new(asc);
    let mut object_type = bits.bits(5).ok_or(BAD)?;
    if object_type == 31 {
        object_type = 32 + bits.bits(6).ok_or(BAD)?;
    }
    let index = bits.bits(4).ok_or(BAD)?;
    let rate = if index == 15 {
        bits.bits(24).ok_or(BAD)?
    } else {
        *AAC_RATES.get(index as usize).ok_or(BAD)?
    };
    let channels = bits.bits(4).ok_or(BAD)?;
    if object_type == 0 || rate == 0 {
        return Err(BAD);
    }
    let entry = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            // Channel configuration 0 (described in the stream) is played as stereo.
            channel_count: if channels == 0 { 2 } else { channels as u16 },
            sample_size: 16,
            // The field holds 16 bits of integer: higher rates are read from the config.
            sample_rate: u16::try_from(rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: AUDIO_ES_ID,
                dec_config: DecoderConfig {
                    // Audio ISO/IEC 14496-3, audio stream.
                    object_type_indication: 0x40,
                    stream_type: 5,
                    dec_specific: Some(DecoderSpecific {
                        raw: asc.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig::default(),
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    Ok(AudioConfig {
        entry: Codec::Mp4a(entry),
        codecs: format!("mp4a.40.{object_type}"),
        timescale: rate,
        frame_ticks: AAC_FRAME,
    })
}

/// The timescale of Opus tracks (Encapsulation of Opus in ISO Base Media File Format, 4.3).
const OPUS_RATE: u32 = 48_000;

/// A 20 ms Opus frame at 48 kHz.
const OPUS_FRAME: u32 = 960;

/// Reads an Opus identification header (`OpusHead`, RFC 7845 5.1, little-endian) into the
/// `dOps` box (big-endian, without the magic; Encapsulation of Opus in ISO Base Media File
/// Format, 4.3.2).
pub(super) fn opus(head: &[u8]) -> Result<AudioConfig, Fmp4Error> {
    const BAD: Fmp4Error = Fmp4Error::AudioConfig("malformed Opus identification header");
    let rest = head.strip_prefix(b"OpusHead").ok_or(BAD)?;
    let fixed = rest.get(..11).ok_or(BAD)?;
    // Version 1; the upper four bits are the major version, which decoders must match.
    if fixed[0] >> 4 != 0 {
        return Err(BAD);
    }
    let channels = fixed[1];
    let pre_skip = u16::from_le_bytes([fixed[2], fixed[3]]);
    let input_rate = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let gain = i16::from_le_bytes([fixed[8], fixed[9]]);
    let family = fixed[10];
    if channels == 0 || (family == 0 && channels > 2) {
        return Err(BAD);
    }
    let channel_mapping = if family == 0 {
        None
    } else {
        let table = rest.get(11..13 + usize::from(channels)).ok_or(BAD)?;
        Some(OpusChannelMapping {
            family,
            stream_count: table[0],
            coupled_count: table[1],
            channel_mapping: table[2..].to_vec(),
        })
    };
    let dops = Dops {
        output_channel_count: channels,
        pre_skip,
        input_sample_rate: input_rate,
        output_gain: gain,
        channel_mapping,
    };
    // What mp4-atom checks when it writes the box (a table that names channels the
    // streams do not have): refused here, where the header is read.
    dops.encode_body(&mut Vec::new()).map_err(|_| BAD)?;
    Ok(AudioConfig {
        entry: Codec::Opus(Opus {
            audio: Audio {
                data_reference_index: 1,
                channel_count: u16::from(channels),
                sample_size: 16,
                sample_rate: (OPUS_RATE as u16).into(),
            },
            dops,
            btrt: None,
        }),
        codecs: "opus".into(),
        timescale: OPUS_RATE,
        frame_ticks: OPUS_FRAME,
    })
}

/// A visual sample entry of this size.
fn visual(width: u16, height: u16) -> Visual {
    Visual {
        data_reference_index: 1,
        width,
        height,
        ..Default::default()
    }
}

/// A NAL unit's payload without its emulation prevention bytes (the `03` of `00 00 03`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A picture size that fits the sample entry's 16-bit fields.
fn size(width: u64, height: u64) -> Option<(u16, u16)> {
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// The cropped picture size of an H.264 SPS (ITU-T H.264 7.3.2.1.1): the fields up to
/// `frame_cropping`, scaling lists skipped.
pub(super) fn avc_size(sps: &[u8]) -> Option<(u16, u16)> {
    let rbsp = unescape(sps.get(1..)?);
    let mut bits = Bits::new(&rbsp);
    let profile = bits.bits(8)?;
    bits.skip(16)?; // constraint flags, level
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    let mut separate_planes = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = bits.ue()?;
        if chroma_format == 3 {
            separate_planes = bits.bit()?;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bit()? {
                    skip_scaling_list(&mut bits, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.skip(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            for _ in 0..bits.ue()?.min(255) {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.bit()?;
    if !frame_mbs_only {
        bits.skip(1)?; // mb_adaptive_frame_field_flag
    }
    bits.skip(1)?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_mbs * 16;
    let mut height = height_units * 16 * field_factor;
    if bits.bit()? {
        let [left, right, top, bottom] =
            [bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?].map(u64::from);
        // ChromaArrayType 0 (monochrome or separate planes) crops in luma samples.
        let (unit_x, unit_y) = match (separate_planes, chroma_format) {
            (true, _) | (_, 0) => (1, field_factor),
            (_, 1) => (2, 2 * field_factor),
            (_, 2) => (2, field_factor),
            _ => (1, field_factor),
        };
        width = width.checked_sub(unit_x * (left + right))?;
        height = height.checked_sub(unit_y * (top + bottom))?;
    }
    size(width, height)
}

/// Skips a scaling list of `len` entries (ITU-T H.264 7.3.2.1.1.1).
fn skip_scaling_list(bits: &mut Bits<'_>, len: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..len {
        if next != 0 {
            next = (last + i64::from(bits.se()?)).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// The cropped picture size of an HEVC SPS (ITU-T H.265 7.3.2.2.1): the fields up to the
/// conformance window.
pub(super) fn hevc_size(sps: &[u8]) -> Option<(u16, u16)> {
    let rbsp = unescape(sps.get(2..)?);
    let mut bits = Bits::new(&rbsp);
    bits.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = bits.bits(3)? as usize; // sps_max_sub_layers_minus1
    bits.skip(1)?; // sps_temporal_id_nesting_flag
                   // profile_tier_level(1, sps_max_sub_layers_minus1): the general profile (88 bits) and
                   // level (8), then which sub-layers carry their own.
    bits.skip(96)?;
    let mut present = [(false, false); 8];
    for flags in present.iter_mut().take(sub_layers) {
        *flags = (bits.bit()?, bits.bit()?);
    }
    if sub_layers > 0 {
        bits.skip(2 * (8 - sub_layers))?; // reserved_zero_2bits
    }
    for &(profile, level) in present.iter().take(sub_layers) {
        if profile {
            bits.skip(88)?;
        }
        if level {
            bits.skip(8)?;
        }
    }
    bits.ue()?; // sps_seq_parameter_set_id
    let chroma_format = bits.ue()?;
    let separate_planes = chroma_format == 3 && bits.bit()?;
    let width = u64::from(bits.ue()?);
    let height = u64::from(bits.ue()?);
    if !bits.bit()? {
        return size(width, height);
    }
    let [left, right, top, bottom] =
        [bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?].map(u64::from);
    let (sub_width, sub_height) = match (separate_planes, chroma_format) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    size(
        width.checked_sub(sub_width * (left + right))?,
        height.checked_sub(sub_height * (top + bottom))?,
    )
}

/// OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// The payload of the first sequence header OBU among `obus` (low overhead bitstream
/// format: each OBU with its size, or the last one without).
fn sequence_header(mut obus: &[u8]) -> Option<&[u8]> {
    while let Some(&header) = obus.first() {
        let obu_type = (header >> 3) & 0x0f;
        let extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1 + usize::from(extension);
        let len = if has_size {
            let (len, read) = leb128(obus.get(at..)?)?;
            at += read;
            usize::try_from(len).ok()?
        } else {
            obus.len().checked_sub(at)?
        };
        let payload = obus.get(at..at.checked_add(len)?)?;
        if obu_type == OBU_SEQUENCE_HEADER {
            return Some(payload);
        }
        obus = &obus[at + len..];
    }
    None
}

/// OBU type of a temporal delimiter.
const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// Where a temporal unit's data starts after its temporal delimiter OBUs, which the AV1
/// ISOBMFF binding wants out of samples (2.4: a sample is a temporal unit whose delimiter
/// is implied). A temporal unit starts with its delimiter, so dropping them is slicing the
/// front off: no copy.
pub(super) fn av1_data_start(unit: &[u8]) -> usize {
    let mut at = 0;
    while let Some(&header) = unit.get(at) {
        if (header >> 3) & 0x0f != OBU_TEMPORAL_DELIMITER || header & 0x02 == 0 {
            break;
        }
        let size_at = at + 1 + usize::from(header & 0x04 != 0);
        match unit.get(size_at..).and_then(leb128) {
            Some((len, read)) => match usize::try_from(len) {
                Ok(len) if size_at + read + len <= unit.len() => at = size_at + read + len,
                _ => break,
            },
            None => break,
        }
    }
    at
}

/// An unsigned LEB128 number (at most 8 bytes, AV1 4.10.5) and the bytes it took.
fn leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The maximum frame size of an AV1 sequence header OBU payload (AV1 5.5.1): the fields up
/// to `max_frame_height_minus_1`.
pub(super) fn av1_size(header: &[u8]) -> Option<(u16, u16)> {
    let mut bits = Bits::new(header);
    bits.skip(4)?; // seq_profile, still_picture
    if bits.bit()? {
        // reduced_still_picture_header: one level, nothing else before the size.
        bits.skip(5)?;
    } else {
        let mut decoder_model = false;
        let mut delay_bits = 0;
        if bits.bit()? {
            // timing_info
            bits.skip(64)?; // num_units_in_display_tick, time_scale
            if bits.bit()? {
                bits.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model = bits.bit()?;
            if decoder_model {
                delay_bits = bits.bits(5)? as usize + 1; // buffer_delay_length_minus_1
                bits.skip(32 + 5 + 5)?;
            }
        }
        let display_delay = bits.bit()?;
        let points = bits.bits(5)? + 1;
        for _ in 0..points {
            bits.skip(12)?; // operating_point_idc
            if bits.bits(5)? > 7 {
                bits.skip(1)?; // seq_tier
            }
            if decoder_model && bits.bit()? {
                bits.skip(2 * delay_bits + 1)?; // operating_parameters_info
            }
            if display_delay && bits.bit()? {
                bits.skip(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = bits.bits(4)? + 1;
    let height_bits = bits.bits(4)? + 1;
    let width = u64::from(bits.bits(width_bits)?) + 1;
    let height = u64::from(bits.bits(height_bits)?) + 1;
    size(width, height)
}

/// A most-significant-bit-first reader that returns `None` past the end of its input.
pub(super) struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits.
    at: usize,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Bits { data, at: 0 }
    }

    pub(super) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(bit == 1)
    }

    /// `n` bits (at most 32) as a number.
    pub(super) fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut value = 0u64;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        u32::try_from(value).ok()
    }

    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        let to = self.at.checked_add(n)?;
        (to <= self.data.len() * 8).then(|| self.at = to)
    }

    /// Leading zero bits, up to `limit`: `None` past the end, or past the limit.
    fn leading_zeros(&mut self, limit: u32) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > limit {
                return None;
            }
        }
        Some(zeros)
    }

    /// An unsigned Exp-Golomb number (`ue(v)`), at most 32 bits of suffix.
    pub(super) fn ue(&mut self) -> Option<u32> {
        let zeros = self.leading_zeros(31)?;
        let value = (1u64 << zeros) - 1 + u64::from(self.bits(zeros)?);
        u32::try_from(value).ok()
    }

    /// A signed Exp-Golomb number (`se(v)`).
    pub(super) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let value = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(value).ok()
    }

    /// AV1's `uvlc()`: leading zeros, then as many bits.
    fn uvlc(&mut self) -> Option<u32> {
        let zeros = self.leading_zeros(32)?;
        if zeros >= 32 {
            return Some(u32::MAX);
        }
        let value = (1u64 << zeros) - 1 + u64::from(self.bits(zeros)?);
        u32::try_from(value).ok()
    }
}
