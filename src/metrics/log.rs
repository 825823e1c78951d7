//! HdrHistogram V2 interval logs: writing them (one tagged, compressed histogram per stage
//! and interval) and summarizing them (`corecast hist`).
//!
//! The format is the one HistogramLogAnalyzer, HistogramLogProcessor and the Python
//! `hdrhistogram` package read. Values are nanoseconds; the log's max column is written in
//! milliseconds (max value divisor 1e6).

use super::{Histograms, Published, Stage};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Why a log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of the log is not valid.
    #[error("{path}: not a histogram log: {message}")]
    Format {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A thread writing the interval log; [`LogWriter::finish`] writes the last interval.
pub struct LogWriter {
    thread: Option<JoinHandle<()>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl LogWriter {
    /// Starts writing `path` every `interval` from the shards' published histograms.
    pub fn spawn(
        path: &Path,
        interval: Duration,
        published: Arc<Published>,
    ) -> Result<LogWriter, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("corecast-histlog".into())
            .spawn(move || {
                if let Err(err) = write_log(file, interval, &published, &signal) {
                    tracing::warn!("histogram log {shown}: {err}");
                }
            })
            .map_err(io)?;
        Ok(LogWriter {
            thread: Some(thread),
            stop,
        })
    }

    /// Writes the last interval and closes the log.
    pub fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let (flag, wake) = &*self.stop;
        if let Ok(mut stopped) = flag.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn write_log(
    mut file: File,
    interval: Duration,
    published: &Published,
    stop: &(Mutex<bool>, Condvar),
) -> std::io::Result<()> {
    let started = SystemTime::now();
    let origin = Instant::now();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("corecast latency histograms; values in nanoseconds")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut file, &mut serializer)?;
    let mut previous = Histograms::default();
    let mut last = Instant::now();
    loop {
        let stopped = {
            let (flag, wake) = stop;
            let guard = flag.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let (guard, _) = wake
                .wait_timeout_while(guard, interval, |stopped| !*stopped)
                .map_err(|_| std::io::Error::other("poisoned"))?;
            *guard
        };
        let now = Instant::now();
        let current = published.merged();
        for stage in Stage::ALL {
            let mut delta = current.get(stage).clone();
            // Cumulative histograms only grow: the subtraction cannot underflow.
            let _ = delta.subtract(previous.get(stage));
            if delta.is_empty() {
                continue;
            }
            log.write_histogram(
                &delta,
                last.duration_since(origin),
                now.duration_since(last),
                Tag::new(stage.tag()),
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
        previous = current;
        last = now;
        if stopped {
            return Ok(());
        }
    }
}

/// Per tag, the histogram of every interval that starts within `[from, to]` seconds (from
/// the log's base time), added together.
pub fn read(path: &Path, from: f64, to: f64) -> Result<BTreeMap<String, Histogram<u64>>, LogError> {
    let text = std::fs::read(path).map_err(|source| LogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |message: String| LogError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut deserializer = Deserializer::new();
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for entry in IntervalLogIterator::new(&text) {
        let entry = entry.map_err(|e| format(format!("{e:?}")))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let start = interval.start_timestamp().as_secs_f64();
        if start < from || start > to {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| format(e.to_string()))?;
        let hist: Histogram<u64> = deserializer
            .deserialize(&mut &bytes[..])
            .map_err(|e| format(format!("{e:?}")))?;
        let tag = interval
            .tag()
            .map_or("(untagged)", |t| t.as_str())
            .to_string();
        match totals.get_mut(&tag) {
            Some(total) => total.add(&hist).map_err(|e| format(format!("{e:?}")))?,
            None => {
                totals.insert(tag, hist);
            }
        }
    }
    Ok(totals)
}

/// The percentile table `corecast hist` prints: per tag, count and latency percentiles in
/// milliseconds over `[from, to]` seconds of the log.
pub fn summarize(path: &Path, from: f64, to: f64) -> Result<String, LogError> {
    let totals = read(path, from, to)?;
    let mut out = String::new();
    let range = if to.is_finite() {
        format!("{from:.1} s to {to:.1} s")
    } else {
        format!("{from:.1} s to the end")
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}: intervals starting from {range}", path.display());
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "tag", "count", "mean ms", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (tag, h) in &totals {
        let ms = |ns: f64| ns / 1e6;
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            tag,
            h.len(),
            ms(h.mean()),
            ms(h.value_at_quantile(0.5) as f64),
            ms(h.value_at_quantile(0.9) as f64),
            ms(h.value_at_quantile(0.99) as f64),
            ms(h.value_at_quantile(0.999) as f64),
            ms(h.max() as f64),
        );
    }
    if totals.is_empty() {
        out.push_str("(no intervals in this range)\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_log_reads_back_with_the_same_counts() {
        let dir = std::env::temp_dir().join(format!("corecast-histlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.hlog");
        let published = Arc::new(Published::new(1));
        let writer = LogWriter::spawn(&path, Duration::from_millis(50), published.clone()).unwrap();
        let mut h = Histograms::default();
        for i in 0..1000u64 {
            h.record(Stage::RelayFlv, 1_000_000 + i * 1000);
        }
        published.publish(0, 0, &h);
        h.reset();
        std::thread::sleep(Duration::from_millis(120));
        for _ in 0..500 {
            h.record(Stage::RelayFlv, 9_000_000);
        }
        h.record(Stage::MeshHop, 42_000);
        published.publish(0, 1_000_000_000, &h);
        writer.finish();
        let totals = read(&path, 0.0, f64::INFINITY).unwrap();
        assert_eq!(totals["relay_latency_flv"].len(), 1500);
        assert_eq!(totals["mesh_hop"].len(), 1);
        let p50 = totals["relay_latency_flv"].value_at_quantile(0.5);
        assert!((1_740_000..=1_760_000).contains(&p50), "{p50}");
        let table = summarize(&path, 0.0, f64::INFINITY).unwrap();
        assert!(table.contains("relay_latency_flv"), "{table}");
        assert!(table.contains("1500"), "{table}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
