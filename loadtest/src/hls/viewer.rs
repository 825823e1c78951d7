//! One HLS viewer ([`view`]): polls the playlist like a player, fetches each new segment
//! once, records into the group's [`HlsStats`].

use super::http::{fetch, Client, Fetch};
use super::playlist::{parse_playlist, plan, reload_after, segment_path, Due, StallClock};
use super::stamps::StampReader;
use super::stats::{nanos, HlsStats};
use super::{HlsError, HlsOptions, REQUEST_TIMEOUT};
use crate::sei;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// True when `part` can go into a request path as one segment.
pub(crate) fn path_safe(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#'))
}

/// One viewer: polls the playlist like a player (reload every target duration, or half of it
/// after a reload that brought nothing new, per RFC 8216 §6.3.4), fetches each new segment
/// once in order over one keep-alive connection (reconnect on close), counts segment body
/// bytes through `bytes(n)`, and records into `stats`.
///
/// Runs until `deadline`, or until the playlist has EXT-X-ENDLIST and every segment has been
/// fetched. Returns `Err` only if it could never start (connection refused, the first
/// playlist request did not bring a parsable media playlist with status 200, or `app` or
/// `stream` cannot go into a request path); such a viewer records nothing. Later failures are counted in `stats` and the viewer goes on: a segment
/// that fails is skipped, a playlist that fails is reloaded after half a target duration.
pub async fn view(
    target: SocketAddr,
    app: &str,
    stream: &str,
    options: &HlsOptions,
    deadline: Instant,
    bytes: &dyn Fn(usize),
    stats: &RefCell<HlsStats>,
) -> io::Result<()> {
    if !path_safe(app) || !path_safe(stream) {
        return Err(HlsError::Path(format!("{app}/{stream}")).into());
    }
    let playlist_path = format!("/{app}/{stream}.m3u8");
    let mut viewer = Viewer {
        client: Client::new(target),
        options,
        bytes,
        stats,
        deadline,
        joined: Instant::now(),
        got_segment: false,
        stall: StallClock::new(options.stall),
        segment: Vec::new(),
        stamps: Vec::new(),
        reader: StampReader::new(),
    };
    let mut playlist_body = Vec::new();
    // Media sequence number of the next segment to fetch; `None` until the first playlist.
    let mut next = None;
    // Until the first playlist says otherwise.
    let mut target_duration = 1;
    'run: loop {
        let began = Instant::now();
        let fetched = fetch(
            &mut viewer.client,
            &playlist_path,
            Some(&mut playlist_body),
            &|_| {},
            deadline,
            REQUEST_TIMEOUT,
        )
        .await;
        let (loaded, took) = match fetched {
            Fetch::Deadline => break,
            Fetch::Done(200, took) => (parse_playlist(&playlist_body), Some(took)),
            Fetch::Done(status, took) => (Err(HlsError::Status(status)), Some(took)),
            Fetch::Failed(err) => (Err(err), None),
        };
        let loaded = match loaded {
            // Nothing recorded: the caller counts a viewer that could not start.
            Err(err) if next.is_none() => return Err(err.into()),
            loaded => loaded,
        };
        if let Some(took) = took {
            viewer.record(|s| s.request.saturating_record(nanos(took)));
        }
        let changed = match loaded {
            Ok(playlist) => {
                viewer.record(|s| s.playlists += 1);
                target_duration = playlist.target_duration;
                let step = plan(&playlist, next, options.start);
                let changed = next.is_none() || !step.due.is_empty() || step.skipped > 0;
                next = Some(step.next);
                viewer.record(|s| s.skipped += step.skipped);
                for due in &step.due {
                    if !viewer.segment(&playlist_path, due).await {
                        break 'run;
                    }
                }
                if step.ended {
                    // Over: no stall to look for.
                    return Ok(());
                }
                changed
            }
            Err(err) => {
                viewer.record(|s| match err {
                    HlsError::Status(404) => s.not_found += 1,
                    _ => s.errors += 1,
                });
                false
            }
        };
        if viewer.stall.check(Instant::now()) {
            viewer.record(|s| s.stalls += 1);
        }
        let wake = (began + reload_after(target_duration, changed)).min(deadline);
        glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
    }
    // A gap still open at the deadline counts too.
    if viewer.stall.check(Instant::now()) {
        viewer.record(|s| s.stalls += 1);
    }
    Ok(())
}

/// A running viewer's state.
struct Viewer<'a> {
    client: Client,
    options: &'a HlsOptions,
    bytes: &'a dyn Fn(usize),
    stats: &'a RefCell<HlsStats>,
    deadline: Instant,
    /// When the first playlist request was issued.
    joined: Instant,
    /// A segment was received (startup is over).
    got_segment: bool,
    stall: StallClock,
    /// Probes: the segment being read.
    segment: Vec<u8>,
    /// Probes: the stamps of the last segment.
    stamps: Vec<u64>,
    reader: StampReader,
}

