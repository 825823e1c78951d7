//! Enhanced RTMP end to end, with a recent ffmpeg (the `imageio-ffmpeg` wheel; skips with a
//! notice when it is missing, fails under CORECAST_REQUIRE_TOOLS=1): HEVC+AAC (with
//! B-frames), AV1+Opus and VP9+Opus published over RTMP, played back over HTTP-FLV and RTMP by
//! the same ffmpeg from the start and joining mid-stream: the exact stream list, every frame
//! decoded without an error, timestamps that never go back. HEVC also over HLS (MPEG-TS,
//! checked segment by segment and played live); AV1 and VP9 get a 501 playlist that says why.
//! HEVC+AAC and AV1+Opus over Low-Latency HLS (fMP4: the codecs named in the multivariant
//! playlist, played live); VP9 gets a 501 there.
//! Multitrack (two renditions): every track to players that read it, the default track to
//! the others, Debian's ffmpeg 5.1 among them.

mod common;

use common::raw_rtmp::RawClient;
use common::ts_check::{check_segment, TsState};
use common::*;
use corecast::flv::codec;
use rml_rtmp::rml_amf0::Amf0Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
        encode: common::HEVC_AAC,
        streams: ["video: hevc", "audio: aac"],
    },
    Case {
        name: "av1",
        encode: common::AV1_OPUS,
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

/// Checks one playback: the exact streams, no decoder error, frames of every stream,
/// timestamps that never go back.
fn check(name: &str, how: &str, expected: &[&str], played: &Played) {
    let mut streams = played.streams.clone();
    streams.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(streams, expected, "{name} {how}: stream list");
    assert!(
        played.errors.is_empty(),
        "{name} {how}: decoder errors: {:?}",
        played.errors
    );
    for stream in 0..expected.len() {
        let dts: Vec<i64> = played
            .frames
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, d)| *d)
            .collect();
        assert!(
            dts.len() >= 20,
            "{name} {how}: {} frames of stream {stream}",
            dts.len()
        );
        assert!(
            dts.windows(2).all(|w| w[1] >= w[0]),
            "{name} {how}: stream {stream} went back: {dts:?}"
        );
    }
}

/// HLS: every segment of the playlist passes the TS checker (for HEVC: AUD, then VPS, SPS
/// and PPS before the IRAP picture that starts it), and `ffmpeg` plays the live playlist
/// with the `expected` streams and no decoder error.
fn check_hls(server: &corecast::Server, ffmpeg: &Path, name: &str, expected: &[&str], path: &str) {
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
        "{name}: playlist with two segments: {segments:?}"
    );
    let mut state = TsState::default();
    for segment_name in &segments {
        let segment = http_get(http, &format!("/live/{segment_name}"));
        assert_eq!(segment.status, 200, "{segment_name}");
        let facts = check_segment(&segment.body, &mut state, 0x100, 0x101);
        assert!(
            facts.video_frames > 0 && facts.audio_frames > 0,
            "{segment_name}: {facts:?}"
        );
    }
    let played = play(ffmpeg, &format!("http://{http}{path}"), 3);
    check(name, "HLS", expected, &played);
}

