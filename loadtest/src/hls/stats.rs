//! What HLS viewers measured: [`HlsStats`], one per group of viewers, and the histogram
//! helpers the viewers record with.

use hdrhistogram::Histogram;
use std::time::Duration;

/// What HLS viewers measured; one per group of viewers, shared through
/// `Rc<RefCell<HlsStats>>`. Histograms are in nanoseconds.
#[derive(Debug, Clone)]
pub struct HlsStats {
    /// Request issued (a reconnect included) to full response received, for every response
    /// to a playlist or segment request, whatever its status.
    pub request: Histogram<u64>,
    /// Probes only: segment fully received minus the send time of the last stamped frame in
    /// it (how long after the publisher sent the segment's last frame the viewer had it).
    pub segment_latency: Histogram<u64>,
    /// Probes only: for every stamped frame, segment fully received minus the frame's send
    /// time.
    pub frame_latency: Histogram<u64>,
    /// First playlist request to first segment fully received.
    pub startup: Histogram<u64>,
    /// Playlists received and parsed.
    pub playlists: u64,
    /// Segments received (status 200, body complete).
    pub segments: u64,
    /// 404 responses (a segment that expired before it was fetched, or a playlist of a
    /// stream that is gone).
    pub not_found: u64,
    /// Gaps between new segments longer than [`HlsOptions::stall`](super::HlsOptions::stall),
    /// each counted once.
    pub stalls: u64,
    /// Other HTTP statuses, unparsable playlists, connection errors and timeouts.
    pub errors: u64,
    /// Segments that slid out of the playlist window before the viewer could fetch them
    /// (the viewer fell behind); not requested, so not counted as 404s.
    pub skipped: u64,
    /// Segments received that were marked EXT-X-DISCONTINUITY (the publisher reconnected).
    pub discontinuities: u64,
}

/// A latency histogram: 1 µs to one hour, 3 significant digits, in nanoseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("static bounds are valid")
}

impl Default for HlsStats {
    fn default() -> Self {
        HlsStats {
            request: histogram(),
            segment_latency: histogram(),
            frame_latency: histogram(),
            startup: histogram(),
            playlists: 0,
            segments: 0,
            not_found: 0,
            stalls: 0,
            errors: 0,
            skipped: 0,
            discontinuities: 0,
        }
    }
}

impl HlsStats {
    /// Adds `other` into `self` (histograms and counters).
    pub fn merge(&mut self, other: &HlsStats) {
        merge_histogram(&mut self.request, &other.request);
        merge_histogram(&mut self.segment_latency, &other.segment_latency);
        merge_histogram(&mut self.frame_latency, &other.frame_latency);
        merge_histogram(&mut self.startup, &other.startup);
        self.playlists += other.playlists;
        self.segments += other.segments;
        self.not_found += other.not_found;
        self.stalls += other.stalls;
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.discontinuities += other.discontinuities;
    }
}

/// Adds `from` into `into`; values beyond `into`'s range are clamped to it (only possible
/// when a caller replaced a histogram with one of other bounds).
pub(crate) fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// A nanosecond count of `d` for a histogram.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge() {
        let mut a = HlsStats::default();
        let mut b = HlsStats::default();
        a.request.record(1_000_000).unwrap();
        b.request.record(3_000_000).unwrap();
        b.frame_latency.record(2_000_000).unwrap();
        (a.segments, b.segments, b.not_found, b.stalls) = (2, 3, 1, 1);
        a.merge(&b);
        assert_eq!((a.request.len(), a.frame_latency.len()), (2, 1));
        assert_eq!((a.segments, a.not_found, a.stalls), (5, 1, 1));
        let mut narrow = HlsStats {
            startup: Histogram::new_with_bounds(1, 1000, 2).unwrap(),
            ..HlsStats::default()
        };
        b.startup.record(5_000_000).unwrap();
        narrow.merge(&b);
        assert_eq!(narrow.startup.len(), 1, "clamped, not lost");
    }
}
