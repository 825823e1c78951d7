//! Enhanced RTMP end to end, with a recent ffmpeg (the `imageio-ffmpeg` wheel; skips with a
//! notice when it is missing, fails under CORECAST_REQUIRE_TOOLS=1): HEVC+AAC (with
//! B-frames), AV1+Opus and VP9+Opus published over RTMP, played back over HTTP-FLV and RTMP by
//! the same ffmpeg from the start and joining mid-stream: the exact stream list, every frame
//! decoded without an error, timestamps that never go back. HEVC also over HLS (MPEG-TS,
//! checked segment by segment and played live); AV1 and VP9 get a 501 playlist that says why.

mod common;

use common::ts_check::{check_segment, TsState};
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One publish: a name, the encoder arguments, and the streams a player must find.
struct Case {
    name: &'static str,
    encode: &'static [&'static str],
    streams: [&'static str; 2],
}

const CASES: [Case; 3] = [
    Case {
        name: "hevc",
        encode: &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:keyint=25:bframes=3",
            "-c:a",
            "aac",
        ],
        streams: ["video: hevc", "audio: aac"],
    },
    Case {
        name: "av1",
        encode: &[
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-g",
            "25",
            "-svtav1-params",
            "lp=1",
            "-c:a",
            "libopus",
        ],
        streams: ["video: av1", "audio: opus"],
    },
    Case {
        name: "vp9",
        encode: &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "25",
            "-c:a",
            "libopus",
        ],
        streams: ["video: vp9", "audio: opus"],
    },
];

/// What a player made of a stream: the input's streams (`"video: hevc"`), the error lines,
/// and the decoded frames' timestamps per stream.
struct Played {
    streams: Vec<String>,
    errors: Vec<String>,
    frames: Vec<(usize, i64)>,
}

/// Plays `url` for `seconds`, decoding every frame of every stream (framecrc).
fn play(ffmpeg: &Path, url: &str, seconds: u32) -> Played {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "level+info"])
        .args(["-rw_timeout", "15000000", "-i", url])
        .args([
            "-t",
            &seconds.to_string(),
            "-map",
            "0",
            "-f",
            "framecrc",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    let mut streams = Vec::new();
    let mut in_input = false;
    for line in log.lines() {
        let text = line.split_once("] ").map_or(line, |(_, t)| t).trim();
        if text.starts_with("Input #0") {
            in_input = true;
        } else if text.starts_with("Output #0") || text.starts_with("Stream mapping") {
            in_input = false;
        } else if in_input && text.starts_with("Stream #0:") {
            // "Stream #0:0: Video: hevc (Main), ..." -> "video: hevc"
            let kind_codec = text.split(": ").skip(1).take(2).collect::<Vec<_>>();
            if let [kind, codec] = kind_codec[..] {
                let codec = codec.split([' ', ',']).next().unwrap_or(codec);
                streams.push(format!("{}: {codec}", kind.to_lowercase()));
            }
        }
    }
    let errors = log
        .lines()
        .filter(|l| l.contains("[error]") || l.contains("[fatal]"))
        .map(str::to_string)
        .collect();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split(',').map(str::trim);
            let stream = fields.next()?.parse().ok()?;
            let dts = fields.next()?.parse().ok()?;
            Some((stream, dts))
        })
        .collect();
    assert!(out.status.success(), "ffmpeg {url}: {log}");
    Played {
        streams,
        errors,
        frames,
    }
}

/// Checks one playback: the exact streams, no decoder error, frames of both streams,
/// timestamps that never go back.
fn check(case: &Case, how: &str, played: &Played) {
    let mut streams = played.streams.clone();
    streams.sort();
    let mut expected: Vec<String> = case.streams.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(streams, expected, "{} {how}: stream list", case.name);
    assert!(
        played.errors.is_empty(),
        "{} {how}: decoder errors: {:?}",
        case.name,
        played.errors
    );
    for stream in 0..2 {
        let dts: Vec<i64> = played
            .frames
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, d)| *d)
            .collect();
        assert!(
            dts.len() >= 20,
            "{} {how}: {} frames of stream {stream}",
            case.name,
            dts.len()
        );
        assert!(
            dts.windows(2).all(|w| w[1] >= w[0]),
            "{} {how}: stream {stream} went back: {dts:?}",
            case.name
        );
    }
}

