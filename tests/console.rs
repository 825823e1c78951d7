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
use common::browser::{have_browser, run_script};
use common::{have_tool, http_request, serve_with, wait_until, Response, WAIT};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "c0nsole-t0ken";

/// How long the browser script may take (it needs 5 to 10 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

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

#[test]
fn the_console_lists_a_stream_follows_its_viewers_and_plays_it() {
    if !have_tool("ffmpeg") || !have_browser(&["puppeteer-core"]) {
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

    let _ffmpeg = common::ffmpeg_publish(serving.rtmp, "console");
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
    let args = [
        format!("http://{}", serving.admin),
        TOKEN.to_string(),
        "live/console".to_string(),
        screenshot.display().to_string(),
    ];
    let (report, said) = run_script("console.mjs", &args, SCRIPT_LIMIT);
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
