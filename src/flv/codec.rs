//! The codec headers of FLV audio and video tag bodies (pure), legacy and Enhanced RTMP
//! (veovera enhanced-rtmp v1 and v2): which codec, whether the tag is a keyframe, a sequence
//! header (kept to start new viewers) or a frame, and where its payload starts.
//!
//! Legacy video: `frame type (4 bits) | codec id (4 bits)`, then for AVC (7) and the
//! non-standard HEVC id 12 a packet type (0 sequence header, 1 frame, 2 end of sequence) and
//! a 24-bit composition time. Enhanced video sets the top bit (`IsExHeader`): then
//! `frame type (3 bits) | packet type (4 bits)`, optional ModEx blocks (v2), and either a
//! FourCC or a multitrack header. Keyframes come from the frame type of coded frames only:
//! never from sequence starts, metadata or command frames.
//!
//! Legacy audio: `sound format (4 bits) | rate, size, channels`, then for AAC (10) a packet
//! type (0 sequence header). Enhanced audio is sound format 9: its low 4 bits are the packet
//! type, then optional ModEx blocks, then a FourCC or a multitrack header.
//!
//! Multitrack tags are classified by the packet type they carry for all their tracks, and
//! described by their default track (trackId 0, the specification's convention for "the
//! representation most receivers select"): its codec, and whether it starts a picture. A
//! multitrack tag is relayed unchanged to viewers that can read it; others get
//! [`Multitrack::default_body`], the default track alone as a single-track tag, or nothing
//! when the tag carries no default track.

/// A video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (legacy id 7, or `avc1`).
    Avc,
    /// H.265 (legacy id 12, or `hvc1`).
    Hevc,
    /// AV1 (`av01`).
    Av1,
    /// VP9 (`vp09`).
    Vp9,
    /// VP8 (`vp08`).
    Vp8,
    /// Another legacy codec id (Sorenson H.263, VP6, screen video, ...).
    Legacy(u8),
    /// Another FourCC.
    Other([u8; 4]),
    /// A multitrack tag whose tracks may each have their own codec.
    Multiple,
}

impl VideoCodec {
    /// The codec's name, as the API reports it.
    pub fn name(self) -> String {
        match self {
            VideoCodec::Avc => "h264".into(),
            VideoCodec::Hevc => "hevc".into(),
            VideoCodec::Av1 => "av1".into(),
            VideoCodec::Vp9 => "vp9".into(),
            VideoCodec::Vp8 => "vp8".into(),
            VideoCodec::Legacy(2) => "h263".into(),
            VideoCodec::Legacy(4 | 5) => "vp6".into(),
            VideoCodec::Legacy(id) => format!("flv-video-{id}"),
            VideoCodec::Other(fourcc) => fourcc_name(fourcc),
            VideoCodec::Multiple => "multitrack".into(),
        }
    }

    fn from_fourcc(fourcc: [u8; 4]) -> Self {
        match &fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            b"vp08" => VideoCodec::Vp8,
            _ => VideoCodec::Other(fourcc),
        }
    }
}

/// An audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC (legacy sound format 10, or `mp4a`).
    Aac,
    /// Opus (`Opus`).
    Opus,
    /// FLAC (`fLaC`).
    Flac,
    /// AC-3 (`ac-3`).
    Ac3,
    /// E-AC-3 (`ec-3`).
    Eac3,
    /// MP3 (legacy sound formats 2 and 14, or `.mp3`).
    Mp3,
    /// Another legacy sound format.
    Legacy(u8),
    /// Another FourCC.
    Other([u8; 4]),
    /// A multitrack tag whose tracks may each have their own codec.
    Multiple,
}

