//! The committed fixture clip (tests/fixtures/clip.flv: H.264 with B-frames + AAC), and
//! lookups into it by property, so that a regenerated clip cannot silently change what a
//! test means: tests name "the first keyframe at or after 2 s", never "tag 137".

use corecast::flv::reader::{FlvTag, TagKind};
use std::path::PathBuf;

pub fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip.flv")
}

/// The fixture's tags, in file order.
pub fn fixture_tags() -> Vec<FlvTag> {
    corecast::flv::reader::read_file(fixture_path())
        .expect("fixture")
        .1
}

/// A video keyframe that carries a picture (AVC packet type 1: not a sequence header, not
/// an end of sequence).
pub fn is_picture_keyframe(tag: &FlvTag) -> bool {
    tag.is_video_keyframe() && tag.data.get(1) == Some(&1)
}

/// Indices of the picture keyframes, in order.
pub fn keyframes(tags: &[FlvTag]) -> Vec<usize> {
    (0..tags.len())
        .filter(|&i| is_picture_keyframe(&tags[i]))
        .collect()
}

/// Index of the first picture keyframe at or after `ms`.
pub fn keyframe_at(tags: &[FlvTag], ms: u32) -> usize {
    (0..tags.len())
        .find(|&i| is_picture_keyframe(&tags[i]) && tags[i].timestamp >= ms)
        .unwrap_or_else(|| panic!("fixture: no keyframe at or after {ms} ms"))
}

/// Index of the first tag at or after `ms`.
pub fn first_at(tags: &[FlvTag], ms: u32) -> usize {
    tags.iter()
        .position(|t| t.timestamp >= ms)
        .unwrap_or_else(|| panic!("fixture: no tag at or after {ms} ms"))
}

/// Index of the first sequence header of `kind` (AVC or AAC configuration).
pub fn sequence_header(tags: &[FlvTag], kind: TagKind) -> usize {
    tags.iter()
        .position(|t| t.kind == kind && t.is_sequence_header())
        .unwrap_or_else(|| panic!("fixture: no {kind:?} sequence header"))
}
