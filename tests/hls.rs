//! HLS end to end: segments checked by the project's TS checker and by ffprobe, live
//! playback with ffmpeg, republish discontinuities, the window bound, and HTTP semantics.

mod common;

use common::ts_check::{check_segment, TsState};
use common::*;
use corecast::flv::reader::TagKind;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;

/// A response: status, head text, body.
/// Segment names and durations (ms) listed in a playlist.
fn listed(playlist: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut duration = None;
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = d.trim_end_matches(',').parse().unwrap();
            duration = Some((secs * 1000.0).round() as u64);
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push((line.to_string(), duration.take().unwrap()));
        }
    }
    out
}

fn tag_value(playlist: &str, tag: &str) -> Option<u64> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(tag))
        .map(|v| v.trim().parse().unwrap())
}

/// Collects every segment the playlist lists until `until` holds for the playlist (polling);
/// panics if it does not within `limit`.
fn collect_segments(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    mut until: impl FnMut(&str) -> bool,
) -> (BTreeMap<u64, (Vec<u8>, u64)>, String) {
    let mut segments = BTreeMap::new();
    let mut playlist = String::new();
    let done = wait_until(limit, || {
        let r = http_get(addr, path);
        if r.status == 200 {
            playlist = String::from_utf8(r.body).unwrap();
            let first = tag_value(&playlist, "#EXT-X-MEDIA-SEQUENCE:").unwrap();
            for (i, (name, duration)) in listed(&playlist).into_iter().enumerate() {
                let seq = first + i as u64;
                if let std::collections::btree_map::Entry::Vacant(e) = segments.entry(seq) {
                    let seg = http_get(addr, &format!("/live/{name}"));
                    assert_eq!(seg.status, 200, "segment {name} listed but not served");
                    e.insert((seg.body, duration));
                }
            }
            return until(&playlist);
        }
        false
    });
    assert!(done, "{path}: not as awaited within {limit:?}:\n{playlist}");
    (segments, playlist)
}

