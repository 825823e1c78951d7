//! The admin endpoints' side of the HTTP server: the bearer token check and the bodies of
//! `/metrics` and the JSON API.

use super::request::{Request, Route};
use crate::shard::Shard;

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
    match route {
        Route::Metrics => ("200 OK", "text/plain; version=0.0.4", shard.prometheus()),
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
