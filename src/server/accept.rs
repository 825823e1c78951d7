//! A shard's accept loops: admission under the connection limits, one task per connection,
//! and the back-off and rate-limited log of failed accepts (EMFILE).

use crate::limits::Listener;
use crate::shard::Shard;
use crate::stats;
use glommio::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Pause after a failed accept (e.g. EMFILE) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a listener serves.
#[derive(Clone, Copy)]
pub(super) enum Protocol {
    /// `server.rtmp_listen`.
    Rtmp,
    /// `server.http_listen`.
    Http,
    /// `admin.listen`.
    Admin,
}

impl Protocol {
    /// The listener's name in logs.
    fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Http => "http",
            Protocol::Admin => "admin",
        }
    }
}

/// At most one "accept failed" line per listener of a shard per this interval.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Rate limit of one listener's "accept failed" lines: the first failure is logged at once,
/// later ones at most once per [`ACCEPT_LOG_INTERVAL`], with how many failed since the last
/// line. (Every failure is counted in `accept_errors`.)
#[derive(Default)]
struct AcceptFailures {
    /// Failures not reported by a line yet.
    unlogged: u64,
    /// When the last line was logged.
    logged_at: Option<Instant>,
}

impl AcceptFailures {
    /// Records a failure; returns the failures to report if a line is due now.
    fn record(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < ACCEPT_LOG_INTERVAL)
        {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Accepts connections on one listener of a shard until the task is dropped: each is
/// admitted under the connection limits (or refused and counted) and served by its own task.
pub(super) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, protocol: Protocol) {
    let mut failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let side = match protocol {
                    Protocol::Rtmp | Protocol::Http => Listener::Public,
                    Protocol::Admin => Listener::Admin,
                };
                let ticket = match shard.admission().admit(shard.id, peer.ip(), side) {
                    Ok(ticket) => ticket,
                    Err(refused) => {
                        stats::inc(&shard.stats.connections_refused);
                        debug!(
                            action = "connection-refused",
                            shard = shard.id,
                            listener = protocol.name(),
                            %peer,
                            "connection refused: {refused}"
                        );
                        continue;
                    }
                };
                let shard = shard.clone();
                let http = match protocol {
                    Protocol::Rtmp => {
                        glommio::spawn_local(crate::rtmp::serve(shard, stream, peer, ticket))
                            .detach();
                        continue;
                    }
                    Protocol::Http => crate::http::Listener::Public,
                    Protocol::Admin => crate::http::Listener::Admin,
                };
                glommio::spawn_local(async move {
                    crate::http::serve(shard, stream, peer, http).await;
                    drop(ticket);
                })
                .detach();
            }
            Err(err) => {
                // E.g. EMFILE: nothing to do but wait for connections to close.
                stats::inc(&shard.stats.accept_errors);
                if let Some(failed) = failures.record(Instant::now()) {
                    warn!(
                        shard = shard.id,
                        listener = protocol.name(),
                        failed,
                        "accept failed: {err}; retrying every {ACCEPT_BACKOFF:?}"
                    );
                }
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
