//! Configuration reloads (`SIGHUP`, `POST /api/v1/reload`): which keys may change while the
//! server runs, the configuration every shard takes up (each within one load sample), and
//! the reloads by result.
//!
//! A reload reads the same sources as the start (the file and `_FILE` secrets anew, the
//! environment and the command line as they were). A bad configuration changes nothing; one
//! that changes a key needing a restart ([`RESTART_ONLY`]) is refused whole, naming the keys,
//! and the running configuration stays. Otherwise every shard takes the new configuration:
//! access policies, keys and secrets apply to the next request; limits at once; timeouts,
//! viewer and RTMP settings to the connections and viewers that start after; ring and HLS
//! settings to the streams and HLS segmenters that start after; connected publishers and
//! viewers go on undisturbed.

use crate::config::Config;
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every shard runs the new configuration.
    Applied,
    /// Keys that need a restart changed: nothing was applied.
    Refused(Vec<&'static str>),
    /// The configuration could not be read or is invalid: nothing was applied.
    Invalid(String),
}

impl Outcome {
    /// The `result` label of `corecast_config_reloads_total`.
    pub fn label(&self) -> &'static str {
        RESULTS[self.index()]
    }

    /// Its place in [`RESULTS`].
    fn index(&self) -> usize {
        match self {
            Outcome::Applied => 0,
            Outcome::Refused(_) => 1,
            Outcome::Invalid(_) => 2,
        }
    }
}

/// The results reloads are counted by, as labels.
const RESULTS: [&str; 3] = ["applied", "refused", "invalid"];

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied => write!(f, "applied"),
            Outcome::Refused(keys) => write!(
                f,
                "refused: {} cannot change without a restart; the running configuration stays",
                keys.join(", ")
            ),
            Outcome::Invalid(err) => {
                write!(f, "invalid: {err}; the running configuration stays")
            }
        }
    }
}

/// A key that only a restart changes, and how to read it.
type Key = (&'static str, fn(&Config) -> String);

/// Keys that only a restart changes: the listeners and shards are made at the start, and so
/// are the log format and the histogram log.
pub const RESTART_ONLY: &[Key] = &[
    ("server.shards", |c| c.server.shards.to_string()),
    ("server.rtmp_listen", |c| c.server.rtmp_listen.to_string()),
    ("server.http_listen", |c| c.server.http_listen.to_string()),
    ("server.listen_backlog", |c| {
        c.server.listen_backlog.to_string()
    }),
    ("server.mesh_queue_units", |c| {
        c.server.mesh_queue_units.to_string()
    }),
    ("admin.listen", |c| c.admin.listen.clone()),
    ("log.format", |c| format!("{:?}", c.log.format)),
    ("metrics.histogram_log", |c| c.metrics.histogram_log.clone()),
    ("metrics.histogram_log_interval_ms", |c| {
        c.metrics.histogram_log_interval_ms.to_string()
    }),
    // Viewers are counted per stream only while there is a maximum: turning it on or off
    // would leave counts that do not match the viewers. Changing a maximum is fine.
    ("limits.max_viewers_per_stream (set or unset)", |c| {
        (c.limits.max_viewers_per_stream > 0).to_string()
    }),
];

/// The keys of [`RESTART_ONLY`] whose values differ between `running` and `new`.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_ONLY
        .iter()
        .filter(|(_, read)| read(running) != read(new))
        .map(|(key, _)| *key)
        .collect()
}

/// The configuration every shard runs, shared by the shards and the main thread.
#[derive(Debug)]
pub struct Reloads {
    current: ArcSwap<Config>,
    /// Bumped by each applied reload.
    version: AtomicU64,
    /// The version each shard runs.
    taken: Box<[AtomicU64]>,
    /// Reloads by result: applied, refused, invalid.
    results: [AtomicU64; 3],
    /// Reloads asked for through the API, and the last one answered with its outcome.
    asked: AtomicU64,
    answered: Mutex<(u64, Option<Outcome>)>,
}

impl Reloads {
    /// The start: `config`, version 0, for `shards` shards.
    pub fn new(config: Arc<Config>, shards: usize) -> Reloads {
        Reloads {
            current: ArcSwap::new(config),
            version: AtomicU64::new(0),
            taken: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            results: Default::default(),
            asked: AtomicU64::new(0),
            answered: Mutex::new((0, None)),
        }
    }

