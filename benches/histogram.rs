//! Cost of latency recording: `Histograms::record` per sample, in the pattern of the
//! per-viewer hot path; the once-a-second `Published::publish` of a shard's histograms; and
//! `Published::merged`, which every `/metrics` scrape and histogram-log interval runs, and
//! `Published::windowed`, which every scrape and API stats request runs.
//!
//! The delivery loop (src/viewer.rs) records one relay-latency sample per unit per viewer
//! (when the unit's last byte is accepted by the kernel) and one viewer-lag sample per send,
//! through the shard's `RefCell<Histograms>`. The bench replays that pattern in one thread,
//! without IO: values come from a precomputed table of pseudo-random latencies spread
//! log-uniformly between 1 ms and 2 s (every bucket a real relay fills, from the merge window
//! to a GOP at join), so the counts touched are spread like the relay's, not one hot cell.
//!
//! Run: `cargo bench --bench histogram`. Environment: `HIST_RECORDS` (default 50,000,000
//! per round), `HIST_ROUNDS` (default 5; the best round counts), `HIST_PUBLISHES` (default
//! 2,000 per round). The cost is set against the fan-out cost per tag per viewer measured by
//! `benches/fanout.rs` (docs/BENCHMARKS.md, 1,000 viewers, 50 ms merge window);
//! `HIST_FANOUT_NS` and `HIST_FANOUT_USER_NS` replace those two figures with a row measured
//! on the machine at hand.

use corecast::media::now_ns;
use corecast::metrics::{Histograms, Published, Stage};
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Latencies in the value table (a power of two: the index is masked).
const TABLE: usize = 1 << 16;
/// Smallest and largest value in the table (ns).
const MIN_NS: f64 = 1e6;
const MAX_NS: f64 = 2e9;

/// Units per send in the fan-out bench's 1,000-viewer, 50 ms merge-window rows: 20.5 KB per
/// `sendmsg` over a 2,600 kbit/s stream of 30 video + 43 audio tags/s (about 4.45 KB a tag).
const TAGS_PER_SEND: f64 = 4.6;
/// Fan-out cost per tag per viewer at 1,000 viewers with the 50 ms merge window
/// (docs/BENCHMARKS.md, first table): total CPU and user-space CPU, ns.
const FANOUT_NS_PER_TAG: u64 = 3_464;
const FANOUT_USER_NS_PER_TAG: u64 = 341;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// Pseudo-random latencies (xorshift64*), log-uniform in [MIN_NS, MAX_NS].
fn latencies() -> Vec<u64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let span = (MAX_NS / MIN_NS).ln();
    (0..TABLE)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
            (MIN_NS * (unit * span).exp()) as u64
        })
        .collect()
}

/// Best time of `rounds` runs of `f`, which returns the time it measured.
fn best(rounds: u64, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().unwrap_or_default()
}

/// `n` relay-latency samples into one stage, as a bare `&mut Histograms`.
#[inline(never)]
fn record_one_stage(h: &mut Histograms, values: &[u64], n: u64) {
    for i in 0..n as usize {
        h.record(Stage::RelayFlv, black_box(values[i & (TABLE - 1)]));
    }
}

/// `n` samples in the hot path's pattern: through a `RefCell` (as `Shard::record`), one
/// viewer-lag sample per `TAGS_PER_SEND` relay samples (every 5th sample here; 4 relay + 1
/// lag, close to 4.6 + 1).
#[inline(never)]
fn record_hot_path(h: &RefCell<Histograms>, values: &[u64], n: u64) {
    for i in 0..n as usize {
        let stage = if i % 5 == 4 {
            Stage::ViewerLag
        } else {
            Stage::RelayFlv
        };
        h.borrow_mut()
            .record(stage, black_box(values[i & (TABLE - 1)]));
    }
}

