//! The binary's command line: configuration handling and start-up failures.

mod common;

use common::{config_file, listening, run_to_exit, serve, wait_exit, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// The "corecast serving" line of a server started with `--log-format format`.
fn serving_line(format: &str) -> serde_json::Value {
    // The admin listener on a free port too, not on the default 127.0.0.1:8081.
    let config = config_file(format, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let mut child = corecast()
        .arg("--config")
        .arg(&config)
        .args(["--log-format", format, "--shards", "1"])
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
    std::fs::remove_file(&config).unwrap();
    serving.expect("the serving line")
}

#[test]
fn json_logs_are_one_object_per_line() {
    let serving = serving_line("json");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["shards"], 1);
    assert!(serving["http"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn ecs_logs_carry_elastic_common_schema_names() {
    let serving = serving_line("ecs");
    assert_eq!(serving["log.level"], "info");
    assert_eq!(serving["log.logger"], "corecast::server");
    assert_eq!(serving["ecs.version"], corecast::logging::ECS_VERSION);
    assert_eq!(serving["service.name"], "corecast");
    assert!(serving["@timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(serving["corecast.shards"], 1);
    assert!(serving["corecast.http"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
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

/// The status of a GET on a new connection.
fn status(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_second_instance_on_served_ports_fails_and_the_first_keeps_serving() {
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "");
    let (mut first, at) = serve("first", &config).unwrap();
    // The same ports, each listener in turn (they bind in this order), and a wildcard on a
    // served port: every one is refused, naming the address.
    let attempts = [
        (
            at.rtmp.to_string(),
            at.http.to_string(),
            at.admin.to_string(),
            at.rtmp.to_string(),
        ),
        (
            "127.0.0.1:0".into(),
            at.http.to_string(),
            "127.0.0.1:0".into(),
            at.http.to_string(),
        ),
        (
            "127.0.0.1:0".into(),
            "127.0.0.1:0".into(),
            at.admin.to_string(),
            at.admin.to_string(),
        ),
        (
            "127.0.0.1:0".into(),
            format!("0.0.0.0:{}", at.http.port()),
            "127.0.0.1:0".into(),
            format!("0.0.0.0:{}", at.http.port()),
        ),
    ];
    for (i, (rtmp, http, admin, named)) in attempts.iter().enumerate() {
        let started = Instant::now();
        let out = run_to_exit(&format!("second-{i}"), &listening(rtmp, http, admin, ""));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let expected =
            format!("cannot listen on {named}: address already in use (another process serves it)");
        assert!(err.contains(&expected), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // The first one serves on, every listener of it.
    assert!(
        matches!(first.0.try_wait(), Ok(None)),
        "the first still runs"
    );
    assert_eq!(status(at.http, "/live/none.flv"), "HTTP/1.1 404 Not Found");
    assert_eq!(status(at.admin, "/metrics"), "HTTP/1.1 200 OK");
    assert!(TcpStream::connect(at.rtmp).is_ok());
}

#[test]
fn a_stopping_instance_frees_its_ports_at_once() {
    // An idle connection keeps the first one draining (for up to 10 s).
    let extra = "[http]\nheader_timeout_ms = 60000\n";
    let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", extra);
    let (mut first, at) = serve("stopping", &config).unwrap();
    let idle = TcpStream::connect(at.http).unwrap();
    assert!(
        common::conn::wait_all_accepted(&[at.http], Duration::from_secs(5)),
        "the idle connection was accepted"
    );
    // SAFETY: kill(2) with the pid of our own child.
    assert_eq!(unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) }, 0);
    // Its listeners close at once: a new instance takes the same ports while it drains.
    let same = listening(
        &at.rtmp.to_string(),
        &at.http.to_string(),
        &at.admin.to_string(),
        "",
    );
    let (mut restarted, mut failure) = (None, String::new());
    let took_over = wait_until(Duration::from_secs(5), || match serve("restarted", &same) {
        Ok(running) => {
            restarted = Some(running);
            true
        }
        Err(err) => {
            failure = err;
            false
        }
    });
    assert!(took_over, "no restart within 5 s: {failure}");
    let (_second, again) = restarted.expect("restarted");
    assert_eq!(
        (again.rtmp, again.http, again.admin),
        (at.rtmp, at.http, at.admin)
    );
    assert!(
        matches!(first.0.try_wait(), Ok(None)),
        "the first is still draining"
    );
    // New connections reach the new instance only.
    assert_eq!(
        status(again.http, "/live/none.flv"),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(status(again.admin, "/metrics"), "HTTP/1.1 200 OK");
    drop(idle);
    let exited = wait_exit(&mut first.0, Duration::from_secs(5))
        .expect("the first did not finish its drain");
    assert!(exited.success(), "{exited:?}");
}

#[test]
fn print_config_never_shows_credentials() {
    let dir = std::env::temp_dir().join(format!("corecast-redact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secrets.toml");
    let secrets = [
        "token-secret-0123456789",
        "publish-default-key",
        "play-cam-key",
        "premium-publish-key",
        "premium-play-key",
        "admin-bearer-token",
    ];
    std::fs::write(
        &file,
        format!(
            "[auth]\nsecret = \"{}\"\nplay = \"key_or_token\"\npublish_keys = {{ \"*\" = \"{}\" }}\n\
             play_keys = {{ cam = \"{}\" }}\n[auth.apps.premium]\npublish = \"key\"\n\
             publish_keys = {{ show = \"{}\" }}\nplay_keys = {{ \"*\" = \"{}\" }}\n\
             [admin]\ntoken = \"{}\"\n",
            secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
        ),
    )
    .unwrap();
    let out = corecast()
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    // Still TOML, with every credential shown as set but hidden, and the rest intact.
    let printed: toml::Table = text.parse().expect("valid TOML");
    let auth = &printed["auth"];
    assert_eq!(auth["secret"].as_str(), Some(corecast::config::REDACTED));
    assert_eq!(auth["play"].as_str(), Some("key_or_token"));
    assert_eq!(auth["publish_keys"]["*"].as_str(), Some("<redacted>"));
    assert_eq!(auth["play_keys"]["cam"].as_str(), Some("<redacted>"));
    let premium = &auth["apps"]["premium"];
    assert_eq!(premium["publish_keys"]["show"].as_str(), Some("<redacted>"));
    assert_eq!(premium["play_keys"]["*"].as_str(), Some("<redacted>"));
    assert_eq!(printed["admin"]["token"].as_str(), Some("<redacted>"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_subcommand_refuses_invalid_names() {
    let dir = std::env::temp_dir().join(format!("corecast-token-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth.toml");
    std::fs::write(&file, "[auth]\nsecret = \"0123456789abcdef-secret\"\n").unwrap();
    for stream in [
        "live/a/b",
        "live/a\nb",
        "live/..",
        "live/",
        "/cam",
        "live/cam?x=1",
    ] {
        let out = corecast()
            .arg("--config")
            .arg(&file)
            .args(["token", "--action", "play", "--stream", stream])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{stream:?}");
        assert!(out.stdout.is_empty(), "no token for {stream:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid name"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line, name escaped: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn admin_endpoints_on_a_public_port_need_a_token_to_start() {
    // admin.listen = "" serves the admin endpoints on server.http_listen: on a wildcard
    // address, without a token, the binary refuses to start, naming the key and the address.
    for http in ["0.0.0.0:0", "[::]:0"] {
        let config = listening("127.0.0.1:0", http, "", "");
        let out = run_to_exit("public-admin", &config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{http}: {err}");
        assert!(err.contains("key `admin.token`: must be set"), "{err}");
        assert!(err.contains(&format!("without a token on {http}")), "{err}");
    }
    // With a token, it serves them there, to the token's holder only.
    let extra = "token = \"t0ken-for-the-test\"\n";
    let config = listening("127.0.0.1:0", "0.0.0.0:0", "", extra);
    let (_server, at) = serve("public-admin-token", &config).unwrap();
    let http = SocketAddr::from(([127, 0, 0, 1], at.http.port()));
    assert_eq!(status(http, "/metrics"), "HTTP/1.1 401 Unauthorized");
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0ken-for-the-test\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("corecast_connections_refused_total"),
        "{text}"
    );
}