    /// The configuration and its version.
    pub fn current(&self) -> (u64, Arc<Config>) {
        // The version is read first: a shard that sees an older version than the
        // configuration it loads only takes the same configuration again later.
        let version = self.version.load(Ordering::Acquire);
        (version, self.current.load_full())
    }

    /// The version of the configuration (a shard compares it with the one it runs).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Publishes `config` to the shards; returns its version.
    pub fn publish(&self, config: Arc<Config>) -> u64 {
        self.current.store(config);
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Shard `shard` runs `version`.
    pub fn took(&self, shard: usize, version: u64) {
        if let Some(taken) = self.taken.get(shard) {
            taken.store(version, Ordering::Release);
        }
    }

    /// Whether every shard runs `version` or later.
    pub fn taken_by_all(&self, version: u64) -> bool {
        self.taken
            .iter()
            .all(|t| t.load(Ordering::Acquire) >= version)
    }

    /// Counts a reload's outcome.
    pub fn count(&self, outcome: &Outcome) {
        self.results[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads so far, by result label.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        std::array::from_fn(|i| (RESULTS[i], self.results[i].load(Ordering::Relaxed)))
    }

    /// Asks the main thread for a reload (the API); returns the ticket to wait on.
    pub fn ask(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The last ticket asked for, when it is not answered yet.
    pub fn pending(&self) -> Option<u64> {
        let asked = self.asked.load(Ordering::Acquire);
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner()).0;
        (asked > answered).then_some(asked)
    }

    /// Answers every ticket up to `ticket` with `outcome`.
    pub fn answer(&self, ticket: u64, outcome: Outcome) {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if ticket > answered.0 {
            *answered = (ticket, Some(outcome));
        }
    }

    /// The outcome of the reload that answered `ticket`, once there is one.
    pub fn answer_to(&self, ticket: u64) -> Option<Outcome> {
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        (answered.0 >= ticket).then(|| answered.1.clone()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::overlay(text, "test").unwrap()
    }

    #[test]
    fn only_listeners_shards_log_format_and_histogram_log_need_a_restart() {
        let running = config("");
        let same = config(
            "[viewer]\nmerge_window_ms = 0\n[auth]\nplay = \"open\"\n[limits]\nmax_streams = 10\n",
        );
        assert!(restart_needed(&running, &same).is_empty());
        let moved = config(
            "[server]\nrtmp_listen = \"127.0.0.1:1936\"\nshards = 1\n[log]\nformat = \"json\"\n",
        );
        assert_eq!(
            restart_needed(&running, &moved),
            ["server.shards", "server.rtmp_listen", "log.format"]
        );
        let capped = config("[limits]\nmax_viewers_per_stream = 10\n");
        let recapped = config("[limits]\nmax_viewers_per_stream = 20\n");
        assert_eq!(
            restart_needed(&running, &capped),
            ["limits.max_viewers_per_stream (set or unset)"]
        );
        assert!(restart_needed(&capped, &recapped).is_empty());
    }

    #[test]
    fn shards_take_a_published_version_and_tickets_get_answers() {
        let reloads = Reloads::new(Arc::new(config("")), 2);
        assert!(reloads.taken_by_all(0));
        let version = reloads.publish(Arc::new(config("[viewer]\nmerge_window_ms = 0\n")));
        assert_eq!(version, 1);
        let (seen, current) = reloads.current();
        assert_eq!((seen, current.viewer.merge_window_ms), (1, 0));
        reloads.took(0, 1);
        assert!(!reloads.taken_by_all(1));
        reloads.took(1, 1);
        assert!(reloads.taken_by_all(1));

        assert_eq!(reloads.pending(), None);
        let (first, second) = (reloads.ask(), reloads.ask());
        assert_eq!(reloads.pending(), Some(second));
        assert_eq!(reloads.answer_to(first), None);
        reloads.answer(second, Outcome::Refused(vec!["server.shards"]));
        assert_eq!(reloads.pending(), None);
        assert_eq!(
            reloads.answer_to(first),
            Some(Outcome::Refused(vec!["server.shards"]))
        );
        reloads.count(&Outcome::Applied);
        reloads.count(&Outcome::Invalid("x".into()));
        assert_eq!(
            reloads.counts(),
            [("applied", 1), ("refused", 0), ("invalid", 1)]
        );
        assert_eq!(
            Outcome::Refused(vec!["server.shards", "admin.listen"]).to_string(),
            "refused: server.shards, admin.listen cannot change without a restart; \
             the running configuration stays"
        );
    }
}
