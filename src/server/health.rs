//! Liveness and readiness: a heartbeat per shard, the start and the stop, read by `/readyz`,
//! the systemd watchdog and the service status (pure: the caller passes the time).
//!
//! Every shard beats from a task of its own executor (every
//! [`crate::shard::schedule::LOAD_SAMPLE`], with its load sample), so a beat proves that the
//! shard's thread runs its tasks: a shard stuck in one task (a blocking call, a
//! loop that never yields) stops beating, and [`Health::check`] reports it as stalled once
//! its last beat is older than the allowed silence.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The longest silence `/readyz` allows a shard before it answers 503.
pub const READY_SILENCE: Duration = Duration::from_secs(2);

/// Beats of "never": a shard that has not started.
const NEVER: u64 = u64::MAX;

/// The shared health of one server's shards.
#[derive(Debug)]
pub struct Health {
    /// Time of each shard's last beat (`now_ns`), [`NEVER`] before it started.
    beats: Box<[AtomicU64]>,
    stopping: AtomicBool,
}

/// What [`Health::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Every shard serves and beats.
    Ready,
    /// Not every shard has started yet.
    Starting {
        /// Shards serving.
        started: usize,
        /// Shards in all.
        shards: usize,
    },
    /// The server is stopping: no new connections.
    Stopping,
    /// A shard has not beaten for longer than allowed.
    Stalled {
        /// The first silent shard.
        shard: usize,
        /// For how long, in milliseconds.
        silent_ms: u64,
    },
}

impl Health {
    /// The health of `shards` shards, none started.
    pub fn new(shards: usize) -> Health {
        Health {
            beats: (0..shards).map(|_| AtomicU64::new(NEVER)).collect(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Shard `shard` runs its tasks at `now_ns` (the first beat marks it started).
    pub fn beat(&self, shard: usize, now_ns: u64) {
        if let Some(beat) = self.beats.get(shard) {
            beat.store(now_ns, Ordering::Relaxed);
        }
    }

    /// How long ago each shard last beat, at `now_ns` (`None`: not started).
    pub fn ages(&self, now_ns: u64) -> Vec<Option<u64>> {
        self.beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .map(|at| (at != NEVER).then(|| now_ns.saturating_sub(at)))
            .collect()
    }

    /// The server is stopping: from now on it is not ready.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether every shard serves and has beaten within `silence` of `now_ns`.
    pub fn check(&self, now_ns: u64, silence: Duration) -> Readiness {
        if self.stopping.load(Ordering::Relaxed) {
            return Readiness::Stopping;
        }
        let beats: Vec<u64> = self
            .beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let started = beats.iter().filter(|&&at| at != NEVER).count();
        if started < beats.len() {
            return Readiness::Starting {
                started,
                shards: beats.len(),
            };
        }
        let allowed = u64::try_from(silence.as_nanos()).unwrap_or(u64::MAX);
        let silent = beats
            .iter()
            .enumerate()
            .map(|(shard, &at)| (shard, now_ns.saturating_sub(at)))
            .find(|&(_, quiet)| quiet > allowed);
        match silent {
            Some((shard, quiet)) => Readiness::Stalled {
                shard,
                silent_ms: quiet / 1_000_000,
            },
            None => Readiness::Ready,
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Ready => write!(f, "ready"),
            Readiness::Starting { started, shards } => {
                write!(f, "starting: {started} of {shards} shards serving")
            }
            Readiness::Stopping => write!(f, "stopping"),
            Readiness::Stalled { shard, silent_ms } => {
                write!(f, "shard {shard} stalled: no heartbeat for {silent_ms} ms")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ready_only_once_every_shard_has_beaten() {
        let health = Health::new(2);
        assert_eq!(
            health.check(0, READY_SILENCE),
            Readiness::Starting {
                started: 0,
                shards: 2
            }
        );
        health.beat(0, 10 * MS);
        assert_eq!(
            health.check(10 * MS, READY_SILENCE),
            Readiness::Starting {
                started: 1,
                shards: 2
            }
        );
        health.beat(1, 11 * MS);
        assert_eq!(health.check(12 * MS, READY_SILENCE), Readiness::Ready);
    }

    #[test]
    fn a_silent_shard_is_stalled_and_recovers_when_it_beats() {
        let health = Health::new(3);
        for shard in 0..3 {
            health.beat(shard, 1_000 * MS);
        }
        health.beat(0, 3_000 * MS);
        health.beat(2, 3_000 * MS);
        let silence = Duration::from_millis(1_500);
        assert_eq!(health.check(2_500 * MS, silence), Readiness::Ready);
        assert_eq!(
            health.check(3_000 * MS, silence),
            Readiness::Stalled {
                shard: 1,
                silent_ms: 2_000
            }
        );
        health.beat(1, 3_100 * MS);
        assert_eq!(health.check(3_200 * MS, silence), Readiness::Ready);
    }

    #[test]
    fn stopping_wins_and_beats_of_unknown_shards_are_ignored() {
        let health = Health::new(1);
        health.beat(0, MS);
        health.beat(7, MS);
        assert_eq!(health.check(MS, READY_SILENCE), Readiness::Ready);
        health.set_stopping();
        assert_eq!(health.check(MS, READY_SILENCE), Readiness::Stopping);
        assert_eq!(Readiness::Stopping.to_string(), "stopping");
        let stalled = Readiness::Stalled {
            shard: 1,
            silent_ms: 2_500,
        };
        assert_eq!(
            stalled.to_string(),
            "shard 1 stalled: no heartbeat for 2500 ms"
        );
    }
}
