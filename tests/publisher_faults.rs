//! Faults on the publishing side, end to end over 127.0.0.1 with two shards:
//!
//! - malformed media from an otherwise valid publisher (truncated frames, empty messages,
//!   sequence headers cut short, a truncated aggregate);
//! - timestamps that jump backwards, jump forwards and wrap at 32 bits mid-stream;
//! - a publisher killed mid-stream (TCP reset), with and without a republish within
//!   `stream.republish_grace_ms`.
//!
//! Every viewer (HTTP-FLV, RTMP play, and HLS where it matters) is read on its own thread
//! while the publisher sends, and what it receives is compared, message by message, with
//! what the relay's documented timestamp rules (docs/ARCHITECTURE.md, "Timestamp rebasing")
//! make of what was published.

mod common;

use bytes::Bytes;
use common::fixture::{first_at, keyframe_at, keyframes, sequence_header};
use common::raw_publisher::{
    aggregate_part, is_av, raw_message, RawPublisher, TYPE_AGGREGATE, TYPE_AUDIO, TYPE_VIDEO,
};
use common::ts_check::{check_segment, TsState};
use common::watch::{assert_never_back, assert_tail, last_position, media_of, Sent, Watch};
use common::*;
use corecast::flv::reader::{FlvTag, TagKind};
use corecast_testkit::client::{Pace, Player};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A test configuration with the given republish grace period. The slow-viewer policy is
/// relaxed so that a reader thread descheduled for a moment on a busy machine is never
/// skipped ahead (which would make the message-by-message comparisons fail for the wrong
/// reason); `extra` adds whole sections other than `[stream]` and `[viewer]`.
fn config(grace_ms: u64, extra: &str) -> String {
    format!(
        "[stream]\nrepublish_grace_ms = {grace_ms}\nring_max_duration_ms = 30000\n\
         [viewer]\nskip_after_ms = 10000\ndisconnect_after_ms = 20000\n{extra}"
    )
}

/// HLS settings that make and keep every segment of a short test stream from its publish on
/// (the fixture's GOP is 1 s).
const HLS_KEEP_ALL: &str =
    "[hls]\non_demand = false\ntarget_duration_ms = 1000\nwindow_segments = 60\n";

/// How much of the clip each test publishes before its viewers connect: its first 0.42 s
/// (metadata, sequence headers, the first keyframe and what follows it).
const HEAD_MS: u32 = 420;

/// The index where the head of the clip ([`HEAD_MS`]) ends: within its first GOP.
fn head(tags: &[FlvTag]) -> usize {
    let head = first_at(tags, HEAD_MS);
    assert!(
        head < keyframes(tags)[1],
        "fixture: the head ends in the first GOP"
    );
    head
}

// ---------------------------------------------------------------------------------------
// What was sent, and what the documented rules make of it
// ---------------------------------------------------------------------------------------

/// Audio and video of fixture tags at their own timestamps plus `offset` (wrapping), as
/// [`Publisher::replay`] sends them.
fn as_sent(tags: &[FlvTag], offset: u32) -> Vec<Sent> {
    tags.iter()
        .filter(|t| is_av(t))
        .map(|t| Sent::new(t.kind, t.timestamp.wrapping_add(offset), t.data.clone()))
        .collect()
}

/// The relay's documented timestamp rules (docs/ARCHITECTURE.md, "Timestamp rebasing";
/// `media::Rebaser`), used to compute what viewers must receive:
///
/// - the first publisher starts at 0; a later one (within the grace period) starts 40 ms
///   after the last outgoing timestamp;
/// - steps are taken as signed 32-bit differences (a wrap is not a jump);
/// - a step forward by more than 10 s or back by more than 1 s is a discontinuity: the
///   timeline continues 40 ms after the last outgoing timestamp;
/// - outgoing timestamps never decrease (an older message gets the previous time).
#[derive(Debug, Default)]
struct Timeline {
    last_raw: Option<u32>,
    unwrapped: i64,
    offset: i64,
    base: i64,
    last_out: i64,
    started: bool,
}

const GAP_MS: i64 = 40;
const MAX_FORWARD_MS: i64 = 10_000;
const MAX_BACKWARD_MS: i64 = 1_000;

impl Timeline {
    fn new_publisher(&mut self) {
        self.last_raw = None;
        self.base = if self.started {
            self.last_out + GAP_MS
        } else {
            0
        };
    }

