//! The fragmented MP4 (CMAF) writer of Low-Latency HLS (pure: no IO, no clock).
//!
//! It takes the units the MPEG-TS segmenter takes (FLV tag bodies with their timestamps)
//! and makes the initialization segment (`EXT-X-MAP`) and `moof`+`mdat` fragments, one per
//! part, with the `CODECS` string of the multivariant playlist. It does not decide where
//! parts and segments begin; the LL-HLS segmenter does, and calls it.
//!
//! # Tracks and codecs
//!
//! Video is H.264 (`avc1` + `avcC`), HEVC (`hvc1` + `hvcC`) or AV1 (`av01` + `av1C`), from
//! legacy FLV headers (AVC, HEVC under codec id 12) or Enhanced RTMP ones; audio is AAC
//! (`mp4a` + `esds`, legacy or Enhanced RTMP `mp4a`) or Opus (`Opus` + `dOps`, from the
//! Enhanced RTMP Opus identification header). Of a multitrack stream, the default track
//! (as for MPEG-TS). Any other codec makes [`Fmp4Writer::push`] answer
//! [`Pushed::Unsupported`] with the track's name, as the MPEG-TS segmenter does: the
//! writer drops what it queued and takes nothing more, so that no fragment lacks one of the
//! stream's tracks. Video is track 1 and audio track 2, whichever is configured.
//!
//! A sequence header configures its track; the configuration's own bytes go into the
//! sample entry as they came (`avcC`, `hvcC` with its parameter sets marked complete, as
//! `hvc1` requires; `av1C`; the AudioSpecificConfig in the `esds`), and the picture size
//! is read from the SPS or the AV1 sequence header. Frames go into samples as they came
//! (length-prefixed NAL units; AV1 temporal units without their leading temporal delimiter,
//! which the AV1 binding leaves out of samples). A sequence header that changes a
//! configuration changes the initialization segment: [`Pushed::Configured`] says so, and
//! hands back the samples queued before it as a last fragment of the old configuration (see
//! [`Fmp4Writer::finish`]); the caller starts a new `EXT-X-MAP` there. The same header
//! again (encoders repeat them) changes nothing.
//!
//! # Timescales
//!
//! Video runs at 90 kHz, audio at its sampling rate (48 kHz for Opus, as its ISOBMFF
//! mapping requires); the movie at 1 kHz. FLV timestamps are milliseconds, which 90 kHz
//! holds exactly (90 ticks). A 1 kHz video timescale would hold them too; 90 kHz is chosen
//! because it is the clock of the MPEG-TS rendition of the same stream (its PES timestamps
//! are the same numbers), and leaves room for sources with finer timestamps. Audio at its
//! sampling rate is what decoders and the Opus mapping expect. A sample's decode time is
//! its DTS converted to the timescale (rounded down; video's shifted, see below); its
//! duration the distance to the next one's, so `tfdt` always equals the (shifted) DTS of a
//! fragment's first sample, and fragments follow each other without gap or overlap. AAC
//! frames therefore last what their millisecond timestamps say (about 1014 or 1058 ticks at
//! 44.1 kHz, 1024 on average), not exactly 1024 ticks: the audio stays where the publisher put it relative to the video.
//! Two samples of one track with the same DTS are spaced one tick apart.
//!
//! # Composition
//!
//! With B-frames, pictures are shown later than they are decoded: the FLV composition time
//! (80 ms for a keyframe with two B-frames at 25 fps). A player's timeline starts at the
//! decode time of what it loads first (hls.js: the earliest `tfdt`), so a keyframe shown
//! 80 ms after its decode time leaves a hole before it that the player has to seek over.
//! The video's decode times therefore run the composition time of its first keyframe
//! later than the DTS (and its composition offsets that much less, negative for B-frames
//! before a keyframe in presentation order: signed, `trun` version 1, as CMAF packagers
//! write them): keyframes are shown at their decode time, every picture at the time the
//! publisher gave it, and the audio, untouched, stays in step. So a fragment's `tfdt` is
//! the DTS of its first sample plus that shift (at most [`MAX_SHIFT_MS`]).
//!
//! # Holding back the last sample
//!
//! A sample's duration is known only when the next sample of its track arrives. The writer
//! therefore holds the last sample of each track back: [`Fmp4Writer::take_fragment`]
//! returns the samples that are complete, and the held ones go into a later fragment. At the
//! end of a stream [`Fmp4Writer::finish`] returns everything, the held samples with the
//! duration of the sample before them (a track's only sample: one frame, 40 ms of video, an
//! AAC or 20 ms Opus frame).
//!
//! # Parts and keyframes
//!
//! The LL-HLS segmenter ([`crate::hls::llsegmenter`]) calls, after each
//! [`Fmp4Writer::push`]:
//!
//! - at a sample that can start a part ([`Pushed::Sample`] with `independent`: a video
//!   keyframe, or an audio frame of a stream without video), if a segment starts there
//!   ([`crate::hls::llhls::LlWindow::starts_segment`] with [`Fmp4Writer::pending_ms`]):
//!   [`Fmp4Writer::end_segment`], then, once [`Fmp4Writer::segment_end_ready`] holds,
//!   [`Fmp4Writer::take_fragment_within`] with the part target until nothing is left. The
//!   fragments stop right before that sample, and the next one starts with it
//!   ([`Fragment::independent`]);
//! - when [`Fmp4Writer::pending_ms`] reaches the part target:
//!   [`Fmp4Writer::take_fragment_within`] with the part target, which cuts before the
//!   sample that would take the part past it (RFC 8216bis 4.4.4.9: no part is longer than
//!   the part target).
//!
//! A fragment's duration and first DTS are those of its *primary* track, video when video
//! is configured, else audio; the other track's samples go with it up to the primary
//! track's cut (all its complete samples when nothing is cut). A fragment is *independent*
//! when its primary track's first sample is a sync sample: a video keyframe, or any audio
//! frame of a stream without video.
//!
//! # Segment ends
//!
//! Video is cut in decode order, but shown in presentation order: with B-frames a segment's
//! pictures are shown from its keyframe's presentation time to the next keyframe's, which
//! are later than their decode times (by 80 ms with two B-frames at 25 fps). So audio is
//! cut at the next keyframe's *presentation* time: both tracks of a segment then cover the
//! same span. Players that measure what a segment buffered take one whose tracks fall short
//! of its duration as not loaded (hls.js: more than 50 ms short is "no progress"; it loads
//! it again, and stalls). Audio up to that time arrives after the keyframe (publishers
//! interleave by decode time), so a segment's end waits for it: [`Fmp4Writer::end_segment`]
//! marks the keyframe, fragments stop before it, and [`Fmp4Writer::segment_end_ready`]
//! says when the audio is there, or when the video went on a part target past it without
//! (a publisher whose audio lags or stopped): the wait is bounded. The first segment of a
//! stream (and after a discontinuity) starts the same way: what audio came before its
//! keyframe's presentation time goes into a fragment of its own, which the segmenter's
//! window leaves out (no segment is open for it), so both tracks start together.
//!
//! # Bounds
//!
//! The samples queued (both tracks) are bounded by [`MAX_QUEUED_BYTES`] and
//! [`MAX_QUEUED_SAMPLES`]: a caller that takes fragments every part target never gets near
//! them. Past either, [`Fmp4Writer::push`] refuses the sample with
//! [`Fmp4Error::QueueFull`], and leaves video out until the next keyframe (the frames after
//! a missing one cannot be decoded). Malformed configurations are refused with typed errors
//! and change nothing; frames before their track's configuration, metadata, command frames
//! and end-of-sequence tags are ignored.
//!
//! # Boxes: `mp4-atom`
//!
//! The boxes are those of the `mp4-atom` crate (kixelated/mp4-atom, MIT or Apache-2.0,
//! released every few weeks): it encodes every box needed here, the sample entries and
//! their configuration boxes (`avc1`/`avcC`, `hvc1`/`hvcC`, `av01`/`av1C`, `mp4a`/`esds`,
//! `Opus`/`dOps`) as well as `moov`, `mvex`/`trex`, `moof`/`traf`/`tfhd`/`tfdt`/`trun`; it
//! also reads the configuration records (`avcC`, `hvcC`, `av1C`), which checks them and
//! gives the fields of the `CODECS` strings. A fragment's `moof` is a handful of small
//! structures (a `Vec` of `trun` entries per track), encoded twice into the fragment's
//! buffer: once to learn its size, which the `trun` data offsets need, then for real, after
//! the buffer is reserved at the fragment's exact size. The `mdat` is written here: its header, then
//! the samples copied from the units' buffers (which the queue shares, without copying,
//! until then). `mp4-atom`'s `Mdat` owns a `Vec` of its data, which would cost a second
//! copy of every sample.

