//! One LL-HLS viewer ([`view`]): joins at the live edge, then blocking reloads for the next
//! part and each new part fetched once, in order; records into the group's [`LlStats`].

use super::fmp4::{part_stamps, VideoTrack};
use super::plan::{carried_query, date_latency, pause_after, plan, reload_path, DuePart, Outcome};
use super::stats::LlStats;
use super::LlOptions;
use crate::hls::http::{fetch, Client, Fetch};
use crate::hls::{nanos, path_safe, segment_path, HlsError, StallClock, REQUEST_TIMEOUT};
use crate::sei;
use corecast::hls::llhls::PartId;
use corecast_testkit::hls_check::{self, MediaPlaylist};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Part target assumed until a playlist gives one (`EXT-X-PART-INF`), for pacing only.
const DEFAULT_PART_TARGET: Duration = Duration::from_millis(250);

/// A server holds a blocking reload at most this many target durations (RFC 8216bis
/// 6.2.5.2: then it answers 503); a reload may take that long on top of
/// [`REQUEST_TIMEOUT`].
const HOLD_TARGETS: u32 = 3;

/// Reads a playlist body with the test kit's checker: invalid playlists are
/// [`HlsError::Playlist`] with the first violation.
fn parse(body: &[u8]) -> Result<MediaPlaylist, HlsError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| HlsError::Playlist("a playlist that is not UTF-8".into()))?;
    hls_check::check(text).map_err(|violations| {
        let first = violations
            .first()
            .map_or_else(String::new, ToString::to_string);
        HlsError::Playlist(format!(
            "{} violation(s) of RFC 8216bis, first: {first}",
            violations.len()
        ))
    })
}

/// One viewer of `/{app}/{stream}/ll.m3u8`, as hls.js plays it in low-latency mode: the
/// first playlist (with `options.query`, a protected stream's credentials) is requested
/// without directives; the viewer starts at its live edge ([`super::plan`]) and fetches
/// each part once, in order, over one keep-alive connection (reopened when the server
/// closes it), the initialization segment before the first part it applies to; then a
/// blocking reload for the next part (`_HLS_msn`, `_HLS_part`, `_HLS_skip=YES` when the
/// playlist offers delta updates, and the query the playlist's URIs carry), and so on. It
/// does not request the preload-hinted part (hls.js does not). Part body bytes are counted
/// through `bytes(n)`.
///
/// Runs until `deadline`, or until the playlist has `EXT-X-ENDLIST` and its last parts are
/// fetched. Returns `Err` only if it could never start (connection refused, the first
/// playlist request did not bring a valid media playlist with status 200, or `app`,
/// `stream` or the query cannot go into a request); such a viewer records nothing. Later
/// failures are counted in `stats` and the viewer goes on: a part that fails is skipped, a
/// playlist request that fails is made again after half a target duration.
pub async fn view(
    target: SocketAddr,
    app: &str,
    stream: &str,
    options: &LlOptions,
    deadline: Instant,
    bytes: &dyn Fn(usize),
    stats: &RefCell<LlStats>,
) -> io::Result<()> {
    let query = options.query.as_deref().filter(|q| !q.is_empty());
    let query_safe = query.is_none_or(|q| {
        q.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'#' | b'?'))
    });
    if !path_safe(app) || !path_safe(stream) || !query_safe {
        return Err(HlsError::Path(format!("{app}/{stream}")).into());
    }
    let playlist_path = format!("/{app}/{stream}/ll.m3u8");
    let mut viewer = Viewer {
        client: Client::new(target),
        options,
        bytes,
        stats,
        deadline,
        joined: Instant::now(),
        got_part: false,
        stall: StallClock::new(options.stall),
        media: Vec::new(),
        stamps: Vec::new(),
        map: None,
        track: None,
    };
    let mut body = Vec::new();
    let mut path = match query {
        Some(q) => format!("{playlist_path}?{q}"),
        None => playlist_path.clone(),
    };
    // The next part wanted; `None` until the first playlist.
    let mut next: Option<PartId> = None;
    let (mut part_target, mut target_duration) = (DEFAULT_PART_TARGET, Duration::from_secs(1));
    'run: loop {
        let blocking = next.is_some();
        let timeout = match blocking {
            true => REQUEST_TIMEOUT + target_duration * HOLD_TARGETS,
            false => REQUEST_TIMEOUT,
        };
        let fetched = fetch(
            &mut viewer.client,
            &path,
            Some(&mut body),
            &|_| {},
            deadline,
            timeout,
        )
        .await;
        let (loaded, took) = match fetched {
            Fetch::Deadline => break,
            Fetch::Done(200, took) => (parse(&body), took),
            Fetch::Done(status, took) => (Err(HlsError::Status(status)), took),
            Fetch::Failed(err) => (Err(err), Duration::ZERO),
        };
        let outcome = match loaded {
            // Nothing recorded: the caller counts a viewer that could not start.
            Err(err) if !blocking => return Err(err.into()),
            Ok(playlist) => {
                viewer.record(|s| {
                    s.playlists += 1;
                    if blocking {
                        s.reload.saturating_record(nanos(took));
                    }
                });
                part_target = playlist.part_target.unwrap_or(part_target);
                target_duration = Duration::from_secs(playlist.target_duration.max(1));
                let step = plan(&playlist, next);
                viewer.record(|s| s.resyncs += u64::from(step.resynced));
                for due in &step.due {
                    if !viewer.part(&playlist_path, due, step.joining).await {
                        break 'run;
                    }
                }
                if step.ended {
                    viewer.record(|s| s.ended += 1);
                    return Ok(());
                }
                let delta = playlist.server_control.can_skip_until.is_some();
                let carried = carried_query(&playlist).or(query);
                path = reload_path(&playlist_path, step.next, delta, carried);
                let first = next.is_none();
                next = Some(step.next);
                match first || !step.due.is_empty() {
                    true => Outcome::Parts,
                    false => Outcome::Nothing,
                }
            }
            Err(err) => {
                viewer.record(|s| match err {
                    HlsError::Status(404) => s.not_found += 1,
                    HlsError::Status(503) => s.unavailable += 1,
                    HlsError::Playlist(_) => s.invalid_playlists += 1,
                    _ => s.errors += 1,
                });
                Outcome::Failed
            }
        };
        if viewer.stall.check(Instant::now()) {
            viewer.record(|s| s.stalls += 1);
        }
        let pause = pause_after(outcome, part_target, target_duration);
        if !pause.is_zero() {
            let wake = (Instant::now() + pause).min(deadline);
            glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
        }
    }
    // A gap still open at the deadline counts too.
    if viewer.stall.check(Instant::now()) {
        viewer.record(|s| s.stalls += 1);
    }
    Ok(())
}

