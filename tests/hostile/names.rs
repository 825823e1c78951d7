//! Names and credentials: one name rule on every protocol (no two (app, stream) pairs share
//! a key, nothing forges a log line), only canonical tokens, and no credential in any log
//! line (the harness checks every line, at debug level).

use super::*;
use common::rejected_code;
use corecast::auth::{mint, Action};
use corecast_testkit::client::{Player, Publisher};

const SECRET: &str = "a-secret-for-the-hostile-tests-0123";

/// `premium` needs a token to play (publishing with a key); `vault` needs a key to play. A
/// stream whose publisher left ends after half a second (and its viewers' connections with
/// it).
fn protected() -> String {
    format!(
        "[stream]\nrepublish_grace_ms = 500\n[auth]\nsecret = \"{SECRET}\"\n\
         [auth.apps.premium]\npublish = \"key\"\nplay = \"token\"\n\
         publish_keys = {{ \"*\" = \"{CREDENTIAL}\" }}\n\
         [auth.apps.vault]\nplay = \"key\"\nplay_keys = {{ \"*\" = \"{CREDENTIAL}\" }}\n"
    )
}

/// Names that once reached other applications' streams, forged log lines, or were
/// unbounded: each refused on its own connection, counted, and the connection closed.
#[test]
fn names_follow_one_rule_on_every_protocol() {
    hostile(&protected(), |server| {
        let timeout = Duration::from_secs(5);
        let before = server.counter("names_rejected_total");
        let with_key = format!("?key={CREDENTIAL}");
        // `a/b` published to premium would have been `premium/a` + `b` to a player.
        let name = format!("a/b{with_key}");
        let code = rejected_code(Publisher::connect(server.rtmp, "premium", &name, timeout));
        assert_eq!(code, "NetStream.Publish.BadName");
        let code = rejected_code(Player::connect(server.rtmp, "premium/a", "b", timeout));
        assert_eq!(code, "NetConnection.Connect.Rejected");
        let forged = "x\n2026-12-05T00:00:00Z  INFO corecast: publish start stream=live/y";
        for name in [forged, "nul\0name", &"n".repeat(300), ".."] {
            let code = rejected_code(Publisher::connect(server.rtmp, "live", name, timeout));
            assert_eq!(code, "NetStream.Publish.BadName", "{name:.20?}");
            let code = rejected_code(Player::connect(server.rtmp, "live", name, timeout));
            assert_eq!(code, "NetStream.Play.BadName", "{name:.20?}");
        }
        // HTTP: percent-decoded, then the same rule.
        for path in [
            "/premium/a%2Fb.flv",
            "/live/x%0Ay.flv",
            "/live/%2E%2E.m3u8",
            "/premium%2Fa/b.flv",
        ] {
            let response = common::http_get(server.http, path);
            assert_eq!(response.status, 400, "{path}");
        }
        assert_eq!(server.counter("names_rejected_total"), before + 2 + 8 + 4);
        // No log line starts with what a name carried.
        assert!(server.logged("publish start stream=live/y").is_empty());
        for line in server.logs() {
            let message = line["message"].as_str().unwrap_or("");
            assert!(!message.contains('\n'), "a line broken by a name: {line}");
        }
    });
}

/// Tokens in any but their canonical form are refused (403), the canonical one plays, and
/// keys and tokens never reach a log line, whether accepted or refused.
#[test]
fn only_canonical_tokens_play_and_no_credential_is_logged() {
    hostile(&protected(), |server| {
        let timeout = Duration::from_secs(5);
        let mut publisher = Publisher::connect(
            server.rtmp,
            "premium",
            &format!("show?key={CREDENTIAL}"),
            timeout,
        )
        .expect("a publisher with the key");
        publisher
            .send_video(
                0,
                bytes::Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            )
            .unwrap();
        let expiry = corecast::auth::unix_now() + 600;
        let token = mint(SECRET, Action::Play, "premium", "show", expiry);
        let (_, mac) = token.split_once('.').unwrap();
        let refused = server.counter("auth_rejected_play_total");
        for variant in [
            format!("+{expiry}.{mac}"),
            format!("0{expiry}.{mac}"),
            format!("{expiry}.{}", mac.to_uppercase()),
            format!("{expiry}.{mac}0"),
            format!("{expiry}.{}", &mac[..63]),
        ] {
            let path = format!("/premium/show.flv?token={variant}");
            assert_eq!(
                common::http_get(server.http, &path).status,
                403,
                "{variant}"
            );
        }
        assert_eq!(server.counter("auth_rejected_play_total"), refused + 5);
        let viewer = FlvViewer::open(server.http, &format!("/premium/show.flv?token={token}"));
        assert_eq!(viewer.status, 200);
        drop(viewer);
        // A right and a wrong key, on RTMP and HTTP: neither is logged.
        let wrong = format!("{CREDENTIAL}-wrong");
        let code = rejected_code(Player::connect(
            server.rtmp,
            "vault",
            &format!("cam?key={wrong}"),
            timeout,
        ));
        assert_eq!(code, "NetStream.Play.Unauthorized");
        let code = rejected_code(Player::connect(
            server.rtmp,
            "vault",
            &format!("cam?key={CREDENTIAL}"),
            timeout,
        ));
        assert_eq!(code, "NetStream.Play.StreamNotFound");
        let path = format!("/vault/cam.flv?key={wrong}");
        assert_eq!(common::http_get(server.http, &path).status, 403);
        let mac_logged = server.logs().iter().any(|l| l.to_string().contains(mac));
        assert!(!mac_logged, "a token's MAC in the log");
        drop(publisher);
    });
}