    fn map(&mut self, raw: u32) -> u32 {
        match self.last_raw {
            None => {
                self.unwrapped = i64::from(raw);
                self.offset = self.base - self.unwrapped;
            }
            Some(prev) => {
                let step = i64::from(raw.wrapping_sub(prev) as i32);
                self.unwrapped += step;
                if !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&step) {
                    self.offset = self.last_out + GAP_MS - self.unwrapped;
                }
            }
        }
        self.last_raw = Some(raw);
        self.last_out = (self.unwrapped + self.offset).max(self.last_out);
        self.started = true;
        self.last_out as u32
    }

    /// What viewers must receive for `sent` (non-empty bodies; empty ones are dropped by
    /// the relay before they reach the timeline).
    fn expect(&mut self, sent: &[Sent]) -> Vec<Sent> {
        sent.iter()
            .filter(|s| !s.data.is_empty())
            .map(|s| Sent::new(s.kind, self.map(s.ts), s.data.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// HLS
// ---------------------------------------------------------------------------------------

const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// Waits for the ended stream's playlist (`#EXT-X-ENDLIST`), fetches every segment it
/// lists, and checks them in order with the project's TS checker (structure, continuity
/// across segments, DTS never going back, each segment starting with an IDR after SPS and
/// PPS). Returns the playlist and the number of video frames over all segments.
fn check_final_hls(server: &corecast::Server, name: &str) -> (String, usize) {
    let addr = server.http_addr();
    let path = format!("/live/{name}.m3u8");
    let mut playlist = String::new();
    let ended = wait_until(WAIT, || {
        let Response { status, body, .. } = http_get(addr, &path);
        playlist = String::from_utf8_lossy(&body).to_string();
        status == 200 && playlist.contains("#EXT-X-ENDLIST")
    });
    assert!(ended, "{path} never ended:\n{playlist}");
    let segments: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(segments.len() >= 3, "few segments:\n{playlist}");
    let mut state = TsState::default();
    let mut video_frames = 0;
    for segment in segments {
        let Response {
            status,
            body: bytes,
            ..
        } = http_get(addr, &format!("/live/{segment}"));
        assert_eq!(status, 200, "{segment} listed but not served");
        let facts = check_segment(&bytes, &mut state, VIDEO_PID, AUDIO_PID);
        assert!(facts.video_frames > 0, "{segment}: no video: {facts:?}");
        video_frames += facts.video_frames;
    }
    (playlist, video_frames)
}

/// AVC frames that carry NAL units (packet type 1), the only video HLS muxes.
fn avc_frames(sent: &[Sent]) -> usize {
    sent.iter()
        .filter(|s| s.kind == TagKind::Video && s.data.len() > 5 && s.data[1] == 1)
        .count()
}

fn assert_no_panics_or_bad_input(server: &corecast::Server) {
    assert_eq!(
        total(server, |s| &s.rtmp_session_panics),
        0,
        "rml_rtmp panicked"
    );
    assert_eq!(
        total(server, |s| &s.rtmp_bad_input),
        0,
        "a connection was closed as bad input"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Malformed media from a valid publisher
// ---------------------------------------------------------------------------------------

/// A malformed message injected mid-stream.
struct Fault {
    what: &'static str,
    kind: TagKind,
    body: Vec<u8>,
}

fn faults() -> Vec<Fault> {
    let fault = |what, kind, body: &[u8]| Fault {
        what,
        kind,
        body: body.to_vec(),
    };
    vec![
        fault("video: codec byte only (inter)", TagKind::Video, &[0x27]),
        fault("video: codec byte only (key)", TagKind::Video, &[0x17]),
        fault(
            "AVC NALU whose 4-byte length points past the end",
            TagKind::Video,
            &[
                0x27, 0x01, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 0x41, 0x9a, 0x02,
            ],
        ),
        fault("empty audio message", TagKind::Audio, &[]),
        fault("empty video message", TagKind::Video, &[]),
        fault("AAC: sound header byte only", TagKind::Audio, &[0xaf]),
        fault(
            "AAC sequence header without its AudioSpecificConfig",
            TagKind::Audio,
            &[0xaf, 0x00],
        ),
        fault(
            "AVC sequence header cut short",
            TagKind::Video,
            &[0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00],
        ),
    ]
}

#[test]
fn malformed_media_mid_stream_is_contained_and_viewers_recover() {
    let server = start(&config(500, HLS_KEEP_ALL));
    let tags = fixture_tags();
    // The fixture's picture keyframes, one a second.
    let keys = keyframes(&tags);
    let head = head(&tags);
    let (header_v, header_a) = (
        &tags[sequence_header(&tags, TagKind::Video)],
        &tags[sequence_header(&tags, TagKind::Audio)],
    );
    assert!(header_v.is_sequence_header() && header_a.is_sequence_header());
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let mut all_sent = Vec::new();

    // Another stream, published normally, must not notice anything.
    let mut steady = publisher(&server, "steady");
    for tag in &tags[..head] {
        steady.send_tag(tag).expect("steady publishes");
    }
    let mut steady_viewer = Watch::flv(&server, "steady");
    steady_viewer.expect_payload(&tags[head - 1].data);

    let mut faulty = RawPublisher::connect(server.rtmp_addr(), "faulty");
    faulty.metadata();
    let start = faulty.tags(&tags[..head], 0);
    timeline.expect(&start);
    all_sent.extend(start);
    let mut flv = Watch::flv(&server, "faulty");
    let mut rtmp = Watch::rtmp(&server, "faulty");
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);

    // From here on, viewers must receive exactly what the rules say. The faults come at
    // the end of the first GOP, stamped with its last tag's time.
    let mut sent = faulty.tags(&tags[head..keys[1]], 0);
    let at = tags[keys[1] - 1].timestamp;
    let faults = faults();
    for (i, fault) in faults.iter().enumerate() {
        if fault.body.is_empty() {
            // The client session writes nothing for an empty message: hand-made chunk.
            let type_id = match fault.kind {
                TagKind::Audio => TYPE_AUDIO,
                _ => TYPE_VIDEO,
            };
            faulty.raw(type_id, at, &fault.body);
        } else {
            faulty.media(fault.kind, at, Bytes::from(fault.body.clone()));
        }
        sent.push(Sent::new(fault.kind, at, Bytes::from(fault.body.clone())));
        if i == 1 {
            // A video message of frame type 1 (key) without its AVC packet type is not a
            // start point (docs: "frame type 1 and, for AVC, packet type 1"): a viewer
            // joining now starts at the last real keyframe, the clip's first.
            let mut mid = Watch::flv(&server, "faulty");
            mid.expect_payload(&Bytes::from_static(&[0x17]));
            let first_frame = mid.got.iter().find(|s| {
                s.kind == TagKind::Video && s.data.get(1) != Some(&0) && s.data.len() > 1
            });
            assert_eq!(
                first_frame.map(|s| &s.data),
                Some(&tags[keys[0]].data),
                "a viewer joining after the 1-byte 'keyframe' starts at the first keyframe"
            );
        }
    }
    // An encoder that reconfigures sends its sequence headers again before the next
    // keyframe; new viewers must get these, not the broken ones.
    for header in [header_v, header_a] {
        faulty.media(header.kind, at, header.data.clone());
        sent.push(Sent::new(header.kind, at, header.data.clone()));
    }
    // On to three tags into the third GOP.
    let third_gop = keys[2] + 3;
    sent.extend(faulty.tags(&tags[keys[1]..third_gop], 0));
    // The stream goes on: a new viewer starts cleanly with the good headers.
    flv.expect_payload(&tags[third_gop - 1].data);
    let mut late = Watch::flv(&server, "faulty");
    // It starts at the newest keyframe (the third): metadata, headers, that keyframe and
    // the two tags after it.
    late.expect_payload(&tags[third_gop - 1].data);
    let start: Vec<FlvTag> = late
        .got
        .iter()
        .map(|s| FlvTag {
            kind: s.kind,
            timestamp: s.ts,
            data: s.data.clone(),
        })
        .collect();
    assert_decodable_start(&start);
    let late_headers: Vec<&Bytes> = late.got[1..3].iter().map(|s| &s.data).collect();
    assert!(
        late_headers.contains(&&header_v.data) && late_headers.contains(&&header_a.data),
        "a viewer joining after the broken headers gets the good ones sent since"
    );
    sent.extend(faulty.tags(&tags[third_gop..], 0));

    // Other streams are unaffected.
    for tag in &tags[head..keys[2]] {
        steady.send_tag(tag).expect("steady publishes");
    }
    steady_viewer.expect_payload(&tags[keys[2] - 1].data);
    assert_eq!(total(&server, |s| &s.publishers), 2, "both still publish");
    assert_no_panics_or_bad_input(&server);

    faulty.finish();
    steady.finish().expect("steady finishes");
    let expected = timeline.expect(&sent);
    all_sent.extend(sent.iter().cloned());
    assert!(
        expected.iter().all(|e| !e.data.is_empty()) && expected.len() == sent.len() - 2,
        "the two empty messages are dropped, every other one is relayed"
    );
    // The viewers that were there before the faults get everything, faults included; the
    // late one (joined at the third keyframe) gets the rest of the stream.
    let late_from = expected
        .iter()
        .rposition(|e| e.data == tags[keys[2]].data)
        .expect("the third keyframe was sent");
    let late_part = &expected[late_from..];
    for (watch, must_see) in [
        (flv, &expected[..]),
        (rtmp, &expected[..]),
        (late, late_part),
    ] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(
            ending.closed,
            "{who}: connection closed cleanly: {ending:?}"
        );
        assert_never_back(&who, &got);
        assert!(
            got.iter().all(|s| !s.data.is_empty()),
            "{who}: received an empty message"
        );
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_tail(&who, &got, must_see);
        if must_see.len() == expected.len() {
            // Spelled out: non-empty malformed messages are relayed untouched.
            for fault in faults.iter().filter(|f| !f.body.is_empty()) {
                assert!(
                    got.iter()
                        .any(|s| s.kind == fault.kind && s.data == fault.body),
                    "{who}: {} was relayed as sent",
                    fault.what
                );
            }
        }
    }
    steady_viewer.finish(WAIT);

    // HLS: the relay's own remux. Broken configurations and frames are refused by the
    // muxer (counted), the previous configuration stays in force, and every segment, those
    // made after the faults included, passes the TS checker.
    let (playlist, video_frames) = check_final_hls(&server, "faulty");
    assert_eq!(
        total(&server, |s| &s.hls_errors),
        3,
        "the truncated NALU, the empty AAC config and the short AVC config are refused"
    );
    assert_eq!(
        video_frames,
        avc_frames(&all_sent) - 1,
        "every good AVC frame (not the truncated one) is in the segments:\n{playlist}"
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// The only malformed media documented to close a publisher: an aggregate message (type
/// 22) whose sub-messages run past its end. The publisher is closed and counted, the
/// stream enters its grace period, and a republish continues for the viewers.
#[test]
fn truncated_aggregate_closes_the_publisher_and_a_republish_continues() {
    let server = start(&config(4000, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let head = head(&tags);
    let mut first = RawPublisher::connect(server.rtmp_addr(), "agg");
    first.metadata();
    timeline.expect(&first.tags(&tags[..head], 0));
    let mut flv = Watch::flv(&server, "agg");
    let mut rtmp = Watch::rtmp(&server, "agg");
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);

    // A well-formed aggregate of the next ten tags is split into its messages.
    let ten = head..head + 10;
    let parts: Vec<&FlvTag> = tags[ten.clone()].iter().filter(|t| is_av(t)).collect();
    let aggregate: Vec<u8> = parts
        .iter()
        .flat_map(|t| {
            let kind = if t.kind == TagKind::Audio {
                TYPE_AUDIO
            } else {
                TYPE_VIDEO
            };
            aggregate_part(kind, t.timestamp, &t.data, t.data.len())
        })
        .collect();
    first.raw(TYPE_AGGREGATE, parts[0].timestamp, &aggregate);
    let mut expected = timeline.expect(&as_sent(&tags[ten.clone()], 0));
    flv.expect_payload(&parts[parts.len() - 1].data);
    rtmp.expect_payload(&parts[parts.len() - 1].data);

    // One that announces 1000 body bytes and carries 20.
    let t = &tags[ten.end];
    let mut truncated = aggregate_part(TYPE_VIDEO, t.timestamp, &t.data[..20], 1000);
    truncated.truncate(11 + 20);
    first.raw(TYPE_AGGREGATE, t.timestamp, &truncated);
    first.wait_closed(WAIT);
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.rtmp_bad_input) == 1),
        "counted as bad input"
    );
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.publishers) == 0),
        "the publisher is gone"
    );
    assert_eq!(total(&server, |s| &s.rtmp_session_panics), 0);
    assert_eq!(total(&server, |s| &s.streams), 1, "in its grace period");

    let mut second = publisher(&server, "agg");
    second
        .replay(&tags, Pace::AsFastAsPossible, 0)
        .expect("republish");
    second.finish().expect("finish");
    timeline.new_publisher();
    expected.extend(timeline.expect(&as_sent(&tags, 0)));
    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        assert_never_back(&who, &got);
        assert!(
            !got.iter().any(|s| s.data == t.data[..20]),
            "{who}: the truncated aggregate's part was not delivered"
        );
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 1);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 2. Timestamps that jump and wrap
// ---------------------------------------------------------------------------------------

