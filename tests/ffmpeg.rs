//! Real clients: ffmpeg publishes the fixture over RTMP; ffmpeg and ffprobe read HTTP-FLV back.
//! Needs ffmpeg/ffprobe (skips with a notice when missing, fails under
//! CORECAST_REQUIRE_TOOLS=1).

mod common;

use common::*;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Waits for a child with a deadline; kills it when the deadline passes.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    if wait_exit(&mut child, limit).is_some() {
        return child.wait_with_output().expect("output");
    }
    let _ = child.kill();
    panic!("child did not finish within {limit:?}");
}

fn ffmpeg_publish(server: &corecast::Server, name: &str, loops: u32) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-readrate",
            "2",
        ])
        .args(["-stream_loop", &loops.to_string(), "-i"])
        .arg(fixture_path())
        .args(["-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/live/{name}", server.rtmp_addr()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

#[test]
fn ffmpeg_publishes_and_ffmpeg_decodes_http_flv() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let server = start("");
    let publisher = ffmpeg_publish(&server, "ff", 2);
    let http = server.http_addr();
    assert!(
        wait_until(Duration::from_secs(10), || FlvViewer::open(
            http,
            "/live/ff.flv"
        )
        .status
            == 200),
        "ffmpeg's stream went live"
    );
    let url = format!("http://{http}/live/ff.flv");

    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffprobe");
    let probe = wait_output(probe, Duration::from_secs(20));
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(streams.contains("h264,video"), "{streams}");
    assert!(streams.contains("aac,audio"), "{streams}");

    // Decode three seconds of the live stream; any decoder complaint is a failure.
    let decode = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&url)
        .args(["-t", "3", "-f", "framecrc", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg reader");
    let decode = wait_output(decode, Duration::from_secs(30));
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(decode.status.success(), "ffmpeg reader failed: {errors}");
    assert!(errors.trim().is_empty(), "decoder errors: {errors}");
    let frames = String::from_utf8_lossy(&decode.stdout);
    let video = frames.lines().filter(|l| l.starts_with("0,")).count();
    let audio = frames.lines().filter(|l| l.starts_with("1,")).count();
    assert!(video >= 50, "decoded {video} video frames");
    assert!(audio >= 80, "decoded {audio} audio frames");

    let publisher = wait_output(publisher, Duration::from_secs(30));
    assert!(
        publisher.status.success(),
        "ffmpeg publisher: {}",
        String::from_utf8_lossy(&publisher.stderr)
    );
    server.stop();
}
