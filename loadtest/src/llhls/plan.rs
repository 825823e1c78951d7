//! Playlist decisions of an LL-HLS viewer (pure): which parts a playlist makes due and
//! where the cursor goes ([`plan`]), the blocking reload to make next ([`reload_path`]),
//! what query the playlist's URIs carry ([`carried_query`]), how long to wait after a
//! reload that brought nothing ([`pause_after`]), and when a part ended by the playlist's
//! program dates ([`DuePart::ends_ns`], [`date_latency`]).
//!
//! Playlists are read by the test kit's checker ([`corecast_testkit::hls_check`]); these
//! functions take its model.

use corecast::hls::llhls::PartId;
use corecast_testkit::hls_check::{MediaPlaylist, Part};
use std::time::Duration;

/// A part a viewer is to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePart {
    /// Which part: its segment's media sequence number and its index in it.
    pub id: PartId,
    /// Its URI as listed (relative to the playlist, with the query the playlist gave it).
    pub uri: String,
    /// The `EXT-X-MAP` URI in effect for its segment: the initialization segment a player
    /// must have before it.
    pub map: Option<String>,
    /// When it ended by the playlist's program dates, Unix ns: its segment's
    /// `EXT-X-PROGRAM-DATE-TIME` plus the durations of its parts up to and including it.
    /// A segment without a date of its own continues the one before it. `None` when no
    /// segment up to it is dated.
    pub ends_ns: Option<u64>,
}

/// What one playlist makes due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Parts to fetch, in order.
    pub due: Vec<DuePart>,
    /// The part to fetch after `due`: the cursor to keep, and what the next blocking reload
    /// asks for. Past the last part of a complete segment it is part 0 of the next segment
    /// (RFC 8216bis 6.2.5.2).
    pub next: PartId,
    /// The cursor was no longer listed (the viewer fell more than the listed parts behind)
    /// or far beyond what is listed (the stream restarted, numbering anew): the viewer
    /// joined again at the live edge.
    pub resynced: bool,
    /// The viewer (re)joined at the live edge with this playlist (its first one, or
    /// `resynced`): the parts due were complete before it asked, catch-up rather than live.
    pub joining: bool,
    /// The playlist has `EXT-X-ENDLIST`: once `due` is fetched, the stream is over.
    pub ended: bool,
}

/// A listed part with what [`plan`] needs to know about it.
struct Listed<'a> {
    /// Which part.
    id: PartId,
    /// Its tag.
    part: &'a Part,
    /// The map in effect for its segment.
    map: Option<&'a str>,
    /// When it ended by the program dates (Unix ns).
    ends_ns: Option<u64>,
    /// The last part of a complete segment.
    last_of_segment: bool,
}

impl Listed<'_> {
    fn due(&self) -> DuePart {
        DuePart {
            id: self.id,
            uri: self.part.uri.clone(),
            map: self.map.map(str::to_string),
            ends_ns: self.ends_ns,
        }
    }

    /// The part after this one: part 0 of the next segment after the last part of a
    /// complete segment.
    fn following(&self) -> PartId {
        if self.last_of_segment {
            PartId {
                msn: self.id.msn.saturating_add(1),
                part: 0,
            }
        } else {
            PartId {
                msn: self.id.msn,
                part: self.id.part.saturating_add(1),
            }
        }
    }
}

