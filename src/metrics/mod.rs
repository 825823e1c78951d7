//! Latency histograms and the Prometheus exposition.
//!
//! Each shard records into its own [`Histograms`] (plain `hdrhistogram` histograms behind the
//! shard's `RefCell`: no atomics, no locks on the hot path). Once per
//! [`PUBLISH_INTERVAL`] every shard copies its histograms into its slot of [`Published`]
//! (one short lock per shard per interval); readers merge the slots. Values are nanoseconds.

pub mod api;
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
        let hist = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG)
            .expect("constant bounds are valid");
        Histograms {
            hists: vec![hist; Stage::ALL.len()],
            sums: vec![0; Stage::ALL.len()],
        }
    }
}

impl Histograms {
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

    /// Makes this set equal to `other` without allocating.
    pub fn copy_from(&mut self, other: &Histograms) {
        for (i, hist) in self.hists.iter_mut().enumerate() {
            hist.reset();
            // Same bounds on both sides: adding cannot fail.
            let _ = hist.add(&other.hists[i]);
        }
        self.sums.copy_from_slice(&other.sums);
    }

    /// Adds another set (merging shards).
    pub fn merge(&mut self, other: &Histograms) {
        for (i, hist) in self.hists.iter_mut().enumerate() {
            // Same bounds on both sides: adding cannot fail.
            let _ = hist.add(&other.hists[i]);
            self.sums[i] = self.sums[i].saturating_add(other.sums[i]);
        }
    }
}

/// Every shard's last published histograms.
#[derive(Debug, Default)]
pub struct Published {
    slots: Vec<Mutex<Histograms>>,
}

impl Published {
    /// Slots for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Published {
            slots: (0..shards)
                .map(|_| Mutex::new(Histograms::default()))
                .collect(),
        }
    }

    /// Replaces shard `id`'s slot.
    pub fn publish(&self, id: usize, hists: &Histograms) {
        if let Some(slot) = self.slots.get(id) {
            if let Ok(mut slot) = slot.lock() {
                slot.copy_from(hists);
            }
        }
    }

    /// Shard `id`'s last published histograms.
    pub fn shard(&self, id: usize) -> Histograms {
        self.slots
            .get(id)
            .and_then(|s| s.lock().ok().map(|h| h.clone()))
            .unwrap_or_default()
    }

    /// All shards merged (each slot is added under its lock, without a copy).
    pub fn merged(&self) -> Histograms {
        let mut all = Histograms::default();
        for slot in &self.slots {
            if let Ok(slot) = slot.lock() {
                all.merge(&slot);
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
        published.publish(0, &a);
        published.publish(1, &b);
        let merged = published.merged();
        assert_eq!(merged.get(Stage::RelayFlv).len(), 150);
        assert_eq!(
            merged.sum(Stage::RelayFlv),
            a.sum(Stage::RelayFlv) + 250_000_000
        );
        assert!(merged.get(Stage::RelayFlv).max() >= 4_990_000);
        assert_eq!(merged.get(Stage::MeshHop).len(), 0);
    }

    #[test]
    fn extreme_values_are_clamped() {
        let mut h = Histograms::default();
        h.record(Stage::ViewerLag, 0);
        h.record(Stage::ViewerLag, u64::MAX);
        assert_eq!(h.get(Stage::ViewerLag).len(), 2);
    }
}