impl AudioCodec {
    /// The codec's name, as the API reports it.
    pub fn name(self) -> String {
        match self {
            AudioCodec::Aac => "aac".into(),
            AudioCodec::Opus => "opus".into(),
            AudioCodec::Flac => "flac".into(),
            AudioCodec::Ac3 => "ac3".into(),
            AudioCodec::Eac3 => "eac3".into(),
            AudioCodec::Mp3 => "mp3".into(),
            AudioCodec::Legacy(7) => "pcma".into(),
            AudioCodec::Legacy(8) => "pcmu".into(),
            AudioCodec::Legacy(11) => "speex".into(),
            AudioCodec::Legacy(id) => format!("flv-audio-{id}"),
            AudioCodec::Other(fourcc) => fourcc_name(fourcc),
            AudioCodec::Multiple => "multitrack".into(),
        }
    }

    fn from_fourcc(fourcc: [u8; 4]) -> Self {
        match &fourcc {
            b"mp4a" => AudioCodec::Aac,
            b"Opus" => AudioCodec::Opus,
            b"fLaC" => AudioCodec::Flac,
            b"ac-3" => AudioCodec::Ac3,
            b"ec-3" => AudioCodec::Eac3,
            b".mp3" => AudioCodec::Mp3,
            _ => AudioCodec::Other(fourcc),
        }
    }
}

/// A FourCC as text, for logs and the API (other bytes escaped).
fn fourcc_name(fourcc: [u8; 4]) -> String {
    fourcc.escape_ascii().to_string()
}

/// What a video tag body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag {
    /// Its codec.
    pub codec: VideoCodec,
    /// Coded frames of frame type 1: a place for a new viewer to start.
    pub keyframe: bool,
    /// Decoder configuration or metadata (a sequence start, colour metadata, an MPEG-TS
    /// sequence start): kept to start new viewers, not a frame.
    pub header: bool,
    /// An Enhanced RTMP metadata packet (colour information, HDR): a header kept beside the
    /// sequence start, not instead of it.
    pub metadata: bool,
    /// It carries bytes beyond its headers (a sign of a live encoder).
    pub payload: bool,
    /// Enhanced RTMP (`IsExHeader`).
    pub enhanced: bool,
    /// The multitrack header, for a multitrack tag.
    pub multitrack: Option<Multitrack>,
    /// Where the codec's own bytes start (a sequence start's configuration record, coded
    /// frames' data): after the FLV headers and any composition time. Meaningless for a
    /// multitrack tag.
    pub data_at: usize,
    /// Composition time offset (PTS - DTS, ms) of AVC and HEVC coded frames; 0 otherwise.
    pub composition_time: i32,
}

/// What an audio tag body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag {
    /// Its codec.
    pub codec: AudioCodec,
    /// Decoder configuration (a sequence start, a multichannel configuration): kept to start
    /// new viewers, not a frame.
    pub header: bool,
    /// An Enhanced RTMP multichannel configuration: a header kept beside the sequence start,
    /// not instead of it.
    pub multichannel: bool,
    /// It carries bytes beyond its headers (a sign of a live encoder).
    pub payload: bool,
    /// Enhanced RTMP (sound format 9).
    pub enhanced: bool,
    /// The multitrack header, for a multitrack tag.
    pub multitrack: Option<Multitrack>,
    /// Where the codec's own bytes start (an AudioSpecificConfig or Opus header, coded
    /// frames): after the sound format byte, AAC's packet type, or an enhanced header's
    /// FourCC. Meaningless for a multitrack tag.
    pub data_at: usize,
}

/// Where one track's bytes are in a multitrack tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSpan {
    /// The track's FourCC (shared by all tracks, or its own).
    pub fourcc: [u8; 4],
    /// First byte of the track's data (after its track id and size).
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// The header of a multitrack tag: `multitrackType | packetType`, a shared FourCC or one
/// per track, then per track `trackId (UI8)`, `size (UI24)` unless the tag carries one
/// track, and the track's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multitrack {
    /// Index of the byte whose low 4 bits say Multitrack: the first byte, or the last byte
    /// of the ModEx blocks.
    pub type_at: usize,
    /// The packet type of all the tracks.
    pub packet_type: u8,
    /// The FourCC of all the tracks, unless each carries its own.
    pub shared: Option<[u8; 4]>,
    /// The first track's id.
    pub first_track: u8,
    /// The default track (trackId 0), when the tag carries it.
    pub default: Option<TrackSpan>,
}