/// `d` in ns, saturating.
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Every part listed, in order, with its end by the program dates.
fn listed(p: &MediaPlaylist) -> Vec<Listed<'_>> {
    let date_ns = |ms: Option<i64>| {
        ms.and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| ms.saturating_mul(1_000_000))
    };
    let mut out = Vec::new();
    // Where the next segment starts when it has no date of its own.
    let mut carried: Option<u64> = None;
    // Each segment with its duration when complete (its EXTINF, which holds whether its
    // parts are listed or not).
    let segments = p
        .segments
        .iter()
        .map(|s| {
            let duration = Some(s.duration);
            (
                s.msn,
                &s.parts,
                s.map.as_deref(),
                s.program_date_ms,
                duration,
            )
        })
        .chain(
            p.open
                .iter()
                .map(|o| (o.msn, &o.parts, o.map.as_deref(), o.program_date_ms, None)),
        );
    for (msn, parts, map, date, duration) in segments {
        let start = date_ns(date).or(carried);
        let mut end = start;
        for (index, part) in parts.iter().enumerate() {
            end = end.map(|e| e.saturating_add(ns(part.duration)));
            out.push(Listed {
                id: PartId {
                    msn,
                    part: u32::try_from(index).unwrap_or(u32::MAX),
                },
                part,
                map,
                ends_ns: end,
                last_of_segment: duration.is_some() && index + 1 == parts.len(),
            });
        }
        carried = match duration {
            Some(d) => start.map(|start| start.saturating_add(ns(d))),
            None => end,
        };
    }
    out
}

