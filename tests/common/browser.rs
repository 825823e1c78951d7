//! Scripts that drive Debian's chromium through the DevTools protocol (puppeteer-core), in
//! the npm project `tests/console` (`npm ci --prefix tests/console`, which `.ci/run` does):
//! whether they can run, and running one for its JSON report.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The npm project that holds the browser scripts and their packages.
pub fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// Whether node, chromium and the npm packages `packages` are installed; if one is not,
/// says how, and fails under CORECAST_REQUIRE_TOOLS=1.
pub fn have_browser(packages: &[&str]) -> bool {
    if !super::have_tool("node") || !super::have_tool("chromium") {
        return false;
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !script_dir().join("node_modules").join(p).is_dir())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let how = "run `npm ci --prefix tests/console` (.ci/run does)";
    if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{missing:?} required (CORECAST_REQUIRE_TOOLS=1) but not installed: {how}");
    }
    eprintln!("NOTICE: {missing:?} not installed; skipping this test: {how} (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    false
}

/// Runs `node {script} {args}` in the project within `limit`: the last JSON line it printed,
/// and what it wrote to standard error.
pub fn run_script(script: &str, args: &[String], limit: Duration) -> (serde_json::Value, String) {
    let mut child = Command::new("node")
        .arg(script_dir().join(script))
        .args(args)
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
    if super::wait_exit(&mut child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the browser script {script} did not finish within {limit:?}: {}",
            err.join().unwrap()
        );
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let report = out
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON report from the browser script {script}: {out}\n{err}"));
    (report, err)
}