#[test]
fn timestamp_jumps_and_wraps_never_go_back_for_flv_rtmp_or_hls() {
    let server = start(&config(500, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut p = publisher(&server, "jumpy");
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    // Sections of the clip, each from one of its keyframes (one a second) to the next, with
    // the raw clock moved as an encoder might move it (the first section, the head of the
    // first GOP, only gets the viewers started).
    let keys = keyframes(&tags);
    let head = head(&tags);
    let back = 0u32.wrapping_sub(tags[keys[2]].timestamp); // restarts at 0: ~1.5 s back
    let forward = 3_600_000; // +1 hour
    let wrap = 0xffff_ff00u32.wrapping_sub(tags[keys[4]].timestamp); // wraps 256 ms in
    let small_back = 0u32.wrapping_sub(500); // 0.5 s back: jitter, clamped
    let wrap_range = keys[4]..tags.len();
    let sections: [(&str, std::ops::Range<usize>, u32); 6] = [
        ("start", 0..head, 0),
        ("before the jumps", head..keys[1], 0),
        ("clock back 0.5 s", keys[1]..keys[2], small_back),
        ("clock back ~1.5 s", keys[2]..keys[3], back),
        ("clock forward 1 h", keys[3]..keys[4], forward),
        (
            "from 0xFFFF_FF00 across the 32-bit wrap",
            wrap_range.clone(),
            wrap,
        ),
    ];

    p.replay(&tags[sections[0].1.clone()], Pace::AsFastAsPossible, 0)
        .expect("publish");
    timeline.expect(&as_sent(&tags[sections[0].1.clone()], 0));
    let mut flv = Watch::flv(&server, "jumpy");
    let mut rtmp = Watch::rtmp(&server, "jumpy");
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);

    let mut expected = Vec::new();
    let mut firsts = Vec::new();
    for (what, range, offset) in sections.iter().skip(1) {
        let slice = &tags[range.clone()];
        p.replay(slice, Pace::AsFastAsPossible, *offset)
            .expect("publish");
        let sent = as_sent(slice, *offset);
        firsts.push((*what, sent[0].clone()));
        expected.extend(timeline.expect(&sent));
        // Media keep flowing after each change of clock.
        let last = sent.last().expect("media").data.clone();
        flv.expect_payload(&last);
        rtmp.expect_payload(&last);
    }
    let wrapped_raw = as_sent(&tags[wrap_range], wrap);
    let after_wrap = wrapped_raw
        .iter()
        .position(|s| s.ts < 0x8000_0000)
        .expect("the raw clock wrapped");
    assert!(wrapped_raw[0].ts >= 0xffff_ff00 && after_wrap > 0);
    p.finish().expect("finish");

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);

        // The documented behaviour, spelled out at each change of clock. A step back of at
        // most 1 s is clamped; a jump back by more than 1 s, forward by more than 10 s (not
        // passed through), or into the wrap section (from 1 h to 0xFFFF_FF00: a step back,
        // as a signed 32-bit difference) continues 40 ms after the previous message.
        let media = media_of(&got);
        let (what, first) = &firsts[1];
        let at = last_position(&media, &first.data);
        assert_eq!(
            media[at].ts,
            media[at - 1].ts,
            "{who}: {what}: a step back of at most 1 s is not a discontinuity: the message \
             is stamped with the previous one's time"
        );
        for (what, first) in &firsts[2..] {
            let at = last_position(&media, &first.data);
            assert_eq!(
                media[at].ts,
                media[at - 1].ts + 40,
                "{who}: {what}: the timeline continues 40 ms after the last message"
            );
        }
        // Across the 32-bit wrap itself, time runs on by the raw step (which is not 40 ms
        // here, so a wrap taken for a jump would show).
        let before = &wrapped_raw[after_wrap - 1];
        let after = &wrapped_raw[after_wrap];
        let raw_step = after.ts.wrapping_sub(before.ts);
        assert!(raw_step > 0 && raw_step != 40, "fixture: step {raw_step}");
        let (i, j) = (
            last_position(&media, &before.data),
            last_position(&media, &after.data),
        );
        assert_eq!(j, i + 1, "{who}: consecutive across the wrap");
        assert_eq!(
            media[j].ts - media[i].ts,
            raw_step,
            "{who}: across the wrap ({:#x} -> {:#x}) time advances by the raw step",
            before.ts,
            after.ts
        );
        let last = media.last().expect("media").ts;
        assert!(
            last < 10_000,
            "{who}: the whole 6 s clip, four clock changes included, ends at {last} ms"
        );
    }

    let (playlist, video_frames) = check_final_hls(&server, "jumpy");
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags, 0)),
        "every frame is in the segments:\n{playlist}"
    );
    assert_eq!(total(&server, |s| &s.hls_errors), 0);
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

