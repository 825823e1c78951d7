//! HLS: MPEG-TS segments made in memory on the owner shard, served from every shard.
//!
//! - [`ts`]: FLV H.264/HEVC and AAC to MPEG-TS packets (pure).
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
    /// The track that keeps the stream out of HLS (`"av1 video"`): its playlist answers
    /// that HLS is not available instead (see [`segmenter::Segmenter::push`]).
    pub unsupported: Option<std::sync::Arc<str>>,
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
        }
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
            instance: 1,
            segments: Vec::new(),
            ended: false,
            version: 1,
            unsupported: None,
        };
        let text = view.playlist_with_query("token=9.ab");
        assert_eq!(
            &text[..],
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\ncam-1-0.ts?token=9.ab\n#EXTINF:2.000,\ncam-1-1.ts?token=9.ab\n"
        );
    }
}
