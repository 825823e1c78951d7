//! Unit tests of [`super`] (config).

use super::*;

#[test]
fn embedded_defaults_parse_and_validate() {
    let config = Config::from_toml_str(DEFAULT_TOML, "defaults").unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.rtmp_listen.port(), 1935);
    assert_eq!(config.server.http_listen.port(), 8080);
}

#[test]
fn overlay_keeps_other_defaults() {
    let config = Config::overlay("[viewer]\nmerge_window_ms = 0\n", "test").unwrap();
    assert_eq!(config.viewer.merge_window_ms, 0);
    assert_eq!(
        config.viewer.skip_after_ms,
        Config::default().viewer.skip_after_ms
    );
}

#[test]
fn the_send_schedule_is_adaptive_unless_fixed() {
    use crate::shard::schedule::Schedule;
    use std::time::Duration;
    let window = Duration::from_millis(50);
    assert_eq!(
        Config::default().viewer.schedule(),
        Schedule::Adaptive { window }
    );
    let fixed = Config::overlay("[viewer]\nsend_schedule = \"fixed\"\n", "test").unwrap();
    assert_eq!(fixed.viewer.schedule(), Schedule::Fixed(window));
    let err = Config::overlay("[viewer]\nsend_schedule = \"fast\"\n", "test").unwrap_err();
    assert!(err.to_string().contains("send_schedule"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let err = Config::overlay("[server]\nshardz = 2\n", "test").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("shardz"), "{text}");
}

#[test]
fn wrong_type_names_the_key_path() {
    let err = Config::overlay("[viewer]\nskip_after_ms = \"soon\"\n", "test").unwrap_err();
    assert!(err.to_string().contains("viewer.skip_after_ms"), "{err}");
}

#[test]
fn inconsistent_policy_is_named() {
    let err = Config::overlay(
        "[viewer]\nskip_after_ms = 5000\ndisconnect_after_ms = 4000\n",
        "test",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("viewer.disconnect_after_ms"),
        "{err}"
    );
}

#[test]
fn printed_config_round_trips() {
    let config = Config::default();
    let again = Config::from_toml_str(&config.to_toml(), "printed").unwrap();
    assert_eq!(config, again);
}

/// The key a configuration is refused for, if it is.
fn refused_key(text: &str) -> Option<&'static str> {
    match Config::overlay(text, "test") {
        Err(ConfigError::Invalid { key, .. }) => Some(key),
        Err(other) => panic!("{other}"),
        Ok(_) => None,
    }
}

#[test]
fn admin_endpoints_beyond_loopback_need_a_token() {
    // The default: its own loopback listener, no token.
    assert_eq!(refused_key(""), None);
    assert_eq!(refused_key("[admin]\nlisten = \"[::1]:8081\"\n"), None);
    // On the public HTTP port.
    let err = Config::overlay("[admin]\nlisten = \"\"\n", "test").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "admin.token",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
    assert_eq!(
        refused_key("[admin]\nlisten = \"\"\ntoken = \"t0ken\"\n"),
        None
    );
    // ... unless that port is loopback (as in the end-to-end tests).
    let local = "[server]\nhttp_listen = \"127.0.0.1:8080\"\n[admin]\nlisten = \"\"\n";
    assert_eq!(refused_key(local), None);
    let mapped = "[server]\nhttp_listen = \"[::ffff:127.0.0.1]:8080\"\n[admin]\nlisten = \"\"\n";
    assert_eq!(refused_key(mapped), None);
    // Its own listener on a non-loopback address.
    for listen in [
        "0.0.0.0:8081",
        "[::]:8081",
        "192.0.2.1:8081",
        "[::ffff:10.0.0.1]:8081",
    ] {
        let text = format!("[admin]\nlisten = \"{listen}\"\n");
        assert_eq!(refused_key(&text), Some("admin.token"), "{listen}");
        let text = format!("[admin]\nlisten = \"{listen}\"\ntoken = \"t0ken\"\n");
        assert_eq!(refused_key(&text), None, "{listen}");
    }
}

