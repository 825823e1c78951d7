//! Helpers of the generator's end-to-end tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// An in-process corecast: two shards on ephemeral loopback ports, 1 s HLS segments, no
/// admin listener.
pub fn server() -> corecast::Server {
    server_with("")
}

/// [`server`] with `extra` TOML appended (tables other than those [`server`] sets, or keys
/// of `[hls]` right after it: `extra` starts inside that table).
pub fn server_with(extra: &str) -> corecast::Server {
    let config = corecast::Config::overlay(
        &format!(
            "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [admin]\nlisten = \"\"\n[hls]\ntarget_duration_ms = 1000\n{extra}"
        ),
        "loadtest",
    )
    .expect("config");
    corecast::Server::start(config).expect("server")
}

/// A GET of `path` with a blocking client: the response's head and body (empty when the
/// connection fails).
pub fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut response = Vec::new();
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        if s.write_all(request.as_bytes()).is_ok() {
            let _ = s.read_to_end(&mut response);
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
