//! Latency histograms and the Prometheus exposition.
//!
//! Each shard records into its own [`Histograms`] (plain `hdrhistogram` histograms behind the
//! shard's `RefCell`: no atomics, no locks on the hot path). Once per
//! [`PUBLISH_INTERVAL`] every shard adds what it recorded in the interval to its slot of
//! [`Published`] and starts the next interval empty (one short lock per shard per interval).
//! A slot keeps two views: the totals since the start (sums, counts, histogram logs) and a
//! [`Window`] of the last [`QUANTILE_WINDOW`] (the quantiles and maxima `/metrics` and the
//! API show, so that a change shows within a minute however long the process has run).
//! Readers merge the slots. Values are nanoseconds.

pub mod api;
pub mod heap;
pub mod log;
pub mod log_events;
pub mod profile;
pub mod prometheus;

use hdrhistogram::Histogram;
use std::sync::Mutex;
use std::time::Duration;

/// How often shards publish their histograms for export.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Smallest value told apart (ns): 1 us.
const LOWEST_NS: u64 = 1_000;
/// Largest value recorded exactly (ns): 10 minutes; larger values are recorded as this.
const HIGHEST_NS: u64 = 600_000_000_000;
/// Significant decimal digits kept (0.1% relative precision).
const SIGFIG: u8 = 3;
/// Significant decimal digits of the window's histograms (1%: enough for a quantile, and
/// 1/7 of the memory of [`SIGFIG`], which matters for [`WINDOW_STEPS`] copies per shard).
const WINDOW_SIGFIG: u8 = 2;

/// What the exported quantiles and maxima cover: the last minute, as Prometheus client
/// libraries' summaries do (their `MaxAge`), in [`WINDOW_STEPS`] steps.
pub const QUANTILE_WINDOW: Duration = Duration::from_secs(60);
/// Steps of the window: it slides by `QUANTILE_WINDOW / WINDOW_STEPS` (10 s), and covers
/// between 50 and 60 s.
const WINDOW_STEPS: usize = 6;

/// What is measured, stage by stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Publisher bytes read -> unit in the owner's ring.
    IngestToRing,
    /// Ingest -> unit in another shard's replica ring.
    MeshHop,
    /// Ingest -> the unit's last byte accepted by the kernel for an HTTP-FLV viewer.
    RelayFlv,
    /// Ingest -> the unit's last byte accepted by the kernel for an RTMP player.
    RelayRtmp,
    /// How far behind the live edge a viewer's oldest unsent unit is, sampled at each send.
    ViewerLag,
    /// Keyframe that closed an HLS segment -> playlist listing it handed to every shard.
    HlsPublish,
    /// HTTP request parsed -> response handed to the kernel (HLS playlists and segments).
    HttpService,
}

impl Stage {
    /// Every stage, in export order.
    pub const ALL: [Stage; 7] = [
        Stage::IngestToRing,
        Stage::MeshHop,
        Stage::RelayFlv,
        Stage::RelayRtmp,
        Stage::ViewerLag,
        Stage::HlsPublish,
        Stage::HttpService,
    ];

    /// Metric name (without the `_seconds` unit) and labels for Prometheus.
    pub fn metric(self) -> (&'static str, &'static str) {
        match self {
            Stage::IngestToRing => ("corecast_ingest_to_ring", ""),
            Stage::MeshHop => ("corecast_mesh_hop", ""),
            Stage::RelayFlv => ("corecast_relay_latency", "protocol=\"flv\""),
            Stage::RelayRtmp => ("corecast_relay_latency", "protocol=\"rtmp\""),
            Stage::ViewerLag => ("corecast_viewer_lag", ""),
            Stage::HlsPublish => ("corecast_hls_publish", ""),
            Stage::HttpService => ("corecast_http_service", ""),
        }
    }

    /// Tag in histogram logs.
    pub fn tag(self) -> &'static str {
        match self {
            Stage::IngestToRing => "ingest_to_ring",
            Stage::MeshHop => "mesh_hop",
            Stage::RelayFlv => "relay_latency_flv",
            Stage::RelayRtmp => "relay_latency_rtmp",
            Stage::ViewerLag => "viewer_lag",
            Stage::HlsPublish => "hls_publish",
            Stage::HttpService => "http_service",
        }
    }

    /// One line of description.
    pub fn help(self) -> &'static str {
        match self {
            Stage::IngestToRing => "Publisher bytes read to unit in the owner's ring",
            Stage::MeshHop => "Ingest to unit in another shard's replica ring",
            Stage::RelayFlv | Stage::RelayRtmp => {
                "Ingest to the unit's last byte accepted by the kernel for a viewer"
            }
            Stage::ViewerLag => "Age of a viewer's oldest unsent unit, sampled at each send",
            Stage::HlsPublish => {
                "Keyframe closing an HLS segment to the playlist handed to every shard"
            }
            Stage::HttpService => "HLS request parsed to response handed to the kernel",
        }
    }
}

/// One histogram per stage, with the exact sum of recorded values.
#[derive(Debug, Clone)]
pub struct Histograms {
    hists: Vec<Histogram<u64>>,
    sums: Vec<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms::with_precision(SIGFIG)
    }
}

