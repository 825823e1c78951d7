//! The admin endpoints' side of the HTTP server: the token check and the bodies of the
//! health checks, `/metrics` and the JSON API.

use super::request::{Request, Route};
use crate::media::now_ns;
use crate::server::health::{Readiness, READY_SILENCE};
use crate::server::reload::Outcome;
use crate::shard::Shard;
use base64::Engine as _;
use std::time::Duration;

/// The answer to an admin request without the right token. Both schemes are offered: a
/// browser asks its user for Basic credentials (any user name, the token as password) and
/// sends them with the console's own requests; scripts send the token as a bearer token.
pub(super) const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\n\
WWW-Authenticate: Basic realm=\"corecast\", charset=\"UTF-8\"\r\n\
WWW-Authenticate: Bearer realm=\"corecast\"\r\n\
Content-Type: text/plain\r\nContent-Length: 16\r\n\r\n\
401 Unauthorized";

/// True when no token is configured, or the request carries it: as a bearer token
/// (`Authorization: Bearer <token>`) or as the password of Basic credentials, whatever the
/// user name. The comparison takes the same time wherever the first difference is.
pub(super) fn authorized(token: &str, req: &Request) -> bool {
    if token.is_empty() {
        return true;
    }
    let Some(given) = req.authorization.as_deref().and_then(credential) else {
        return false;
    };
    // Constant time: the loop runs over the configured token whatever was given, so neither
    // the position of a difference nor the given length shows in the timing.
    let token = token.as_bytes();
    let mut diff = given.len() ^ token.len();
    for (i, t) in token.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ t);
    }
    diff == 0
}

/// The secret an `Authorization` header value carries: a bearer token, or the password of
/// Basic credentials (RFC 7617: base64 of `user:password`; the user name cannot hold a
/// colon, the password can). Scheme names are case-insensitive. `None` for anything else.
fn credential(header: &str) -> Option<Vec<u8>> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(value.as_bytes().to_vec())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// Status, content type and body of an admin endpoint (metrics, API).
pub(super) fn admin_body(shard: &Shard, route: &Route<'_>) -> (&'static str, &'static str, String) {
    const JSON: &str = "application/json";
    let json = |value: serde_json::Value| ("200 OK", JSON, value.to_string());
    const TEXT: &str = "text/plain";
    match route {
        Route::Live => ("200 OK", TEXT, "ok\n".to_string()),
        Route::Ready => {
            let readiness = shard.health().check(now_ns(), READY_SILENCE);
            let status = match readiness {
                Readiness::Ready => "200 OK",
                _ => "503 Service Unavailable",
            };
            (status, TEXT, format!("{readiness}\n"))
        }
        Route::Metrics => ("200 OK", "text/plain; version=0.0.4", shard.prometheus()),
        Route::Heap => json(shard.heap_report()),
        Route::ApiStreams => json(serde_json::json!({ "streams": shard.api_streams() })),
        Route::ApiStream { app, stream } => {
            let name = format!("{app}/{stream}");
            match shard.api_streams().into_iter().find(|s| s.name == name) {
                Some(view) => json(serde_json::json!(view)),
                None => (
                    "404 Not Found",
                    JSON,
                    serde_json::json!({ "error": "no such stream" }).to_string(),
                ),
            }
        }
        _ => json(shard.api_stats()),
    }
}

/// How long `POST /api/v1/reload` waits for the main thread to make the reload.
const RELOAD_ANSWER: Duration = Duration::from_secs(10);

/// `POST /api/v1/reload`: asks the main thread for a reload (as `SIGHUP` does) and waits
/// for its outcome: 200 applied, 409 refused (a key that needs a restart changed), 400
/// invalid, 503 when no answer comes in time.
pub(super) async fn reload(shard: &Shard) -> (&'static str, String) {
    let reloads = shard.reloads();
    let ticket = reloads.ask();
    let deadline = now_ns() + RELOAD_ANSWER.as_nanos() as u64;
    let outcome = loop {
        if let Some(outcome) = reloads.answer_to(ticket) {
            break outcome;
        }
        if now_ns() >= deadline {
            let body = serde_json::json!({ "result": "timeout" }).to_string();
            return ("503 Service Unavailable", body);
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    };
    let status = match outcome {
        Outcome::Applied => "200 OK",
        Outcome::Refused(_) => "409 Conflict",
        Outcome::Invalid(_) => "400 Bad Request",
    };
    let body = serde_json::json!({ "result": outcome.label(), "message": outcome.to_string() });
    (status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(authorization: Option<&str>) -> Request {
        Request {
            method: super::super::request::Method::Get,
            path: "/".into(),
            query: None,
            keep_alive: true,
            range: None,
            authorization: authorization.map(str::to_string),
        }
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn bearer_tokens() {
        assert!(authorized("s3cret", &with(Some("Bearer s3cret"))));
        assert!(authorized("s3cret", &with(Some("bearer  s3cret "))));
        assert!(!authorized("s3cret", &with(Some("Bearer s3cre"))));
        assert!(!authorized("s3cret", &with(Some("Bearer s3cret2"))));
        assert!(!authorized("s3cret", &with(Some("s3cret"))));
        assert!(!authorized("s3cret", &with(None)));
        // No token configured: everyone.
        assert!(authorized("", &with(None)));
    }

    #[test]
    fn basic_credentials_carry_the_token_as_password_with_any_user() {
        for user in ["admin", "", "ops"] {
            let header = basic(&format!("{user}:s3cret"));
            assert!(authorized("s3cret", &with(Some(&header))), "{header}");
        }
        assert!(authorized("s3:cr:et", &with(Some(&basic("u:s3:cr:et")))));
        assert!(authorized(
            "s3cret",
            &with(Some(&format!("BASIC {}", &basic("u:s3cret")[6..])))
        ));
        for refused in [
            basic("u:wrong"),
            basic("u:s3cre"),
            basic("u:s3cret "),
            basic("s3cret:"),
            // No colon: no password.
            basic("s3cret"),
            "Basic not*base64".to_string(),
            "Basic".to_string(),
            // The token itself is not Basic credentials.
            "Basic s3cret".to_string(),
            "Digest username=\"u\"".to_string(),
        ] {
            assert!(!authorized("s3cret", &with(Some(&refused))), "{refused}");
        }
    }

    #[test]
    fn a_refusal_offers_both_schemes() {
        let text = std::str::from_utf8(UNAUTHORIZED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nWWW-Authenticate: Basic realm=\"corecast\""));
        assert!(head.contains("\r\nWWW-Authenticate: Bearer"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