// ---------------------------------------------------------------------------------------
// 3. A publisher killed mid-stream
// ---------------------------------------------------------------------------------------

/// How a test publisher goes away.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    /// SO_LINGER 0 and close: a TCP reset.
    Reset,
    /// A plain close (FIN) without `deleteStream`, as when an encoder process dies.
    Close,
}

#[test]
fn publisher_reset_mid_stream_and_republished_within_grace_keeps_viewers() {
    killed_and_republished_within_grace(Kill::Reset, "phoenix");
}

#[test]
fn publisher_closed_without_delete_stream_and_republished_within_grace_keeps_viewers() {
    killed_and_republished_within_grace(Kill::Close, "lazarus");
}

/// A publisher goes away in the middle of a message (`kill`), and a new one publishes the
/// same stream, its clock restarted at 0, within the grace period: an HTTP-FLV viewer and
/// an RTMP player connected before keep their connections and receive everything from both
/// publishers, time going on 40 ms after the first publisher's last message.
fn killed_and_republished_within_grace(kill: Kill, name: &str) {
    let grace = Duration::from_millis(5000);
    let server = start(&config(grace.as_millis() as u64, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let head = head(&tags);
    let mut first = RawPublisher::connect(server.rtmp_addr(), name);
    first.metadata();
    timeline.expect(&first.tags(&tags[..head], 0));
    let mut flv = Watch::flv(&server, name);
    let mut rtmp = Watch::rtmp(&server, name);
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);

    // The clip up to 1.75 s.
    let dies = first_at(&tags, 1_750);
    let mut expected = timeline.expect(&first.tags(&tags[head..dies], 0));
    flv.expect_payload(&tags[dies - 1].data);
    rtmp.expect_payload(&tags[dies - 1].data);
    // Half of the next video frame, then the publisher dies: that frame must never reach
    // anyone.
    let cut = &tags[dies..]
        .iter()
        .find(|t| t.kind == TagKind::Video && t.data.len() > 200)
        .expect("a video frame");
    let message = raw_message(TYPE_VIDEO, cut.timestamp, &cut.data);
    first.write(&message[..message.len() / 2]);
    match kill {
        Kill::Reset => first.kill(),
        Kill::Close => drop(first),
    }
    let killed = Instant::now();

    assert!(
        wait_until(WAIT, || total(&server, |s| &s.publishers) == 0),
        "the server noticed that the publisher is gone ({kill:?})"
    );
    assert_eq!(total(&server, |s| &s.streams), 1, "the stream waits");
    // During the grace period the stream still answers new viewers.
    let mut during = FlvViewer::open(server.http_addr(), &format!("/live/{name}.flv"));
    assert_eq!(
        during.status, 200,
        "viewers can still join during the grace"
    );
    assert!(during.next_tag().is_some(), "and get the stream's headers");
    drop(during);

    let mut second = publisher(&server, name);
    assert!(
        killed.elapsed() < grace,
        "the republish is within the grace period (took {:?})",
        killed.elapsed()
    );
    second
        .replay(&tags, Pace::AsFastAsPossible, 0)
        .expect("republish");
    second.finish().expect("finish");
    timeline.new_publisher();
    let republished = timeline.expect(&as_sent(&tags, 0));
    let (resume_at, resumed) = (republished[0].ts, republished[0].data.clone());
    expected.extend(republished);

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(grace + WAIT);
        assert!(ending.closed, "{who}: closed cleanly: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(ending.stream_ended, "{who}: end of stream reported");
        }
        assert_never_back(&who, &got);
        // Everything after the catch-up point, from both publishers, in order (so nothing
        // of the frame cut by the reset), with the second publisher's clock (restarted at
        // 0) continuing 40 ms after the first's.
        assert_tail(&who, &got, &expected);
        let media = media_of(&got);
        let at = last_position(&media, &resumed);
        assert_eq!(
            (media[at].ts, media[at - 1].ts + 40),
            (resume_at, resume_at),
            "{who}: the new publisher's first message comes 40 ms after the last one"
        );
    }
    assert_no_panics_or_bad_input(&server);
    assert_eq!(total(&server, |s| &s.viewers_ended_with_stream), 2);
    server.stop();
}

