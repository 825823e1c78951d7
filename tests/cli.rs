//! The binary's command line: configuration handling and start-up failures.

use std::net::TcpListener;
use std::process::Command;

fn corecast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corecast"))
}

#[test]
fn print_config_shows_the_effective_configuration() {
    let out = corecast()
        .args([
            "--print-config",
            "--shards",
            "1",
            "--http-listen",
            "127.0.0.1:9999",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let config = corecast::Config::from_toml_str(&text, "printed").unwrap();
    assert_eq!(config.server.shards, 1);
    assert_eq!(config.server.http_listen.to_string(), "127.0.0.1:9999");
    assert_eq!(config.viewer, corecast::Config::default().viewer);
}

#[test]
fn bad_config_names_the_key_and_exits_non_zero() {
    let dir = std::env::temp_dir().join(format!("corecast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[viewer]\nskip_after_ms = 1000\nmerge_window_msx = 3\n",
    )
    .unwrap();
    let out = corecast().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("viewer.merge_window_msx"), "{err}");

    std::fs::write(&file, "[stream]\nring_max_bytes = 10\n").unwrap();
    let out = corecast().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stream.ring_max_bytes"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn port_in_use_fails_the_start_clearly() {
    // A listener without SO_REUSEPORT keeps the port to itself.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = corecast()
        .args([
            "--shards",
            "1",
            "--rtmp-listen",
            &addr,
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = corecast()
        .args(["--log-format", "json", "--shards", "1"])
        .args([
            "--rtmp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut serving = None;
    for line in BufReader::new(stdout).lines().take(10) {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON object per line");
        if value["message"] == "corecast serving" {
            serving = Some(value);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let serving = serving.expect("the serving line");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["shards"], 1);
    assert!(serving["http"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn token_subcommand_mints_tokens_the_server_accepts() {
    let dir = std::env::temp_dir().join(format!("corecast-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth.toml");
    let config = "[auth]\nsecret = \"0123456789abcdef-secret\"\nplay = \"token\"\n";
    std::fs::write(&file, config).unwrap();
    let out = corecast()
        .arg("--config")
        .arg(&file)
        .args([
            "token", "--action", "play", "--stream", "live/cam", "--ttl", "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let guide = String::from_utf8_lossy(&out.stderr);
    assert!(
        guide.contains(&format!("/live/cam.m3u8?token={token}")),
        "{guide}"
    );
    let parsed = corecast::Config::overlay(config, "auth").unwrap();
    let rules = corecast::auth::Auth::from_config(&parsed.auth);
    let query = format!("token={token}");
    let now = corecast::auth::unix_now();
    let check = |stream, now| {
        rules.check(
            corecast::auth::Action::Play,
            "live",
            stream,
            Some(&query),
            now,
        )
    };
    assert_eq!(check("cam", now), Ok(()));
    assert_eq!(
        check("cam", now + 120),
        Err(corecast::auth::Denied::Expired)
    );
    assert_eq!(check("other", now), Err(corecast::auth::Denied::BadToken));

    // Token policies without a (long enough) secret are a configuration error.
    std::fs::write(&file, "[auth]\nsecret = \"short\"\nplay = \"token\"\n").unwrap();
    let out = corecast().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.secret"));
    std::fs::remove_dir_all(&dir).unwrap();
}