impl Viewer<'_> {
    /// Records into the shared stats (never held across an await).
    fn record(&self, f: impl FnOnce(&mut HlsStats)) {
        f(&mut self.stats.borrow_mut());
    }

    /// Fetches one due segment and records what it brought; false when the deadline came.
    async fn segment(&mut self, playlist_path: &str, due: &Due) -> bool {
        let Some(path) = segment_path(playlist_path, &due.uri) else {
            self.record(|s| s.errors += 1);
            return true;
        };
        let keep = self.options.probe.then_some(&mut self.segment);
        let fetched = fetch(
            &mut self.client,
            &path,
            keep,
            self.bytes,
            self.deadline,
            REQUEST_TIMEOUT,
        )
        .await;
        let (status, took) = match fetched {
            Fetch::Deadline => return false,
            Fetch::Failed(_) => {
                self.record(|s| s.errors += 1);
                return true;
            }
            Fetch::Done(status, took) => (status, took),
        };
        let received_ns = sei::now_unix_ns();
        let now = Instant::now();
        self.record(|s| s.request.saturating_record(nanos(took)));
        match status {
            200 => {}
            404 => {
                self.record(|s| s.not_found += 1);
                return true;
            }
            _ => {
                self.record(|s| s.errors += 1);
                return true;
            }
        }
        let first = !std::mem::replace(&mut self.got_segment, true);
        let stalled = self.stall.segment(now);
        if self.options.probe {
            self.stamps.clear();
            self.reader.read_segment(&self.segment, &mut self.stamps);
        }
        let mut stats = self.stats.borrow_mut();
        stats.segments += 1;
        stats.discontinuities += u64::from(due.discontinuity);
        stats.stalls += u64::from(stalled);
        if first {
            stats
                .startup
                .saturating_record(nanos(now.saturating_duration_since(self.joined)));
        }
        for &sent in &self.stamps {
            stats
                .frame_latency
                .saturating_record(received_ns.saturating_sub(sent));
        }
        if let Some(&last) = self.stamps.last() {
            stats
                .segment_latency
                .saturating_record(received_ns.saturating_sub(last));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fixtures::{muxed_segment, muxer, scripted};
    use std::time::Duration;

    fn run_view(
        addr: SocketAddr,
        options: HlsOptions,
        seconds: u64,
    ) -> (io::Result<()>, HlsStats, u64) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let stats = RefCell::new(HlsStats::default());
                let bytes = std::cell::Cell::new(0u64);
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
    fn a_viewer_fetches_an_ended_stream_and_reconnects_after_an_announced_close() {
        ended_stream(true);
    }

    #[test]
    fn a_viewer_retries_on_a_new_connection_after_a_silent_close() {
        ended_stream(false);
    }

    fn ended_stream(announce: bool) {
        let mut m = muxer();
        let (seg0, stamps0) = muxed_segment(&mut m, true, 0, 25);
        let (seg2, stamps2) = muxed_segment(&mut m, true, 50, 25);
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXTINF:1.0,\ns-0.ts\n#EXTINF:1.0,\ns-1.ts\n#EXTINF:1.0,\ns-2.ts\n\
                    #EXT-X-ENDLIST\n";
        let responses = vec![
            ("/live/cam.m3u8".into(), 200, text.as_bytes().to_vec()),
            ("/live/s-0.ts".into(), 200, seg0.clone()),
            ("/live/s-2.ts".into(), 200, seg2.clone()),
        ];
        // Two responses per connection: the playlist and s-0, then s-1 (404) and s-2.
        let (addr, server) = scripted(responses, 2, 2, announce);
        let options = HlsOptions {
            probe: true,
            ..HlsOptions::default()
        };
        let started = Instant::now();
        let (result, stats, bytes) = run_view(addr, options, 20);
        result.expect("started");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ends with the stream"
        );
        let asked = server.join().unwrap();
        assert_eq!(
            asked,
            [
                "/live/cam.m3u8",
                "/live/s-0.ts",
                "/live/s-1.ts",
                "/live/s-2.ts"
            ]
        );
        assert_eq!(
            (stats.playlists, stats.segments, stats.not_found),
            (1, 2, 1)
        );
        assert_eq!((stats.errors, stats.stalls, stats.skipped), (0, 0, 0));
        assert_eq!(
            bytes,
            (seg0.len() + seg2.len()) as u64,
            "segment bytes only"
        );
        assert_eq!(stats.request.len(), 4);
        assert_eq!(stats.startup.len(), 1);
        assert_eq!(
            stats.frame_latency.len(),
            (stamps0.len() + stamps2.len()) as u64
        );
        assert_eq!(stats.segment_latency.len(), 2);
    }

    #[test]
    fn a_viewer_that_cannot_start_is_an_error_and_records_nothing() {
        let (addr, server) = scripted(Vec::new(), 1, 1, true);
        let (result, stats, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            (stats.request.len(), stats.not_found, stats.errors),
            (0, 0, 0)
        );
        server.join().unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let (result, _, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);

        let (addr, server) = scripted(
            vec![("/live/cam.m3u8".into(), 200, b"<html>".to_vec())],
            1,
            1,
            true,
        );
        let (result, _, _) = run_view(addr, HlsOptions::default(), 5);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        server.join().unwrap();
    }
}