#[test]
fn publisher_gone_for_good_ends_the_stream_after_the_grace_period() {
    let grace = Duration::from_millis(1500);
    let server = start(&config(grace.as_millis() as u64, ""));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();

    let head = head(&tags);
    let mut p = RawPublisher::connect(server.rtmp_addr(), "gone");
    p.metadata();
    timeline.expect(&p.tags(&tags[..head], 0));
    let mut flv = Watch::flv(&server, "gone");
    let mut rtmp = Watch::rtmp(&server, "gone");
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);
    // The clip up to 1.45 s.
    let dies = first_at(&tags, 1_450);
    let expected = timeline.expect(&p.tags(&tags[head..dies], 0));
    flv.expect_payload(&tags[dies - 1].data);
    rtmp.expect_payload(&tags[dies - 1].data);
    p.kill();
    let killed = Instant::now();

    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(grace + WAIT);
        let ended_after = killed.elapsed();
        // The end comes no earlier than the grace period after the reset (the server
        // notices the reset after it happened, then waits the whole period).
        assert!(
            ended_after >= grace - Duration::from_millis(100),
            "{who}: the stream ended {ended_after:?} after the reset, before the grace period"
        );
        assert!(ending.closed, "{who}: closed cleanly: {ending:?}");
        assert!(ending.error.is_none(), "{who}: {ending:?}");
        if who.starts_with("RTMP") {
            assert!(
                ending.stream_ended,
                "{who}: end of stream (NetStream.Play.Complete) reported before the close"
            );
        }
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.viewers_ended_with_stream), 2);
    assert!(wait_until(WAIT, || total(&server, |s| &s.streams) == 0));

    // The stream is gone: players are refused, HTTP-FLV gets 404.
    let code = rejected_code(Player::connect(server.rtmp_addr(), "live", "gone", WAIT));
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert_eq!(
        FlvViewer::open(server.http_addr(), "/live/gone.flv").status,
        404
    );
    // A publish after the grace period is a new stream, from timestamp 0 again.
    let mut again = publisher(&server, "gone");
    for tag in &tags[..head] {
        again.send_tag(tag).expect("publish again");
    }
    let mut fresh = Watch::flv(&server, "gone");
    fresh.expect_payload(&tags[head - 1].data);
    let key = fresh
        .got
        .iter()
        .find(|s| {
            s.kind == TagKind::Video && s.data.first() == Some(&0x17) && s.data.get(1) == Some(&1)
        })
        .expect("a keyframe")
        .ts;
    assert_eq!(key, 0, "the new stream's timeline starts at 0");
    again.finish().expect("finish");
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// A keyframe whose NAL unit length points past its end, where a segment may close. The HLS
/// muxer refuses it (`hls_errors`) before it closes or opens a segment, and leaves out the
/// inter frames of its GOP: every segment still starts with an IDR. (Before the fix, the
/// keyframe opened a segment that then started with P-frames.)
#[test]
fn truncated_keyframe_neither_closes_nor_opens_an_hls_segment() {
    let server = start(&config(300, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let head = head(&tags);
    let mut p = RawPublisher::connect(server.rtmp_addr(), "cutkey");
    p.metadata();
    timeline.expect(&p.tags(&tags[..head], 0));
    let mut flv = Watch::flv(&server, "cutkey");
    let mut rtmp = Watch::rtmp(&server, "cutkey");
    flv.expect_payload(&tags[head - 1].data);
    rtmp.expect_payload(&tags[head - 1].data);

    // The keyframe at 2000 ms, when the segment started at 1000 ms is due to close: its
    // first NAL unit announces 16 KiB and the message ends 4 bytes later.
    let k = keyframe_at(&tags, 2000);
    let mut sent = p.tags(&tags[head..k], 0);
    let key = &tags[k];
    assert!(key.is_video_keyframe() && !key.is_sequence_header());
    let mut cut = key.data[..13].to_vec();
    cut[5..9].copy_from_slice(&0x4000u32.to_be_bytes());
    let cut = Bytes::from(cut);
    p.media(TagKind::Video, key.timestamp, cut.clone());
    sent.push(Sent::new(TagKind::Video, key.timestamp, cut));
    sent.extend(p.tags(&tags[k + 1..], 0));
    p.finish();

    // HTTP-FLV and RTMP relay it untouched and go on.
    let expected = timeline.expect(&sent);
    for watch in [flv, rtmp] {
        let who = watch.who.clone();
        let (got, ending) = watch.finish(WAIT);
        assert!(ending.closed, "{who}: {ending:?}");
        assert_never_back(&who, &got);
        assert_tail(&who, &got, &expected);
    }
    assert_eq!(total(&server, |s| &s.hls_errors), 1, "the frame is refused");
    // Every segment passes the checker, and the refused keyframe's GOP is left out of HLS.
    let (_, video_frames) = check_final_hls(&server, "cutkey");
    let gop_end = tags[k + 1..]
        .iter()
        .position(|t| t.is_video_keyframe() && !t.is_sequence_header())
        .map_or(tags.len(), |i| k + 1 + i);
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags[..k], 0)) + avc_frames(&as_sent(&tags[gop_end..], 0))
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}

