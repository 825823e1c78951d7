//! HLS viewers on a glommio executor: each behaves like a player on a live playlist and
//! measures what it sees.
//!
//! A viewer reloads the media playlist as RFC 8216 §6.3.4 asks (a target duration after the
//! previous load began, or half of one when the reload brought nothing new), fetches every
//! new segment once, in order, over one keep-alive HTTP/1.1 connection (reopened when the
//! server closes it), and records request times, startup, stalls, 404s and errors into an
//! [`HlsStats`] shared by a group of viewers. Probes also demultiplex each segment's MPEG-TS
//! and read the publisher's SEI send-time stamps ([`crate::sei`]) for end-to-end latency;
//! other viewers only count bytes.
//!
//! The decisions are pure functions, tested on their own: [`plan`] (which segments a playlist
//! load makes due), [`reload_after`] (when to reload), [`StallClock`] (what is a stall) and
//! [`StampReader`] (MPEG-TS to stamps).
//!
//! Everything is bounded: response heads ([`MAX_HEAD`]), bodies ([`MAX_BODY`]), each request
//! ([`REQUEST_TIMEOUT`]) and the viewer's run (its deadline).
//!
//! One job per file:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | what viewers are asked to do ([`HlsOptions`], [`HlsStart`]) and the bounds |
//! | `stats.rs` | what a group of viewers measured ([`HlsStats`]) |
//! | `playlist.rs` | playlist decisions (pure): [`plan`], [`reload_after`], [`parse_playlist`], [`segment_path`], [`StallClock`] |
//! | `stamps.rs` | MPEG-TS segments to SEI send-time stamps (pure): [`StampReader`] |
//! | `http.rs` | one keep-alive HTTP/1.1 connection, requests bounded in size and time ([`HlsError`]) |
//! | `viewer.rs` | one viewer: [`view`] |
//! | `fixtures.rs` | test fixtures: stamped frames, segments from corecast's muxer |
//!
//! The Low-Latency HLS viewers ([`crate::llhls`]) share the HTTP client (`http.rs`), the
//! bounds above, [`HlsError`], [`segment_path`] and [`StallClock`].

#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod http;
mod playlist;
mod stamps;
mod stats;
mod viewer;

pub use http::HlsError;
pub use playlist::{parse_playlist, plan, reload_after, segment_path, Due, StallClock, Step};
pub use stamps::{segment_stamps, StampReader};
pub use stats::HlsStats;
pub(crate) use stats::{merge_histogram, nanos};
pub(crate) use viewer::path_safe;
pub use viewer::view;

use std::time::Duration;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest response body accepted (playlist or segment).
pub const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Longest a request may take, (re)connecting included, before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a new HLS viewer starts in the live playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsStart {
    /// At the newest listed segment (the same as `SegmentsBack(1)`): lowest latency.
    LiveEdge,
    /// This many segments before the end of the playlist, as players do (RFC 8216 §6.3.3:
    /// not less than three target durations from the end). `SegmentsBack(0)` waits for the
    /// first segment that appears after joining.
    SegmentsBack(usize),
}

impl Default for HlsStart {
    /// Three segments back, as players do.
    fn default() -> Self {
        HlsStart::SegmentsBack(3)
    }
}

impl HlsStart {
    /// How many of the listed segments a viewer joining a live playlist fetches.
    fn segments_back(self) -> usize {
        match self {
            HlsStart::LiveEdge => 1,
            HlsStart::SegmentsBack(n) => n,
        }
    }
}

/// How HLS viewers behave.
#[derive(Debug, Clone)]
pub struct HlsOptions {
    /// Where a viewer starts in the live playlist.
    pub start: HlsStart,
    /// No new segment for longer than this, while the stream is live, is a stall.
    pub stall: Duration,
    /// Probe: demultiplex every segment and measure latency from its SEI send-time stamps.
    pub probe: bool,
}

impl Default for HlsOptions {
    /// Three segments back; a stall after 6 s without a new segment (three of corecast's
    /// default 2 s target durations); no probing.
    fn default() -> Self {
        HlsOptions {
            start: HlsStart::default(),
            stall: Duration::from_secs(6),
            probe: false,
        }
    }
}