/// HEVC over HLS: every segment of the playlist passes the TS checker (HEVC rules: AUD,
/// then VPS, SPS and PPS before the IRAP picture that starts it), and the same ffmpeg plays
/// the live playlist with the exact streams and no decoder error.
fn check_hevc_hls(server: &corecast::Server, ffmpeg: &Path, case: &Case, path: &str) {
    let http = server.http_addr();
    let mut segments = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let playlist = http_get(http, path);
            segments = String::from_utf8_lossy(&playlist.body)
                .lines()
                .filter(|l| l.ends_with(".ts"))
                .map(str::to_string)
                .collect();
            playlist.status == 200 && segments.len() >= 2
        }),
        "HEVC playlist with two segments: {segments:?}"
    );
    let mut state = TsState::default();
    for name in &segments {
        let segment = http_get(http, &format!("/live/{name}"));
        assert_eq!(segment.status, 200, "{name}");
        let facts = check_segment(&segment.body, &mut state, 0x100, 0x101);
        assert!(
            facts.video_frames > 0 && facts.audio_frames > 0,
            "{name}: {facts:?}"
        );
    }
    let played = play(ffmpeg, &format!("http://{http}{path}"), 3);
    check(case, "HLS", &played);
}

#[test]
fn hevc_av1_and_vp9_relay_to_flv_and_rtmp_players() {
    let Some(ffmpeg) = modern_ffmpeg() else {
        return;
    };
    let server = start("");
    let publishers: Vec<Killed> = CASES
        .iter()
        .map(|case| {
            Killed(
                Command::new(&ffmpeg)
                    .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
                    .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
                    .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
                    .args(case.encode)
                    // Announces Enhanced RTMP in `connect`: corecast answers with its support.
                    .args(["-rtmp_enhanced_codecs", "hvc1,av01,vp09,Opus"])
                    .args(["-t", "25", "-f", "flv"])
                    .arg(format!("rtmp://{}/live/{}", server.rtmp_addr(), case.name))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn ffmpeg publisher"),
            )
        })
        .collect();
    for case in &CASES {
        wait_live(&server, &format!("/live/{}.flv", case.name));
    }
    for (when, pause) in [("from the start", 0), ("joining mid-stream", 4)] {
        // Joining mid-stream is the thing under test: the streams run on meanwhile.
        std::thread::sleep(Duration::from_secs(pause));
        let plays: Vec<_> = CASES
            .iter()
            .flat_map(|case| {
                let flv = format!("http://{}/live/{}.flv", server.http_addr(), case.name);
                let rtmp = format!("rtmp://{}/live/{}", server.rtmp_addr(), case.name);
                [("HTTP-FLV", flv), ("RTMP", rtmp)].map(|(protocol, url)| {
                    let ffmpeg = ffmpeg.clone();
                    let how = format!("{protocol} {when}");
                    (
                        case,
                        how,
                        std::thread::spawn(move || play(&ffmpeg, &url, 3)),
                    )
                })
            })
            .collect();
        for (case, how, played) in plays {
            check(case, &how, &played.join().expect("player"));
        }
    }
    let streams = http_get(server.http_addr(), "/api/v1/streams").body;
    let streams: serde_json::Value = serde_json::from_slice(&streams).expect("API JSON");
    for case in &CASES {
        let view = streams["streams"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|s| s["name"] == format!("live/{}", case.name))
            })
            .unwrap_or_else(|| panic!("{} in the API: {streams}", case.name));
        let [video, audio] = case.streams.map(|s| s.split(": ").nth(1).unwrap_or(s));
        assert_eq!(view["video_codec"], video, "{}", case.name);
        assert_eq!(view["audio_codec"], audio, "{}", case.name);
    }
    // HLS: HEVC and AAC are muxed into MPEG-TS; AV1, VP9 and Opus have no TS mapping here,
    // and the playlist says so (501), naming the track.
    for case in &CASES {
        let path = format!("/live/{}.m3u8", case.name);
        if case.name == "hevc" {
            check_hevc_hls(&server, &ffmpeg, case, &path);
            continue;
        }
        let playlist = http_get(server.http_addr(), &path);
        let body = String::from_utf8_lossy(&playlist.body);
        assert_eq!(playlist.status, 501, "{}: {body}", case.name);
        let video = case.streams[0].split(": ").nth(1).unwrap_or_default();
        assert!(
            body.contains(&format!("{video} video")),
            "{}: {body}",
            case.name
        );
        assert!(body.contains("HTTP-FLV or RTMP"), "{}: {body}", case.name);
    }
    drop(publishers);
    server.stop();
}
