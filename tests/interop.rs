//! What real players see: the exact list of streams ffprobe finds in RTMP and HTTP-FLV
//! playback, against the published file's, for a player joining at the start and one joining
//! mid-stream; a remux of every stream; and, byte for byte, the script data a player gets.
//! Needs ffmpeg/ffprobe for the first (skips with a notice when missing, fails under
//! CORECAST_REQUIRE_TOOLS=1).

mod common;

use common::raw_rtmp::RawClient;
use common::*;
use rml_rtmp::messages::MessagePayload;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The streams ffprobe lists for `input`, one line each: the properties that tell a real
/// track from a phantom one.
fn streams(input: &str) -> Vec<String> {
    let fields =
        "stream=index,codec_type,codec_name,profile,width,height,pix_fmt,sample_rate,channels";
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-show_entries",
            fields,
        ])
        .args(["-of", "compact=p=0"])
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Seconds the API says `live/name` has been published.
fn publishing_seconds(server: &corecast::Server, name: &str) -> f64 {
    let body = http_get(server.http_addr(), &format!("/api/v1/streams/live/{name}")).body;
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    view["publishing_seconds"].as_f64().unwrap_or(0.0)
}

/// ffprobe of RTMP and HTTP-FLV playback, side by side.
fn probe_both(server: &corecast::Server, name: &str) -> (Vec<String>, Vec<String>) {
    let rtmp = format!("rtmp://{}/live/{name}", server.rtmp_addr());
    let flv = format!("http://{}/live/{name}.flv", server.http_addr());
    let rtmp = std::thread::spawn(move || streams(&rtmp));
    let flv = streams(&flv);
    (rtmp.join().expect("rtmp probe"), flv)
}

#[test]
fn playback_lists_exactly_the_published_streams() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let file = fixture_path();
    let published = streams(&file.to_string_lossy());
    assert_eq!(
        published.len(),
        2,
        "the fixture has video and audio: {published:?}"
    );
    let server = start("");
    let addr = server.rtmp_addr();
    let _ffmpeg = Killed(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-stream_loop", "4", "-i"])
            .arg(&file)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{addr}/live/probe"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ffmpeg"),
    );
    wait_live(&server, "/live/probe.flv");
    let (rtmp, flv) = probe_both(&server, "probe");
    assert_eq!(rtmp, published, "RTMP playback from the start");
    assert_eq!(flv, published, "HTTP-FLV playback from the start");

    assert!(
        wait_until(Duration::from_secs(15), || publishing_seconds(
            &server, "probe"
        ) >= 8.0),
        "the stream ran on"
    );
    let (rtmp, flv) = probe_both(&server, "probe");
    assert_eq!(rtmp, published, "RTMP playback joined mid-stream");
    assert_eq!(flv, published, "HTTP-FLV playback joined mid-stream");

    // A recorder that takes every stream: the remux works and keeps exactly those.
    let out = std::env::temp_dir().join(format!("corecast-remux-{}.mkv", std::process::id()));
    let remux = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-i",
        ])
        .arg(format!("rtmp://{addr}/live/probe"))
        .args(["-map", "0", "-c", "copy", "-t", "2", "-y"])
        .arg(&out)
        .output()
        .expect("run ffmpeg remux");
    assert!(
        remux.status.success(),
        "remux of every stream: {}",
        String::from_utf8_lossy(&remux.stderr)
    );
    let kinds = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|l| {
                l.split('|')
                    .filter(|f| f.starts_with("codec_type=") || f.starts_with("codec_name="))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    };
    assert_eq!(kinds(&streams(&out.to_string_lossy())), kinds(&published));
    let _ = std::fs::remove_file(out);
    server.stop();
}

/// The name of an AMF0 data message (its first value, a string).
fn data_name(message: &MessagePayload) -> String {
    let body = &message.data;
    let len = body
        .get(1..3)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    String::from_utf8_lossy(body.get(3..3 + len).unwrap_or_default()).into_owned()
}

#[test]
fn script_data_reaches_players_only_at_timestamp_zero_even_after_a_republish() {
    let server = start("");
    let first = publish_in_background(&server, "meta", 1, 2.0);
    wait_live(&server, "/live/meta.flv");
    let mut player = RawClient::connect(server.rtmp_addr());
    let play = player.play_commands("meta");
    player.send(&play);
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/meta.flv");
    first.join().expect("first publish");
    // The encoder comes back within the republish grace: its onMetaData arrives mid-stream.
    let second = publish_in_background(&server, "meta", 1, 2.0);
    let messages = player.read_messages(Duration::from_secs(10), |seen| {
        seen.iter()
            .filter(|m| m.type_id == 18 && data_name(m) == "onMetaData")
            .count()
            >= 2
    });
    second.join().expect("second publish");
    let data: Vec<(String, u32)> = messages
        .iter()
        .filter(|m| m.type_id == 18)
        .map(|m| (data_name(m), m.timestamp.value))
        .collect();
    assert_eq!(
        data,
        [
            ("|RtmpSampleAccess".to_string(), 0),
            ("onMetaData".to_string(), 0),
            ("onMetaData".to_string(), 0)
        ],
        "every data message a player got"
    );
    // The republished media went on in time, after the first publish's.
    let last_video = messages
        .iter()
        .filter(|m| m.type_id == 9)
        .map(|m| m.timestamp.value)
        .max()
        .unwrap_or(0);
    assert!(last_video > 3000, "media timestamps went on: {last_video}");
    let tags = viewer.read_all(Duration::from_secs(2));
    let scripts: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == corecast::flv::reader::TagKind::Script)
        .map(|t| t.timestamp)
        .collect();
    assert!(scripts.len() >= 2, "HTTP-FLV script tags: {scripts:?}");
    assert!(
        scripts.iter().all(|&ts| ts == 0),
        "HTTP-FLV script tags: {scripts:?}"
    );
    server.stop();
}
