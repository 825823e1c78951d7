//! corecast-load: sizes a corecast box (or any RTMP/HTTP-FLV/HLS relay) before the audience
//! arrives.
//!
//! - [`publish`]: RTMP publishers replaying an FLV file (or a synthetic stream) in real time,
//!   looped with increasing timestamps; every video frame carries its send time ([`sei`]).
//! - [`play`]: groups of viewers whose population follows ramp steps, on one glommio
//!   executor; cheap viewers hand their sockets to [`drain`] (kernel-side discard), probes
//!   parse the stream ([`probe`] for HTTP-FLV and RTMP, [`hls`] for HLS, [`llhls`] for
//!   Low-Latency HLS).
//! - [`scenario`]: publishers and viewers together, from a TOML file.
//! - [`report`]: the summary table, the HdrHistogram interval log and the HTML report.
//!
//! The RTMP clients (the publisher, the cheap viewers' connection set-up) and the TS reader of
//! the HLS probes are the test kit's (`corecast_testkit::client`, `corecast_testkit::ts`).
//!
//! Everything is bounded: a run has a duration, the viewer count is capped by the open-file
//! limit, and targets outside loopback are refused unless explicitly allowed.

pub mod drain;
pub mod hls;
pub mod llhls;
pub mod play;
pub mod probe;
pub mod publish;
pub mod report;
pub mod scenario;
pub mod sei;

use std::net::SocketAddr;
use std::time::Duration;

/// Why a run was refused before it started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target is not a loopback address and `--allow-remote` was not given.
    #[error("{0} is not a loopback address: pass --allow-remote to load a remote server")]
    Remote(SocketAddr),
    /// A duration could not be parsed.
    #[error("bad duration `{0}` (examples: 30s, 2m, 500ms)")]
    Duration(String),
}

/// Refuses non-loopback targets unless `allow_remote`.
pub fn check_target(addr: SocketAddr, allow_remote: bool) -> Result<(), RunError> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(RunError::Remote(addr))
    }
}

/// Parses `30s`, `2m`, `500ms` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, RunError> {
    let bad = || RunError::Duration(text.to_string());
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Raises the soft open-file limit to the hard one; returns how many viewers fit, keeping
/// 64 descriptors for everything else.
pub fn viewer_capacity() -> u64 {
    let limit = corecast::net::raise_soft_limit(libc::RLIMIT_NOFILE).unwrap_or(1024);
    limit.saturating_sub(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 years").is_err());
    }

    #[test]
    fn remote_targets_need_permission() {
        let local: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        let v6: SocketAddr = "[::1]:1935".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:1935".parse().unwrap();
        assert!(check_target(local, false).is_ok());
        assert!(check_target(v6, false).is_ok());
        assert!(check_target(remote, false).is_err());
        assert!(check_target(remote, true).is_ok());
    }
}
