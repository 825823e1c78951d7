//! fMP4 parts to the publisher's SEI send-time stamps (pure), with `mp4-atom`'s boxes: the
//! initialization segment (`EXT-X-MAP`) tells which track is H.264 video ([`VideoTrack`]);
//! a part's `moof` (`traf`/`tfhd`/`trun`) tells where that track's samples are in its
//! `mdat` ([`video_samples`]); each sample's length-prefixed NAL units are read with
//! [`crate::sei`], as the MPEG-TS probes read theirs ([`part_stamps`]).
//!
//! Never panics on input: a box that does not decode, a sample outside the part, or more
//! than [`MAX_SAMPLES`] samples in a part is an [`Fmp4ReadError`].

use crate::sei;
use mp4_atom::{Atom, Codec, Decode, FourCC, Header, Moof, Moov};
use std::ops::Range;

/// Most samples read from one part (all tracks): bounds the work on a `trun` that claims
/// billions of samples. corecast's writer refuses more samples than this per fragment too.
pub const MAX_SAMPLES: usize = 16_384;

/// Why an initialization segment or a part could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Fmp4ReadError {
    /// A box is malformed or cut short.
    #[error("malformed {kind} box: {reason}")]
    Box {
        /// The box (or `"top-level"` for the box headers of the file).
        kind: String,
        /// What `mp4-atom` said.
        reason: String,
    },
    /// The initialization segment has no `moov`.
    #[error("initialization segment without moov")]
    NoMoov,
    /// The initialization segment has no H.264 video track (`hdlr` `vide` with an `avc1` or
    /// `avc3` sample entry).
    #[error("no H.264 video track")]
    NoVideo,
    /// A sample's size is given nowhere (`trun`, `tfhd` or `trex`).
    #[error("a sample of track {0} without a size")]
    NoSize(u32),
    /// A sample lies (partly) outside the part.
    #[error("sample data outside the part")]
    OutOfRange,
    /// More than [`MAX_SAMPLES`] samples.
    #[error("more than {MAX_SAMPLES} samples in a part")]
    TooManySamples,
}

fn box_error(kind: &str, err: mp4_atom::Error) -> Fmp4ReadError {
    Fmp4ReadError::Box {
        kind: kind.to_string(),
        reason: err.to_string(),
    }
}

/// What the initialization segment says about the H.264 video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTrack {
    /// Its track ID (`tkhd`), which the parts' `tfhd` name.
    pub track_id: u32,
    /// Bytes of each NAL unit's length prefix (`avcC` `lengthSizeMinusOne` + 1).
    pub length_size: usize,
    /// `trex` default sample size, for runs that give none (`None`: not given, or 0).
    pub default_sample_size: Option<u32>,
}

/// The top-level boxes of `file`: kind and byte range (header included). Stops at the first
/// header that does not decode or a box that runs past the end (an error).
fn boxes(file: &[u8]) -> impl Iterator<Item = Result<(FourCC, Range<usize>), Fmp4ReadError>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = file.get(at..).filter(|r| !r.is_empty())?;
        let mut buf = rest;
        let header = match Header::decode(&mut buf) {
            Ok(header) => header,
            Err(err) => {
                at = file.len();
                return Some(Err(box_error("top-level", err)));
            }
        };
        let header_len = rest.len() - buf.len();
        let len = header_len.saturating_add(header.size.unwrap_or(buf.len()));
        if len > rest.len() {
            at = file.len();
            return Some(Err(Fmp4ReadError::OutOfRange));
        }
        let range = at..at + len;
        at += len;
        Some(Ok((header.kind, range)))
    })
}

impl VideoTrack {
    /// Reads an initialization segment (`ftyp` + `moov`): the first track whose handler is
    /// `vide` and whose sample entry is `avc1` or `avc3`.
    pub fn from_init(init: &[u8]) -> Result<VideoTrack, Fmp4ReadError> {
        let mut moov = None;
        for found in boxes(init) {
            let (kind, range) = found?;
            if kind == Moov::KIND {
                let decoded = Moov::decode(&mut &init[range]).map_err(|e| box_error("moov", e))?;
                moov = Some(decoded);
                break;
            }
        }
        let moov = moov.ok_or(Fmp4ReadError::NoMoov)?;
        let (track_id, length_size) = moov
            .trak
            .iter()
            .filter(|trak| trak.mdia.hdlr.handler == FourCC::new(b"vide"))
            .find_map(|trak| {
                trak.mdia
                    .minf
                    .stbl
                    .stsd
                    .codecs
                    .iter()
                    .find_map(|codec| match codec {
                        Codec::Avc1(avc1) => Some(avc1.avcc.length_size),
                        Codec::Avc3(avc3) => Some(avc3.avcc.length_size),
                        _ => None,
                    })
                    .map(|length_size| (trak.tkhd.track_id, usize::from(length_size)))
            })
            .ok_or(Fmp4ReadError::NoVideo)?;
        let default_sample_size = moov
            .mvex
            .iter()
            .flat_map(|mvex| &mvex.trex)
            .find(|trex| trex.track_id == track_id)
            .map(|trex| trex.default_sample_size)
            .filter(|&size| size > 0);
        Ok(VideoTrack {
            track_id,
            length_size,
            default_sample_size,
        })
    }
}