/// `n` reads of the monotonic clock, as the delivery loop does once per send.
#[inline(never)]
fn read_clock(n: u64) -> u64 {
    let mut acc = 0u64;
    for _ in 0..n {
        acc = acc.wrapping_add(black_box(now_ns()));
    }
    acc
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with no time to spare.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let records = env_u64("HIST_RECORDS", 50_000_000).max(1);
    let rounds = env_u64("HIST_ROUNDS", 5).max(1);
    let publishes = env_u64("HIST_PUBLISHES", 2_000).max(1);
    let fanout_ns = env_u64("HIST_FANOUT_NS", FANOUT_NS_PER_TAG).max(1) as f64;
    let fanout_user_ns = env_u64("HIST_FANOUT_USER_NS", FANOUT_USER_NS_PER_TAG).max(1) as f64;
    let values = latencies();
    println!(
        "latency recording: {records} samples per round, best of {rounds} rounds, values \
         log-uniform in 1 ms ..= 2 s"
    );

    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e9 / n as f64;
    let mut filled = Histograms::default();
    let one = best(rounds, || {
        let mut h = Histograms::default();
        let t = Instant::now();
        record_one_stage(&mut h, &values, records);
        let took = t.elapsed();
        assert_eq!(h.get(Stage::RelayFlv).len(), records);
        filled = h;
        took
    });
    let hot = best(rounds, || {
        let h = RefCell::new(Histograms::default());
        let t = Instant::now();
        record_hot_path(&h, &values, records);
        let took = t.elapsed();
        let h = h.into_inner();
        assert_eq!(
            h.get(Stage::RelayFlv).len() + h.get(Stage::ViewerLag).len(),
            records
        );
        took
    });
    let clock = best(rounds, || {
        let t = Instant::now();
        black_box(read_clock(records));
        t.elapsed()
    });
    let (one_ns, hot_ns, clock_ns) = (per(one, records), per(hot, records), per(clock, records));
    println!(
        "{:<52} {:>8.2} ns",
        "record, one stage, &mut Histograms", one_ns
    );
    println!(
        "{:<52} {:>8.2} ns",
        "record, hot-path mix (RefCell, relay + viewer lag)", hot_ns
    );
    println!("{:<52} {:>8.2} ns", "now_ns() (once per send)", clock_ns);

    // Per tag per viewer: one relay sample, plus per send one lag sample and one clock read.
    let per_tag = hot_ns * (1.0 + 1.0 / TAGS_PER_SEND) + clock_ns / TAGS_PER_SEND;
    println!();
    println!(
        "per tag per viewer (1 relay sample + (1 lag sample + 1 clock read) / {TAGS_PER_SEND} \
         tags per send): {per_tag:.1} ns"
    );
    println!(
        "  fan-out, 1,000 viewers, 50 ms merge window: {fanout_ns:.0} CPU ns per tag per \
         viewer, {fanout_user_ns:.0} of them in user space"
    );
    println!(
        "  recording = {:.2}% of the CPU, {:.1}% of the user-space CPU",
        100.0 * per_tag / fanout_ns,
        100.0 * per_tag / fanout_user_ns
    );

    // The once-a-second copy into the export slot, with histograms that hold data.
    for stage in Stage::ALL {
        for i in 0..1_000usize {
            filled.record(stage, values[(i * 7919) & (TABLE - 1)]);
        }
    }
    let cells: usize = Stage::ALL
        .iter()
        .map(|&s| filled.get(s).distinct_values())
        .sum();
    let published = Published::new(1);
    let publish = best(rounds, || {
        let t = Instant::now();
        for _ in 0..publishes {
            published.publish(0, 0, black_box(&filled));
        }
        t.elapsed()
    });
    // What each interval of the histogram log does (merge every slot's totals), and what a
    // /metrics scrape adds (merge every slot's window).
    let merges = (publishes / 10).max(1);
    let merge = |shards: usize, windowed: bool| {
        let published = Published::new(shards);
        for id in 0..shards {
            published.publish(id, 0, &filled);
        }
        best(rounds, || {
            let t = Instant::now();
            for _ in 0..merges {
                if windowed {
                    black_box(published.windowed(0));
                } else {
                    black_box(published.merged());
                }
            }
            t.elapsed()
        })
    };
    let reads = [
        ("Published::merged, 1 shard (log interval)", merge(1, false)),
        ("Published::merged, 8 shards", merge(8, false)),
        (
            "Published::windowed, 1 shard (/metrics, API)",
            merge(1, true),
        ),
        ("Published::windowed, 8 shards", merge(8, true)),
    ];
    println!();
    println!(
        "{:<52} {:>8.1} us",
        format!(
            "Published::publish (7 histograms, {} KiB)",
            cells * 8 / 1024
        ),
        per(publish, publishes) / 1e3
    );
    println!(
        "  publish once a second per shard = {:.4}% of a core",
        per(publish, publishes) / 1e9 * 100.0
    );
    for (what, took) in reads {
        println!("{what:<52} {:>8.1} us", per(took, merges) / 1e3);
    }
}