#[test]
fn segments_pass_the_ts_checker_and_ffprobe_with_target_durations() {
    let server = start("[hls]\ntarget_duration_ms = 1000\nwindow_segments = 30\n");
    let publishing = publish_in_background(&server, "hls", 2, 4.0);
    let (segments, playlist) = collect_segments(
        server.http_addr(),
        "/live/hls.m3u8",
        Duration::from_secs(20),
        |p| p.contains("#EXT-X-ENDLIST"),
    );
    publishing.join().unwrap();
    assert!(
        playlist.contains("#EXT-X-ENDLIST"),
        "the ended stream's playlist ends:\n{playlist}"
    );
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"));
    assert!(segments.len() >= 10, "{} segments", segments.len());
    let target = tag_value(&playlist, "#EXT-X-TARGETDURATION:").unwrap();
    let mut state = TsState::default();
    let last = *segments.keys().last().unwrap();
    for (seq, (bytes, duration)) in &segments {
        let facts = check_segment(bytes, &mut state, VIDEO_PID, AUDIO_PID);
        assert!(
            facts.video_frames > 0 && facts.audio_frames > 0,
            "segment {seq}: {facts:?}"
        );
        assert!(
            *duration <= target * 1000,
            "segment {seq} longer than TARGETDURATION"
        );
        if *seq != last {
            // The fixture's GOP is 1 s: a segment closes at the first keyframe after 0.9 s
            // (90% of the target, `hls::segmenter::long_enough`).
            assert!(
                (900..=2000).contains(duration),
                "segment {seq}: {duration} ms"
            );
        }
    }
    if have_tool("ffprobe") {
        let dir = std::env::temp_dir().join(format!("corecast-hls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (seq, (bytes, _)) in &segments {
            let file = dir.join(format!("{seq}.ts"));
            std::fs::write(&file, bytes).unwrap();
            let out = Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name",
                    "-of",
                    "csv=p=0",
                ])
                .arg(&file)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "ffprobe segment {seq}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("h264") && text.contains("aac"),
                "segment {seq}: {text}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    server.stop();
}

#[test]
fn ffmpeg_reads_the_live_playlist_without_errors() {
    if !have_tool("ffmpeg") {
        return;
    }
    let server = start("[hls]\ntarget_duration_ms = 1000\n");
    let publishing = publish_in_background(&server, "live", 3, 1.0);
    let addr = server.http_addr();
    assert!(wait_until(Duration::from_secs(10), || {
        let r = http_get(addr, "/live/live.m3u8");
        r.status == 200 && listed(&String::from_utf8_lossy(&r.body)).len() >= 3
    }));
    let (video, audio) = ffmpeg_play(&format!("http://{addr}/live/live.m3u8"), 5);
    assert!(
        video >= 100 && audio >= 150,
        "decoded {video} video and {audio} audio frames"
    );
    publishing.join().unwrap();
    server.stop();
}

#[test]
fn republish_marks_a_discontinuity_and_sequence_keeps_increasing() {
    let server = start("[hls]\ntarget_duration_ms = 1000\nwindow_segments = 3\n[stream]\nrepublish_grace_ms = 5000\n");
    let addr = server.http_addr();
    let tags = fixture_tags();
    let mut first = publisher(&server, "again");
    first
        .replay(&tags, corecast_testkit::client::Pace::AsFastAsPossible, 0)
        .unwrap();
    first.finish().unwrap();
    // The server has taken everything the first publisher sent once it saw it leave.
    assert!(wait_until(WAIT, || total(&server, |s| &s.publishers) == 0));
    let before = String::from_utf8(http_get(addr, "/live/again.m3u8").body).unwrap();
    let seq_before =
        tag_value(&before, "#EXT-X-MEDIA-SEQUENCE:").unwrap() + listed(&before).len() as u64;
    let mut second = publisher(&server, "again");
    second
        .replay(
            &tags[..tags.len() / 2],
            corecast_testkit::client::Pace::AsFastAsPossible,
            0,
        )
        .unwrap();
    let playlist = || String::from_utf8(http_get(addr, "/live/again.m3u8").body).unwrap();
    let made = |p: &str| tag_value(p, "#EXT-X-MEDIA-SEQUENCE:").unwrap() + listed(p).len() as u64;
    // The second publisher's segments appear.
    let mut after = String::new();
    let appeared = wait_until(WAIT, || {
        after = playlist();
        after.contains("#EXT-X-DISCONTINUITY\n") && made(&after) > seq_before
    });
    assert!(appeared, "{after}");
    assert!(after.contains("#EXT-X-DISCONTINUITY\n"), "{after}");
    let seq_after = made(&after);
    assert!(
        seq_after > seq_before,
        "media sequence keeps increasing: {seq_before} -> {seq_after}"
    );
    // Publish on until the discontinuity slides out of the 3-segment window.
    second
        .replay(
            &tags,
            corecast_testkit::client::Pace::AsFastAsPossible,
            10_000,
        )
        .unwrap();
    let mut later = String::new();
    let slid = wait_until(WAIT, || {
        later = playlist();
        !later.contains("#EXT-X-DISCONTINUITY\n")
    });
    assert!(slid, "{later}");
    assert_eq!(
        tag_value(&later, "#EXT-X-DISCONTINUITY-SEQUENCE:"),
        Some(1),
        "{later}"
    );
    second.finish().unwrap();
    server.stop();
}

#[test]
fn window_bounds_memory_and_http_semantics_hold() {
    let server = start("[hls]\ntarget_duration_ms = 1000\nwindow_segments = 4\n");
    let addr = server.http_addr();
    let tags = fixture_tags();
    let mut p = publisher(&server, "win");
    let (mut offset, mut last_offset) = (0, 0);
    for round in 0..6 {
        if round == 1 {
            // HLS is made while requested: the first request starts it from the ring (which
            // keeps a target duration for it) and gets a segment at once.
            let first = http_get(addr, "/live/win.m3u8");
            assert_eq!(first.status, 200);
            let text = String::from_utf8(first.body).unwrap();
            assert!(!listed(&text).is_empty(), "a first segment:\n{text}");
        }
        last_offset = offset;
        offset = p
            .replay(
                &tags,
                corecast_testkit::client::Pace::AsFastAsPossible,
                offset,
            )
            .unwrap()
            + 40;
    }
    // The server has taken all of it once a viewer gets the last audio frame sent.
    let last = tags
        .iter()
        .rev()
        .find(|t| t.kind == TagKind::Audio && is_media(t))
        .expect("fixture: audio");
    let mut viewer = FlvViewer::open(addr, "/live/win.flv");
    assert_eq!(viewer.status, 200);
    assert!(
        std::iter::from_fn(|| viewer.next_tag())
            .any(|t| t.data == last.data && t.timestamp == last.timestamp + last_offset),
        "the stream's last audio frame arrived"
    );
    drop(viewer);
    let playlist = http_get(addr, "/live/win.m3u8");
    assert!(playlist
        .head
        .contains("Content-Type: application/vnd.apple.mpegurl"));
    // An open application: no credentials in the playlist, segments cacheable by anyone.
    assert!(playlist
        .head
        .contains("\r\nCache-Control: public, max-age=1\r\n"));
    let text = String::from_utf8(playlist.body).unwrap();
    let names = listed(&text);
    assert_eq!(names.len(), 4, "only the window is listed:\n{text}");
    let first = tag_value(&text, "#EXT-X-MEDIA-SEQUENCE:").unwrap();
    assert!(first >= 20, "many segments were made: first listed {first}");
    // Segments that slid out are gone (their memory with them).
    let expired = names[0]
        .0
        .replace(&format!("-{first}.ts"), &format!("-{}.ts", first - 1));
    assert_eq!(http_get(addr, &format!("/live/{expired}")).status, 404);
    let name = &names[1].0;
    let full = http_get(addr, &format!("/live/{name}"));
    assert_eq!(full.status, 200);
    assert!(full.head.contains("Content-Type: video/mp2t"));
    assert!(full
        .head
        .contains("\r\nCache-Control: public, max-age=86400, immutable\r\n"));
    assert!(full.head.contains("Access-Control-Allow-Origin: *"));
    // HEAD: same head, no body.
    let head = http_request(
        addr,
        &format!("HEAD /live/{name} HTTP/1.1\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(head.status, 200);
    assert!(head
        .head
        .contains(&format!("Content-Length: {}", full.body.len())));
    // A single range.
    let part = http_request(
        addr,
        &format!("GET /live/{name} HTTP/1.1\r\nRange: bytes=188-375\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(part.status, 206);
    assert!(part
        .head
        .contains(&format!("Content-Range: bytes 188-375/{}", full.body.len())));
    assert_eq!(part.body, full.body[188..376]);
    let beyond = http_request(
        addr,
        &format!(
            "GET /live/{name} HTTP/1.1\r\nRange: bytes={}-\r\nConnection: close\r\n\r\n",
            full.body.len()
        ),
    );
    assert_eq!(beyond.status, 416);
    // Keep-alive: playlist then segment on one connection.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /live/win.m3u8 HTTP/1.1\r\n\r\nGET /live/{name} HTTP/1.1\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    let second = read_response(&mut s, false);
    assert_eq!((second.status, second.body.len()), (200, full.body.len()));
    assert_eq!(http_get(addr, "/live/nothing.m3u8").status, 404);
    p.finish().unwrap();
    server.stop();
}

/// HLS is made only while it is requested: nothing for a stream nobody asks for, a first
/// segment at once for the first request, and the segments freed (a new incarnation for the
/// next request) once no request came for `hls.idle_timeout_ms`.
#[test]
fn segments_are_made_only_while_requested() {
    let server = start("[hls]\ntarget_duration_ms = 1000\nidle_timeout_ms = 3000\n");
    let addr = server.http_addr();
    let publishing = publish_in_background(&server, "demand", 2, 1.0);
    wait_live(&server, "/live/demand.flv");
    let hls_bytes = || total(&server, |s| &s.hls_bytes);
    let units = || total(&server, |s| &s.gop_cache_bytes);
    // Reports refresh the gauges once a second: the GOP cache shows, HLS does not.
    assert!(wait_until(Duration::from_secs(5), || units() > 0));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(hls_bytes(), 0, "no request, no segment");
    let first = http_get(addr, "/live/demand.m3u8");
    assert_eq!(first.status, 200);
    let text = String::from_utf8(first.body).unwrap();
    let names = listed(&text);
    assert!(!names.is_empty(), "a first segment at once:\n{text}");
    let segment = format!("/live/{}", names[0].0);
    assert_eq!(http_get(addr, &segment).status, 200);
    assert!(wait_until(Duration::from_secs(3), || hls_bytes() > 0));
    // No request for 3 s: retired at the next keyframe, its segments freed everywhere.
    assert!(
        wait_until(Duration::from_secs(8), || hls_bytes() == 0),
        "segments freed"
    );
    assert_eq!(http_get(addr, &segment).status, 404);
    let again = String::from_utf8(http_get(addr, "/live/demand.m3u8").body).unwrap();
    let renamed = listed(&again);
    assert!(!renamed.is_empty(), "started again:\n{again}");
    let incarnation = |name: &str| name.split('-').nth(1).map(str::to_string);
    assert_ne!(
        incarnation(&renamed[0].0),
        incarnation(&names[0].0),
        "a new incarnation: no cached segment of the old one is served for it"
    );
    publishing.join().unwrap();
    server.stop();
}
