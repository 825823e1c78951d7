//! HLS: MPEG-TS segments made in memory on the owner shard, served from every shard.
//!
//! - [`ts`]: FLV AVC/AAC to MPEG-TS packets (pure).
//! - [`segmenter`]: segment boundaries, window, playlist (pure).
//! - [`HlsView`]: the immutable snapshot the owner hands to every shard after each change, so
//!   any shard answers playlist and segment requests locally, without a cross-shard trip.

pub mod segmenter;
pub mod ts;

use bytes::Bytes;
use segmenter::Segmenter;

/// Everything a shard needs to answer HLS requests for one stream.
#[derive(Debug, Clone)]
pub struct HlsView {
    /// The rendered playlist.
    pub playlist: Bytes,
    /// The stream incarnation, part of segment names.
    pub instance: u64,
    /// Segments by sequence number, oldest first.
    pub segments: Vec<(u64, Bytes)>,
    /// The stream ended (the playlist has EXT-X-ENDLIST).
    pub ended: bool,
    /// Orders snapshots of one incarnation: a shard keeps the newest it received.
    pub version: u64,
}

impl HlsView {
    /// A snapshot of a segmenter.
    pub fn of(segmenter: &Segmenter, instance: u64, ended: bool) -> Self {
        HlsView {
            playlist: Bytes::from(segmenter.playlist()),
            instance,
            segments: segmenter
                .segments()
                .iter()
                .map(|s| (s.seq, s.bytes.clone()))
                .collect(),
            ended,
            version: segmenter.version(),
        }
    }

    /// True when this snapshot should replace `current`.
    pub fn supersedes(&self, current: &HlsView) -> bool {
        self.instance != current.instance || self.version > current.version
    }

    /// Segment `seq` of incarnation `instance`, if still in the window.
    pub fn segment(&self, instance: u64, seq: u64) -> Option<&Bytes> {
        if instance != self.instance {
            return None;
        }
        self.segments
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, bytes)| bytes)
    }
}