/// The byte ranges in `part` of `track`'s samples, in order: every `moof` of the part is
/// read, and each of its `traf` of that track placed by ISO/IEC 14496-12 8.8.7 and 8.8.8
/// (`base_data_offset` if given, else the `moof`'s start when `default-base-is-moof` is set
/// or for the first `traf`, else the end of the previous `traf`'s data; each `trun` at its
/// `data_offset` from there, or after the previous run). Sizes come from the `trun`, else
/// the `tfhd`, else the `trex` default.
pub fn video_samples(part: &[u8], track: &VideoTrack) -> Result<Vec<Range<usize>>, Fmp4ReadError> {
    let mut out = Vec::new();
    let mut samples = 0usize;
    for found in boxes(part) {
        let (kind, range) = found?;
        if kind != Moof::KIND {
            continue;
        }
        let moof_start = range.start;
        let moof = Moof::decode(&mut &part[range]).map_err(|e| box_error("moof", e))?;
        // Where the previous traf's data ended (the default base of the next one).
        let mut previous_end: Option<usize> = None;
        for traf in &moof.traf {
            let tfhd = &traf.tfhd;
            let base = match (
                tfhd.base_data_offset,
                tfhd.default_base_is_moof,
                previous_end,
            ) {
                (Some(offset), _, _) => {
                    usize::try_from(offset).map_err(|_| Fmp4ReadError::OutOfRange)?
                }
                (None, true, _) | (None, false, None) => moof_start,
                (None, false, Some(end)) => end,
            };
            let ours = tfhd.track_id == track.track_id;
            let default_size = tfhd.default_sample_size.or(if ours {
                track.default_sample_size
            } else {
                None
            });
            let mut at = base;
            for trun in &traf.trun {
                if let Some(offset) = trun.data_offset {
                    at = base
                        .checked_add_signed(offset as isize)
                        .ok_or(Fmp4ReadError::OutOfRange)?;
                }
                for entry in trun.samples.iter() {
                    samples += 1;
                    if samples > MAX_SAMPLES {
                        return Err(Fmp4ReadError::TooManySamples);
                    }
                    let size = entry
                        .size
                        .or(default_size)
                        .ok_or(Fmp4ReadError::NoSize(tfhd.track_id))?;
                    let end = at
                        .checked_add(size as usize)
                        .filter(|&end| end <= part.len())
                        .ok_or(Fmp4ReadError::OutOfRange)?;
                    if ours {
                        out.push(at..end);
                    }
                    at = end;
                }
            }
            previous_end = Some(at);
        }
    }
    Ok(out)
}

/// Appends the stamps in `track`'s samples of `part` to `out`, in order: each sample's NAL
/// units (length-prefixed, [`sei::length_prefixed`]) read with [`sei::parse_nal`]. On an
/// error, `out` keeps nothing of this part.
pub fn part_stamps(
    part: &[u8],
    track: &VideoTrack,
    out: &mut Vec<u64>,
) -> Result<(), Fmp4ReadError> {
    for range in video_samples(part, track)? {
        out.extend(
            sei::length_prefixed(&part[range], track.length_size).filter_map(sei::parse_nal),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llhls::fixtures::{stream, Stream};

    #[test]
    fn the_video_track_is_found_in_corecasts_init_segment() {
        let s = stream(3);
        let track = VideoTrack::from_init(&s.init).expect("video track");
        assert_eq!(track.track_id, corecast::hls::fmp4::VIDEO_TRACK_ID);
        assert_eq!(track.length_size, 4);
        assert_eq!(track.default_sample_size, None);
    }

    #[test]
    fn stamps_round_trip_through_corecasts_parts() {
        let Stream {
            init,
            parts,
            stamps,
            ..
        } = stream(3);
        let track = VideoTrack::from_init(&init).unwrap();
        let mut found = Vec::new();
        let mut sample_count = 0;
        for part in &parts {
            sample_count += video_samples(&part.bytes, &track).unwrap().len();
            part_stamps(&part.bytes, &track, &mut found).unwrap();
        }
        // Every stamped frame, in order; unstamped frames are samples too.
        assert_eq!(found, stamps);
        assert_eq!(sample_count, 3 * 25);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let s = stream(2);
        let track = VideoTrack::from_init(&s.init).unwrap();
        let part = &s.parts[1].bytes;
        // Every cut of a part: an error or a prefix of its stamps, never a panic.
        let mut whole = Vec::new();
        part_stamps(part, &track, &mut whole).unwrap();
        for len in 0..part.len() {
            let mut found = Vec::new();
            if part_stamps(&part[..len], &track, &mut found).is_ok() {
                assert!(whole.starts_with(&found), "cut at {len}");
            }
        }
        for at in (0..part.len()).step_by(7) {
            let mut bad = part.to_vec();
            bad[at] ^= 0xa5;
            let _ = part_stamps(&bad, &track, &mut Vec::new());
        }
        for len in 0..s.init.len() {
            let _ = VideoTrack::from_init(&s.init[..len]);
        }
        assert_eq!(VideoTrack::from_init(&[]), Err(Fmp4ReadError::NoMoov));
        assert_eq!(VideoTrack::from_init(part), Err(Fmp4ReadError::NoMoov));
        // A box that claims more than there is.
        let mut long = part.to_vec();
        long[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            part_stamps(&long, &track, &mut Vec::new()),
            Err(Fmp4ReadError::OutOfRange)
        );
        // Another track's samples are not read.
        let other = VideoTrack {
            track_id: 9,
            ..track
        };
        let mut none = Vec::new();
        part_stamps(part, &other, &mut none).unwrap();
        assert!(none.is_empty());
    }
}
