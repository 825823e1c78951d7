//! Edge pulls (`[[upstream]]`): a stream of an application that is not published here is
//! pulled from an origin when its first viewer asks for it, and served like a published
//! stream. The origins are RTMP servers (any: corecast, nginx-rtmp, SRS) and HTTP-FLV
//! servers, plain or over TLS (`https://`, [`crate::net::tls`]), tried in order; each is
//! named by address or by a DNS name resolved at every connect ([`crate::net::host`]).
//!
//! | file | job |
//! |---|---|
//! | `upstream.rs` | origin URLs ([`OriginUrl`]), the failover policy ([`Failover`], pure), the loop marker ([`Via`]), a pull's state for the API ([`PullStatus`]) |
//! | `upstream/flv.rs` | an HTTP-FLV pull as a sans-IO client ([`flv::FlvPull`]) |
//! | `upstream/rtmp.rs` | an RTMP pull as a sans-IO client ([`rtmp::RtmpPull`]) |
//! | `upstream/driver.rs` | the task that pulls one stream on its owner shard ([`driver::run`]) |
//!
//! # One pull per stream
//!
//! A viewer of a stream that no shard knows asks the stream's owner shard to pull it
//! (`Shard::pull`), and waits at most `edge.start_timeout_ms` for it to become live. The
//! owner runs one pull per stream: the pull is the stream's publisher (a publisher with the
//! origin's address), so everything downstream (fan-out to every shard, GOP cache, HLS,
//! forwards) is the same as for a stream published here.
//!
//! # Failover
//!
//! [`Failover`] decides which origin comes next: an origin that refuses, does not answer in
//! time or drops the stream is left for the next one at once; once every origin failed in a
//! row, the next round waits 1 s, then twice as long each time, at most 30 s. A session that
//! delivered media starts the count again. While the pull switches origins, the stream is in
//! its republish grace (`stream.republish_grace_ms`): viewers stay, timestamps go on, HLS
//! marks a discontinuity. A pull that never delivered gives up after its first round: no
//! origin has the stream, and its viewers get what they get for a stream that does not exist.
//! A pull stops `edge.idle_timeout_ms` after the stream's last viewer left.
//!
//! # Loops
//!
//! Every pull names the corecast servers it went through, in the `corecast_via` query
//! parameter of its request (HTTP-FLV URL, RTMP stream name): each server's id (random per
//! server, [`new_node_id`]), in order. A server that finds its own id there refuses the request
//! (`508 Loop Detected`, `NetStream.Play.StreamNotFound`), and so does any server when the
//! list is longer than [`MAX_HOPS`]: an edge never pulls from itself, nor from a chain of
//! corecast servers that leads back to it. A non-corecast server in the chain (nginx-rtmp,
//! SRS) does not pass the list on; the hop limit does not bound a loop through one, which
//! its own configuration must avoid.

pub mod driver;
pub mod flv;
pub mod rtmp;

use crate::forward::Target;
use crate::media::now_ns;
use crate::metrics::api::UpstreamReport;
use crate::net::host::Host;
use std::time::Duration;

/// Most origins of one rule.
pub const MAX_ORIGINS: usize = 8;

/// Most servers a pull may have gone through (see the module's notes on loops).
pub const MAX_HOPS: usize = 8;

/// The query parameter that lists the servers a pull went through.
pub const VIA_PARAM: &str = "corecast_via";

/// First wait before a new round of origins, after all failed.
const FIRST_ROUND_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between rounds.
const LAST_ROUND_WAIT: Duration = Duration::from_secs(30);

/// What a pull received from its origin, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Pulled {
    /// An audio or video message: an FLV tag body and its timestamp.
    Media {
        /// Audio or video.
        kind: crate::media::UnitKind,
        /// Its timestamp (ms).
        timestamp: u32,
        /// The FLV tag body.
        body: crate::media::Body,
    },
    /// The stream's metadata (`onMetaData`).
    Metadata(Box<rml_rtmp::sessions::StreamMetadata>),
    /// The origin ended the stream (its words).
    Ended(String),
}

