//! What the allocator can tell of the heap, for `/metrics`, the API and the heap report of
//! `/debug/heap`.
//!
//! corecast allocates through mimalloc (the binary's global allocator). mimalloc keeps its
//! operating-system figures (memory reserved and committed, calls to `mmap`) in every
//! build; its per-size-class counts need a build with statistics, which costs on every
//! allocation, so they read 0 here. Rust's allocator interface has no sampling heap
//! profiler, so the report does not attribute the heap to call sites: it sets the gauges of
//! what corecast holds (rings, GOP caches, HLS segments, connection buffers, mesh queues,
//! histograms) beside the allocator's and the kernel's totals.

use serde_json::Value;
use std::ffi::CStr;

/// mimalloc's figures for the whole process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocator {
    /// Memory committed (backed, readable and writable) now.
    pub committed: u64,
    /// The most ever committed.
    pub committed_peak: u64,
    /// Address space reserved (committed or not).
    pub reserved: u64,
    /// Calls to `mmap` so far.
    pub mmap_calls: u64,
}

impl Allocator {
    /// The figures in mimalloc's statistics document (see [`stats`]).
    pub fn from_stats(stats: &Value) -> Allocator {
        let get = |path: &[&str]| {
            path.iter()
                .try_fold(stats, |value, key| value.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Allocator {
            committed: get(&["committed", "current"]),
            committed_peak: get(&["committed", "peak"]),
            reserved: get(&["reserved", "current"]),
            mmap_calls: get(&["mmap_calls"]),
        }
    }
}

/// mimalloc's statistics of the process, as the JSON document it writes (`None` if it
/// cannot write one).
pub fn stats() -> Option<Value> {
    // SAFETY: with a null buffer, mimalloc allocates the document (with its own
    // allocator) and returns it NUL-terminated, or returns null; the caller frees it with
    // `mi_free`, once, after the last read.
    unsafe {
        let text = libmimalloc_sys::mi_stats_get_json(0, std::ptr::null_mut());
        if text.is_null() {
            return None;
        }
        let parsed = serde_json::from_slice(CStr::from_ptr(text).to_bytes()).ok();
        libmimalloc_sys::mi_free(text.cast());
        parsed
    }
}

/// mimalloc's figures of the process (zeros if it cannot tell).
pub fn allocator() -> Allocator {
    stats().map_or_else(Allocator::default, |s| Allocator::from_stats(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_come_from_the_statistics_document() {
        let stats = serde_json::json!({
            "reserved": { "total": 9, "peak": 9, "current": 1076166656 },
            "committed": { "total": 5, "peak": 121044992, "current": 120520704 },
            "mmap_calls": 3,
        });
        let figures = Allocator::from_stats(&stats);
        assert_eq!(figures.committed, 120520704);
        assert_eq!(figures.committed_peak, 121044992);
        assert_eq!(figures.reserved, 1076166656);
        assert_eq!(figures.mmap_calls, 3);
        assert_eq!(Allocator::from_stats(&Value::Null), Allocator::default());
    }

    #[test]
    fn mimalloc_writes_its_statistics() {
        let stats = stats().expect("a statistics document");
        assert!(stats["mimalloc_version"].as_u64().unwrap_or(0) >= 20000);
        assert!(stats.get("committed").is_some() && stats.get("reserved").is_some());
    }
}
