//! Helpers of the generator's end-to-end tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// An in-process corecast: two shards on ephemeral loopback ports, 1 s HLS segments, no
/// admin listener.
pub fn server() -> corecast::Server {
    let config = corecast::Config::overlay(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"\"\n[hls]\ntarget_duration_ms = 1000\n",
        "loadtest",
    )
    .expect("config");
    corecast::Server::start(config).expect("server")
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