impl Multitrack {
    /// The track a header tag belongs to, for keeping one header per track: the default
    /// track when the tag carries it, else its first track.
    pub fn track(&self) -> u8 {
        if self.default.is_some() {
            0
        } else {
            self.first_track
        }
    }

    /// The FourCC that names the tag's codec: the default track's, else the one all tracks
    /// share; `None` for tracks of several codecs without the default track.
    pub fn codec(&self) -> Option<[u8; 4]> {
        self.default.map(|t| t.fourcc).or(self.shared)
    }

    /// The default track of the tag `body` as a single-track tag body: the tag's own
    /// headers up to the packet type (ModEx blocks included), the default track's packet
    /// type in place of Multitrack, its FourCC, then its data. Empty when the tag carries no
    /// default track.
    pub fn default_body(&self, body: &[u8]) -> Vec<u8> {
        let Some(track) = self.default else {
            return Vec::new();
        };
        let head = &body[..=self.type_at];
        let data = &body[track.start..track.end];
        let mut out = Vec::with_capacity(head.len() + 4 + data.len());
        out.extend_from_slice(head);
        out[self.type_at] = (out[self.type_at] & 0xf0) | self.packet_type;
        out.extend_from_slice(&track.fourcc);
        out.extend_from_slice(data);
        out
    }
}

/// Enhanced video packet types.
mod video_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

/// Enhanced audio packet types.
mod audio_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    pub const MULTITRACK: u8 = 5;
    pub const MOD_EX: u8 = 7;
}

/// Video frame type of a keyframe.
const KEY_FRAME: u8 = 1;

/// Video frame type of a command frame (a seek marker, no picture).
const COMMAND_FRAME: u8 = 5;

/// Multitrack type of a tag that carries one track (no track size).
const ONE_TRACK: u8 = 0;

/// Multitrack type whose tracks each carry their own FourCC.
const MANY_TRACKS_MANY_CODECS: u8 = 2;

/// Legacy sound format that announces the enhanced audio header.
const EX_AUDIO: u8 = 9;

/// Reads an enhanced header's ModEx blocks (v2) starting at `at`, whose first packet type
/// was ModEx: each block is a size (`UI8` + 1, or `UI16` + 1 when the byte is 255), its data,
/// then `modExType (4 bits) | packet type (4 bits)`. Returns the packet type after the last
/// block and where the header goes on, `None` when the body ends first.
fn skip_mod_ex(body: &[u8], mut at: usize, mod_ex: u8) -> Option<(u8, usize)> {
    loop {
        let mut size = usize::from(*body.get(at)?) + 1;
        at += 1;
        if size == 256 {
            size = usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?])) + 1;
            at += 2;
        }
        at += size;
        let packet_type = *body.get(at)? & 0x0f;
        at += 1;
        if packet_type != mod_ex {
            return Some((packet_type, at));
        }
    }
}

/// Reads a signed 24-bit composition time at `at` (0 when cut short).
fn composition_time(body: &[u8], at: usize) -> i32 {
    body.get(at..at + 3)
        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8)
}

/// Reads a FourCC at `at`.
fn fourcc(body: &[u8], at: usize) -> Option<[u8; 4]> {
    body.get(at..at + 4)?.try_into().ok()
}

