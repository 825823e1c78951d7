//! The console (`/` on the admin listener) in a real browser: Debian's chromium, headless,
//! driven through the DevTools protocol by `tests/console/console.mjs` (puppeteer-core,
//! installed by `npm ci` in `tests/console`, which `.ci/run` does). A stream published by
//! ffmpeg is listed, its viewer count follows viewers in and out, and the page's player
//! plays it. The screenshot is kept at `target/test-artifacts/console.png`.
//!
//! Needs ffmpeg, node, chromium and the npm packages: skips with a notice when one is
//! missing, fails instead under CORECAST_REQUIRE_TOOLS=1.

mod common;

use base64::Engine as _;
use common::{have_tool, http_request, serve_with, wait_exit, wait_until, Response, WAIT};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "c0nsole-t0ken";

/// How long the browser script may take (it needs 5 to 10 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// The npm project that holds the browser script and its packages.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Whether `npm ci` has installed the script's packages; if not, says how, and fails under
/// CORECAST_REQUIRE_TOOLS=1.
fn have_packages() -> bool {
    if script_dir().join("node_modules/puppeteer-core").is_dir() {
        return true;
    }
    let how = "run `npm ci --prefix tests/console` (.ci/run does)";
    if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("puppeteer-core is required (CORECAST_REQUIRE_TOOLS=1) but not installed: {how}");
    }
    eprintln!("NOTICE: puppeteer-core not installed; skipping this test: {how} (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    false
}

/// `GET path` on `addr` with these extra header lines.
fn get(addr: SocketAddr, path: &str, headers: &str) -> Response {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"),
    )
}

/// The value of header `name` in a response head.
fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// ffmpeg publishing a test picture (H.264, 1 s GOP) and tone (AAC) in real time to
/// `live/{name}` for up to 90 s; killed when dropped.
fn ffmpeg_publish(rtmp: SocketAddr, name: &str) -> common::Killed {
    common::Killed(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440"])
            .args(["-c:v", "libx264", "-preset", "veryfast"])
            .args(["-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "25"])
            .args(["-c:a", "aac", "-t", "90", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/{name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Errors only (`-loglevel error`): shown as they come.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ffmpeg"),
    )
}

/// Runs the browser script; its JSON report and what it wrote to standard error.
fn run_script(admin: SocketAddr, stream: &str, screenshot: &Path) -> (serde_json::Value, String) {
    let mut child = Command::new("node")
        .arg(script_dir().join("console.mjs"))
        .arg(format!("http://{admin}"))
        .arg(TOKEN)
        .arg(stream)
        .arg(screenshot)
        .current_dir(script_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    // Read both pipes all along, so that neither fills.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    if wait_exit(&mut child, SCRIPT_LIMIT).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the browser script did not finish within {SCRIPT_LIMIT:?}: {}",
            err.join().unwrap()
        );
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let report = out
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON report from the browser script: {out}\n{err}"));
    (report, err)
}

#[test]
fn the_console_lists_a_stream_follows_its_viewers_and_plays_it() {
    if !have_tool("ffmpeg") || !have_tool("node") || !have_tool("chromium") || !have_packages() {
        return;
    }
    let config = "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\n\
                  http_listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let (_server, serving) =
        serve_with("console", config, &[("CORECAST_ADMIN_TOKEN", TOKEN)]).expect("serves");

    // Behind the token: a browser is asked for Basic credentials.
    let refused = get(serving.admin, "/", "");
    assert_eq!(refused.status, 401, "{}", refused.head);
    assert!(
        refused
            .head
            .contains("\r\nWWW-Authenticate: Basic realm=\"corecast\""),
        "{}",
        refused.head
    );
    let wrong = format!("Authorization: Basic {}\r\n", basic("operator:wrong"));
    assert_eq!(get(serving.admin, "/", &wrong).status, 401);
    let signed_in = format!(
        "Authorization: Basic {}\r\n",
        basic(&format!("operator:{TOKEN}"))
    );
    let page = get(serving.admin, "/", &signed_in);
    assert_eq!(page.status, 200, "{}", page.head);
    assert_eq!(
        header(&page, "Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&page, "X-Content-Type-Options"), Some("nosniff"));
    assert!(String::from_utf8_lossy(&page.body).contains("/console/console.js"));
    let csp = header(&page, "Content-Security-Policy").expect("a CSP");
    assert!(
        csp.contains(&format!("http://*:{}", serving.http.port())),
        "the CSP allows the media port: {csp}"
    );
    // The bearer token opens it too; the media port has no console.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let script = get(serving.admin, "/console/console.js", &bearer);
    assert_eq!(script.status, 200);
    assert_eq!(
        header(&script, "Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        get(serving.admin, "/console/nothing.js", &bearer).status,
        404
    );
    assert_eq!(get(serving.http, "/", &bearer).status, 404);

    let _ffmpeg = ffmpeg_publish(serving.rtmp, "console");
    common::wait_live_at(serving.http, "/live/console.flv");
    // The viewers of `wait_live_at` have gone: the page starts from no viewer.
    let viewers = || {
        let response = get(serving.admin, "/api/v1/streams/live/console", &bearer);
        let view: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        view["viewers"]["total"].as_u64()
    };
    assert!(
        wait_until(WAIT, || viewers() == Some(0)),
        "viewers of live/console: {:?}",
        viewers()
    );

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let (report, said) = run_script(serving.admin, "live/console", &screenshot);
    eprintln!("{said}");
    eprintln!("browser report: {report:#}");
    if screenshot.exists() {
        eprintln!("screenshot: {}", screenshot.display());
    }
    assert_eq!(report["error"], serde_json::Value::Null, "{report:#}");
    assert_eq!(report["page_status"], 200);

    // Listed with what ffmpeg sends.
    assert_eq!(report["listed"], true);
    assert_eq!(
        report["codecs"],
        serde_json::json!(["h264", "aac", "640×360"]),
        "{report:#}"
    );
    let flv = format!("http://127.0.0.1:{}/live/console.flv", serving.http.port());
    assert_eq!(report["flv_url"], flv.as_str());

    // The count follows viewers in and out.
    assert_eq!(report["viewers_before"], 0, "{report:#}");
    assert_eq!(report["viewers_joined"], 3, "{report:#}");
    assert_eq!(report["viewers_left"], 0, "{report:#}");
    for viewer in report["node_viewers"].as_array().expect("viewers") {
        assert_eq!(viewer["status"], 200, "{viewer}");
        assert!(viewer["bytes"].as_u64() > Some(0), "{viewer}");
    }

    // The player plays: the video advances, without a media error.
    let video = &report["video"];
    let later = &report["video_later"];
    assert_eq!(video["error"], serde_json::Value::Null, "{video}");
    assert_eq!(later["error"], serde_json::Value::Null, "{later}");
    assert!(video["current_time"].as_f64() > Some(2.0), "{video}");
    assert!(
        later["current_time"].as_f64() > video["current_time"].as_f64(),
        "the video stopped: {video} then {later}"
    );
    assert_eq!(
        (later["width"].as_u64(), later["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(report["viewers_with_player"], 1, "{report:#}");

    // Nothing went wrong in the page: no script error, no console error (mpegts.js logs
    // its errors there), no refused request (the CSP would show up here).
    assert_eq!(report["page_errors"], serde_json::json!([]), "{report:#}");
    assert_eq!(
        report["console_errors"],
        serde_json::json!([]),
        "{report:#}"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// `user:password` as the value of Basic credentials.
fn basic(credentials: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(credentials)
}
