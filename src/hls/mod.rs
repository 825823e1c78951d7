//! HLS: two renditions of each stream from one ingest, made in memory on the owner shard
//! and served from every shard: MPEG-TS segments (`/{app}/{stream}.m3u8`), and Low-Latency
//! HLS on fMP4 (`/{app}/{stream}/index.m3u8`, see [`crate::shard::llhls`]).
//!
//! - [`ts`]: FLV H.264/HEVC and AAC to MPEG-TS packets (pure).
//! - [`segmenter`]: segment boundaries, window, playlist (pure).
//! - [`llhls`]: Low-Latency HLS: the window of segments and parts, its media and
//!   multivariant playlists, the answers to blocking playlist reloads (pure).
//! - [`fmp4`]: fragmented MP4 (CMAF) for Low-Latency HLS: init segments, `moof`+`mdat`
//!   parts, `CODECS` strings; H.264, HEVC, AV1, AAC and Opus (pure).
//! - [`llsegmenter`]: the Low-Latency HLS segmenter of one stream: the fMP4 writer cut into
//!   parts, the window they go into, the initialization segment of each discontinuity
//!   (pure).
//! - [`HlsView`]: the immutable snapshot the owner hands to every shard after each change, so
//!   any shard answers playlist and segment requests locally, without a cross-shard trip;
//!   [`LlView`], the same for Low-Latency HLS. Both are [`Snapshot`]s, which
//!   a shard keeps in a [`crate::shard::hls_store::Snapshots`] store.
//!
//! A stream is segmented only while its HLS is requested, each rendition on its own: the
//! first playlist request starts the owner's segmenter from the ring, requests mark the
//! snapshot's `demand`, and the owner retires the segmenter `hls.idle_timeout_ms` after the
//! last one (see [`crate::shard::hls_store`]).

pub mod fmp4;
pub mod llhls;
pub mod llsegmenter;
pub mod segmenter;
pub mod ts;

use bytes::Bytes;
use llhls::LlWindow;
use llsegmenter::LlSegmenter;
use segmenter::Segmenter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// When a stream's HLS (one rendition of it) was last requested, on any shard (ns,
/// [`crate::media::now_ns`] clock): shared by its segmenter, which stops when it has been
/// idle too long, and the snapshots the shards serve, which note each request.
#[derive(Debug, Clone, Default)]
pub struct Demand(Arc<AtomicU64>);

impl Demand {
    /// Notes a request at `now_ns`.
    pub fn requested(&self, now_ns: u64) {
        self.0.store(now_ns, Ordering::Relaxed);
    }

    /// Time since the last request, ns.
    pub fn idle_for(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.0.load(Ordering::Relaxed))
    }
}

/// The two HLS renditions of a stream, made from one ingest, each on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    /// MPEG-TS segments: `/{app}/{stream}.m3u8`.
    Ts,
    /// Low-Latency HLS on fMP4: `/{app}/{stream}/index.m3u8`.
    Ll,
}

impl Rendition {
    /// Its index in per-rendition arrays.
    pub fn index(self) -> usize {
        match self {
            Rendition::Ts => 0,
            Rendition::Ll => 1,
        }
    }
}

/// A snapshot of either rendition, as the owner hands it to every shard.
#[derive(Debug, Clone)]
pub enum View {
    /// MPEG-TS.
    Ts(HlsView),
    /// Low-Latency HLS.
    Ll(LlView),
}

impl View {
    /// True when this snapshot should replace `current` (one of the same rendition).
    pub fn supersedes(&self, current: &View) -> bool {
        match (self, current) {
            (View::Ts(new), View::Ts(old)) => new.supersedes(old),
            (View::Ll(new), View::Ll(old)) => new.supersedes(old),
            _ => false,
        }
    }
}