/// Reads the multitrack header that follows the byte at `type_at` (whose packet type is
/// Multitrack) and finds the default track; `None` when it is cut short, a track's size runs
/// past the body, it carries no track, or its tracks' packet type is one of `nested` (the
/// kind's Multitrack and ModEx, which the specification rules out there).
fn multitrack(body: &[u8], type_at: usize, nested: [u8; 2]) -> Option<Multitrack> {
    let byte = *body.get(type_at + 1)?;
    let (kind, packet_type) = (byte >> 4, byte & 0x0f);
    if nested.contains(&packet_type) {
        return None;
    }
    let mut at = type_at + 2;
    let shared = if kind == MANY_TRACKS_MANY_CODECS {
        None
    } else {
        at += 4;
        Some(fourcc(body, at - 4)?)
    };
    let mut first_track = None;
    let mut default = None;
    while at < body.len() {
        let code = match shared {
            Some(code) => code,
            None => {
                at += 4;
                fourcc(body, at - 4)?
            }
        };
        let id = *body.get(at)?;
        at += 1;
        let end = if kind == ONE_TRACK {
            body.len()
        } else {
            let size = body.get(at..at + 3)?;
            at += 3;
            let end = at
                + usize::from(u16::from_be_bytes([size[1], size[2]]))
                + (usize::from(size[0]) << 16);
            (end <= body.len()).then_some(end)?
        };
        first_track.get_or_insert(id);
        if id == 0 && default.is_none() {
            default = Some(TrackSpan {
                fourcc: code,
                start: at,
                end,
            });
        }
        at = end;
    }
    Some(Multitrack {
        type_at,
        packet_type,
        shared,
        first_track: first_track?,
        default,
    })
}

/// What follows an enhanced header's packet type.
struct ExBody {
    /// The multitrack header, for a multitrack tag.
    multitrack: Option<Multitrack>,
    /// The FourCC that names the codec (`None` for tracks of several codecs without the
    /// default track).
    fourcc: Option<[u8; 4]>,
    /// The packet type of the payload.
    packet_type: u8,
    /// Where the payload starts (the end of the body for a multitrack tag, whose tracks
    /// each have their own start).
    at: usize,
}

/// Reads what follows an enhanced header's packet type (`packet_type`, read just before
/// `at`, after any ModEx blocks): a multitrack header when the packet type is `kind[0]`, the
/// kind's Multitrack (`kind[1]` is its ModEx), else the tag's FourCC.
fn ex_body(body: &[u8], packet_type: u8, at: usize, kind: [u8; 2]) -> Option<ExBody> {
    if packet_type == kind[0] {
        let tracks = multitrack(body, at - 1, kind)?;
        Some(ExBody {
            multitrack: Some(tracks),
            fourcc: tracks.codec(),
            packet_type: tracks.packet_type,
            at: body.len(),
        })
    } else {
        Some(ExBody {
            multitrack: None,
            fourcc: Some(fourcc(body, at)?),
            packet_type,
            at: at + 4,
        })
    }
}

/// Classifies a video tag body; `None` when it is empty or its header is cut short.
pub fn video(body: &[u8]) -> Option<VideoTag> {
    let first = *body.first()?;
    if first & 0x80 == 0 {
        return Some(legacy_video(first, body));
    }
    let frame_type = (first >> 4) & 0x07;
    let mut packet_type = first & 0x0f;
    let mut at = 1;
    if packet_type == video_packet::MOD_EX {
        (packet_type, at) = skip_mod_ex(body, at, video_packet::MOD_EX)?;
    }
    if packet_type != video_packet::METADATA && frame_type == COMMAND_FRAME {
        // A command (seek start or end): one byte, no codec, no picture.
        return Some(VideoTag {
            codec: VideoCodec::Other([0; 4]),
            keyframe: false,
            header: false,
            metadata: false,
            payload: false,
            enhanced: true,
            multitrack: None,
            data_at: body.len(),
            composition_time: 0,
        });
    }
    let ex = ex_body(
        body,
        packet_type,
        at,
        [video_packet::MULTITRACK, video_packet::MOD_EX],
    )?;
    let (multitrack, packet_type, at) = (ex.multitrack, ex.packet_type, ex.at);
    let codec = ex
        .fourcc
        .map_or(VideoCodec::Multiple, VideoCodec::from_fourcc);
    let coded = matches!(
        packet_type,
        video_packet::CODED_FRAMES | video_packet::CODED_FRAMES_X
    );
    // Coded frames of AVC and HEVC carry a 24-bit composition time first (in each track of
    // a multitrack tag, which `at` has passed).
    let (header_len, composition_time) = if packet_type == video_packet::CODED_FRAMES
        && multitrack.is_none()
        && matches!(codec, VideoCodec::Avc | VideoCodec::Hevc)
    {
        (at + 3, composition_time(body, at))
    } else {
        (at, 0)
    };
    Some(VideoTag {
        codec,
        // A multitrack tag starts a picture only for its default track.
        keyframe: coded
            && frame_type == KEY_FRAME
            && multitrack.is_none_or(|m| m.default.is_some()),
        header: matches!(
            packet_type,
            video_packet::SEQUENCE_START
                | video_packet::METADATA
                | video_packet::MPEG2TS_SEQUENCE_START
        ),
        metadata: packet_type == video_packet::METADATA,
        payload: packet_type != video_packet::SEQUENCE_END
            && (multitrack.is_some() || body.len() > header_len),
        enhanced: true,
        multitrack,
        data_at: header_len,
        composition_time,
    })
}