/// Why an origin could not be pulled from.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The URL is neither `rtmp://IP:PORT/APP/STREAM` nor `http://IP:PORT/PATH`.
    #[error("{0}: not rtmp://IP:PORT/APP/{{stream}} nor http://IP:PORT/PATH/{{stream}}.flv (an IP address: names are not resolved)")]
    Url(String),
    /// The origin did not accept and start the stream in time.
    #[error("no stream within {0:?}")]
    Timeout(Duration),
    /// The origin does not have the stream (a 404, `NetStream.Play.StreamNotFound`).
    #[error("the origin does not have the stream ({0})")]
    NotFound(String),
    /// The origin refused the request (another status, a rejected connect).
    #[error("refused: {0}")]
    Refused(String),
    /// The origin's answer is not what its protocol allows, or is over a bound.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// The connection failed (a TLS handshake too, such as a certificate not trusted).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// TLS cannot start: no root certificate, an unreadable `edge.ca_file`.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
}

/// An origin of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginUrl {
    /// An RTMP server: its address, application and the stream's name there.
    Rtmp(Target),
    /// An HTTP-FLV server.
    Flv {
        /// The server.
        host: Host,
        /// Over TLS (`https://`).
        tls: bool,
        /// The request's path and query.
        path: String,
        /// The URL, for logs and the API, without its query.
        shown: String,
    },
}

impl OriginUrl {
    /// The origin of stream `stream` of application `app` at `url`, whose `{app}` and
    /// `{stream}` are replaced.
    pub fn parse(url: &str, app: &str, stream: &str) -> Result<OriginUrl, PullError> {
        let bad = || PullError::Url(url.to_string());
        if url.starts_with("rtmp://") {
            return Target::parse(url, app, stream)
                .map(OriginUrl::Rtmp)
                .map_err(|_| bad());
        }
        let filled = url.replace("{app}", app).replace("{stream}", stream);
        let (scheme, rest) = filled.split_once("://").ok_or_else(bad)?;
        let (tls, port) = match scheme {
            "http" => (false, 80),
            "https" => (true, 443),
            _ => return Err(bad()),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let host = Host::parse(authority, port).ok_or_else(bad)?;
        let name = path.split('?').next().unwrap_or_default();
        if name.is_empty() || path.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
            return Err(bad());
        }
        Ok(OriginUrl::Flv {
            shown: format!("{scheme}://{host}/{name}"),
            host,
            tls,
            path: format!("/{path}"),
        })
    }

    /// The server.
    pub fn host(&self) -> &Host {
        match self {
            OriginUrl::Rtmp(target) => &target.host,
            OriginUrl::Flv { host, .. } => host,
        }
    }

    /// The URL without its query, for logs and the API.
    pub fn shown(&self) -> &str {
        match self {
            OriginUrl::Rtmp(target) => &target.shown,
            OriginUrl::Flv { shown, .. } => shown,
        }
    }
}

/// A server's id in [`Via`] lists: random, drawn once per server at its start.
pub fn new_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The servers a pull went through (see the module's notes on loops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via(Vec<u64>);

/// A request that would make a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    /// This server is in the list already.
    #[error("a pull that went through this server already (a loop)")]
    Loop,
    /// The list is longer than [`MAX_HOPS`], or not a list of ids.
    #[error("a pull that went through more than {MAX_HOPS} servers, or a malformed {VIA_PARAM}")]
    TooLong,
}

impl Via {
    /// The list a request's query carries (empty without one), checked against this
    /// server (`me`).
    pub fn of(query: Option<&str>, me: u64) -> Result<Via, LoopError> {
        let Some(list) = crate::auth::param(query, VIA_PARAM) else {
            return Ok(Via::default());
        };
        let ids: Vec<u64> = list
            .split(',')
            .take(MAX_HOPS + 1)
            .map(|id| u64::from_str_radix(id, 16).map_err(|_| LoopError::TooLong))
            .collect::<Result<_, _>>()?;
        if ids.len() > MAX_HOPS {
            return Err(LoopError::TooLong);
        }
        if ids.contains(&me) {
            return Err(LoopError::Loop);
        }
        Ok(Via(ids))
    }

