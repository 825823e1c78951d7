//! HLS: MPEG-TS segments made in memory on the owner shard, served from every shard.
//!
//! - [`ts`]: FLV H.264/HEVC and AAC to MPEG-TS packets (pure).
//! - [`segmenter`]: segment boundaries, window, playlist (pure).
//! - [`llhls`]: Low-Latency HLS: the window of segments and parts, its media and
//!   multivariant playlists, the answers to blocking playlist reloads (pure; not served yet).
//! - [`fmp4`]: fragmented MP4 (CMAF) for Low-Latency HLS: init segments, `moof`+`mdat`
//!   parts, `CODECS` strings; H.264, HEVC, AV1, AAC and Opus (pure; not served yet).
//! - [`llsegmenter`]: the Low-Latency HLS segmenter of one stream: the fMP4 writer cut into
//!   parts, the window they go into, the initialization segment of each discontinuity
//!   (pure; not served yet).
//! - [`HlsView`]: the immutable snapshot the owner hands to every shard after each change, so
//!   any shard answers playlist and segment requests locally, without a cross-shard trip.
//!
//! A stream is segmented only while its HLS is requested: the first playlist request starts
//! the owner's segmenter from the ring, requests mark the snapshot's `demand`, and the owner
//! retires the segmenter `hls.idle_timeout_ms` after the last one (see
//! [`crate::shard::hls_store`]).

pub mod fmp4;
pub mod llhls;
pub mod llsegmenter;
pub mod segmenter;
pub mod ts;

use bytes::Bytes;
use segmenter::Segmenter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The track that keeps the stream out of HLS (`"av1 video"`): its playlist answers
    /// that HLS is not available instead (see [`segmenter::Segmenter::push`]).
    pub unsupported: Option<std::sync::Arc<str>>,
    /// The segmenter stopped for want of requests: shards forget this incarnation.
    pub retired: bool,
    /// When a request for this stream's HLS was last served, on any shard (see
    /// [`segmenter::Segmenter::requested`]).
    pub demand: Arc<AtomicU64>,
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
            unsupported: segmenter.unsupported().map(std::sync::Arc::from),
            retired: false,
            demand: segmenter.demand().clone(),
        }
    }

    /// The last snapshot of a segmenter that stopped for want of requests: it supersedes
    /// every other of its incarnation, and shards forget the stream's HLS on it.
    pub fn retired(segmenter: &Segmenter, instance: u64) -> Self {
        HlsView {
            retired: true,
            ..HlsView::bare(instance, u64::MAX, false, segmenter.demand().clone())
        }
    }

    /// A snapshot with no playlist and no segments.
    fn bare(instance: u64, version: u64, ended: bool, demand: Arc<AtomicU64>) -> Self {
        HlsView {
            playlist: Bytes::new(),
            instance,
            segments: Vec::new(),
            ended,
            version,
            unsupported: None,
            retired: false,
            demand,
        }
    }

    /// A snapshot with no segments (tests of what carries and stores snapshots).
    #[cfg(test)]
    pub(crate) fn empty(instance: u64, version: u64, ended: bool) -> Self {
        HlsView::bare(instance, version, ended, Arc::default())
    }

    /// Notes a request served from this snapshot at `now_ns` ([`crate::media::now_ns`]).
    pub fn requested(&self, now_ns: u64) {
        self.demand.store(now_ns, Ordering::Relaxed);
    }

    /// True when this snapshot should replace `current`.
    pub fn supersedes(&self, current: &HlsView) -> bool {
        self.instance != current.instance || self.version > current.version
    }

    /// The playlist with `query` appended to every segment URI, so that a player that
    /// fetched it with credentials fetches the segments with them too.
    pub fn playlist_with_query(&self, query: &str) -> Bytes {
        let text = String::from_utf8_lossy(&self.playlist);
        let mut out = String::with_capacity(self.playlist.len() + 64 * self.segments.len());
        for line in text.lines() {
            out += line;
            if !line.is_empty() && !line.starts_with('#') {
                out.push('?');
                out += query;
            }
            out.push('\n');
        }
        Bytes::from(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_carried_into_segment_uris() {
        let view = HlsView {
            playlist: Bytes::from_static(
                b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\ncam-1-0.ts\n#EXTINF:2.000,\ncam-1-1.ts\n",
            ),
            ..HlsView::empty(1, 1, false)
        };
        let text = view.playlist_with_query("token=9.ab");
        assert_eq!(
            &text[..],
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\ncam-1-0.ts?token=9.ab\n#EXTINF:2.000,\ncam-1-1.ts?token=9.ab\n"
        );
    }
}
