//! What LL-HLS viewers measured: [`LlStats`], one per group of viewers.

use crate::hls::merge_histogram;
use crate::probe::histogram;
use hdrhistogram::Histogram;

/// What LL-HLS viewers measured; one per group of viewers, shared through
/// `Rc<RefCell<LlStats>>`. Histograms are in nanoseconds (1 µs to one hour).
#[derive(Debug, Clone)]
pub struct LlStats {
    /// Blocking reloads (`_HLS_msn`/`_HLS_part`) answered 200: request issued (a reconnect
    /// included) to full response. Includes the time the server held the request until its
    /// part existed.
    pub reload: Histogram<u64>,
    /// Part requests answered 200: request issued to full response.
    pub part_request: Histogram<u64>,
    /// Every viewer, parts fetched live (not [`LlStats::joined_parts`]): part fully received
    /// minus when it ended by the playlist's program dates (its segment's
    /// `EXT-X-PROGRAM-DATE-TIME` plus the durations of its parts up to and including it); 0
    /// for a part that arrived before its end by the dates.
    pub date_latency: Histogram<u64>,
    /// Probes only, parts fetched live: part fully received minus the send time of the last
    /// stamped frame in it.
    pub part_latency: Histogram<u64>,
    /// Probes only, parts fetched live: for every stamped frame, part fully received minus
    /// its send time.
    pub frame_latency: Histogram<u64>,
    /// First playlist request issued to first part fully received.
    pub startup: Histogram<u64>,
    /// Playlists received and parsed (the first one and blocking reloads).
    pub playlists: u64,
    /// Parts received (status 200, body complete).
    pub parts: u64,
    /// Of `parts`, those fetched when joining (or joining again) at the live edge: complete
    /// before the viewer asked, so their age says nothing of the server's delay. They are
    /// left out of the latency histograms, as HTTP-FLV probes leave out GOP-cache frames;
    /// `startup` covers the join.
    pub joined_parts: u64,
    /// Initialization segments (`EXT-X-MAP`) received.
    pub maps: u64,
    /// Body bytes of the parts and initialization segments received.
    pub bytes: u64,
    /// 404 responses.
    pub not_found: u64,
    /// 503 responses (a blocking reload whose part did not come within three target
    /// durations).
    pub unavailable: u64,
    /// Other HTTP statuses, connection errors and timeouts.
    pub errors: u64,
    /// Playlists answered 200 that are not valid LL-HLS media playlists (the test kit's
    /// checker found a violation, or the body is not text): counted, not used.
    pub invalid_playlists: u64,
    /// Probes: initialization segments or parts whose boxes could not be read.
    pub unreadable: u64,
    /// Gaps between new parts longer than the stall threshold while live, each counted once.
    pub stalls: u64,
    /// Times a viewer found its next part no longer listed (it fell behind) or the stream
    /// restarted, and joined again at the live edge.
    pub resyncs: u64,
    /// Viewers that saw `EXT-X-ENDLIST` and stopped.
    pub ended: u64,
}

impl Default for LlStats {
    fn default() -> Self {
        LlStats {
            reload: histogram(),
            part_request: histogram(),
            date_latency: histogram(),
            part_latency: histogram(),
            frame_latency: histogram(),
            startup: histogram(),
            playlists: 0,
            parts: 0,
            joined_parts: 0,
            maps: 0,
            bytes: 0,
            not_found: 0,
            unavailable: 0,
            errors: 0,
            invalid_playlists: 0,
            unreadable: 0,
            stalls: 0,
            resyncs: 0,
            ended: 0,
        }
    }
}

impl LlStats {
    /// Adds `other` into `self` (histograms and counters).
    pub fn merge(&mut self, other: &LlStats) {
        for (into, from) in [
            (&mut self.reload, &other.reload),
            (&mut self.part_request, &other.part_request),
            (&mut self.date_latency, &other.date_latency),
            (&mut self.part_latency, &other.part_latency),
            (&mut self.frame_latency, &other.frame_latency),
            (&mut self.startup, &other.startup),
        ] {
            merge_histogram(into, from);
        }
        self.playlists += other.playlists;
        self.parts += other.parts;
        self.joined_parts += other.joined_parts;
        self.maps += other.maps;
        self.bytes += other.bytes;
        self.not_found += other.not_found;
        self.unavailable += other.unavailable;
        self.errors += other.errors;
        self.invalid_playlists += other.invalid_playlists;
        self.unreadable += other.unreadable;
        self.stalls += other.stalls;
        self.resyncs += other.resyncs;
        self.ended += other.ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge() {
        let mut a = LlStats::default();
        let mut b = LlStats::default();
        a.reload.record(1_000_000).unwrap();
        b.reload.record(3_000_000).unwrap();
        b.date_latency.record(2_000_000).unwrap();
        (a.parts, b.parts, b.unavailable, b.ended) = (2, 3, 1, 1);
        a.merge(&b);
        assert_eq!((a.reload.len(), a.date_latency.len()), (2, 1));
        assert_eq!((a.parts, a.unavailable, a.ended), (5, 1, 1));
        assert_eq!(a.reload.max() / 1_000_000, 3);
    }
}
