//! The binary as a service: the systemd notify protocol against a real `NOTIFY_SOCKET`
//! datagram socket (READY, STATUS, WATCHDOG only while every shard beats, STOPPING), the
//! health endpoints and `corecast probe`, and configuration from the environment.

mod common;

use common::{listening, samples, serve_with, wait_exit};
use corecast::http::probe::{probe, ProbeError};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A datagram socket standing in for systemd's notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path =
            std::env::temp_dir().join(format!("corecast-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket { socket, path }
    }

    /// Every message that arrives within `limit`, with its arrival time.
    fn collect(
        &self,
        limit: Duration,
        mut until: impl FnMut(&str) -> bool,
    ) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&text);
                got.push((Instant::now(), text));
                if done {
                    break;
                }
            }
        }
        got
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The longest time between two consecutive watchdog keep-alives, and their count.
fn keepalive_gaps(messages: &[(Instant, String)]) -> (usize, Duration) {
    let times: Vec<Instant> = messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    let longest = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (times.len(), longest)
}

#[test]
fn systemd_hears_ready_status_keepalives_only_while_every_shard_beats_and_stopping() {
    let notify = NotifySocket::bind("watchdog");
    let socket = notify.path.display().to_string();
    // Shard 1 runs for 40 load samples (about 2 s), then its thread blocks for 4 s.
    let env = [
        ("NOTIFY_SOCKET", socket.as_str()),
        ("WATCHDOG_USEC", "1000000"),
        ("FAILPOINTS", "shard-stall-1=40*off->1*sleep(4000)"),
    ];
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "")
        .replace("shards = 1", "shards = 2");
    let (mut child, serving) = serve_with("watchdog", &config, &env).expect("serves");

    // Until the first keep-alive after the stalled status.
    let mut stalled = false;
    let messages = notify.collect(Duration::from_secs(15), |m| {
        stalled |= m.contains("stalled");
        stalled && m == "WATCHDOG=1\n"
    });
    let first = &messages.first().expect("a first message").1;
    assert!(
        first.starts_with("READY=1\nSTATUS=serving: 0 streams, 0 publishers, 0 viewers"),
        "{first:?}"
    );
    // Keep-alives every quarter of the watchdog period while both shards beat, none while
    // shard 1 is blocked (from half a period of silence on), then again.
    let stalled_at = messages
        .iter()
        .position(|(_, m)| m.contains("STATUS=shard 1 stalled: no heartbeat for"))
        .unwrap_or_else(|| panic!("no stalled status in {messages:?}"));
    let (before, _) = keepalive_gaps(&messages[..stalled_at]);
    assert!(
        before >= 4,
        "{before} keep-alives before the stall: {messages:?}"
    );
    let (count, longest) = keepalive_gaps(&messages);
    assert!(
        longest >= Duration::from_millis(2_500),
        "longest gap between keep-alives {longest:?}: {messages:?}"
    );
    let after = messages[stalled_at..]
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1\n")
        .count();
    assert!(
        after >= 1 && count > before,
        "no keep-alive after the stall: {messages:?}"
    );

    // Serving again: ready, and a probe says so.
    let ready = format!("http://{}/readyz", serving.admin);
    assert_eq!(
        probe(&ready, Duration::from_secs(3)).expect("ready"),
        "ready"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let rest = notify.collect(Duration::from_secs(5), |m| m.starts_with("STOPPING=1"));
    assert!(
        rest.iter()
            .any(|(_, m)| m == "STOPPING=1\nSTATUS=stopping\n"),
        "{rest:?}"
    );
    let status = wait_exit(&mut child.0, Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn readyz_answers_503_naming_a_stalled_shard() {
    // Shard 1 blocks from about 1 s in, for 6 s. The admin listener is bound once per shard:
    // a question that reaches shard 1 waits, one that reaches shard 0 gets the answer.
    let env = [("FAILPOINTS", "shard-stall-1=20*off->1*sleep(6000)")];
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "")
        .replace("shards = 1", "shards = 2");
    let (_child, serving) = serve_with("readyz", &config, &env).expect("serves");
    let ready = format!("http://{}/readyz", serving.admin);
    let live = format!("http://{}/healthz", serving.admin);
    assert_eq!(probe(&live, Duration::from_secs(3)).expect("live"), "ok");
    assert_eq!(
        probe(&ready, Duration::from_secs(3)).expect("ready"),
        "ready"
    );
    // Ready until shard 1 has been silent for 2 s (from about 3 s in), then 503.
    let mut answers = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && answers.len() < 3 {
        match probe(&ready, Duration::from_millis(300)) {
            Ok(body) => assert_eq!(body, "ready"),
            Err(ProbeError::Status { code, body }) => {
                assert_eq!(code, 503);
                assert!(
                    body.starts_with("shard 1 stalled: no heartbeat for "),
                    "{body}"
                );
                answers.push(body);
            }
            // Reached the blocked shard.
            Err(ProbeError::Io(_)) => {}
            Err(err) => panic!("/readyz while shard 1 is blocked: {err}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!answers.is_empty(), "no 503 within 5 s");
    // Once shard 1 runs again, ready again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match probe(&ready, Duration::from_secs(1)) {
            Ok(body) => {
                assert_eq!(body, "ready");
                break;
            }
            Err(err) => assert!(Instant::now() < deadline, "not ready again: {err}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_checks_need_no_admin_token_and_live_on_the_admin_listener() {
    let token = "token = \"admin-token-0123456789\"\n";
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", token);
    // The environment sets a key the file leaves at its default: the server runs with it.
    let env = [("CORECAST_VIEWER_MERGE_WINDOW_MS", "0")];
    let (_child, serving) = serve_with("token", &config, &env).expect("serves");
    let admin = serving.admin;
    assert_eq!(
        probe(&format!("http://{admin}/readyz"), Duration::from_secs(3)).expect("ready"),
        "ready"
    );
    match probe(&format!("http://{admin}/metrics"), Duration::from_secs(3)) {
        Err(ProbeError::Status { code: 401, .. }) => {}
        other => panic!("/metrics without the token: {other:?}"),
    }
    match probe(
        &format!("http://{}/readyz", serving.http),
        Duration::from_secs(3),
    ) {
        Err(ProbeError::Status { code: 404, .. }) => {}
        other => panic!("/readyz on the public listener when there is an admin one: {other:?}"),
    }
}

#[test]
fn probe_exits_zero_only_on_a_200() {
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "");
    let (_child, serving) = serve_with("probe", &config, &[]).expect("serves");
    let run = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_corecast"))
            .args(["probe", &format!("http://{}{path}", serving.admin)])
            .output()
            .unwrap()
    };
    let ok = run("/readyz");
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ready\n");
    let missing = run("/nothing");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

/// `systemd-analyze verify` and `security --offline` on the shipped unit, in a root of its
/// own (systemd is not process 1 here, so the unit is checked, not started): no warning,
/// and the exposure rated "OK".
#[test]
fn the_systemd_unit_verifies_without_warnings() {
    if !common::have_tool("systemd-analyze") {
        return;
    }
    let root = std::env::temp_dir().join(format!("corecast-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/corecast.service"
    );
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(unit, units.join("corecast.service")).unwrap();
    // The programs the unit runs need only exist and be executable.
    for program in ["usr/bin/corecast", "bin/kill"] {
        let path = root.join(program);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The targets it is ordered against.
    std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .args(["-a", "/lib/systemd/system"])
        .arg(root.join("lib/systemd/"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(copied, "cannot copy /lib/systemd/system");
    let analyze = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .arg(format!("--root={}", root.display()))
            .arg("corecast.service")
            .output()
            .unwrap()
    };
    let verify = analyze(&["verify"]);
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let security = analyze(&["security", "--offline=true"]);
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level: {report}"));
    assert!(overall.contains(" OK"), "{overall}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn metrics_show_each_shard_s_heartbeat_and_load_the_descriptors_and_the_log_lines() {
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "")
        .replace("shards = 1", "shards = 2");
    let (_child, serving) = serve_with("metrics", &config, &[]).expect("serves");
    // Each shard's heartbeat is recent, and its load a fraction.
    assert!(common::wait_until(Duration::from_secs(5), || {
        samples(serving.admin, None, "corecast_shard_busy_ratio{").len() == 2
    }));
    let ages = samples(serving.admin, None, "corecast_shard_heartbeat_age_seconds{");
    assert_eq!(ages.len(), 2, "{ages:?}");
    assert!(
        ages.iter().all(|(_, age)| (0.0..1.0).contains(age)),
        "{ages:?}"
    );
    let busy = samples(serving.admin, None, "corecast_shard_busy_ratio{");
    assert!(
        busy.iter().all(|(_, b)| (0.0..=1.0).contains(b)),
        "{busy:?}"
    );
    // Descriptors: some open, under the limit; resident memory.
    let open = samples(serving.admin, None, "process_open_fds ")[0].1;
    let max = samples(serving.admin, None, "process_max_fds ")[0].1;
    assert!(open > 0.0 && open < max, "{open} of {max}");
    assert!(samples(serving.admin, None, "process_resident_memory_bytes ")[0].1 > 1e6);
    // The start logged info lines (the "corecast serving" line among them), counted by
    // target; nothing was logged at error.
    let lines = samples(serving.admin, None, "corecast_log_events_total{");
    assert!(
        lines.iter().any(|(s, n)| s
            == "corecast_log_events_total{level=\"info\",target=\"corecast::server\"}"
            && *n >= 1.0),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|(s, _)| s.contains("level=\"error\"")),
        "{lines:?}"
    );
}