/// Where a viewer joining at the live edge starts: the last part that says it starts with a
/// keyframe (`INDEPENDENT=YES`) of the last segment listed (the one being written, else the
/// last complete one); if that segment has none, the last independent part listed; if the
/// playlist marks no part independent, the first part of the last segment listed. `None`
/// when no part is listed.
fn live_edge(parts: &[Listed<'_>]) -> Option<usize> {
    let last_msn = parts.last()?.id.msn;
    parts
        .iter()
        .rposition(|l| l.id.msn == last_msn && l.part.independent)
        .or_else(|| parts.iter().rposition(|l| l.part.independent))
        .or_else(|| parts.iter().position(|l| l.id.msn == last_msn))
}

/// The part after everything `p` lists: part 0 of the next segment when the last part
/// listed ends a complete segment, or no part is listed.
fn after_listed(p: &MediaPlaylist, parts: &[Listed<'_>]) -> PartId {
    match parts.last() {
        Some(last) => last.following(),
        None => PartId {
            msn: p
                .segments
                .last()
                .map_or(p.media_sequence.saturating_add(p.skipped_segments), |s| {
                    s.msn.saturating_add(1)
                }),
            part: 0,
        },
    }
}

/// Which parts of `playlist` are due, given `next`, the next part the viewer wants (`None`
/// before the first playlist).
///
/// - First playlist of a live stream: from the live edge (the last independent part of the
///   last segment listed; see `live_edge`), as hls.js starts in low-latency mode; with no
///   part listed, the viewer waits for the next one.
/// - First playlist of an ended stream: nothing is due and the viewer ends (there is no
///   live edge to join).
/// - Later playlists: every listed part from `next` on, in order. When `next` is older than
///   every part listed (the viewer fell behind) or more than a segment beyond what is
///   listed (the stream restarted and numbers its segments anew), the viewer joins again at
///   the live edge (`resynced`). A playlist a little behind `next` (the snapshot of a shard
///   that has not seen the newest part yet) makes nothing due and keeps the cursor.
pub fn plan(playlist: &MediaPlaylist, next: Option<PartId>) -> Plan {
    let parts = listed(playlist);
    let after = after_listed(playlist, &parts);
    // `next` as the playlist knows it: past the last part of a complete segment listed with
    // its parts, it is the next segment's part 0.
    let cursor = next.map(|next| {
        parts
            .iter()
            .find(|l| l.last_of_segment && l.id.msn == next.msn && l.id.part < next.part)
            .map_or(next, Listed::following)
    });
    let resynced = cursor.is_some_and(|cursor| {
        let behind = parts.first().is_some_and(|first| cursor < first.id);
        let restarted = cursor.msn > after.msn.saturating_add(1);
        behind || restarted
    });
    let from = match cursor {
        None if playlist.ended => None,
        Some(cursor) if !resynced => parts.iter().position(|l| l.id >= cursor),
        _ => live_edge(&parts),
    };
    let due: Vec<DuePart> = from
        .map(|i| parts[i..].iter().map(Listed::due).collect())
        .unwrap_or_default();
    // Nothing due: a playlist behind the cursor keeps it; otherwise wait for what comes
    // after the playlist.
    let next = match cursor {
        Some(cursor) if from.is_none() && !resynced => cursor,
        _ => after,
    };
    Plan {
        due,
        next,
        resynced,
        joining: cursor.is_none() || resynced,
        ended: playlist.ended,
    }
}

/// The request path of the blocking reload for part `next` (RFC 8216bis 6.2.5.2):
/// `{playlist_path}?_HLS_msn=M&_HLS_part=P`, with `_HLS_skip=YES` for a delta update when
/// `delta` (the playlist offers them: `CAN-SKIP-UNTIL`), and `query` (credentials) last.
pub fn reload_path(playlist_path: &str, next: PartId, delta: bool, query: Option<&str>) -> String {
    let mut path = format!(
        "{playlist_path}?_HLS_msn={}&_HLS_part={}",
        next.msn, next.part
    );
    if delta {
        path.push_str("&_HLS_skip=YES");
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        path.push('&');
        path.push_str(query);
    }
    path
}

/// The query the playlist's URIs carry (a protected stream's credentials: the server
/// appends the playlist request's query to every URI), from the preload hint or else the
/// last part or segment listed; `None` when they carry none.
pub fn carried_query(p: &MediaPlaylist) -> Option<&str> {
    let uri = p
        .preload_hints
        .iter()
        .map(|h| h.uri.as_str())
        .chain(p.parts().last().map(|(_, part)| part.uri.as_str()))
        .chain(p.segments.last().map(|s| s.uri.as_str()))
        .next()?;
    uri.split_once('?')
        .map(|(_, query)| query)
        .filter(|q| !q.is_empty())
}

/// How long to wait before the next playlist request: nothing after a reload that brought
/// parts (the blocking reload is the wait); half a part target after one that brought
/// nothing (the server answered without holding: its bound of held requests was reached,
/// or its snapshot was behind), so that a viewer never spins; half a target duration after
/// a failed one, as a player retries.
pub fn pause_after(outcome: Outcome, part_target: Duration, target_duration: Duration) -> Duration {
    match outcome {
        Outcome::Parts => Duration::ZERO,
        Outcome::Nothing => part_target / 2,
        Outcome::Failed => target_duration / 2,
    }
}

/// What a playlist request brought, for [`pause_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A playlist with new parts (or the first playlist).
    Parts,
    /// A playlist with nothing new.
    Nothing,
    /// No usable playlist: an error status, an invalid playlist, a failed request.
    Failed,
}

/// How long after part `ends_ns` ended by the program dates it arrived at `arrived_ns` (both
/// Unix ns); 0 when it arrived before (the server's clock ahead of ours, or dates running
/// ahead of the media).
pub fn date_latency(arrived_ns: u64, ends_ns: u64) -> u64 {
    arrived_ns.saturating_sub(ends_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_testkit::hls_check;

    /// A checked playlist of corecast's shape: 1 s segments of four 250 ms parts from
    /// `first`, `complete` of them complete, then `open` parts of the next; the first part
    /// of each segment independent; dates from 2026-11-24T19:07:24.000Z; `query` appended
    /// to every URI.
    fn playlist(first: u64, complete: u64, open: u32, ended: bool, query: &str) -> MediaPlaylist {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750,CAN-SKIP-UNTIL=6.000\n\
             #EXT-X-PART-INF:PART-TARGET=0.250\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-MAP:URI=\"cam-7-init0.mp4{q}\"\n"
        );
        let date = |msn: u64| {
            let s = 24 + (msn - first);
            format!("#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:{s:02}.000Z\n")
        };
        let part = |msn: u64, i: u32| {
            format!(
                "#EXT-X-PART:DURATION=0.250,URI=\"cam-7-{msn}.{i}.m4s{q}\"{}\n",
                if i == 0 { ",INDEPENDENT=YES" } else { "" }
            )
        };
        for msn in first..first + complete {
            text += &date(msn);
            // Parts are listed for the segments that start at most three target durations
            // before the end of the playlist, as corecast does (in quarter seconds).
            if 4 * (msn - first) + 12 >= 4 * complete + u64::from(open) {
                for i in 0..4 {
                    text += &part(msn, i);
                }
            }
            text += &format!("#EXTINF:1.000,\ncam-7-{msn}.m4s{q}\n");
        }
        let open_msn = first + complete;
        if open > 0 {
            text += &date(open_msn);
            for i in 0..open {
                text += &part(open_msn, i);
            }
        }
        if ended {
            text += "#EXT-X-ENDLIST\n";
        } else {
            let (msn, i) = if open >= 4 {
                (open_msn + 1, 0)
            } else {
                (open_msn, open)
            };
            text += &format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-{msn}.{i}.m4s{q}\"\n");
        }
        hls_check::check(&text).unwrap_or_else(|v| panic!("{}{text}", hls_check::report(&v)))
    }

    fn id(msn: u64, part: u32) -> PartId {
        PartId { msn, part }
    }

    fn ids(plan: &Plan) -> Vec<(u64, u32)> {
        plan.due.iter().map(|d| (d.id.msn, d.id.part)).collect()
    }

    /// Unix ns of 2026-11-24T19:07:24.000Z.
    const DATE0_NS: u64 = 1_795_547_244_000_000_000;

    #[test]
    fn a_viewer_joins_at_the_last_independent_part() {
        // Segment 13 is being written, three parts so far: start at its part 0.
        let p = plan(&playlist(10, 3, 3, false, ""), None);
        assert_eq!(ids(&p), [(13, 0), (13, 1), (13, 2)]);
        assert_eq!(p.next, id(13, 3));
        assert!(p.joining && !p.resynced && !p.ended);
        let first = &p.due[0];
        assert_eq!(first.uri, "cam-7-13.0.m4s");
        assert_eq!(first.map.as_deref(), Some("cam-7-init0.mp4"));
        // Segment 13 starts at 24 s + 3 s; part 0 ends 250 ms later.
        assert_eq!(first.ends_ns, Some(DATE0_NS + 3_250_000_000));
        assert_eq!(p.due[2].ends_ns, Some(DATE0_NS + 3_750_000_000));
        // No segment open: the last complete segment's part 0, and next is part 0 of the
        // next segment.
        let p = plan(&playlist(10, 3, 0, false, ""), None);
        assert_eq!(ids(&p), [(12, 0), (12, 1), (12, 2), (12, 3)]);
        assert_eq!(p.next, id(13, 0));
    }

    #[test]
    fn each_new_part_is_due_once_in_order() {
        let p = plan(&playlist(10, 3, 2, false, ""), Some(id(13, 1)));
        assert_eq!(ids(&p), [(13, 1)]);
        assert!(!p.joining);
        assert_eq!(p.next, id(13, 2));
        // Nothing new: nothing due, the cursor stays.
        let p = plan(&playlist(10, 3, 2, false, ""), Some(id(13, 2)));
        assert!(p.due.is_empty());
        assert_eq!(p.next, id(13, 2));
        // Several new parts across a segment boundary.
        let p = plan(&playlist(10, 4, 2, false, ""), Some(id(13, 2)));
        assert_eq!(ids(&p), [(13, 2), (13, 3), (14, 0), (14, 1)]);
        assert_eq!(p.next, id(14, 2));
    }

    #[test]
    fn past_the_last_part_of_a_complete_segment_is_the_next_segments_part_0() {
        // After part 3 of segment 13 the viewer wants (13, 4): segment 13 completed with
        // four parts, so that is (14, 0) (RFC 8216bis 6.2.5.2).
        let p = plan(&playlist(10, 4, 1, false, ""), Some(id(13, 4)));
        assert_eq!(ids(&p), [(14, 0)]);
        assert_eq!(p.next, id(14, 1));
        let p = plan(&playlist(10, 4, 0, false, ""), Some(id(13, 4)));
        assert!(p.due.is_empty());
        assert_eq!(p.next, id(14, 0), "normalized for the blocking reload");
        // The last part listed ends a complete segment: the next request is for part 0 of
        // the next one.
        let p = plan(&playlist(10, 4, 0, false, ""), Some(id(13, 3)));
        assert_eq!(ids(&p), [(13, 3)]);
        assert_eq!(p.next, id(14, 0));
    }

    #[test]
    fn a_viewer_that_fell_behind_joins_again_at_the_live_edge() {
        // Parts are listed for segments 18 and 19 and the open 20: (12, 1) is long gone.
        let p = plan(&playlist(10, 10, 2, false, ""), Some(id(12, 1)));
        assert!(p.resynced && p.joining);
        assert_eq!(ids(&p), [(20, 0), (20, 1)]);
        assert_eq!(p.next, id(20, 2));
    }

    #[test]
    fn a_playlist_a_little_behind_keeps_the_cursor_and_a_restart_resyncs() {
        let p = plan(&playlist(10, 3, 1, false, ""), Some(id(13, 3)));
        assert!(p.due.is_empty() && !p.resynced);
        assert_eq!(p.next, id(13, 3));
        let p = plan(&playlist(10, 3, 1, false, ""), Some(id(14, 1)));
        assert!(p.due.is_empty() && !p.resynced, "one segment ahead");
        assert_eq!(p.next, id(14, 1));
        // The stream restarted: its segments are numbered from 0 again.
        let p = plan(&playlist(0, 2, 2, false, ""), Some(id(40, 2)));
        assert!(p.resynced);
        assert_eq!(ids(&p), [(2, 0), (2, 1)]);
    }

    #[test]
    fn an_ended_playlist_ends_the_viewer_after_its_last_parts() {
        let p = plan(&playlist(10, 4, 0, true, ""), Some(id(13, 2)));
        assert_eq!(ids(&p), [(13, 2), (13, 3)]);
        assert!(p.ended);
        let p = plan(&playlist(10, 4, 0, true, ""), None);
        assert!(p.due.is_empty() && p.ended, "no live edge to join");
    }

    #[test]
    fn a_playlist_without_parts_waits_for_the_next_segment() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:5\n\
                    #EXTINF:1.000,\na.m4s\n#EXTINF:1.000,\nb.m4s\n";
        let p = plan(&hls_check::check(text).unwrap(), None);
        assert!(p.due.is_empty());
        assert_eq!(p.next, id(7, 0));
    }

    #[test]
    fn undated_segments_continue_the_dates_before_them() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
                    #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750\n\
                    #EXT-X-PART-INF:PART-TARGET=0.250\n#EXT-X-MEDIA-SEQUENCE:0\n\
                    #EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.000Z\n\
                    #EXTINF:0.900,\ns0.m4s\n\
                    #EXT-X-PART:DURATION=0.240,URI=\"s1.0.m4s\",INDEPENDENT=YES\n\
                    #EXT-X-PART:DURATION=0.240,URI=\"s1.1.m4s\"\n\
                    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s1.2.m4s\"\n";
        let p = plan(&hls_check::check(text).unwrap(), None);
        assert_eq!(ids(&p), [(1, 0), (1, 1)]);
        assert_eq!(p.due[0].ends_ns, Some(DATE0_NS + 1_140_000_000));
        assert_eq!(p.due[1].ends_ns, Some(DATE0_NS + 1_380_000_000));
        let undated = text.replace("#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.000Z\n", "");
        let p = plan(&hls_check::check(&undated).unwrap(), None);
        assert_eq!(p.due[0].ends_ns, None);
    }

    #[test]
    fn blocking_reloads_ask_for_the_next_part_with_the_carried_query() {
        let p = playlist(10, 3, 2, false, "token=abc.def");
        assert_eq!(carried_query(&p), Some("token=abc.def"));
        let plan = plan(&p, None);
        assert!(plan.due[0].uri.ends_with(".m4s?token=abc.def"));
        assert_eq!(
            reload_path("/live/cam/ll.m3u8", plan.next, true, carried_query(&p)),
            "/live/cam/ll.m3u8?_HLS_msn=13&_HLS_part=2&_HLS_skip=YES&token=abc.def"
        );
        assert_eq!(
            reload_path("/live/cam/ll.m3u8", id(14, 0), false, None),
            "/live/cam/ll.m3u8?_HLS_msn=14&_HLS_part=0"
        );
        assert_eq!(carried_query(&playlist(10, 3, 2, false, "")), None);
    }

    #[test]
    fn corecasts_playlists_plan_to_its_parts() {
        let s = crate::llhls::fixtures::stream(4);
        let live = hls_check::check(&s.live).expect("corecast's live playlist");
        let joined = plan(&live, None);
        // Segment 3 is being written (segments close at the keyframe a second): from its
        // first part, which starts with that keyframe.
        let open = live.open.as_ref().expect("a segment being written");
        assert_eq!(joined.due[0].id, id(open.msn, 0));
        assert_eq!(joined.due.len(), open.parts.len());
        assert_eq!(joined.next, id(open.msn, open.parts.len() as u32));
        let ended = hls_check::check(&s.ended).expect("corecast's final playlist");
        let rest = plan(&ended, Some(joined.next));
        assert!(rest.ended && !rest.resynced);
        // Together: every part from the live edge to the end, each once, in order, under its
        // own name, with the stream's one map.
        let fetched: Vec<&DuePart> = joined.due.iter().chain(&rest.due).collect();
        let expected: Vec<PartId> = s
            .parts
            .iter()
            .map(|p| p.id)
            .filter(|p| p.msn >= open.msn)
            .collect();
        assert_eq!(fetched.iter().map(|d| d.id).collect::<Vec<_>>(), expected);
        for due in &fetched {
            let name = corecast::hls::llhls::part_name("cam", 7, due.id.msn, due.id.part);
            assert_eq!(due.uri, name);
            assert_eq!(due.map.as_deref(), Some("cam-7-init0.mp4"));
        }
        // Each ends later than the one before, within the stream's four seconds from its
        // first frame's arrival (the fixture's frames arrive at their timestamps).
        let start_ns = crate::llhls::fixtures::START_MS * 1_000_000;
        let ends: Vec<u64> = fetched.iter().map(|d| d.ends_ns.expect("dated")).collect();
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
        assert!(ends[0] > start_ns + 3_000_000_000, "{ends:?}");
        assert!(
            *ends.last().unwrap() <= start_ns + 4_100_000_000,
            "{ends:?}"
        );
    }

    #[test]
    fn pauses_and_latency_arithmetic() {
        let part = Duration::from_millis(250);
        let target = Duration::from_secs(1);
        assert_eq!(pause_after(Outcome::Parts, part, target), Duration::ZERO);
        assert_eq!(
            pause_after(Outcome::Nothing, part, target),
            Duration::from_millis(125)
        );
        assert_eq!(
            pause_after(Outcome::Failed, part, target),
            Duration::from_millis(500)
        );
        assert_eq!(date_latency(DATE0_NS + 80_000_000, DATE0_NS), 80_000_000);
        assert_eq!(
            date_latency(DATE0_NS, DATE0_NS + 5),
            0,
            "early: clocks apart"
        );
    }
}
