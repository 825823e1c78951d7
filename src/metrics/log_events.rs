//! Log lines counted by level and target (`corecast_log_events_total`), so that an alert on
//! the rate of errors needs Prometheus alone, not a log pipeline. [`LogEvents`] is a
//! `tracing` layer the binary installs behind its level filter: what the filter drops is
//! neither written nor counted.
//!
//! Targets are the `&'static str` of each event's call site (a module path, or `log` for
//! records of the `log` crate), so the series are bounded by the program's call sites.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Counts by (level, target), for the whole process.
type Counts = RwLock<HashMap<(Level, &'static str), Arc<AtomicU64>>>;

fn counts() -> &'static Counts {
    static COUNTS: OnceLock<Counts> = OnceLock::new();
    COUNTS.get_or_init(Counts::default)
}

/// The layer that counts every event it sees.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogEvents;

impl<S: Subscriber> Layer<S> for LogEvents {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        count(*event.metadata().level(), event.metadata().target());
    }
}

/// Counts one event of `level` from `target`.
pub fn count(level: Level, target: &'static str) {
    let key = (level, target);
    let found = counts()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let counter = found.unwrap_or_else(|| {
        let mut all = counts().write().unwrap_or_else(|e| e.into_inner());
        all.entry(key).or_default().clone()
    });
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Every (level, target, count) so far, sorted by level (most severe first), then target.
pub fn snapshot() -> Vec<(Level, &'static str, u64)> {
    let all = counts().read().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<_> = all
        .iter()
        .map(|(&(level, target), n)| (level, target, n.load(Ordering::Relaxed)))
        .collect();
    // `Level` orders ERROR as the smallest ("most verbose" is the greatest).
    out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    out
}

/// The Prometheus label value of a level.
pub fn label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_are_counted_by_level_and_target() {
        let target = "corecast::metrics::log_events::tests";
        let before = |level| {
            snapshot()
                .into_iter()
                .find(|&(l, t, _)| l == level && t == target)
                .map_or(0, |(_, _, n)| n)
        };
        let (errors, warnings) = (before(Level::ERROR), before(Level::WARN));
        let subscriber = tracing_subscriber::registry().with(LogEvents);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("one");
            tracing::error!("two");
            tracing::warn!("three");
        });
        assert_eq!(before(Level::ERROR), errors + 2);
        assert_eq!(before(Level::WARN), warnings + 1);
        assert_eq!(label(Level::ERROR), "error");
    }
}
