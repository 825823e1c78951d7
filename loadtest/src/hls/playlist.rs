//! Playlist decisions (pure): which segments a playlist load makes due ([`plan`]), when to
//! reload ([`reload_after`]), parsing ([`parse_playlist`]), segment URIs to request paths
//! ([`segment_path`]) and what is a stall ([`StallClock`]).

use super::{HlsError, HlsStart};
use m3u8_rs::{MediaPlaylist, Playlist};
use std::time::{Duration, Instant};

/// A segment a viewer is to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Media sequence number.
    pub seq: u64,
    /// URI as listed (usually relative to the playlist; see [`segment_path`]).
    pub uri: String,
    /// EXT-X-DISCONTINUITY precedes it.
    pub discontinuity: bool,
}

/// What one playlist load makes due.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Segments to fetch, in order.
    pub due: Vec<Due>,
    /// Media sequence number of the segment to fetch after `due`: the cursor to keep.
    pub next: u64,
    /// Segments after the cursor that slid out of the window before they were fetched.
    pub skipped: u64,
    /// The playlist has EXT-X-ENDLIST: once `due` is fetched, the stream is over.
    pub ended: bool,
}

/// Which segments of `playlist` are due.
///
/// `next` is the media sequence number of the next segment to fetch, `None` before the first
/// load. On the first load a live playlist is joined `start` segments from its end; a
/// playlist that has EXT-X-ENDLIST is fetched from its first segment, as players do with a
/// finished presentation. Afterwards every segment from `next` on is due; if the window slid
/// past `next`, fetching resumes at the first listed segment and the gap is `skipped`. A
/// playlist that lists nothing at or after `next` (a shard's snapshot a little behind the one
/// loaded before, after a reconnect) makes nothing due and keeps the cursor.
pub fn plan(playlist: &MediaPlaylist, next: Option<u64>, start: HlsStart) -> Step {
    let first = playlist.media_sequence;
    let listed = playlist.segments.len();
    // Index of the first due segment in the playlist.
    let (offset, skipped) = match next {
        None if playlist.end_list => (0, 0),
        None => (listed - start.segments_back().min(listed), 0),
        Some(n) if n < first => (0, first - n),
        Some(n) => (usize::try_from(n - first).unwrap_or(usize::MAX), 0),
    };
    // Sequence numbers come from the server: saturate rather than overflow on absurd ones.
    let due: Vec<Due> = playlist
        .segments
        .iter()
        .enumerate()
        .skip(offset)
        .map(|(i, s)| Due {
            seq: first.saturating_add(i as u64),
            uri: s.uri.clone(),
            discontinuity: s.discontinuity,
        })
        .collect();
    let next = match next {
        Some(n) if n >= first => n.saturating_add(due.len() as u64),
        _ => first.saturating_add((offset + due.len()) as u64),
    };
    Step {
        due,
        next,
        skipped,
        ended: playlist.end_list,
    }
}

/// How long after a playlist load began the next one should begin (RFC 8216 §6.3.4): the
/// target duration if the load `changed` anything (or was the first), half of it if not. A
/// target duration of 0 (invalid) counts as one second.
pub fn reload_after(target_duration_s: u64, changed: bool) -> Duration {
    let target = Duration::from_secs(target_duration_s.max(1));
    if changed {
        target
    } else {
        target / 2
    }
}

/// Parses a media playlist. A master playlist is an error: variant streams are not followed.
pub fn parse_playlist(body: &[u8]) -> Result<MediaPlaylist, HlsError> {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(Playlist::MediaPlaylist(playlist)) => Ok(playlist),
        Ok(Playlist::MasterPlaylist(_)) => Err(HlsError::Playlist(
            "a master playlist (variant streams are not followed)".into(),
        )),
        Err(err) => Err(HlsError::Playlist(format!(
            "not an M3U8 media playlist ({})",
            err.map(|e| e.code)
        ))),
    }
}

/// The request path of segment `uri` listed in the playlist at `playlist_path`: relative
/// URIs resolve against the playlist's directory; absolute ones (`/…`, `http://host/…`) keep
/// their path, requested from the viewer's own target. `None` for URIs that cannot go into a
/// request line (`https://`, whitespace, control characters, `..`).
pub fn segment_path(playlist_path: &str, uri: &str) -> Option<String> {
    if uri.is_empty()
        || uri.bytes().any(|b| b.is_ascii_control() || b == b' ')
        || uri.split('/').any(|part| part == "..")
    {
        return None;
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        return Some(
            rest.find('/')
                .map_or_else(|| "/".into(), |i| rest[i..].into()),
        );
    }
    if uri.contains("://") {
        return None;
    }
    if uri.starts_with('/') {
        return Some(uri.into());
    }
    let dir = &playlist_path[..=playlist_path.rfind('/')?];
    Some(format!("{dir}{uri}"))
}

