//! Low-Latency HLS viewers on a glommio executor: each plays `/{app}/{stream}/ll.m3u8` as
//! hls.js does in low-latency mode, and measures what it sees.
//!
//! A viewer loads the media playlist, starts at its live edge (the last part marked
//! `INDEPENDENT=YES` of the last segment listed) and fetches the parts from there, in order,
//! with the initialization segment (`EXT-X-MAP`) before the first part it applies to. Then
//! it loops: a blocking playlist reload for the next part (`_HLS_msn=M&_HLS_part=P`, past
//! the last part of a complete segment part 0 of the next one, RFC 8216bis 6.2.5.2; with
//! `_HLS_skip=YES` when the playlist offers delta updates, as hls.js asks), then every new
//! part once, in order. Like hls.js (which parses `EXT-X-PRELOAD-HINT` but does not request
//! the hinted part; video-dev/hls.js#3988), it does not fetch the preload-hinted part: the
//! blocking reload is what waits for the next part. `EXT-X-ENDLIST` ends the viewer. Every
//! request goes over one keep-alive HTTP/1.1 connection, reopened when the server closes it
//! (the client of [`crate::hls`]).
//!
//! Every viewer records blocking-reload times, part latency by the playlist's program dates,
//! startup, stalls, 404s, 503s and errors into an [`LlStats`] shared by its group; that is
//! arithmetic on what it receives anyway. Probes also read each part's fMP4 and the
//! publisher's SEI send-time stamps in its H.264 samples ([`crate::sei`]) for end-to-end
//! latency; other viewers only count bytes, so that one generator core holds thousands.
//!
//! Why a module of its own beside [`crate::hls`]: its playlists are read by the test kit's
//! LL-HLS checker ([`corecast_testkit::hls_check`], not `m3u8-rs`), its media is fMP4 (not
//! MPEG-TS), its loop is driven by blocking reloads (not timers), and it measures other
//! things. What both need is shared from [`crate::hls`]: the HTTP client and its bounds,
//! [`crate::hls::HlsError`], [`crate::hls::segment_path`] and [`crate::hls::StallClock`].
//!
//! The decisions are pure functions, tested on their own: [`plan`] (which parts a playlist
//! makes due, where the cursor goes), [`reload_path`], [`carried_query`], [`pause_after`],
//! [`date_latency`], and the fMP4 reading ([`VideoTrack`], [`video_samples`],
//! [`part_stamps`]), tested on corecast's own LL-HLS segmenter's output.
//!
//! Everything is bounded: response heads and bodies ([`crate::hls::MAX_HEAD`],
//! [`crate::hls::MAX_BODY`]), each request ([`crate::hls::REQUEST_TIMEOUT`]; a blocking
//! reload three target durations more, the longest a server may hold it), the samples read
//! from a part ([`MAX_SAMPLES`]), the pace of reloads that bring nothing (half a part
//! target apart) and the viewer's run (its deadline).
//!
//! One job per file:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | what viewers are asked to do ([`LlOptions`]) |
//! | `plan.rs` | playlist decisions (pure): [`plan`], [`reload_path`], [`carried_query`], [`pause_after`], [`date_latency`] |
//! | `fmp4.rs` | fMP4 to SEI send-time stamps (pure): [`VideoTrack`], [`video_samples`], [`part_stamps`] |
//! | `stats.rs` | what a group of viewers measured ([`LlStats`]) |
//! | `viewer.rs` | one viewer: [`view`] |
//! | `fixtures.rs` | test fixtures: a stream through corecast's LL-HLS segmenter |

#[cfg(test)]
mod fixtures;
mod fmp4;
mod plan;
mod stats;
mod viewer;

pub use fmp4::{part_stamps, video_samples, Fmp4ReadError, VideoTrack, MAX_SAMPLES};
pub use plan::{
    carried_query, date_latency, pause_after, plan, reload_path, DuePart, Outcome, Plan,
};
pub use stats::LlStats;
pub use viewer::view;

use std::time::Duration;

/// How LL-HLS viewers behave.
#[derive(Debug, Clone)]
pub struct LlOptions {
    /// No new part for longer than this, while the stream is live, is a stall.
    pub stall: Duration,
    /// Probe: read every part's fMP4 and measure latency from its SEI send-time stamps.
    pub probe: bool,
    /// Query string of the first playlist request, without `?` (a protected stream's
    /// `token=...`). The server carries it into the playlist's URIs, and reloads carry what
    /// the URIs carry.
    pub query: Option<String>,
}

impl Default for LlOptions {
    /// A stall after 1 s without a new part (four of corecast's default 250 ms parts); no
    /// probing; no query.
    fn default() -> Self {
        LlOptions {
            stall: Duration::from_secs(1),
            probe: false,
            query: None,
        }
    }
}
