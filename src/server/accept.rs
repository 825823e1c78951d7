//! A shard's accept loops: admission under the connection limits, one task per connection,
//! and the back-off and rate-limited log of failed accepts (EMFILE).

use crate::config::{Config, ProxyListener};
use crate::limits::{Listener, Ticket};
use crate::proxy::{self, ProxyError};
use crate::shard::Shard;
use crate::stats;
use glommio::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

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

impl Protocol {
    /// Whether this listener takes PROXY headers (`server.proxy_protocol`).
    fn takes_proxy_headers(self, listeners: &[ProxyListener]) -> bool {
        match self {
            Protocol::Rtmp => listeners.contains(&ProxyListener::Rtmp),
            Protocol::Http => listeners.contains(&ProxyListener::Http),
            Protocol::Admin => false,
        }
    }

    /// How long a connection's first bytes may take: the handshake or request-head timeout.
    fn first_bytes_within(self, config: &Config) -> Duration {
        match self {
            Protocol::Rtmp => Duration::from_millis(config.rtmp.handshake_timeout_ms),
            Protocol::Http | Protocol::Admin => {
                Duration::from_millis(config.http.header_timeout_ms)
            }
        }
    }
}

/// How far a connection's source is believed.
#[derive(Clone, Copy)]
enum Trust {
    /// The listener takes no PROXY headers: the peer is the client.
    Direct,
    /// A trusted load balancer: its PROXY header names the client.
    Proxy,
    /// Not a trusted load balancer, on a listener that takes headers from those: the peer
    /// is the client, and must not send a header.
    Untrusted,
}

/// What is known of an accepted connection before its first bytes.
struct Arrival {
    peer: SocketAddr,
    trust: Trust,
    /// How long its first bytes may take.
    limit: Duration,
    /// The listener's name, for logs.
    listener: &'static str,
}

/// The connection's client: behind a trusted proxy, the one its PROXY header names (then
/// counted under the per-address limit, on `ticket`); from an untrusted address on a
/// listener that takes headers, the peer, unless it starts with a header. `None`: refused,
/// counted and logged; the connection closes.
async fn client(
    shard: &Shard,
    stream: &mut TcpStream,
    arrival: Arrival,
    ticket: &mut Ticket,
) -> Option<SocketAddr> {
    let Arrival {
        peer,
        trust,
        limit,
        listener,
    } = arrival;
    let refused = |err: ProxyError| {
        stats::inc(&shard.stats.proxy_refused);
        info!(action = "connection-refused", shard = shard.id, listener, %peer, "{err}; closing");
        None
    };
    match trust {
        Trust::Direct => Some(peer),
        Trust::Untrusted if proxy::starts_with_header(stream, limit).await => {
            refused(ProxyError::Untrusted)
        }
        Trust::Untrusted => Some(peer),
        Trust::Proxy => {
            let client = match proxy::read_header(stream, limit).await {
                // The balancer's own connection (a health check).
                Ok(None) => peer,
                Ok(Some(client)) => client,
                Err(err) => return refused(err),
            };
            if let Err(limit) = ticket.count_address(client.ip()) {
                stats::inc(&shard.stats.connections_refused);
                debug!(action = "connection-refused", shard = shard.id, listener, %peer, %client, "connection refused: {limit}");
                return None;
            }
            Some(client)
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
                let config = shard.config();
                let proxied = protocol.takes_proxy_headers(&config.server.proxy_protocol);
                let trust = match proxied {
                    false => Trust::Direct,
                    true if proxy::is_trusted(&config.server.proxy_trusted, peer.ip()) => {
                        Trust::Proxy
                    }
                    true => Trust::Untrusted,
                };
                // Behind a trusted proxy the client's address is in its PROXY header: the
                // per-address limit applies once it is read.
                let admitted = match trust {
                    Trust::Proxy => shard.admission().admit_unaddressed(shard.id, side),
                    _ => shard.admission().admit(shard.id, peer.ip(), side),
                };
                let mut ticket = match admitted {
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
                let limit = protocol.first_bytes_within(&config);
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let mut stream = stream;
                    let first = Arrival {
                        peer,
                        trust,
                        limit,
                        listener: protocol.name(),
                    };
                    let Some(peer) = client(&shard, &mut stream, first, &mut ticket).await else {
                        return;
                    };
                    let side = match protocol {
                        Protocol::Rtmp => {
                            return crate::rtmp::serve(shard, stream, peer, ticket).await;
                        }
                        Protocol::Http => crate::http::Listener::Public,
                        Protocol::Admin => crate::http::Listener::Admin,
                    };
                    crate::http::serve(shard, stream, peer, side).await;
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