/// A snapshot of one stream's rendition that the owner hands to every shard: which
/// incarnation, which change of it, and whether it is the last one.
pub trait Snapshot {
    /// The stream incarnation.
    fn instance(&self) -> u64;
    /// Orders the snapshots of one incarnation: a shard keeps the newest it received.
    fn version(&self) -> u64;
    /// The stream ended: the playlist is final.
    fn ended(&self) -> bool;
    /// The segmenter stopped for want of requests: shards forget this incarnation.
    fn retired(&self) -> bool;
    /// When a request for the rendition was last served, on any shard.
    fn demand(&self) -> &Demand;

    /// Whether a first request may be answered with it: its playlist lists a complete
    /// segment, or says why it never will (the stream ended, or HLS cannot carry it).
    fn servable(&self) -> bool {
        true
    }

    /// True when this snapshot should replace `current`.
    fn supersedes(&self, current: &Self) -> bool {
        self.instance() != current.instance() || self.version() > current.version()
    }
}

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
    /// When a request for this stream's HLS was last served, on any shard.
    pub demand: Demand,
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
    fn bare(instance: u64, version: u64, ended: bool, demand: Demand) -> Self {
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
        HlsView::bare(instance, version, ended, Demand::default())
    }

    /// Notes a request served from this snapshot at `now_ns` ([`crate::media::now_ns`]).
    pub fn requested(&self, now_ns: u64) {
        self.demand.requested(now_ns);
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

impl Snapshot for HlsView {
    fn instance(&self) -> u64 {
        self.instance
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn ended(&self) -> bool {
        self.ended
    }

    fn retired(&self) -> bool {
        self.retired
    }

    fn demand(&self) -> &Demand {
        &self.demand
    }
}

/// Everything a shard needs to answer Low-Latency HLS requests for one stream: a snapshot of
/// its segmenter, made by the owner after each change and shared by every shard (the window
/// and initialization segments behind one `Arc`: handing it to another shard copies no
/// segment list).
#[derive(Debug, Clone)]
pub struct LlView {
    /// The window as it was: playlists, blocking-reload answers, parts and segments.
    pub window: Arc<LlWindow>,
    /// The initialization segments by discontinuity sequence number.
    pub inits: Arc<[(u64, Bytes)]>,
    /// `CODECS` of the multivariant playlist, once a track is configured.
    pub codecs: Option<Arc<str>>,
    /// The picture size, when the stream has video.
    pub resolution: Option<(u16, u16)>,
    /// The track that keeps the stream out of fMP4 (see [`Fmp4Writer::push`]).
    ///
    /// [`Fmp4Writer::push`]: fmp4::Fmp4Writer::push
    pub unsupported: Option<Arc<str>>,
    /// The segmenter stopped for want of requests: shards forget this incarnation.
    pub retired: bool,
    /// When a request for this stream's LL-HLS was last served, on any shard.
    pub demand: Demand,
}

impl LlView {
    /// A snapshot of a segmenter.
    pub fn of(segmenter: &LlSegmenter) -> Self {
        let writer = segmenter.writer();
        LlView {
            window: Arc::new(segmenter.window().clone()),
            inits: segmenter.inits().cloned().collect(),
            codecs: writer.codecs().map(Arc::from),
            resolution: writer.video_size(),
            unsupported: writer.unsupported().map(Arc::from),
            retired: false,
            demand: segmenter.demand().clone(),
        }
    }

    /// The last snapshot of a segmenter that stopped for want of requests: shards forget
    /// the stream's LL-HLS on it.
    pub fn retired(segmenter: &LlSegmenter) -> Self {
        LlView {
            retired: true,
            ..LlView::of(segmenter)
        }
    }

    /// `BANDWIDTH` and `AVERAGE-BANDWIDTH` (bits per second) of the multivariant playlist:
    /// the highest and the mean bitrate of the complete segments in the window (of the parts
    /// written so far when there is none yet; at least 1).
    pub fn bandwidth(&self) -> (u64, u64) {
        let rate = |bytes: usize, ms: u64| bytes as u64 * 8000 / ms.max(1);
        let segments = self.window.segments();
        if segments.is_empty() {
            let reached = self.window.reached();
            let bytes: usize = (0..reached.parts)
                .filter_map(|part| {
                    self.window.part(llhls::PartId {
                        msn: reached.msn,
                        part,
                    })
                })
                .map(Bytes::len)
                .sum();
            let ms = u64::from(reached.parts) * self.window.settings().part_target_ms;
            let rate = rate(bytes, ms).max(1);
            return (rate, rate);
        }
        let peak = segments
            .iter()
            .map(|s| rate(s.bytes.len(), s.duration_ms))
            .max()
            .unwrap_or(1);
        let bytes = segments.iter().map(|s| s.bytes.len()).sum();
        let ms = segments.iter().map(|s| s.duration_ms).sum();
        (peak.max(1), rate(bytes, ms).max(1))
    }

    /// The initialization segment of discontinuity sequence number `discontinuity_seq` of
    /// incarnation `instance`.
    pub fn init(&self, instance: u64, discontinuity_seq: u64) -> Option<&Bytes> {
        if instance != self.window.instance() {
            return None;
        }
        self.inits
            .iter()
            .find(|(seq, _)| *seq == discontinuity_seq)
            .map(|(_, bytes)| bytes)
    }
}

impl Snapshot for LlView {
    fn instance(&self) -> u64 {
        self.window.instance()
    }

    fn version(&self) -> u64 {
        self.window.version()
    }

    fn ended(&self) -> bool {
        self.window.ended()
    }

    fn retired(&self) -> bool {
        self.retired
    }

    fn demand(&self) -> &Demand {
        &self.demand
    }

    /// A snapshot is made after each part, before the first segment is complete; players
    /// that do not read parts (ffmpeg) find nothing to play in a playlist of parts alone.
    fn servable(&self) -> bool {
        !self.window.segments().is_empty() || self.ended() || self.unsupported.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fmp4::samples::{aac_header, av_units, avc_header, unit};
    use crate::hls::llhls::LlSettings;
    use crate::media::UnitKind;

    #[test]
    fn an_ll_snapshot_shares_the_window_and_serves_its_maps() {
        let settings = LlSettings {
            segment_target_ms: 1000,
            part_target_ms: 250,
            window: 4,
        };
        let mut segmenter = LlSegmenter::new("cam", 5, settings);
        let headers = [
            unit(UnitKind::Video, 0, true, &avc_header()),
            unit(UnitKind::Audio, 0, true, &aac_header()),
        ];
        let units = av_units(3000, 25);
        for u in headers.iter().chain(&units[..units.len() / 2]) {
            segmenter.push(u, 1000 + u64::from(u.dts)).unwrap();
        }
        let view = LlView::of(&segmenter);
        assert_eq!(view.instance(), 5);
        assert_eq!(view.version(), segmenter.window().version());
        assert!(!view.ended() && !view.retired());
        assert_eq!(view.codecs.as_deref(), Some("avc1.64000d,mp4a.40.2"));
        assert_eq!(view.resolution, Some((320, 240)));
        assert_eq!(view.init(5, 0), segmenter.init(0));
        assert_eq!(view.init(4, 0), None, "another incarnation");
        // The segments' bytes are the segmenter's, not copies.
        let ours = segmenter.window().segment(0).unwrap();
        assert_eq!(view.window.segment(0).unwrap().as_ptr(), ours.as_ptr());
        // Requests noted on a snapshot are the segmenter's demand.
        view.demand.requested(7_000);
        assert_eq!(segmenter.demand().idle_for(9_000), 2_000);
        for u in &units[units.len() / 2..] {
            segmenter.push(u, 1000 + u64::from(u.dts)).unwrap();
        }
        let later = LlView::of(&segmenter);
        assert!(later.supersedes(&view) && !view.supersedes(&later));
        assert!(LlView::retired(&segmenter).retired());
    }

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