/// Counts stalls: gaps between newly fetched segments longer than a limit, each gap once,
/// as soon as it is seen (on a reload while waiting, or when the next segment arrives).
#[derive(Debug, Clone)]
pub struct StallClock {
    limit: Duration,
    last: Option<Instant>,
    counted: bool,
}

impl StallClock {
    /// A clock for gaps longer than `limit`. It starts at the first segment: a viewer that
    /// never gets one shows as a missing startup sample, not as a stall.
    pub fn new(limit: Duration) -> Self {
        StallClock {
            limit,
            last: None,
            counted: false,
        }
    }

    /// A new segment arrived at `now`; true if that ends a stall not counted yet.
    pub fn segment(&mut self, now: Instant) -> bool {
        let stall = self.check(now);
        self.last = Some(now);
        self.counted = false;
        stall
    }

    /// True if the gap open at `now` just became a stall (once per gap).
    pub fn check(&mut self, now: Instant) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        if self.counted || now.saturating_duration_since(last) <= self.limit {
            return false;
        }
        self.counted = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fixtures::seqs;

    /// A live playlist in corecast's format: `count` segments from `first`, a discontinuity
    /// before the segment at index `discontinuity_at`.
    fn playlist(
        first: u64,
        count: u64,
        discontinuity_at: Option<u64>,
        ended: bool,
    ) -> MediaPlaylist {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        );
        for i in 0..count {
            if discontinuity_at == Some(i) {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            text.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.123Z\n#EXTINF:2.000,\ncam-7-{}.ts\n",
                first.wrapping_add(i)
            ));
        }
        if ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        parse_playlist(text.as_bytes()).expect("playlist")
    }

    #[test]
    fn first_load_starts_three_back_or_at_the_live_edge() {
        let p = playlist(10, 6, None, false);
        let three = plan(&p, None, HlsStart::default());
        assert_eq!(seqs(&three), vec![13, 14, 15]);
        assert_eq!(three.due[0].uri, "cam-7-13.ts");
        assert_eq!((three.next, three.skipped, three.ended), (16, 0, false));
        let edge = plan(&p, None, HlsStart::LiveEdge);
        assert_eq!(seqs(&edge), vec![15]);
        assert_eq!(edge.next, 16);
        assert_eq!(seqs(&plan(&p, None, HlsStart::SegmentsBack(1))), vec![15]);
        let all = plan(&p, None, HlsStart::SegmentsBack(10));
        assert_eq!(seqs(&all), (10..16).collect::<Vec<_>>());
        let wait = plan(&p, None, HlsStart::SegmentsBack(0));
        assert!(wait.due.is_empty());
        assert_eq!(wait.next, 16);
    }

    #[test]
    fn reloads_fetch_each_new_segment_once() {
        let mut next = Some(plan(&playlist(10, 6, None, false), None, HlsStart::default()).next);
        let step = plan(&playlist(11, 6, None, false), next, HlsStart::default());
        assert_eq!(seqs(&step), vec![16]);
        next = Some(step.next);
        let unchanged = plan(&playlist(11, 6, None, false), next, HlsStart::default());
        assert!(unchanged.due.is_empty());
        assert_eq!(unchanged.next, 17);
        let two = plan(&playlist(13, 6, None, false), next, HlsStart::default());
        assert_eq!(seqs(&two), vec![17, 18]);
    }

    #[test]
    fn a_slid_window_skips_to_what_is_listed() {
        let step = plan(&playlist(15, 6, None, false), Some(12), HlsStart::default());
        assert_eq!(seqs(&step), (15..21).collect::<Vec<_>>());
        assert_eq!((step.next, step.skipped), (21, 3));
    }

    #[test]
    fn a_stale_playlist_brings_nothing_and_keeps_the_cursor() {
        let step = plan(&playlist(10, 6, None, false), Some(20), HlsStart::default());
        assert!(step.due.is_empty());
        assert_eq!((step.next, step.skipped), (20, 0));
    }

    #[test]
    fn an_empty_live_playlist_waits_for_its_first_segments() {
        let step = plan(&playlist(0, 0, None, false), None, HlsStart::default());
        assert!(step.due.is_empty());
        assert_eq!(step.next, 0);
        let step = plan(
            &playlist(0, 2, None, false),
            Some(step.next),
            HlsStart::default(),
        );
        assert_eq!(seqs(&step), vec![0, 1]);
    }

    #[test]
    fn discontinuities_are_marked() {
        let step = plan(
            &playlist(4, 4, Some(2), false),
            Some(5),
            HlsStart::default(),
        );
        let marks: Vec<(u64, bool)> = step.due.iter().map(|d| (d.seq, d.discontinuity)).collect();
        assert_eq!(marks, vec![(5, false), (6, true), (7, false)]);
    }

    #[test]
    fn an_ended_playlist_is_fetched_to_its_end() {
        let first = plan(&playlist(3, 4, None, true), None, HlsStart::LiveEdge);
        assert_eq!(
            seqs(&first),
            vec![3, 4, 5, 6],
            "a finished stream plays from its start"
        );
        assert!(first.ended);
        let last = plan(&playlist(3, 4, None, true), Some(5), HlsStart::default());
        assert_eq!(seqs(&last), vec![5, 6]);
        assert!(last.ended);
        let done = plan(&playlist(3, 4, None, true), Some(7), HlsStart::default());
        assert!(done.due.is_empty() && done.ended);
    }

    #[test]
    fn absurd_sequence_numbers_do_not_overflow() {
        // Numbers past u64::MAX cannot exist: what matters is no overflow, and a cursor that
        // never goes back.
        for next in [None, Some(0), Some(u64::MAX - 1), Some(u64::MAX)] {
            for ended in [false, true] {
                let top = playlist(u64::MAX - 1, 5, None, ended);
                let step = plan(&top, next, HlsStart::default());
                assert!(step.due.len() <= 5);
                assert!(step.next >= next.unwrap_or(u64::MAX - 1), "{next:?}");
            }
        }
        let step = plan(
            &playlist(u64::MAX, 2, None, true),
            Some(3),
            HlsStart::LiveEdge,
        );
        assert_eq!((step.due.len(), step.skipped), (2, u64::MAX - 3));
    }

    #[test]
    fn reload_timing_follows_rfc_8216() {
        assert_eq!(reload_after(2, true), Duration::from_secs(2));
        assert_eq!(reload_after(2, false), Duration::from_secs(1));
        assert_eq!(reload_after(0, false), Duration::from_millis(500));
    }

    #[test]
    fn bad_playlists_are_errors() {
        assert!(parse_playlist(b"").is_err());
        assert!(parse_playlist(b"<html>nope</html>").is_err());
        assert!(parse_playlist(&[0xff, 0xfe, 0, 1]).is_err());
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1280000\nlow/index.m3u8\n";
        assert!(matches!(parse_playlist(master), Err(HlsError::Playlist(_))));
    }

    #[test]
    fn segment_uris_resolve_to_request_paths() {
        let p = "/live/cam.m3u8";
        assert_eq!(
            segment_path(p, "cam-1-2.ts").as_deref(),
            Some("/live/cam-1-2.ts")
        );
        assert_eq!(
            segment_path(p, "/other/x.ts").as_deref(),
            Some("/other/x.ts")
        );
        assert_eq!(
            segment_path(p, "http://cdn:8080/a/b.ts").as_deref(),
            Some("/a/b.ts")
        );
        assert_eq!(segment_path(p, "https://cdn/a/b.ts"), None);
        assert_eq!(segment_path(p, "x.ts HTTP/1.1\r\nEvil: 1"), None);
        assert_eq!(segment_path(p, "../secret.ts"), None);
        assert_eq!(segment_path(p, ""), None);
    }

    #[test]
    fn a_stall_is_a_long_gap_counted_once() {
        let t = Instant::now();
        let limit = Duration::from_secs(3);
        let mut clock = StallClock::new(limit);
        assert!(
            !clock.check(t + Duration::from_secs(60)),
            "not before the first segment"
        );
        assert!(!clock.segment(t));
        assert!(!clock.check(t + limit));
        assert!(clock.check(t + Duration::from_secs(4)));
        assert!(!clock.check(t + Duration::from_secs(5)), "once per gap");
        assert!(
            !clock.segment(t + Duration::from_secs(6)),
            "already counted"
        );
        assert!(
            clock.segment(t + Duration::from_secs(10)),
            "seen when the segment came"
        );
        assert!(!clock.segment(t + Duration::from_secs(11)));
    }
}