#[test]
fn listeners_sharing_a_port_are_refused() {
    let token = "token = \"t0ken\"\n";
    for (admin, media) in [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("[::]:8080", "0.0.0.0:8080"),
        ("127.0.0.1:8080", "[::]:8080"),
        ("[::1]:8080", "[::]:8080"),
    ] {
        let text =
            format!("[server]\nhttp_listen = \"{media}\"\n[admin]\nlisten = \"{admin}\"\n{token}");
        assert_eq!(refused_key(&text), Some("admin.listen"), "{admin} {media}");
        let text = format!(
            "[server]\nrtmp_listen = \"{media}\"\nhttp_listen = \"127.0.0.1:9\"\n\
             [admin]\nlisten = \"{admin}\"\n{token}"
        );
        assert_eq!(refused_key(&text), Some("admin.listen"), "{admin} {media}");
    }
    let text = "[server]\nrtmp_listen = \"0.0.0.0:1935\"\nhttp_listen = \"127.0.0.1:1935\"\n";
    assert_eq!(refused_key(text), Some("server.http_listen"));
    // Other ports, other addresses of one family, and port 0 (a free port each) are fine.
    for (admin, media) in [
        ("127.0.0.1:8081", "0.0.0.0:8080"),
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        let text =
            format!("[server]\nhttp_listen = \"{media}\"\n[admin]\nlisten = \"{admin}\"\n{token}");
        assert_eq!(refused_key(&text), None, "{admin} {media}");
    }
}

#[test]
fn hls_on_demand_outlives_three_target_durations() {
    let hls = &Config::default().hls;
    assert!(hls.on_demand && hls.idle_timeout_ms == 30_000);
    for (target, idle, refused) in [(2000, 5999, true), (2000, 6000, false), (500, 1500, false)] {
        let text = format!("[hls]\ntarget_duration_ms = {target}\nidle_timeout_ms = {idle}\n");
        let expected = refused.then_some("hls.idle_timeout_ms");
        assert_eq!(refused_key(&text), expected, "{target} {idle}");
    }
}

#[test]
fn low_latency_parts_fit_their_segments_and_held_requests_are_bounded() {
    let hls = &Config::default().hls;
    assert!(hls.low_latency && hls.part_target_ms == 250 && hls.max_held_reloads == 10_000);
    for (target, part, refused) in [
        (2000, 99, true),
        (2000, 100, false),
        (2000, 1000, false),
        (2000, 1001, true),
        (500, 250, false),
        (6000, 2001, true),
    ] {
        let text = format!("[hls]\ntarget_duration_ms = {target}\npart_target_ms = {part}\n");
        let expected = refused.then_some("hls.part_target_ms");
        assert_eq!(refused_key(&text), expected, "{target} {part}");
    }
    for (held, refused) in [(0, true), (1, false), (1_000_000, false), (1_000_001, true)] {
        let text = format!("[hls]\nmax_held_reloads = {held}\n");
        let expected = refused.then_some("hls.max_held_reloads");
        assert_eq!(refused_key(&text), expected, "{held}");
    }
}

#[test]
fn ipv6_prefix_len_is_within_1_to_128() {
    assert_eq!(Config::default().limits.ipv6_prefix_len, 64);
    for (len, refused) in [
        (0, true),
        (1, false),
        (48, false),
        (128, false),
        (129, true),
    ] {
        let text = format!("[limits]\nipv6_prefix_len = {len}\n");
        let expected = refused.then_some("limits.ipv6_prefix_len");
        assert_eq!(refused_key(&text), expected, "{len}");
    }
}