mod config;

use crate::flv::codec::{self, AudioCodec, VideoCodec};
use crate::hls::segmenter::track_name;
use crate::media::{Tracks, Unit, UnitKind};
use bytes::Bytes;
use config::{AudioConfig, VideoConfig};
use mp4_atom::{
    Dinf, Dref, DrefEntry, Encode, FourCC, Ftyp, Hdlr, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mvex,
    Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples,
    Url, Vmhd,
};
use std::collections::VecDeque;

/// Track ID of video (the first track).
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track ID of audio.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of video tracks: 90 kHz (see the module's notes on timescales).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Timescale of the movie header (which gives no duration: fragments carry the media).
const MOVIE_TIMESCALE: u32 = 1000;

/// Bytes of samples queued (both tracks) beyond which samples are refused
/// ([`Fmp4Error::QueueFull`]). A fragment is at most a segment: the same bound as an
/// MPEG-TS segment's ([`crate::hls::segmenter::MAX_SEGMENT_BYTES`]).
pub const MAX_QUEUED_BYTES: usize = crate::hls::segmenter::MAX_SEGMENT_BYTES;

/// Samples queued (both tracks) beyond which samples are refused ([`Fmp4Error::QueueFull`]):
/// bounds the `trun` entries of a fragment, whatever the samples' size. About 2.5 minutes
/// of 50 fps video with 48 kHz AAC.
pub const MAX_QUEUED_SAMPLES: usize = 16_384;

/// Duration given to a track's last sample at [`Fmp4Writer::finish`] when it had no sample
/// before it to measure (ms, one frame at 25 fps).
const LONE_VIDEO_FRAME_MS: u64 = 40;

/// Largest composition shift of a track (ms, see the module's notes on composition): a
/// keyframe shown later than this after its decode time is a publisher's error, not a
/// reordering depth.
const MAX_SHIFT_MS: u64 = 1000;

/// Sample flags of a sync sample: depends on no other (ISO/IEC 14496-12 8.8.3.1).
const SYNC_FLAGS: u32 = 0x0200_0000;
/// Sample flags of another sample: depends on others, not a sync sample.
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// Why a unit could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// A video sequence header (AVC, HEVC or AV1 configuration record, or the SPS or
    /// sequence header in it) is malformed. The track keeps its configuration.
    #[error("bad video sequence header: {0}")]
    VideoConfig(&'static str),
    /// An audio sequence header (AAC AudioSpecificConfig, Opus identification header) is
    /// malformed. The track keeps its configuration.
    #[error("bad audio sequence header: {0}")]
    AudioConfig(&'static str),
    /// The queue is at [`MAX_QUEUED_BYTES`] or [`MAX_QUEUED_SAMPLES`]: fragments were not
    /// taken. The sample is left out (video until the next keyframe).
    #[error("fMP4 queue full ({bytes} bytes in {samples} samples): fragments are not being taken")]
    QueueFull {
        /// Bytes queued.
        bytes: usize,
        /// Samples queued.
        samples: usize,
    },
    /// `mp4-atom` refused to encode a box (a field out of its range).
    #[error("fMP4 box: {0}")]
    Encode(String),
}

/// What [`Fmp4Writer::push`] did with a unit.
#[derive(Debug)]
pub enum Pushed {
    /// A sequence header configured its track.
    Configured {
        /// The initialization segment changed (a first or a different configuration):
        /// fragments from here on go with the new one.
        changed: bool,
        /// With a change, what was queued before it, as the last fragments of the old
        /// configuration (see [`Fmp4Writer::finish_within`]): one fragment, or fragments of
        /// at most the part target of a writer made [`Fmp4Writer::with_part_target`].
        flushed: Vec<Fragment>,
    },
    /// A frame was queued.
    Sample {
        /// A part that starts with it is independent: a video keyframe, or an audio frame
        /// of a stream without video (see [`Fragment::independent`]).
        independent: bool,
    },
    /// Nothing to write: metadata, a command frame, an end of sequence, a frame before
    /// its track's configuration (or after a refused one, until the next keyframe), an empty
    /// or cut-short body, or anything after [`Pushed::Unsupported`].
    Ignored,
    /// A track this writer cannot carry (`"vp9 video (Enhanced RTMP)"`): from now on the
    /// writer takes nothing (see the module's notes).
    Unsupported(String),
}

/// One `moof` and its `mdat`.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The boxes.
    pub bytes: Bytes,
    /// Its `mfhd` sequence number: 1 for the writer's first fragment, then one more each.
    pub sequence: u32,
    /// DTS of its primary track's first sample (ms; see the module's notes on parts).
    pub first_dts_ms: u64,
    /// Duration of its primary track's samples (ms).
    pub duration_ms: u64,
    /// It starts with a sync sample of its primary track: a video keyframe, or with no
    /// video, an audio frame (`INDEPENDENT=YES`).
    pub independent: bool,
}

/// One queued sample.
#[derive(Debug, Clone)]
struct Sample {
    /// DTS (ms, extended past 32 bits).
    dts_ms: u64,
    /// Decode time (timescale units).
    decode: u64,
    /// Duration (timescale units); known once the next sample arrived.
    duration: u32,
    /// Composition offset (timescale units).
    cts: i32,
    /// Presentation time (ms): the DTS plus the composition time.
    pts_ms: u64,
    /// A sync sample.
    sync: bool,
    /// The sample's bytes, shared with the unit they came in.
    data: Bytes,
}

/// The samples of one track.
#[derive(Debug)]
struct Track {
    /// Track ID.
    id: u32,
    /// Timescale of the configuration in force.
    timescale: u32,
    /// Duration given to a lone last sample at the end (timescale units).
    lone_ticks: u32,
    /// Queued samples; the last one is held back (its duration is not known yet).
    samples: VecDeque<Sample>,
    /// Decode time of the last sample queued, or the last one before the end of what was
    /// flushed: the next one starts after it.
    last_decode: Option<u64>,
    /// The last duration measured, for a held sample that has to end without a successor.
    last_duration: Option<u32>,
    /// A frame was refused: frames are left out until the next sync sample.
    gap: bool,
    /// The last sample got a duration without a successor ([`Track::release_held`]): every
    /// sample queued is complete, until the next one arrives.
    released: bool,
    /// Decode times run this much (ms) after the DTS: the composition time of the track's
    /// first sync sample, so that keyframes are shown at their decode time (see the
    /// module's notes on composition); `None` until a sync sample came.
    shift_ms: Option<u64>,
}

impl Track {
    fn new(id: u32, timescale: u32, lone_ticks: u32) -> Self {
        Track {
            id,
            timescale,
            lone_ticks,
            samples: VecDeque::new(),
            last_decode: None,
            last_duration: None,
            gap: false,
            released: false,
            shift_ms: None,
        }
    }

    /// `ms` in this track's timescale.
    fn ticks(&self, ms: u64) -> u64 {
        (u128::from(ms) * u128::from(self.timescale) / 1000)
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Queues a frame: the sample before it gets its duration.
    fn queue(&mut self, dts_ms: u64, composition_ms: i32, sync: bool, data: Bytes) {
        if sync && self.shift_ms.is_none() {
            self.shift_ms =
                Some(u64::try_from(composition_ms).map_or(0, |ms| ms.min(MAX_SHIFT_MS)));
        }
        let shifted = self.ticks(dts_ms + self.shift_ms.unwrap_or(0));
        let decode = match self.last_decode {
            Some(last) => shifted.max(last + 1),
            None => shifted,
        };
        let pts_ms = dts_ms.saturating_add_signed(i64::from(composition_ms));
        let cts = i64::try_from(self.ticks(pts_ms)).unwrap_or(i64::MAX) - decode as i64;
        let cts = cts.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        if let Some(held) = self.samples.back_mut() {
            held.duration = u32::try_from(decode - held.decode).unwrap_or(u32::MAX);
            self.last_duration = Some(held.duration);
        }
        self.last_decode = Some(decode);
        self.released = false;
        self.samples.push_back(Sample {
            dts_ms,
            decode,
            duration: 0,
            cts,
            pts_ms,
            sync,
            data,
        });
    }

    /// Samples whose duration is known: all but the held one, unless it was released.
    fn complete(&self) -> usize {
        match self.released {
            true => self.samples.len(),
            false => self.samples.len().saturating_sub(1),
        }
    }

    /// Gives the held sample a duration (the last one measured, or a lone frame's) and
    /// makes it complete: the end of the stream, or of a configuration.
    fn release_held(&mut self) {
        let duration = self.last_duration.unwrap_or(self.lone_ticks).max(1);
        if let Some(held) = self.samples.back_mut() {
            held.duration = duration;
            self.last_decode = Some(held.decode + u64::from(duration) - 1);
            self.released = true;
        }
    }

    /// Where sample `i` ends (ms): the next one's DTS, or for the last one its DTS plus its
    /// duration.
    fn end_ms(&self, i: usize) -> u64 {
        match self.samples.get(i + 1) {
            Some(next) => next.dts_ms,
            None => self.samples.get(i).map_or(0, |s| {
                s.dts_ms + u64::from(s.duration) * 1000 / u64::from(self.timescale.max(1))
            }),
        }
    }
}

/// A track, and which one a fragment is measured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primary {
    /// The video track.
    Video,
    /// The audio track (the primary one in a stream without video).
    Audio,
}

/// A configured track: its configuration, codec, and the sequence header it came from.
type Configured<C, K> = Option<(C, K, Vec<u8>)>;

/// The fMP4 writer of one stream (one incarnation).
#[derive(Debug)]
pub struct Fmp4Writer {
    /// Video configuration and the record it was read from (to tell a change).
    video: Configured<VideoConfig, VideoCodec>,
    /// Audio configuration and the header it was read from.
    audio: Configured<AudioConfig, AudioCodec>,
    /// The video samples queued (track 1).
    video_track: Track,
    /// The audio samples queued (track 2).
    audio_track: Track,
    /// The initialization segment of the configuration in force.
    init: Option<Bytes>,
    /// Bytes of samples queued (both tracks).
    queued_bytes: usize,
    /// `mfhd` sequence number of the next fragment.
    next_sequence: u32,
    /// Last DTS seen (ms, extended past 32 bits).
    last_dts: Option<u64>,
    /// The first track found that this writer cannot carry.
    unsupported: Option<String>,
    /// The fragments flushed at a configuration change are cut at this many ms (see
    /// [`Fmp4Writer::with_part_target`]).
    part_target_ms: Option<u64>,
    /// DTS (ms) of the sync sample of the primary track that a segment ends before, while
    /// the samples before it are still to be taken (see [`Fmp4Writer::end_segment`]).
    boundary: Option<u64>,
}

impl Default for Fmp4Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Fmp4Writer {
    /// A writer with no track configured.
    pub fn new() -> Self {
        Fmp4Writer {
            video: None,
            audio: None,
            video_track: Track::new(
                VIDEO_TRACK_ID,
                VIDEO_TIMESCALE,
                LONE_VIDEO_FRAME_MS as u32 * (VIDEO_TIMESCALE / 1000),
            ),
            // Timescale and lone frame are the configuration's, set with it.
            audio_track: Track::new(AUDIO_TRACK_ID, 1000, 1),
            init: None,
            queued_bytes: 0,
            next_sequence: 1,
            last_dts: None,
            unsupported: None,
            part_target_ms: None,
            boundary: None,
        }
    }

    /// A writer whose flush at a configuration change ([`Pushed::Configured`]) gives
    /// fragments of at most `part_target_ms` of the primary track, as its caller's parts are.
    pub fn with_part_target(part_target_ms: u64) -> Self {
        Fmp4Writer {
            part_target_ms: Some(part_target_ms),
            ..Fmp4Writer::new()
        }
    }

    /// The track that keeps this stream out of fMP4, if any (see [`Pushed::Unsupported`]).
    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    /// The initialization segment (`ftyp` + `moov`) of the configuration in force; `None`
    /// before any track is configured.
    pub fn init_segment(&self) -> Option<Bytes> {
        self.init.clone()
    }

    /// The RFC 6381 `CODECS` attribute of the configured tracks, video first
    /// (`"avc1.64001f,mp4a.40.2"`); `None` before any track is configured.
    pub fn codecs(&self) -> Option<String> {
        let codecs: Vec<&str> = [
            self.video.as_ref().map(|v| v.0.codecs.as_str()),
            self.audio.as_ref().map(|a| a.0.codecs.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!codecs.is_empty()).then(|| codecs.join(","))
    }

    /// The picture size (`RESOLUTION`), when video is configured and its record gives it.
    pub fn video_size(&self) -> Option<(u16, u16)> {
        let (config, ..) = self.video.as_ref()?;
        (config.width > 0 && config.height > 0).then_some((config.width, config.height))
    }

    /// Whether a video track is configured.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether an audio track is configured.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Duration (ms) of the complete samples of the primary track queued: what
    /// [`Fmp4Writer::take_fragment`] would return.
    pub fn pending_ms(&self) -> u64 {
        let track = self.track(self.primary());
        match track.complete() {
            0 => 0,
            n => track.end_ms(n - 1).saturating_sub(track.samples[0].dts_ms),
        }
    }

    /// The duration of the primary track's last measured sample (ms): what the next one
    /// will probably last. `None` before two samples came.
    pub fn frame_ms(&self) -> Option<u64> {
        let track = self.track(self.primary());
        track
            .last_duration
            .map(|ticks| u64::from(ticks) * 1000 / u64::from(track.timescale.max(1)))
    }

    /// Whether the next fragment would be independent: the primary track's first queued
    /// sample (complete or held) is a sync sample.
    pub fn next_independent(&self) -> bool {
        self.track(self.primary())
            .samples
            .front()
            .is_some_and(|s| s.sync)
    }

    /// DTS of the last unit taken (ms, extended past 32 bits), if any.
    pub fn last_dts_ms(&self) -> Option<u64> {
        self.last_dts
    }

    /// Bytes of samples queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// A segment ends before the sample just queued, a sync sample of the primary track
    /// (see the module's notes on segment ends): fragments stop before it until every
    /// sample before it was taken, and the last of them carries the audio up to its
    /// presentation time. Nothing changes while an earlier end is pending.
    pub fn end_segment(&mut self) {
        if self.boundary.is_none() {
            let last = self.track(self.primary()).samples.back();
            self.boundary = last.filter(|s| s.sync).map(|s| s.dts_ms);
        }
    }

    /// Whether a segment end is pending ([`Fmp4Writer::end_segment`]): taking fragments
    /// until there are none clears it.
    pub fn ending_segment(&self) -> bool {
        self.boundary.is_some()
    }

    /// Whether the segment that ends ([`Fmp4Writer::end_segment`]) can be taken whole: the
    /// audio up to the keyframe's presentation time has arrived, or the video went on
    /// `max_wait_ms` past it without that audio (the publisher's audio lags or stopped).
    /// True when no end is pending, and for a stream without video or without audio.
    pub fn segment_end_ready(&self, max_wait_ms: u64) -> bool {
        let Some(at) = self.boundary else {
            return true;
        };
        if self.primary() != Primary::Video || self.audio.is_none() {
            return true;
        }
        let video = &self.video_track;
        let Some(until) = video
            .samples
            .iter()
            .find(|s| s.sync && s.dts_ms >= at)
            .map(|s| s.pts_ms)
        else {
            return true;
        };
        let audio = &self.audio_track;
        audio.released
            || audio.samples.back().is_some_and(|a| a.dts_ms >= until)
            || video
                .samples
                .back()
                .is_some_and(|v| v.dts_ms >= until.saturating_add(max_wait_ms))
    }

    /// Takes a unit (see the module's notes): a sequence header configures its track, a
    /// frame is queued, anything else is ignored. Units come in the order and with the
    /// timestamps the origin gives them (never decreasing, see [`crate::media::Rebaser`]).
    pub fn push(&mut self, unit: &Unit) -> Result<Pushed, Fmp4Error> {
        if self.unsupported.is_some() {
            return Ok(Pushed::Ignored);
        }
        let wire = unit.wire(Tracks::Default);
        match unit.kind {
            UnitKind::Video => self.push_video(unit.dts, wire.buf(), wire.body()),
            UnitKind::Audio => self.push_audio(unit.dts, wire.buf(), wire.body()),
            UnitKind::Script => Ok(Pushed::Ignored),
        }
    }

    fn push_video(&mut self, dts: u32, buf: &Bytes, body: &[u8]) -> Result<Pushed, Fmp4Error> {
        let Some(tag) = codec::video(body) else {
            return Ok(Pushed::Ignored);
        };
        // Metadata (colour information) is kept beside the sequence start; command frames
        // and ends of sequence carry no picture.
        if tag.metadata || (!tag.header && !tag.payload) {
            return Ok(Pushed::Ignored);
        }
        if tag.multitrack.is_some()
            || !matches!(
                tag.codec,
                VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1
            )
        {
            return Ok(self.refuse(track_name(tag.codec.name(), "video", tag.enhanced)));
        }
        let data = body.get(tag.data_at..).unwrap_or_default();
        if tag.header {
            // An MPEG-TS sequence start (Enhanced RTMP packet type 5) carries a descriptor
            // for MPEG-TS, not the configuration record.
            if body.first().is_some_and(|b| b & 0x8f == 0x85) {
                return Ok(Pushed::Ignored);
            }
            let make = match tag.codec {
                VideoCodec::Avc => config::avc,
                VideoCodec::Hevc => config::hevc,
                _ => config::av1,
            };
            return self.configure(|w| &mut w.video, tag.codec, data, make);
        }
        // Legacy AVC and HEVC frames are packet type 1 (0 the sequence header, 2 the end).
        if !tag.enhanced && body.get(1) != Some(&1) {
            return Ok(Pushed::Ignored);
        }
        let data = match tag.codec {
            VideoCodec::Av1 => &data[config::av1_data_start(data)..],
            _ => data,
        };
        if self.video.as_ref().is_none_or(|v| v.1 != tag.codec) || data.is_empty() {
            return Ok(Pushed::Ignored);
        }
        self.queue(
            Primary::Video,
            dts,
            tag.composition_time,
            tag.keyframe,
            share(buf, data),
        )
    }

    fn push_audio(&mut self, dts: u32, buf: &Bytes, body: &[u8]) -> Result<Pushed, Fmp4Error> {
        let Some(tag) = codec::audio(body) else {
            return Ok(Pushed::Ignored);
        };
        if tag.multitrack.is_some() || !matches!(tag.codec, AudioCodec::Aac | AudioCodec::Opus) {
            return Ok(self.refuse(track_name(tag.codec.name(), "audio", tag.enhanced)));
        }
        // The multichannel configuration is kept beside the sequence start.
        if tag.multichannel {
            return Ok(Pushed::Ignored);
        }
        let data = body.get(tag.data_at..).unwrap_or_default();
        if tag.header {
            let make = match tag.codec {
                AudioCodec::Aac => config::aac,
                _ => config::opus,
            };
            return self.configure(|w| &mut w.audio, tag.codec, data, make);
        }
        // Legacy AAC frames are packet type 1 (0 the AudioSpecificConfig).
        if !tag.enhanced && body.get(1) != Some(&1) {
            return Ok(Pushed::Ignored);
        }
        if self.audio.as_ref().is_none_or(|a| a.1 != tag.codec) || data.is_empty() {
            return Ok(Pushed::Ignored);
        }
        self.queue(Primary::Audio, dts, 0, true, share(buf, data))
    }

    /// Marks the stream unsupported (the first time) and drops what was queued.
    fn refuse(&mut self, track: String) -> Pushed {
        for t in [&mut self.video_track, &mut self.audio_track] {
            t.samples.clear();
        }
        self.queued_bytes = 0;
        self.unsupported = Some(track.clone());
        Pushed::Unsupported(track)
    }

    /// A configuration changed: the tracks take its timescale and the init segment is made
    /// again.
    /// A track's sequence header `data`: the same as the track's current one changes
    /// nothing; another is made into the track's configuration by `make`, after the samples
    /// queued under the old one are flushed as a last fragment.
    fn configure<C, K>(
        &mut self,
        track: fn(&mut Self) -> &mut Configured<C, K>,
        codec: K,
        data: &[u8],
        make: fn(&[u8]) -> Result<C, Fmp4Error>,
    ) -> Result<Pushed, Fmp4Error> {
        if track(self).as_ref().is_some_and(|t| t.2 == data) {
            return Ok(Pushed::Configured {
                changed: false,
                flushed: Vec::new(),
            });
        }
        let config = make(data)?;
        let flushed = match self.part_target_ms {
            Some(max_ms) => self.finish_within(max_ms)?,
            None => self.finish()?.into_iter().collect(),
        };
        *track(self) = Some((config, codec, data.to_vec()));
        self.configured()?;
        Ok(Pushed::Configured {
            changed: true,
            flushed,
        })
    }

    fn configured(&mut self) -> Result<(), Fmp4Error> {
        if let Some((config, ..)) = &self.audio {
            if self.audio_track.timescale != config.timescale {
                // Decode times of the old timescale mean nothing in the new one.
                self.audio_track.last_decode = None;
                self.audio_track.last_duration = None;
            }
            self.audio_track.timescale = config.timescale;
            self.audio_track.lone_ticks = config.frame_ticks;
        }
        self.init = Some(self.build_init()?);
        Ok(())
    }

    /// Queues a frame of `primary`'s track, within the bounds.
    fn queue(
        &mut self,
        kind: Primary,
        dts: u32,
        composition_ms: i32,
        sync: bool,
        data: Bytes,
    ) -> Result<Pushed, Fmp4Error> {
        let samples = self.video_track.samples.len() + self.audio_track.samples.len();
        let track = self.track_mut(kind);
        if track.gap && !sync {
            return Ok(Pushed::Ignored);
        }
        if self.queued_bytes + data.len() > MAX_QUEUED_BYTES || samples >= MAX_QUEUED_SAMPLES {
            self.track_mut(kind).gap = kind == Primary::Video;
            return Err(Fmp4Error::QueueFull {
                bytes: self.queued_bytes,
                samples,
            });
        }
        let dts_ms = self.extend(dts);
        self.queued_bytes += data.len();
        let track = self.track_mut(kind);
        track.gap = false;
        track.queue(dts_ms, composition_ms, sync, data);
        Ok(Pushed::Sample {
            independent: sync && kind == self.primary(),
        })
    }

    /// The DTS extended past 32 bits (the difference to the last one is taken as a signed
    /// 32-bit step).
    fn extend(&mut self, dts: u32) -> u64 {
        let extended = match self.last_dts {
            Some(last) => {
                let step = i64::from(dts.wrapping_sub(last as u32) as i32);
                last.saturating_add_signed(step)
            }
            None => u64::from(dts),
        };
        self.last_dts = Some(extended);
        extended
    }

    fn primary(&self) -> Primary {
        if self.video.is_some() || self.audio.is_none() {
            Primary::Video
        } else {
            Primary::Audio
        }
    }

    fn track(&self, kind: Primary) -> &Track {
        match kind {
            Primary::Video => &self.video_track,
            Primary::Audio => &self.audio_track,
        }
    }

    fn track_mut(&mut self, kind: Primary) -> &mut Track {
        match kind {
            Primary::Video => &mut self.video_track,
            Primary::Audio => &mut self.audio_track,
        }
    }

    /// The complete samples queued since the last fragment, as one fragment; `None` when
    /// there are none. The last sample of each track stays held back (see the module's
    /// notes).
    pub fn take_fragment(&mut self) -> Result<Option<Fragment>, Fmp4Error> {
        self.cut(None)
    }

    /// Like [`Fmp4Writer::take_fragment`], but at most `max_ms` of the primary track: the
    /// longest run of its complete samples that lasts no more than `max_ms` (at least one
    /// sample, however long), with the other track's complete samples that start before
    /// the end of that run.
    pub fn take_fragment_within(&mut self, max_ms: u64) -> Result<Option<Fragment>, Fmp4Error> {
        self.cut(Some(max_ms))
    }

    /// Everything queued, the held samples included, as one fragment (the end of the
    /// stream): each held sample lasts as long as the sample before it in its track (see
    /// the module's notes). Afterwards the writer can go on: the next samples start after
    /// those.
    pub fn finish(&mut self) -> Result<Option<Fragment>, Fmp4Error> {
        self.release_all();
        self.cut(None)
    }

    /// Like [`Fmp4Writer::finish`], but in fragments of at most `max_ms` of the primary
    /// track, as [`Fmp4Writer::take_fragment_within`] cuts them: parts of an LL-HLS
    /// segment that ends here.
    pub fn finish_within(&mut self, max_ms: u64) -> Result<Vec<Fragment>, Fmp4Error> {
        self.release_all();
        let mut fragments = Vec::new();
        while let Some(fragment) = self.cut(Some(max_ms))? {
            fragments.push(fragment);
        }
        Ok(fragments)
    }

    /// Every sample becomes complete (the held ones get a duration) and a pending segment
    /// end is dropped: what is queued goes out whole.
    fn release_all(&mut self) {
        self.video_track.release_held();
        self.audio_track.release_held();
        self.boundary = None;
    }

    fn cut(&mut self, max_ms: Option<u64>) -> Result<Option<Fragment>, Fmp4Error> {
        let primary = self.primary();
        let (main, other) = match primary {
            Primary::Video => (&self.video_track, &self.audio_track),
            Primary::Audio => (&self.audio_track, &self.video_track),
        };
        // A pending segment end: nothing from its sync sample on.
        let complete = main.complete();
        let limit = match self.boundary {
            Some(at) => main
                .samples
                .iter()
                .take(complete)
                .position(|s| s.sync && s.dts_ms >= at)
                .unwrap_or(complete),
            None => complete,
        };
        let mut taken = limit;
        if let (Some(max_ms), Some(first)) = (max_ms, main.samples.front()) {
            taken = (1..=limit)
                .take_while(|&n| {
                    n == 1 || main.end_ms(n - 1).saturating_sub(first.dts_ms) <= max_ms
                })
                .last()
                .unwrap_or(0);
        }
        // The other track goes up to the next sample of the primary one: to its
        // presentation time when it is a video keyframe, where a segment may start (see
        // the module's notes on segment ends), else to its decode time.
        let end_ms = match max_ms.is_some() || self.boundary.is_some() {
            true => main
                .samples
                .get(taken)
                .map(|s| match primary == Primary::Video && s.sync {
                    true => s.pts_ms.max(s.dts_ms),
                    false => s.dts_ms,
                }),
            false => None,
        };
        let others = match end_ms {
            Some(end) => other
                .samples
                .iter()
                .take(other.complete())
                .take_while(|s| s.dts_ms < end)
                .count(),
            None => other.complete(),
        };
        let counts = match primary {
            Primary::Video => [taken, others],
            Primary::Audio => [others, taken],
        };
        if counts == [0, 0] {
            // Everything before a pending segment end was taken.
            self.boundary = None;
        }
        self.write(primary, counts)
    }

    /// Writes the first `counts` samples of video and audio as a fragment and drops them
    /// from the queue.
    fn write(
        &mut self,
        primary: Primary,
        counts: [usize; 2],
    ) -> Result<Option<Fragment>, Fmp4Error> {
        if counts == [0, 0] {
            return Ok(None);
        }
        let main = self.track(primary);
        let main_count = match primary {
            Primary::Video => counts[0],
            Primary::Audio => counts[1],
        };
        let (first_dts_ms, duration_ms, independent) = if main_count > 0 {
            let first = &main.samples[0];
            (
                first.dts_ms,
                main.end_ms(main_count - 1).saturating_sub(first.dts_ms),
                first.sync,
            )
        } else {
            // Only the other track has samples: measured by it, and not independent (the
            // primary track's next sample is not in it).
            let (other, n) = match primary {
                Primary::Video => (&self.audio_track, counts[1]),
                Primary::Audio => (&self.video_track, counts[0]),
            };
            let first = &other.samples[0];
            let end = other.end_ms(n - 1);
            (first.dts_ms, end.saturating_sub(first.dts_ms), false)
        };
        let sequence = self.next_sequence;
        let bytes = self.encode(sequence, counts)?;
        self.next_sequence = self.next_sequence.checked_add(1).unwrap_or(1);
        for (track, n) in [
            (&mut self.video_track, counts[0]),
            (&mut self.audio_track, counts[1]),
        ] {
            for sample in track.samples.drain(..n) {
                self.queued_bytes -= sample.data.len();
            }
        }
        Ok(Some(Fragment {
            bytes,
            sequence,
            first_dts_ms,
            duration_ms,
            independent,
        }))
    }

    /// The `moof` and `mdat` of the first `counts` samples of video and audio.
    fn encode(&self, sequence: u32, counts: [usize; 2]) -> Result<Bytes, Fmp4Error> {
        let tracks = [
            (&self.video_track, counts[0], true),
            (&self.audio_track, counts[1], false),
        ];
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: sequence,
            },
            traf: Vec::with_capacity(2),
        };
        let mut data_lens = Vec::with_capacity(2);
        for (track, n, video) in tracks {
            if n == 0 {
                continue;
            }
            let samples = track.samples.range(..n);
            let entries: Vec<TrunEntry> = samples
                .clone()
                .map(|s| TrunEntry {
                    duration: Some(s.duration),
                    size: Some(s.data.len() as u32),
                    flags: video.then_some(if s.sync { SYNC_FLAGS } else { NON_SYNC_FLAGS }),
                    cts: video.then_some(i64::from(s.cts)),
                })
                .collect();
            data_lens.push(samples.map(|s| s.data.len()).sum::<usize>());
            moof.traf.push(Traf {
                tfhd: Tfhd {
                    track_id: track.id,
                    // Audio frames are all sync samples: said once here.
                    default_sample_flags: (!video).then_some(SYNC_FLAGS),
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: track.samples[0].decode,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(entries),
                }],
                ..Default::default()
            });
        }
        // The data offsets count from the start of the moof (default-base-is-moof): its
        // size, which they do not change, is learnt by encoding it once.
        let mut out = Vec::new();
        moof.encode(&mut out).map_err(encode_error)?;
        let moof_len = out.len();
        let data_len: usize = data_lens.iter().sum();
        let mut offset = moof_len + 8;
        for (traf, len) in moof.traf.iter_mut().zip(&data_lens) {
            for trun in &mut traf.trun {
                trun.data_offset = Some(i32::try_from(offset).map_err(encode_error)?);
            }
            offset += len;
        }
        out.clear();
        out.reserve_exact(moof_len + 8 + data_len);
        moof.encode(&mut out).map_err(encode_error)?;
        let mdat_len = u32::try_from(8 + data_len).map_err(encode_error)?;
        out.extend_from_slice(&mdat_len.to_be_bytes());
        out.extend_from_slice(b"mdat");
        for (track, n, _) in tracks {
            for sample in track.samples.range(..n) {
                out.extend_from_slice(&sample.data);
            }
        }
        Ok(Bytes::from(out))
    }

    /// `ftyp` and `moov` of the configured tracks.
    fn build_init(&self) -> Result<Bytes, Fmp4Error> {
        let mut brands = vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ];
        if self.video.as_ref().is_some_and(|v| v.1 == VideoCodec::Av1) {
            brands.push(FourCC::new(b"av01"));
        }
        let ftyp = Ftyp {
            major_brand: FourCC::new(b"iso6"),
            minor_version: 0,
            compatible_brands: brands,
        };
        let mut traks = Vec::with_capacity(2);
        let mut trex = Vec::with_capacity(2);
        if let Some((config, ..)) = &self.video {
            traks.push(trak(
                VIDEO_TRACK_ID,
                VIDEO_TIMESCALE,
                config.entry.clone(),
                Some((config.width, config.height)),
            ));
        }
        if let Some((config, ..)) = &self.audio {
            traks.push(trak(
                AUDIO_TRACK_ID,
                config.timescale,
                config.entry.clone(),
                None,
            ));
        }
        for trak in &traks {
            trex.push(Trex {
                track_id: trak.tkhd.track_id,
                default_sample_description_index: 1,
                default_sample_duration: 0,
                default_sample_size: 0,
                default_sample_flags: 0,
            });
        }
        let moov = Moov {
            mvhd: Mvhd {
                timescale: MOVIE_TIMESCALE,
                rate: 1u16.into(),
                volume: 1u8.into(),
                next_track_id: AUDIO_TRACK_ID + 1,
                ..Default::default()
            },
            mvex: Some(Mvex { mehd: None, trex }),
            trak: traks,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(1024);
        ftyp.encode(&mut out).map_err(encode_error)?;
        moov.encode(&mut out).map_err(encode_error)?;
        Ok(Bytes::from(out))
    }
}

/// A track of the init segment: `tkhd`, and `mdia` with an empty sample table around its
/// sample entry (the samples are in the fragments). `size` for video.
fn trak(id: u32, timescale: u32, entry: mp4_atom::Codec, size: Option<(u16, u16)>) -> Trak {
    let video = size.is_some();
    let (width, height) = size.unwrap_or((0, 0));
    Trak {
        tkhd: Tkhd {
            track_id: id,
            enabled: true,
            in_movie: true,
            volume: if video { 0u8.into() } else { 1u8.into() },
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(if video { b"vide" } else { b"soun" }),
                name: if video {
                    "VideoHandler"
                } else {
                    "SoundHandler"
                }
                .into(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![entry],
                    },
                    stco: Some(Stco::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn encode_error(err: impl std::fmt::Display) -> Fmp4Error {
    Fmp4Error::Encode(err.to_string())
}

/// `part` of `buf` without copying when it lies within it (it does: a unit's body is a
/// slice of its buffer), else a copy.
fn share(buf: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if start <= buf.len() && part.len() <= buf.len() - start {
        buf.slice(start..start + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[cfg(test)]
pub(crate) mod samples;
#[cfg(test)]
mod tests;
