//! Low-Latency HLS in a real player: hls.js in a real browser. A test binary of its own, so
//! that it runs alone: a player at 0.75 s behind live (`PART-HOLD-BACK`) stalls when the
//! machine is too busy to hand it the next part in time, as any player would, and the other
//! LL-HLS tests load both cores.

mod common;

use common::browser::{have_browser, run_script};
use common::*;
use corecast_testkit::varnish::{self, VARNISHD};
use std::time::Duration;

/// 1 s segments (the encoder's GOP), 250 ms parts.
const CONFIG: &str = "[hls]\ntarget_duration_ms = 1000\npart_target_ms = 250\n";

/// How long each player plays (s).
const SECONDS: u32 = 20;

/// hls.js with `lowLatencyMode` in Debian's chromium, driven through the DevTools protocol
/// (`tests/console/llhls.mjs`), plays the live stream of an encoder for 20 s: no hls.js
/// error, the video advances all along, and it stays near live. The distance to live is
/// measured from the playlist's `EXT-X-PROGRAM-DATE-TIME` (wall clock minus the date of the
/// frame shown). Two encoders, one after the other (a player stalls when the machine is too
/// busy): one set for low latency (ffmpeg, x264 `zerolatency`: no B-frames), and one with
/// two B-frames, whose pictures are shown 80 ms after their decode time (a segment's audio
/// must then run to the next keyframe's presentation time, or hls.js takes the segment as
/// short and loads it again: see the fMP4 writer's notes on segment ends). Then the first
/// encoder again, played through Varnish with the shipped `deploy/varnish/hls-cache.vcl`.
#[test]
fn hls_js_plays_the_low_latency_stream_in_chromium() {
    if !have_browser(&["puppeteer-core", "hls.js"]) {
        return;
    }
    let server = start(CONFIG);
    // The third plays through Varnish with the shipped deploy/varnish/hls-cache.vcl: what
    // a player sees through the cache recommended for LL-HLS.
    let varnishd = std::path::Path::new(VARNISHD);
    let through_varnish = common::peers::have("varnish", varnishd.exists());
    let dir = common::peers::TempDir::new("llhls-varnish");
    let cache = through_varnish.then(|| varnish::hls_cache(varnishd, server.http_addr(), &dir.0));
    let mut runs = vec![
        ("ll", 0, server.http_addr()),
        ("bframes", 2, server.http_addr()),
    ];
    runs.extend(cache.as_ref().map(|cache| ("cached", 0, cache.addr)));
    for (name, b_frames, at) in runs {
        let _publishing = ffmpeg_publish_with_b_frames(server.rtmp_addr(), name, b_frames);
        wait_live(&server, &format!("/live/{name}.flv"));
        // A player joins a stream that runs: the window has a few segments.
        std::thread::sleep(Duration::from_secs(4));
        let median = play(at, name);
        eprintln!("{name} ({b_frames} B-frames, from {at}): median {median:.2} s behind live");
    }
    drop(cache);
    server.stop();
}

/// Plays `live/{name}` in hls.js for [`SECONDS`], asserts what it saw, and returns the
/// median distance to live (s).
fn play(addr: std::net::SocketAddr, name: &str) -> f64 {
    let url = format!("http://{addr}/live/{name}/index.m3u8");
    let (report, said) = run_script(
        "llhls.mjs",
        &[url, SECONDS.to_string()],
        Duration::from_secs(90),
    );
    eprintln!("{name}: hls.js report: {report}");
    assert!(report.get("error").is_none(), "{name}: {report}\n{said}");
    assert_eq!(report["supported"], true, "{report}");
    // No hls.js error at all, fatal or not (a stall, a segment loaded again, a hole
    // skipped).
    let errors = report["hls_errors"].as_array().expect("errors recorded");
    assert!(errors.is_empty(), "{name}: hls.js errors: {errors:?}");
    assert!(
        report["page_errors"]
            .as_array()
            .is_some_and(|e| e.is_empty()),
        "{report}"
    );
    let played = report["played_s"].as_f64().unwrap();
    assert!(
        played > f64::from(SECONDS) - 2.0,
        "{name}: played {played} s of {SECONDS}"
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
        "{name}: median distance to live {median:.2} s: {behind:?}"
    );
    median
}