impl Histograms {
    fn with_precision(sigfig: u8) -> Self {
        let hist = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, sigfig)
            .expect("constant bounds are valid");
        Histograms {
            hists: vec![hist; Stage::ALL.len()],
            sums: vec![0; Stage::ALL.len()],
        }
    }

    /// Records one value (ns). Out-of-range values are clamped.
    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        let i = stage as usize;
        self.hists[i].saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
        self.sums[i] = self.sums[i].saturating_add(ns);
    }

    /// The histogram of a stage.
    pub fn get(&self, stage: Stage) -> &Histogram<u64> {
        &self.hists[stage as usize]
    }

    /// Sum of the values recorded for a stage (ns).
    pub fn sum(&self, stage: Stage) -> u64 {
        self.sums[stage as usize]
    }

    /// Adds another set (merging shards, or intervals). The precision may differ: values
    /// are then re-recorded at this set's precision.
    pub fn merge(&mut self, other: &Histograms) {
        for (i, hist) in self.hists.iter_mut().enumerate() {
            // Same bounds on both sides: adding cannot fail.
            let _ = hist.add(&other.hists[i]);
            self.sums[i] = self.sums[i].saturating_add(other.sums[i]);
        }
    }

    /// Memory held by the histograms' counts.
    pub fn memory_bytes(&self) -> u64 {
        let counts: usize = self.hists.iter().map(Histogram::distinct_values).sum();
        (counts * std::mem::size_of::<u64>()) as u64
    }

    /// Empties every histogram, keeping the memory.
    pub fn reset(&mut self) {
        self.hists.iter_mut().for_each(Histogram::reset);
        self.sums.iter_mut().for_each(|sum| *sum = 0);
    }
}

/// The values of the last [`QUANTILE_WINDOW`]: [`WINDOW_STEPS`] histogram sets, each
/// holding the intervals added during one step; the oldest is emptied and reused when a step
/// has passed. Pure: the time comes in.
#[derive(Debug, Clone)]
pub struct Window {
    steps: Vec<Histograms>,
    /// Index of the step being filled.
    current: usize,
    /// When the current step started (ns, any monotonic origin); `None` before the first add.
    started_ns: Option<u64>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            steps: vec![Histograms::with_precision(WINDOW_SIGFIG); WINDOW_STEPS],
            current: 0,
            started_ns: None,
        }
    }
}

impl Window {
    /// Length of one step, ns.
    const STEP_NS: u64 = QUANTILE_WINDOW.as_nanos() as u64 / WINDOW_STEPS as u64;

    /// Adds one interval's values, recorded up to `now_ns`.
    pub fn add(&mut self, now_ns: u64, interval: &Histograms) {
        self.advance(now_ns);
        self.steps[self.current].merge(interval);
    }

    /// Moves on by the steps that passed before `now_ns`, emptying the ones reused (all of
    /// them after a window without adds).
    fn advance(&mut self, now_ns: u64) {
        let started = *self.started_ns.get_or_insert(now_ns);
        let passed = now_ns.saturating_sub(started) / Self::STEP_NS;
        if passed == 0 {
            return;
        }
        for _ in 0..passed.min(WINDOW_STEPS as u64) {
            self.current = (self.current + 1) % WINDOW_STEPS;
            self.steps[self.current].reset();
        }
        self.started_ns = Some(started + passed * Self::STEP_NS);
    }

    /// Adds this window's values as of `now_ns` to `out` (steps that have aged out by then
    /// are left out, so a shard that stopped publishing does not show old values forever).
    pub fn add_to(&self, now_ns: u64, out: &mut Histograms) {
        let Some(started) = self.started_ns else {
            return;
        };
        let passed = (now_ns.saturating_sub(started) / Self::STEP_NS) as usize;
        // Steps `current`, `current - 1`, ... are ever older; the ones that have aged out by
        // `now_ns` are the oldest `passed`.
        for age in 0..WINDOW_STEPS.saturating_sub(passed) {
            let i = (self.current + WINDOW_STEPS - age) % WINDOW_STEPS;
            out.merge(&self.steps[i]);
        }
    }
}

/// One shard's export slot: the totals since the start and the recent window.
#[derive(Debug, Default)]
struct Slot {
    total: Histograms,
    window: Window,
}

/// Every shard's published histograms.
#[derive(Debug, Default)]
pub struct Published {
    slots: Vec<Mutex<Slot>>,
}

