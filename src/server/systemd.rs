//! The systemd service protocol (`Type=notify`, `WatchdogSec=`): `READY=1` once every shard
//! serves, `STATUS=` with the audience, `WATCHDOG=1` only while every shard beats, and
//! `STOPPING=1`. The process's main thread drives it ([`Notifier::tick`]); without
//! `NOTIFY_SOCKET` (not started by systemd) nothing is sent.

use super::health::{Readiness, READY_SILENCE};
use super::Server;
use sd_notify::NotifyState;
use std::time::{Duration, Instant};
use tracing::warn;

/// How often `STATUS=` is refreshed when it changed.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// The service manager's side of the server.
#[derive(Debug)]
pub struct Notifier {
    /// Whether systemd listens (`NOTIFY_SOCKET` set).
    enabled: bool,
    /// `WatchdogSec=` as systemd passed it (`WATCHDOG_USEC`), for this process.
    watchdog: Option<Duration>,
    last_keepalive: Option<Instant>,
    last_status: Option<Instant>,
    status: String,
    /// Why the last keep-alive was withheld, once logged.
    withheld: Option<Readiness>,
}

impl Notifier {
    /// Reads what systemd passed in the environment.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
            last_keepalive: None,
            last_status: None,
            status: String::new(),
            withheld: None,
        }
    }

    /// How long a shard may be silent before keep-alives stop: half the watchdog period,
    /// and no more than `/readyz` allows.
    fn silence(watchdog: Duration) -> Duration {
        (watchdog / 2).min(READY_SILENCE)
    }

    /// Every shard serves: `READY=1` and a first status.
    pub fn ready(&mut self, server: &Server) {
        self.status = format!("serving: {}", server.audience());
        self.send(&[NotifyState::Ready, NotifyState::Status(&self.status)]);
        self.last_status = Some(Instant::now());
    }

    /// Called often (every 100 ms) by the main thread: a watchdog keep-alive when one is due
    /// and every shard has beaten recently, and the status when it changed.
    pub fn tick(&mut self, server: &Server, now: Instant) {
        if let Some(watchdog) = self.watchdog {
            let due = self
                .last_keepalive
                .is_none_or(|at| now.duration_since(at) >= watchdog / 4);
            if due {
                match server.readiness(Self::silence(watchdog)) {
                    Readiness::Ready => {
                        if let Some(was) = self.withheld.take() {
                            warn!("watchdog keep-alives resume (were withheld: {was})");
                        }
                        self.send(&[NotifyState::Watchdog]);
                        self.last_keepalive = Some(now);
                    }
                    not_ready => {
                        if self.withheld.is_none() {
                            warn!("watchdog keep-alive withheld: {not_ready}");
                        }
                        self.withheld = Some(not_ready);
                    }
                }
            }
        }
        if self
            .last_status
            .is_none_or(|at| now.duration_since(at) >= STATUS_INTERVAL)
        {
            let status = match self.withheld {
                Some(not_ready) => format!("{not_ready}; {}", server.audience()),
                None => format!("serving: {}", server.audience()),
            };
            if status != self.status {
                self.send(&[NotifyState::Status(&status)]);
                self.status = status;
            }
            self.last_status = Some(now);
        }
    }

    /// A reload begins; [`Notifier::ready`] follows when it ends. systemd (from v253)
    /// wants the time of the reload with it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(err) => warn!("cannot read the monotonic clock for systemd: {err}"),
        }
    }

    /// The server begins to stop.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(err) = sd_notify::notify(states) {
            warn!("cannot notify systemd: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_may_be_silent_for_half_the_watchdog_at_most() {
        assert_eq!(
            Notifier::silence(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(Notifier::silence(Duration::from_secs(30)), READY_SILENCE);
    }
}