/// A stream whose first AVC sequence header is cut short, the good one arriving later,
/// before an inter frame. The stream has video, so its HLS segments start at video
/// keyframes the muxer can use: the first is the keyframe after the good header, and its
/// segment's PMT lists both tracks. (Before the fix, an unusable keyframe opened a segment
/// whose PMT listed only audio, and the inter frames after the good header went into it.)
#[test]
fn video_configured_late_starts_hls_at_its_first_keyframe() {
    let server = start(&config(300, HLS_KEEP_ALL));
    let tags = fixture_tags();
    let mut timeline = Timeline::default();
    timeline.new_publisher();
    let head = head(&tags);
    let good = tags[sequence_header(&tags, TagKind::Video)].data.clone();
    let mut p = RawPublisher::connect(server.rtmp_addr(), "lateconfig");
    p.metadata();
    let broken = Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 0x01, 0x64]);
    p.media(TagKind::Video, 0, broken.clone());
    let mut start = vec![Sent::new(TagKind::Video, 0, broken)];
    // The head of the clip, its own (good) video header left out.
    let without_header: Vec<FlvTag> = tags[..head]
        .iter()
        .filter(|t| !(t.kind == TagKind::Video && t.is_sequence_header()))
        .cloned()
        .collect();
    start.extend(p.tags(&without_header, 0));
    timeline.expect(&start);
    let mut flv = Watch::flv(&server, "lateconfig");
    flv.expect_payload(&tags[head - 1].data);
    // The good header comes before the first inter frame from 0.7 s on.
    let inter = (first_at(&tags, 700)..tags.len())
        .find(|&i| tags[i].kind == TagKind::Video && !tags[i].is_video_keyframe())
        .expect("an inter frame");
    let mut sent = p.tags(&tags[head..inter], 0);
    let at = tags[inter].timestamp;
    p.media(TagKind::Video, at, good.clone());
    sent.push(Sent::new(TagKind::Video, at, good));
    sent.extend(p.tags(&tags[inter..], 0));
    p.finish();
    let expected = timeline.expect(&sent);

    let (got, ending) = flv.finish(WAIT);
    assert!(ending.closed, "{ending:?}");
    assert_never_back("FLV viewer", &got);
    assert_tail("FLV viewer", &got, &expected);
    assert_eq!(
        total(&server, |s| &s.hls_errors),
        1,
        "the short header is refused"
    );
    let (_, video_frames) = check_final_hls(&server, "lateconfig");
    let next_key = keyframes(&tags)
        .into_iter()
        .find(|&k| k > inter)
        .expect("a keyframe after the good header");
    assert_eq!(
        video_frames,
        avc_frames(&as_sent(&tags[next_key..], 0)),
        "from the first keyframe after the good header on, every frame is muxed"
    );
    assert_no_panics_or_bad_input(&server);
    server.stop();
}