    /// The list with `me` added, as the query parameter of a pull's request.
    pub fn param_with(&self, me: u64) -> String {
        let ids: Vec<String> = self
            .0
            .iter()
            .chain([&me])
            .map(|id| format!("{id:x}"))
            .collect();
        format!("{VIA_PARAM}={}", ids.join(","))
    }
}

/// Adds `param` to the query of `path` (a URL path, or an RTMP stream name).
pub fn with_param(path: &str, param: &str) -> String {
    match path.contains('?') {
        true => format!("{path}&{param}"),
        false => format!("{path}?{param}"),
    }
}

/// What comes after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try this origin at once.
    Try(usize),
    /// Every origin failed in a row: wait this long, then try this one.
    Wait(Duration, usize),
    /// Every origin failed and none ever delivered: no origin has the stream.
    GiveUp,
}

/// Which origin a pull tries next (pure; see the module's notes on failover).
#[derive(Debug, Clone)]
pub struct Failover {
    /// Origins of the rule.
    origins: usize,
    /// The origin tried now.
    current: usize,
    /// Tries that failed in a row.
    failed: usize,
    /// The wait before the next round.
    wait: Duration,
    /// A session delivered media.
    delivered: bool,
}

impl Failover {
    /// A pull from `origins` origins (at least one), starting with the first.
    pub fn new(origins: usize) -> Self {
        Failover {
            origins: origins.max(1),
            current: 0,
            failed: 0,
            wait: FIRST_ROUND_WAIT,
            delivered: false,
        }
    }

    /// The origin to try now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The session with the current origin delivered media: the count starts again.
    pub fn delivered(&mut self) {
        self.delivered = true;
        self.failed = 0;
        self.wait = FIRST_ROUND_WAIT;
    }

    /// The current origin failed, or its session ended.
    pub fn failed(&mut self) -> Next {
        self.failed += 1;
        self.current = (self.current + 1) % self.origins;
        if self.failed < self.origins {
            return Next::Try(self.current);
        }
        if !self.delivered {
            return Next::GiveUp;
        }
        self.failed = 0;
        let wait = self.wait;
        self.wait = (self.wait * 2).min(LAST_ROUND_WAIT);
        Next::Wait(wait, self.current)
    }
}

/// Where a pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Connecting to an origin, or waiting for it to start the stream.
    Connecting,
    /// The stream comes from the origin.
    Pulling,
    /// Every origin failed: waiting before the next round.
    Waiting,
}

impl PullState {
    /// The name the API shows.
    pub fn name(self) -> &'static str {
        match self {
            PullState::Connecting => "connecting",
            PullState::Pulling => "pulling",
            PullState::Waiting => "waiting",
        }
    }
}

/// A pull's state for the API: written by its task, read by the stream's report (both on
/// the owner shard).
#[derive(Debug)]
pub struct PullStatus {
    /// The origin tried or pulled from now, without its query.
    pub origin: String,
    /// Where it stands.
    pub state: PullState,
    /// Since when (ns, `media::now_ns` clock).
    pub since_ns: u64,
    /// Sessions that delivered the stream.
    pub sessions: u64,
    /// Tries that failed and sessions that were lost.
    pub failures: u64,
    /// Bytes received from origins.
    pub bytes: u64,
    /// Why the last try or session failed.
    pub last_error: Option<String>,
}

impl PullStatus {
    /// A pull about to try `origin`.
    pub fn new(origin: &str) -> Self {
        PullStatus {
            origin: origin.to_string(),
            state: PullState::Connecting,
            since_ns: now_ns(),
            sessions: 0,
            failures: 0,
            bytes: 0,
            last_error: None,
        }
    }

    /// Enters `state` with `origin`.
    pub fn enter(&mut self, state: PullState, origin: &str) {
        if self.state != state || self.origin != origin {
            self.state = state;
            self.since_ns = now_ns();
            self.origin = origin.to_string();
        }
    }

    /// What the API shows at `now` (ns).
    pub fn report(&self, now: u64) -> UpstreamReport {
        UpstreamReport {
            origin: self.origin.clone(),
            state: self.state.name(),
            state_seconds: now.saturating_sub(self.since_ns) as f64 / 1e9,
            sessions: self.sessions,
            failures: self.failures,
            bytes: self.bytes,
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