/// A running viewer's state.
struct Viewer<'a> {
    /// The keep-alive connection.
    client: Client,
    /// What it was asked to do.
    options: &'a LlOptions,
    /// Counts part and initialization segment body bytes (the group's throughput).
    bytes: &'a dyn Fn(usize),
    /// The group's measurements.
    stats: &'a RefCell<LlStats>,
    /// When the viewer's run ends.
    deadline: Instant,
    /// When the first playlist request was issued.
    joined: Instant,
    /// A part was received (startup is over).
    got_part: bool,
    /// Stalls: gaps between new parts.
    stall: StallClock,
    /// Probes: the part or initialization segment being read.
    media: Vec<u8>,
    /// Probes: the stamps of the last part.
    stamps: Vec<u64>,
    /// The `EXT-X-MAP` URI fetched last: the next part that has another one needs it first.
    map: Option<String>,
    /// Probes: the video track of the initialization segment in effect.
    track: Option<VideoTrack>,
}

impl Viewer<'_> {
    /// Records into the shared stats (never held across an await).
    fn record(&self, f: impl FnOnce(&mut LlStats)) {
        f(&mut self.stats.borrow_mut());
    }

    /// GET `uri` (relative to the playlist) within the request bound; the status, when the
    /// response was complete, and the body bytes counted. The body is kept in `self.media`
    /// for probes; others only count it. `None` when the deadline came. A URI that cannot be
    /// requested and a failed request count as errors (`Some((0, ..))`).
    async fn get(&mut self, playlist_path: &str, uri: &str) -> Option<(u16, Duration, u64)> {
        let Some(path) = segment_path(playlist_path, uri) else {
            self.record(|s| s.errors += 1);
            return Some((0, Duration::ZERO, 0));
        };
        let received = Cell::new(0u64);
        let bytes = self.bytes;
        let count = |n: usize| {
            bytes(n);
            received.set(received.get() + n as u64);
        };
        let keep = self.options.probe.then_some(&mut self.media);
        let fetched = fetch(
            &mut self.client,
            &path,
            keep,
            &count,
            self.deadline,
            REQUEST_TIMEOUT,
        )
        .await;
        let (status, took) = match fetched {
            Fetch::Deadline => return None,
            Fetch::Failed(_) => {
                self.record(|s| s.errors += 1);
                return Some((0, Duration::ZERO, 0));
            }
            Fetch::Done(status, took) => (status, took),
        };
        let received = received.get();
        self.record(|s| match status {
            200 => s.bytes += received,
            404 => s.not_found += 1,
            503 => s.unavailable += 1,
            _ => s.errors += 1,
        });
        Some((status, took, received))
    }

    /// Fetches the initialization segment `map` (probes read its video track); false when
    /// the deadline came. A failed one is tried again before the next part.
    async fn map(&mut self, playlist_path: &str, map: &str) -> bool {
        let Some((status, ..)) = self.get(playlist_path, map).await else {
            return false;
        };
        if status != 200 {
            return true;
        }
        self.map = Some(map.to_string());
        self.record(|s| s.maps += 1);
        if self.options.probe {
            self.track = VideoTrack::from_init(&self.media).ok();
            if self.track.is_none() {
                self.record(|s| s.unreadable += 1);
            }
        }
        true
    }

    /// Fetches one due part (its initialization segment first, if new) and records what it
    /// brought (a part fetched while `joining` is left out of the latencies); false when the
    /// deadline came.
    async fn part(&mut self, playlist_path: &str, due: &DuePart, joining: bool) -> bool {
        if let Some(map) = due
            .map
            .as_deref()
            .filter(|m| self.map.as_deref() != Some(*m))
        {
            if !self.map(playlist_path, map).await {
                return false;
            }
        }
        let Some((status, took, _)) = self.get(playlist_path, &due.uri).await else {
            return false;
        };
        if status != 200 {
            return true;
        }
        let arrived_ns = sei::now_unix_ns();
        let now = Instant::now();
        let first = !std::mem::replace(&mut self.got_part, true);
        let stalled = self.stall.segment(now);
        self.stamps.clear();
        let unreadable = match (self.options.probe && !joining, &self.track) {
            (true, Some(track)) => part_stamps(&self.media, track, &mut self.stamps).is_err(),
            _ => false,
        };
        let mut stats = self.stats.borrow_mut();
        stats.parts += 1;
        stats.joined_parts += u64::from(joining);
        stats.unreadable += u64::from(unreadable);
        stats.stalls += u64::from(stalled);
        stats.part_request.saturating_record(nanos(took));
        if first {
            stats
                .startup
                .saturating_record(nanos(now.saturating_duration_since(self.joined)));
        }
        if let Some(ends_ns) = due.ends_ns.filter(|_| !joining) {
            stats
                .date_latency
                .saturating_record(date_latency(arrived_ns, ends_ns));
        }
        for &sent in &self.stamps {
            stats
                .frame_latency
                .saturating_record(arrived_ns.saturating_sub(sent));
        }
        if let Some(&last) = self.stamps.last() {
            stats
                .part_latency
                .saturating_record(arrived_ns.saturating_sub(last));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fixtures::scripted;
    use crate::llhls::fixtures::stream;
    use corecast::hls::llhls::part_name;

    const PLAYLIST: &str = "/live/cam/ll.m3u8";

    fn run_view(
        addr: SocketAddr,
        options: LlOptions,
        seconds: u64,
    ) -> (io::Result<()>, LlStats, u64) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let stats = RefCell::new(LlStats::default());
                let bytes = Cell::new(0u64);
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let count = |n: usize| bytes.set(bytes.get() + n as u64);
                let result = view(addr, "live", "cam", &options, deadline, &count, &stats).await;
                (result, stats.into_inner(), bytes.get())
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_viewer_joins_at_the_live_edge_and_ends_with_the_stream() {
        live_then_ended(true);
    }

    #[test]
    fn a_viewer_reconnects_after_a_silent_close() {
        live_then_ended(false);
    }

    /// The stream's live playlist, then its final one as the answer to the blocking reload;
    /// every part but one served (404), three responses per connection.
    fn live_then_ended(announce: bool) {
        let s = stream(4);
        let live = hls_check::check(&s.live).unwrap();
        let joined = plan(&live, None);
        let reload = reload_path(PLAYLIST, joined.next, true, None);
        let rest = plan(&hls_check::check(&s.ended).unwrap(), Some(joined.next));
        let due: Vec<&DuePart> = joined.due.iter().chain(&rest.due).collect();
        assert!(joined.due.len() >= 2, "the 404 is a part of the join");
        let missing = due[1].id;
        let mut responses = vec![
            (PLAYLIST.to_string(), 200, s.live.clone().into_bytes()),
            (reload.clone(), 200, s.ended.clone().into_bytes()),
            ("/live/cam/cam-7-init0.mp4".into(), 200, s.init.to_vec()),
        ];
        let (mut served, mut stamped_parts) = (0, 0);
        let mut served_stamps = Vec::new();
        let track = VideoTrack::from_init(&s.init).unwrap();
        for part in s.parts.iter().filter(|p| p.id != missing) {
            if due.iter().any(|d| d.id == part.id) {
                served += part.bytes.len();
            }
            // Parts fetched at the join are left out of the latencies.
            if rest.due.iter().any(|d| d.id == part.id) {
                let before = served_stamps.len();
                part_stamps(&part.bytes, &track, &mut served_stamps).unwrap();
                stamped_parts += u64::from(served_stamps.len() > before);
            }
            let name = part_name("cam", 7, part.id.msn, part.id.part);
            responses.push((format!("/live/cam/{name}"), 200, part.bytes.to_vec()));
        }
        // The playlist, the map, the parts, the reload.
        let requests = 2 + 1 + due.len();
        let (addr, server) = scripted(responses, 3, requests.div_ceil(3), announce);
        let options = LlOptions {
            probe: true,
            ..LlOptions::default()
        };
        let started = Instant::now();
        let (result, stats, bytes) = run_view(addr, options, 20);
        result.expect("started");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ends with the stream"
        );
        let asked = server.join().unwrap();
        let mut expected = vec![PLAYLIST.to_string(), "/live/cam/cam-7-init0.mp4".into()];
        let part_path = |d: &DuePart| format!("/live/cam/{}", d.uri);
        expected.extend(joined.due.iter().map(part_path));
        expected.push(reload);
        expected.extend(rest.due.iter().map(part_path));
        assert_eq!(asked, expected);
        assert_eq!((stats.playlists, stats.maps, stats.ended), (2, 1, 1));
        assert_eq!((stats.parts, stats.not_found), (due.len() as u64 - 1, 1));
        assert_eq!(
            (
                stats.errors,
                stats.unavailable,
                stats.invalid_playlists,
                stats.unreadable
            ),
            (0, 0, 0, 0)
        );
        assert_eq!((stats.stalls, stats.resyncs), (0, 0));
        assert_eq!(bytes, (served + s.init.len()) as u64, "parts and the map");
        assert_eq!(stats.bytes, bytes);
        assert_eq!(stats.reload.len(), 1, "one blocking reload");
        assert_eq!(stats.part_request.len(), stats.parts);
        assert_eq!(stats.startup.len(), 1);
        assert_eq!(stats.joined_parts, joined.due.len() as u64 - 1);
        assert_eq!(stats.date_latency.len(), rest.due.len() as u64);
        assert_eq!(stats.frame_latency.len(), served_stamps.len() as u64);
        assert_eq!(stats.part_latency.len(), stamped_parts);
    }

    #[test]
    fn a_viewer_that_cannot_start_is_an_error_and_records_nothing() {
        let bad = vec![(PLAYLIST.to_string(), 200, b"#EXTM3U\n<html>".to_vec())];
        let (addr, server) = scripted(bad, 1, 1, true);
        let (result, stats, _) = run_view(addr, LlOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!((stats.playlists, stats.invalid_playlists), (0, 0));
        server.join().unwrap();

        let (addr, server) = scripted(Vec::new(), 1, 1, true);
        let (result, _, _) = run_view(addr, LlOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::NotFound);
        server.join().unwrap();

        let options = LlOptions {
            query: Some("token=a b".into()),
            ..LlOptions::default()
        };
        let (result, _, _) = run_view(addr, options, 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