/// Low-Latency HLS (fMP4): the multivariant playlist names the codecs (`CODECS` begins
/// with each of `codecs`), the media playlist lists segments, and `ffmpeg` plays it live with
/// the `expected` streams and no decoder error.
fn check_ll(
    server: &corecast::Server,
    ffmpeg: &Path,
    name: &str,
    expected: &[&str],
    codecs: [&str; 2],
) {
    let http = server.http_addr();
    let multivariant = http_get(http, &format!("/live/{name}/index.m3u8"));
    let text = String::from_utf8_lossy(&multivariant.body);
    assert_eq!(multivariant.status, 200, "{name}: {text}");
    let listed = text
        .split("CODECS=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    let listed: Vec<&str> = listed.split(',').collect();
    assert!(
        listed.len() == 2 && listed.iter().zip(codecs).all(|(l, c)| l.starts_with(c)),
        "{name}: CODECS {listed:?}, expected {codecs:?}: {text}"
    );
    let path = format!("/live/{name}/ll.m3u8");
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let playlist = http_get(http, &path);
            text = String::from_utf8_lossy(&playlist.body).into_owned();
            playlist.status == 200 && text.matches("#EXTINF").count() >= 2
        }),
        "{name}: LL-HLS playlist with two segments: {text}"
    );
    assert!(text.contains("#EXT-X-MAP:URI="), "{name}: {text}");
    let played = play(ffmpeg, &format!("http://{http}{path}"), 3);
    check(name, "LL-HLS", expected, &played);
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
            check(
                case.name,
                &how,
                &case.streams,
                &played.join().expect("player"),
            );
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
    // LL-HLS: HEVC, AV1, AAC and Opus go into fMP4; VP9 has no binding there, and the
    // playlist says so (501), naming the track.
    for (case, codecs) in CASES
        .iter()
        .zip([["hvc1.", "mp4a.40.2"], ["av01.", "opus"], ["", ""]])
    {
        if case.name == "vp9" {
            let playlist = http_get(server.http_addr(), "/live/vp9/index.m3u8");
            let body = String::from_utf8_lossy(&playlist.body);
            assert_eq!(playlist.status, 501, "vp9: {body}");
            assert!(body.contains("vp9 video"), "vp9: {body}");
            continue;
        }
        check_ll(&server, &ffmpeg, case.name, &case.streams, codecs);
    }
    // HLS: HEVC and AAC are muxed into MPEG-TS; AV1, VP9 and Opus have no TS mapping here,
    // and the playlist says so (501), naming the track.
    for case in &CASES {
        let path = format!("/live/{}.m3u8", case.name);
        if case.name == "hevc" {
            check_hls(&server, &ffmpeg, case.name, &case.streams, &path);
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

/// The first bytes of the audio and video messages an RTMP player receives for about two
/// seconds of `name`, after a `connect` with `properties`.
fn rtmp_media(
    server: &corecast::Server,
    name: &str,
    properties: HashMap<String, Amf0Value>,
) -> Vec<(u8, Vec<u8>)> {
    let mut client = RawClient::connect(server.rtmp_addr());
    let commands = client.play_commands_with(name, properties);
    client.send(&commands);
    let messages = client.read_messages(Duration::from_secs(5), |m| {
        m.iter().filter(|m| m.type_id == 9).count() >= 100
    });
    messages
        .into_iter()
        .filter(|m| m.type_id == 8 || m.type_id == 9)
        .map(|m| (m.type_id, m.data.to_vec()))
        .collect()
}

/// The multitrack header of a relayed tag (`None` for a plain tag or one that does not
/// parse).
fn multitrack_of(type_id: u8, body: &[u8]) -> Option<codec::Multitrack> {
    if type_id == 9 {
        codec::video(body)?.multitrack
    } else {
        codec::audio(body)?.multitrack
    }
}

/// The track a relayed tag belongs to: 0 for plain tags, else its multitrack header's.
fn track_of(type_id: u8, body: &[u8]) -> u8 {
    multitrack_of(type_id, body).map_or(0, |m| m.track())
}

/// Two renditions in one stream, as a recent ffmpeg publishes a second video and audio
/// stream: the default track (trackId 0) in plain tags, track 1 in Enhanced RTMP multitrack
/// tags. Players that did not say they read multitrack get the default track alone: Debian's
/// ffmpeg 5.1 (which knows no Enhanced RTMP and would otherwise show phantom streams), and the
/// recent ffmpeg over RTMP (it announces no `capsEx` Multitrack) and over plain HTTP-FLV.
/// `?tracks=all` gets every track over HTTP-FLV; over RTMP, a client announcing `capsEx`
/// Multitrack gets the multitrack tags as published. From the start and joining mid-stream.
#[test]
fn multitrack_goes_whole_to_players_that_read_it_and_as_its_default_track_to_others() {
    let Some(ffmpeg) = modern_ffmpeg() else {
        return;
    };
    if !have_tool("ffmpeg") {
        return;
    }
    let debian = PathBuf::from("ffmpeg");
    let server = start("");
    let _publisher = Killed(
        Command::new(&ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-filter_complex", "[0:v]split[a][b];[b]scale=160:120[c]"])
            .args(["-map", "[a]", "-map", "[c]", "-map", "1:a", "-map", "1:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-c:a",
                "aac",
            ])
            .args(["-t", "25", "-f", "flv"])
            .arg(format!("rtmp://{}/live/renditions", server.rtmp_addr()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ffmpeg publisher"),
    );
    wait_live(&server, "/live/renditions.flv");
    let flv = format!("http://{}/live/renditions.flv", server.http_addr());
    let rtmp = format!("rtmp://{}/live/renditions", server.rtmp_addr());
    let default: &[&str] = &["video: h264", "audio: aac"];
    let all: &[&str] = &["video: h264", "video: h264", "audio: aac", "audio: aac"];
    for (when, pause) in [("from the start", 0), ("joining mid-stream", 4)] {
        std::thread::sleep(Duration::from_secs(pause));
        let plays = [
            ("Debian ffmpeg, RTMP", &debian, rtmp.clone(), default),
            ("Debian ffmpeg, HTTP-FLV", &debian, flv.clone(), default),
            ("recent ffmpeg, RTMP", &ffmpeg, rtmp.clone(), default),
            ("recent ffmpeg, HTTP-FLV", &ffmpeg, flv.clone(), default),
            (
                "recent ffmpeg, HTTP-FLV ?tracks=all",
                &ffmpeg,
                format!("{flv}?tracks=all"),
                all,
            ),
        ]
        .map(|(how, player, url, expected)| {
            let player = player.clone();
            let played = std::thread::spawn(move || play(&player, &url, 3));
            (format!("{how}, {when}"), expected, played)
        });
        for (how, expected, played) in plays {
            check(
                "renditions",
                &how,
                expected,
                &played.join().expect("player"),
            );
        }
    }
    // RTMP, message by message: a client announcing capsEx Multitrack gets both tracks of
    // both kinds (track 1 in multitrack tags), one announcing only FourCCs gets track 0.
    let announce = |caps_ex: f64| {
        HashMap::from([
            ("capsEx".to_string(), Amf0Value::Number(caps_ex)),
            (
                "fourCcList".to_string(),
                Amf0Value::StrictArray(vec![Amf0Value::Utf8String("avc1".into())]),
            ),
        ])
    };
    let whole = rtmp_media(&server, "renditions", announce(2.0));
    let reduced = rtmp_media(&server, "renditions", announce(0.0));
    for (type_id, kind) in [(9, "video"), (8, "audio")] {
        let count = |messages: &[(u8, Vec<u8>)], track: u8| {
            messages
                .iter()
                .filter(|(t, body)| *t == type_id && track_of(*t, body) == track)
                .count()
        };
        assert!(
            count(&whole, 0) >= 20 && count(&whole, 1) >= 20,
            "{kind}: both tracks for the multitrack client: {} and {}",
            count(&whole, 0),
            count(&whole, 1)
        );
        assert!(count(&reduced, 0) >= 20, "{kind}: the default track");
        assert_eq!(count(&reduced, 1), 0, "{kind}: no track 1 for the others");
    }
    assert!(
        reduced
            .iter()
            .all(|(t, body)| multitrack_of(*t, body).is_none()),
        "no multitrack tag for a client that did not announce it"
    );
    // HLS carries the default track.
    check_hls(
        &server,
        &debian,
        "renditions",
        default,
        "/live/renditions.m3u8",
    );
    server.stop();
}