/// A legacy video tag body (`first` is its first byte).
fn legacy_video(first: u8, body: &[u8]) -> VideoTag {
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    let codec = match codec_id {
        7 => VideoCodec::Avc,
        12 => VideoCodec::Hevc,
        id => VideoCodec::Legacy(id),
    };
    // AVC and HEVC carry a packet type byte: 0 is the sequence header, 1 a frame, 2 the end
    // of sequence (which is no place to start from, although encoders mark it with frame
    // type 1); then a 24-bit composition time.
    let packet_type = matches!(codec_id, 7 | 12).then(|| body.get(1).copied().unwrap_or(0xff));
    let header_len = if packet_type.is_some() { 5 } else { 1 };
    let composition_time = match packet_type {
        Some(1) => composition_time(body, 2),
        _ => 0,
    };
    VideoTag {
        codec,
        keyframe: frame_type == KEY_FRAME && packet_type.is_none_or(|t| t == 1),
        header: packet_type == Some(0),
        metadata: false,
        payload: body.len() > header_len,
        enhanced: false,
        multitrack: None,
        data_at: header_len,
        composition_time,
    }
}

/// Classifies an audio tag body; `None` when it is empty or its header is cut short.
pub fn audio(body: &[u8]) -> Option<AudioTag> {
    let first = *body.first()?;
    let format = first >> 4;
    if format != EX_AUDIO {
        let codec = match format {
            10 => AudioCodec::Aac,
            2 | 14 => AudioCodec::Mp3,
            other => AudioCodec::Legacy(other),
        };
        // AAC: a packet type byte follows (0: AudioSpecificConfig).
        let header_len = if format == 10 { 2 } else { 1 };
        return Some(AudioTag {
            codec,
            header: format == 10 && body.get(1) == Some(&0),
            multichannel: false,
            payload: body.len() > header_len,
            enhanced: false,
            multitrack: None,
            data_at: header_len,
        });
    }
    let mut packet_type = first & 0x0f;
    let mut at = 1;
    if packet_type == audio_packet::MOD_EX {
        (packet_type, at) = skip_mod_ex(body, at, audio_packet::MOD_EX)?;
    }
    let ex = ex_body(
        body,
        packet_type,
        at,
        [audio_packet::MULTITRACK, audio_packet::MOD_EX],
    )?;
    let (multitrack, packet_type, at) = (ex.multitrack, ex.packet_type, ex.at);
    let codec = ex
        .fourcc
        .map_or(AudioCodec::Multiple, AudioCodec::from_fourcc);
    Some(AudioTag {
        codec,
        header: matches!(
            packet_type,
            audio_packet::SEQUENCE_START | audio_packet::MULTICHANNEL_CONFIG
        ),
        multichannel: packet_type == audio_packet::MULTICHANNEL_CONFIG,
        payload: multitrack.is_some() || body.len() > at,
        enhanced: true,
        multitrack,
        data_at: at,
    })
}

#[cfg(test)]
mod tests;
