//! The shipped alert rules (`deploy/prometheus/`): `promtool check rules`, their unit tests
//! (`promtool test rules`), and a real Prometheus scraping a real corecast that sees an
//! alert fire once its condition is caused.

mod common;

use common::{have_tool, listening, serve_with, wait_until, Killed};
use corecast_testkit::client::{Pace, Publisher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_rules_check_and_pass_their_unit_tests() {
    if !have_tool("promtool") {
        return;
    }
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yml")).unwrap();
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(names.len(), 13);
    let (ok, said) = promtool(&["check", "rules", "alerts.yml"]);
    let found = format!("SUCCESS: {} rules found", names.len());
    assert!(ok && said.contains(&found), "{said}");
    let (ok, said) = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(ok && said.contains("SUCCESS"), "{said}");
    // Every rule has a unit test and a runbook section of its own.
    let tests = std::fs::read_to_string(rules_dir().join("alerts_test.yml")).unwrap();
    let operations =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/OPERATIONS.md"))
            .unwrap();
    for name in names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no unit test"
        );
        assert!(
            operations.contains(&format!("#### {name}\n")),
            "{name} has no runbook section in docs/OPERATIONS.md"
        );
        assert!(
            rules.contains(&format!(
                "runbook_url: docs/OPERATIONS.md#{}\n",
                name.to_lowercase()
            )),
            "{name}'s runbook_url"
        );
    }
}

/// The body of `GET path` on `addr`, if it answers.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The state of `alert` in Prometheus's `/api/v1/alerts` ("pending", "firing"), if listed.
fn alert_state(prometheus: SocketAddr, alert: &str) -> Option<String> {
    let body = get(prometheus, "/api/v1/alerts")?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    value["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == alert)
        .and_then(|a| a["state"].as_str().map(str::to_owned))
}

#[test]
fn prometheus_fires_publisher_gone_when_a_publisher_is_killed_while_viewers_wait() {
    if !have_tool("prometheus") {
        return;
    }
    // Viewers wait 60 s for the publisher to come back: the alert has time to fire.
    let config = listening(
        "127.0.0.1:0",
        "127.0.0.1:0",
        "127.0.0.1:0",
        "[stream]\nrepublish_grace_ms = 60000\n",
    );
    let (corecast, serving) = serve_with("alerts", &config, &[]).expect("serves");

    let dir = std::env::temp_dir().join(format!("corecast-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = rules_dir().join("alerts.yml");
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: corecast\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        serving.admin
    );
    std::fs::write(dir.join("prometheus.yml"), scrape).unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || get(web, "/-/ready").is_some()),
        "prometheus did not start"
    );

    // A live stream with a viewer: no alert.
    let mut publisher =
        Publisher::connect(serving.rtmp, "live", "gone", Duration::from_secs(5)).expect("publish");
    let tags = common::fixture_tags();
    publisher
        .replay(&tags[..60], Pace::RealTime { speed: 1.0 }, 0)
        .expect("publish");
    let viewer = common::FlvViewer::open(serving.http, "/live/gone.flv");
    assert_eq!(viewer.status, 200);
    let mut stream = viewer.stream;
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let scraped = || {
        get(web, "/api/v1/query?query=corecast_flv_viewers").is_some_and(|b| b.contains("\"1\""))
    };
    assert!(
        wait_until(Duration::from_secs(20), scraped),
        "no scrape with the viewer"
    );
    assert_eq!(alert_state(web, "CorecastPublisherGone"), None);

    // The encoder dies (its connection is dropped without a word): firing within seconds.
    drop(publisher);
    let firing = || alert_state(web, "CorecastPublisherGone").as_deref() == Some("firing");
    assert!(
        wait_until(Duration::from_secs(30), firing),
        "CorecastPublisherGone: {:?}",
        alert_state(web, "CorecastPublisherGone")
    );
    drop(corecast);
    reading.join().expect("the viewer's reader");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The metric names (`corecast_...`, `process_...`) an expression or file mentions.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(['c', 'p']) {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let whole = at == 0
            || !rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if whole && (word.starts_with("corecast_") || word.starts_with("process_")) {
            names.insert(word.clone());
        }
        rest = &rest[at + word.len().max(1)..];
    }
    names
}

/// The dashboard and the alert rules name only metrics a running corecast exports (its
/// `# TYPE` lines, and `_sum` and `_count` of its summaries).
#[test]
fn the_dashboard_and_the_rules_reference_only_exported_metrics() {
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "");
    let (_corecast, serving) = serve_with("exported", &config, &[]).expect("serves");
    let body = common::http_get(serving.admin, "/metrics").body;
    let mut exported = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&body).lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            exported.insert(name.to_string());
            if kind == "summary" {
                exported.insert(format!("{name}_sum"));
                exported.insert(format!("{name}_count"));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/corecast.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let exprs: Vec<&str> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yml")).unwrap();
    for (file, names) in [
        (
            "deploy/grafana/corecast.json",
            metric_names(&exprs.join("\n")),
        ),
        ("deploy/prometheus/alerts.yml", metric_names(&rules)),
    ] {
        let missing: Vec<_> = names.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics not exported: {missing:?}"
        );
        assert!(names.len() > 10, "{file}: {names:?}");
    }
}
