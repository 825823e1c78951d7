//! Low-Latency HLS in a real player: hls.js in a real browser. A test binary of its own, so
//! that it runs alone: a player at 0.75 s behind live (`PART-HOLD-BACK`) stalls when the
//! machine is too busy to hand it the next part in time, as any player would, and the other
//! LL-HLS tests load both cores.
//!
//! Known: in about half the runs hls.js stalls once, within the first second of playback,
//! at the end of the first segment it loaded (the first of the window, which its own first
//! request started on the owner from the ring), before it fetches the next part; it then
//! plays on without another error. The test allows that one start-up stall and nothing
//! else; its cause is still open.

mod common;

use common::browser::{have_browser, run_script};
use common::*;
use std::time::Duration;

/// 1 s segments (the encoder's GOP), 250 ms parts.
const CONFIG: &str = "[hls]\ntarget_duration_ms = 1000\npart_target_ms = 250\n";

/// hls.js with `lowLatencyMode` in Debian's chromium, driven through the DevTools protocol
/// (`tests/console/llhls.mjs`), plays the live stream of an encoder set for low latency
/// (ffmpeg, x264 `zerolatency`: no B-frames) for 20 s: no hls.js error, the video advances
/// all along, and it stays near live. The distance to live is measured from the playlist's
/// `EXT-X-PROGRAM-DATE-TIME` (wall clock minus the date of the frame shown).
///
/// With B-frames (the fixture clip: composition delay 80 ms), hls.js reports a non-fatal
/// `bufferAppendNoProgress` and a short stall on the first segment it loads: its audio is cut
/// at the video keyframe's decode time, its video shown from 80 ms later, and hls.js takes a
/// segment whose tracks cover its span 0.05 s less than whole as not buffered and loads it
/// again. See docs/ARCHITECTURE.md (Low-Latency HLS, known limits).
#[test]
fn hls_js_plays_the_low_latency_stream_in_chromium() {
    if !have_browser(&["puppeteer-core", "hls.js"]) {
        return;
    }
    const SECONDS: u32 = 20;
    let server = start(CONFIG);
    // An encoder set for low latency: no B-frames (see below), a 1 s GOP.
    let _publishing = ffmpeg_publish(server.rtmp_addr(), "ll");
    let addr = server.http_addr();
    wait_live(&server, "/live/ll.flv");
    // A player joins a stream that runs: the window has a few segments.
    std::thread::sleep(Duration::from_secs(4));
    let url = format!("http://{addr}/live/ll/index.m3u8");
    let (report, said) = run_script(
        "llhls.mjs",
        &[url, SECONDS.to_string()],
        Duration::from_secs(90),
    );
    eprintln!("hls.js report: {report}");
    assert!(report.get("error").is_none(), "{report}\n{said}");
    assert_eq!(report["supported"], true, "{report}");
    // No error, but for one: a stall in the first second of playback (`bufferStalledError`,
    // not fatal), which hls.js reports in some runs when it starts at the first segment of
    // a window that its own request has just started (see the module's notes).
    let errors = report["hls_errors"].as_array().expect("errors recorded");
    let start_stall = |e: &serde_json::Value| {
        e["details"] == "bufferStalledError"
            && e["fatal"] == false
            && e["at"].as_f64().is_some_and(|at| at < 1.5)
    };
    let others: Vec<_> = errors.iter().filter(|e| !start_stall(e)).collect();
    assert!(others.is_empty(), "hls.js errors: {others:?}");
    assert!(errors.len() <= 1, "hls.js errors: {errors:?}");
    assert!(
        report["page_errors"]
            .as_array()
            .is_some_and(|e| e.is_empty()),
        "{report}"
    );
    let played = report["played_s"].as_f64().unwrap();
    assert!(
        played > f64::from(SECONDS) - 2.0,
        "played {played} s of {SECONDS}"
    );
    let samples = report["samples"].as_array().unwrap();
    assert!(samples.iter().all(|s| s["low_latency"] == true), "{report}");
    let mut behind: Vec<f64> = samples
        .iter()
        .skip(5)
        .filter_map(|s| s["behind_live_s"].as_f64())
        .collect();
    assert!(behind.len() >= 10, "{report}");
    behind.sort_by(f64::total_cmp);
    let median = behind[behind.len() / 2];
    // PART-HOLD-BACK is 0.75 s; 1 s segments of a 1 s GOP.
    assert!(
        (0.0..2.5).contains(&median),
        "median distance to live {median:.2} s: {behind:?}"
    );
    server.stop();
}