#[test]
fn auth_names_follow_the_name_rule() {
    for (text, key) in [
        ("[auth.apps.\"premium/a\"]\nplay = \"key\"\n", "auth.apps"),
        ("[auth.apps.\"..\"]\n", "auth.apps"),
        (
            "[auth]\npublish_keys = { \"a/b\" = \"k\" }\n",
            "auth.publish_keys",
        ),
        (
            "[auth.apps.live]\nplay_keys = { \"a\\nb\" = \"k\" }\n",
            "auth.apps.play_keys",
        ),
    ] {
        match Config::overlay(text, "test") {
            Err(ConfigError::Invalid { key: k, message }) => {
                assert_eq!(k, key, "{text}");
                assert!(!message.contains('\n'), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let fine = "[auth]\npublish_keys = { \"*\" = \"k\", \"cam-1\" = \"k1\" }\n\
                [auth.apps.\"live.v2\"]\nplay = \"open\"\n";
    assert!(Config::overlay(fine, "test").is_ok());
}

#[test]
fn redacted_copies_hide_every_credential() {
    let text = "[auth]\nsecret = \"s3cret-s3cret-s3cret\"\nplay = \"key_or_token\"\n\
                publish_keys = { \"*\" = \"pk-default\" }\nplay_keys = { cam = \"vk-cam\" }\n\
                [auth.apps.premium]\npublish = \"key\"\npublish_keys = { show = \"pk-show\" }\n\
                play_keys = { \"*\" = \"vk-any\" }\n[admin]\ntoken = \"admin-bearer\"\n";
    let config = Config::overlay(text, "test").unwrap();
    let shown = config.redacted();
    let printed = shown.to_toml();
    for secret in [
        "s3cret-s3cret-s3cret",
        "pk-default",
        "vk-cam",
        "pk-show",
        "vk-any",
        "admin-bearer",
    ] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert_eq!(shown.auth.secret, REDACTED);
    assert_eq!(shown.admin.token, REDACTED);
    assert_eq!(shown.auth.play_keys["cam"], REDACTED);
    assert_eq!(shown.auth.apps["premium"].publish_keys["show"], REDACTED);
    assert_eq!(shown.auth.apps["premium"].play_keys["*"], REDACTED);
    // Everything else is as configured, and the copy is still a configuration.
    assert_eq!(shown.auth.play, config.auth.play);
    assert_eq!(shown.server, config.server);
    assert_eq!(
        Config::from_toml_str(&printed, "printed").unwrap().auth,
        shown.auth
    );
    // Unset credentials stay empty.
    assert_eq!(Config::default().redacted(), Config::default());
}

/// `Sources` for tests: `file` (written to a temporary path when given) and `env`.
fn sources(name: &str, file: Option<&str>, env: &[(&str, &str)], cli: Vec<Override>) -> Sources {
    let file = file.map(|text| {
        let path =
            std::env::temp_dir().join(format!("corecast-src-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    });
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Sources { file, env, cli }
}

#[test]
fn environment_overrides_the_file_and_the_command_line_overrides_both() {
    let cli = vec![Override {
        key: "server.http_listen",
        value: toml::Value::String("127.0.0.1:9001".into()),
        flag: "--http-listen",
    }];
    let env = [
        ("CORECAST_SERVER_HTTP_LISTEN", "127.0.0.1:9002"),
        ("CORECAST_VIEWER_MERGE_WINDOW_MS", "7"),
        ("CORECAST_HLS_ENABLED", "false"),
        ("CORECAST_AUTH_PUBLISH_KEYS", r#"{ "*" = "k1" }"#),
        // Not a section: not configuration.
        ("CORECAST_REQUIRE_TOOLS", "1"),
    ];
    let file = "[viewer]\nmerge_window_ms = 3\nskip_after_ms = 900\n[server]\nhttp_listen = \"127.0.0.1:9003\"\n";
    let loaded = sources("precedence", Some(file), &env, cli).load().unwrap();
    let config = &loaded.config;
    assert_eq!(config.server.http_listen.to_string(), "127.0.0.1:9001");
    assert_eq!(config.viewer.merge_window_ms, 7);
    assert_eq!(config.viewer.skip_after_ms, 900);
    assert!(!config.hls.enabled);
    assert_eq!(config.auth.publish_keys["*"], "k1");
    let source = |key: &str| loaded.sources.get(key).cloned().unwrap_or(Source::Default);
    assert_eq!(source("server.http_listen"), Source::Cli("--http-listen"));
    assert_eq!(
        source("viewer.merge_window_ms"),
        Source::Env("CORECAST_VIEWER_MERGE_WINDOW_MS".into())
    );
    assert!(matches!(source("viewer.skip_after_ms"), Source::File(_)));
    assert_eq!(source("rtmp.chunk_size"), Source::Default);
    // The annotated copy is still the same configuration (nothing here is a credential but
    // the publish key, redacted), and says where each key came from.
    let printed = loaded.annotated();
    let reread = Config::from_toml_str(&printed, "printed").unwrap();
    assert_eq!(reread.viewer, config.viewer);
    assert_eq!(reread.server, config.server);
    assert_eq!(reread.auth.publish_keys["*"], REDACTED);
    assert!(
        printed.contains("merge_window_ms = 7  # CORECAST_VIEWER_MERGE_WINDOW_MS\n"),
        "{printed}"
    );
    assert!(
        printed.contains("http_listen = \"127.0.0.1:9001\"  # --http-listen\n"),
        "{printed}"
    );
    assert!(
        printed.contains("chunk_size = 65536  # default\n"),
        "{printed}"
    );
}

#[test]
fn secrets_come_from_files_named_by_the_environment() {
    let path = std::env::temp_dir().join(format!("corecast-src-{}-secret", std::process::id()));
    std::fs::write(&path, "0123456789abcdef-secret\n").unwrap();
    let var = path.display().to_string();
    let loaded = sources(
        "secret",
        None,
        &[("CORECAST_AUTH_SECRET_FILE", &var)],
        vec![],
    )
    .load()
    .unwrap();
    assert_eq!(loaded.config.auth.secret, "0123456789abcdef-secret");
    let printed = loaded.annotated();
    assert!(!printed.contains("0123456789abcdef"), "{printed}");
    assert!(printed.contains(&format!(
        "secret = \"{REDACTED}\"  # CORECAST_AUTH_SECRET_FILE ({var})\n"
    )));
    // Both forms of one key: refused, naming both.
    let both = [
        ("CORECAST_AUTH_SECRET_FILE", var.as_str()),
        ("CORECAST_AUTH_SECRET", "x"),
    ];
    let err = sources("both", None, &both, vec![])
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CORECAST_AUTH_SECRET") && err.contains("also set by"),
        "{err}"
    );
    let missing = [("CORECAST_AUTH_SECRET_FILE", "/nonexistent/corecast-secret")];
    let err = sources("missing", None, &missing, vec![])
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("CORECAST_AUTH_SECRET_FILE: cannot read /nonexistent/corecast-secret"),
        "{err}"
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let cases = [
        (
            "CORECAST_VIEWER_MERGE_WINDOW_MS",
            "abc",
            "CORECAST_VIEWER_MERGE_WINDOW_MS: expected an integer, got \"abc\"",
        ),
        (
            "CORECAST_HLS_ENABLED",
            "yes",
            "CORECAST_HLS_ENABLED: expected a boolean, got \"yes\"",
        ),
        (
            "CORECAST_VIEWER_NOPE",
            "1",
            "CORECAST_VIEWER_NOPE: `viewer` has no key `nope`",
        ),
        (
            "CORECAST_LOG_FORMAT",
            "xml",
            "CORECAST_LOG_FORMAT: key `log.format`: unknown variant `xml`",
        ),
        (
            "CORECAST_SERVER_RTMP_LISTEN",
            "nowhere",
            "CORECAST_SERVER_RTMP_LISTEN: key `server.rtmp_listen`",
        ),
        (
            "CORECAST_HLS_TARGET_DURATION_MS",
            "1",
            "CORECAST_HLS_TARGET_DURATION_MS: key `hls.target_duration_ms`",
        ),
    ];
    for (var, value, expected) in cases {
        let err = sources("bad", None, &[(var, value)], vec![])
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{var}={value}: {err}");
    }
}

#[test]
fn the_publisher_input_tick_is_bounded() {
    assert_eq!(Config::default().rtmp.input_poll_us, 1000);
    for (value, refused) in [(0, false), (1, false), (20_000, false), (20_001, true)] {
        let text = format!("[rtmp]\ninput_poll_us = {value}\n");
        let expected = refused.then_some("rtmp.input_poll_us");
        assert_eq!(refused_key(&text), expected, "{value}");
    }
}
