//! The admin endpoints' side of the HTTP server: the bearer token check and the bodies of
//! the health checks, `/metrics` and the JSON API.

use super::request::{Request, Route};
use crate::media::now_ns;
use crate::server::health::{Readiness, READY_SILENCE};
use crate::server::reload::Outcome;
use crate::shard::Shard;
use std::time::Duration;

/// The answer to an admin request without the right bearer token.
pub(super) const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\n\
WWW-Authenticate: Bearer\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n\
401 Unauthorized";

/// True when no token is configured, or the request carries it as a bearer token. The
/// comparison takes the same time wherever the first difference is.
pub(super) fn authorized(token: &str, req: &Request) -> bool {
    if token.is_empty() {
        return true;
    }
    let Some(given) = req
        .authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time: the loop runs over the configured token whatever was given, so neither
    // the position of a difference nor the given length shows in the timing.
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    let mut diff = given.len() ^ token.len();
    for (i, t) in token.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ t);
    }
    diff == 0
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