impl Published {
    /// Slots for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Published {
            slots: (0..shards).map(|_| Mutex::new(Slot::default())).collect(),
        }
    }

    /// Adds what shard `id` recorded in an interval ending at `now_ns` to its slot.
    pub fn publish(&self, id: usize, now_ns: u64, interval: &Histograms) {
        if let Some(slot) = self.slots.get(id) {
            if let Ok(mut slot) = slot.lock() {
                slot.total.merge(interval);
                slot.window.add(now_ns, interval);
            }
        }
    }

    /// Memory held by shard `id`'s slot (totals and window).
    pub fn memory_bytes(&self, id: usize) -> u64 {
        let Some(Ok(slot)) = self.slots.get(id).map(|s| s.lock()) else {
            return 0;
        };
        let window: u64 = slot.window.steps.iter().map(Histograms::memory_bytes).sum();
        slot.total.memory_bytes() + window
    }

    /// Shard `id`'s totals since the start.
    pub fn shard(&self, id: usize) -> Histograms {
        self.slots
            .get(id)
            .and_then(|s| s.lock().ok().map(|slot| slot.total.clone()))
            .unwrap_or_default()
    }

    /// All shards' totals since the start, merged (each slot is added under its lock,
    /// without a copy).
    pub fn merged(&self) -> Histograms {
        let mut all = Histograms::default();
        for slot in &self.slots {
            if let Ok(slot) = slot.lock() {
                all.merge(&slot.total);
            }
        }
        all
    }

    /// All shards' values of the last [`QUANTILE_WINDOW`] as of `now_ns`, merged.
    pub fn windowed(&self, now_ns: u64) -> Histograms {
        let mut all = Histograms::with_precision(WINDOW_SIGFIG);
        for slot in &self.slots {
            if let Ok(slot) = slot.lock() {
                slot.window.add_to(now_ns, &mut all);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_counts_are_the_sum_of_shards() {
        let published = Published::new(2);
        let mut a = Histograms::default();
        let mut b = Histograms::default();
        for i in 0..100 {
            a.record(Stage::RelayFlv, 1_000_000 + i);
        }
        for _ in 0..50 {
            b.record(Stage::RelayFlv, 5_000_000);
        }
        published.publish(0, 0, &a);
        published.publish(1, 0, &b);
        let merged = published.merged();
        assert_eq!(merged.get(Stage::RelayFlv).len(), 150);
        assert_eq!(
            merged.sum(Stage::RelayFlv),
            a.sum(Stage::RelayFlv) + 250_000_000
        );
        assert!(merged.get(Stage::RelayFlv).max() >= 4_990_000);
        assert_eq!(merged.get(Stage::MeshHop).len(), 0);
    }

    const SECOND: u64 = 1_000_000_000;

    fn interval(stage: Stage, ns: u64, n: usize) -> Histograms {
        let mut h = Histograms::default();
        (0..n).for_each(|_| h.record(stage, ns));
        h
    }

    #[test]
    fn the_window_forgets_what_is_older_than_a_minute_and_the_totals_do_not() {
        let published = Published::new(1);
        // A bad minute: every relay takes 2 s.
        for t in 0..60 {
            published.publish(0, t * SECOND, &interval(Stage::RelayFlv, 2 * SECOND, 10));
        }
        let p99 = |at: u64| {
            published
                .windowed(at)
                .get(Stage::RelayFlv)
                .value_at_quantile(0.99)
        };
        assert!(p99(60 * SECOND) >= 1_980_000_000, "{}", p99(60 * SECOND));
        // Then two good minutes at 10 ms: the window shows them alone; the totals still
        // hold the bad minute.
        for t in 60..180 {
            published.publish(0, t * SECOND, &interval(Stage::RelayFlv, 10_000_000, 10));
        }
        assert!(p99(180 * SECOND) <= 10_100_000, "{}", p99(180 * SECOND));
        let window = published.windowed(180 * SECOND);
        let count = window.get(Stage::RelayFlv).len();
        assert!((500..=600).contains(&count), "{count} values in the window");
        assert_eq!(published.merged().get(Stage::RelayFlv).len(), 1800);
        assert!(published.merged().get(Stage::RelayFlv).max() >= 1_990_000_000);
    }

    #[test]
    fn a_shard_that_stops_publishing_ages_out_of_the_window() {
        let published = Published::new(2);
        published.publish(0, 0, &interval(Stage::MeshHop, 5_000_000, 100));
        published.publish(1, 0, &interval(Stage::MeshHop, 1_000_000, 100));
        for t in 1..=90 {
            published.publish(1, t * SECOND, &interval(Stage::MeshHop, 1_000_000, 1));
        }
        let window = published.windowed(90 * SECOND);
        assert!(window.get(Stage::MeshHop).max() < 1_100_000);
        assert_eq!(
            published
                .windowed(90 * SECOND + 61 * SECOND)
                .get(Stage::MeshHop)
                .len(),
            0
        );
    }

    #[test]
    fn a_long_pause_empties_the_window_at_the_next_add() {
        let mut window = Window::default();
        window.add(0, &interval(Stage::ViewerLag, 3_000_000, 5));
        window.add(3600 * SECOND, &interval(Stage::ViewerLag, 1_000_000, 1));
        let mut out = Histograms::default();
        window.add_to(3600 * SECOND, &mut out);
        assert_eq!(out.get(Stage::ViewerLag).len(), 1);
    }

    #[test]
    fn extreme_values_are_clamped() {
        let mut h = Histograms::default();
        h.record(Stage::ViewerLag, 0);
        h.record(Stage::ViewerLag, u64::MAX);
        assert_eq!(h.get(Stage::ViewerLag).len(), 2);
    }
}
