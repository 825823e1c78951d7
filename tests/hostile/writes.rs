//! Writes with deadlines: clients that ask and do not read the answers.

use super::*;
use crate::common::slow::SlowReader;

/// The write deadline these attacks run with.
const WRITE_TIMEOUT: &str = "[server]\nwrite_timeout_ms = 2000\n";

/// Pipelined HTTP requests that are never read: the server answers while its queue is
/// short, then stops reading requests, and closes the connection when the answers are not
/// taken within the write deadline.
#[test]
fn pipelined_requests_never_read_are_closed_by_the_write_deadline() {
    hostile(WRITE_TIMEOUT, |server| {
        let before = server.counter("timeouts_total");
        let client = small_window(server.http);
        let request = b"GET /live/missing.flv HTTP/1.1\r\nHost: t\r\n\r\n";
        let requests = request.repeat(20_000);
        let sender = {
            let mut client = client.try_clone().unwrap();
            std::thread::spawn(move || send_until_refused(&mut client, &requests, requests.len()))
        };
        let closed = wait_server_closed(server.http, &client, Duration::from_secs(8))
            .expect("not closed by the write deadline");
        // The answers to what the server read left within the deadline; then it waited for
        // them to be taken (2 s) instead of reading more.
        assert!(
            closed >= Duration::from_millis(1500),
            "closed after {closed:?}"
        );
        let sent = sender.join().unwrap();
        assert!(
            sent < 20_000 * request.len(),
            "the server read every request"
        );
        assert_eq!(server.counter("timeouts_total"), before + 1);
        assert!(server.logs_soon("not taken by the client within its deadline"));
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
}

/// An HLS reader that takes a segment at 256 bytes a second is closed after the write
/// deadline plus the segment's size at `http.segment_min_rate_bytes`, and so cannot keep a
/// segment in memory after it left the playlist.
#[test]
fn a_slow_segment_reader_is_closed_by_its_deadline() {
    hostile(WRITE_TIMEOUT, |server| {
        let playlist = format!("/{WITNESS}.m3u8");
        let mut segment = None;
        assert!(wait_until(Duration::from_secs(10), || {
            let response = common::http_get(server.http, &playlist);
            segment = String::from_utf8_lossy(&response.body)
                .lines()
                .find(|l| l.ends_with(".ts"))
                .map(str::to_string);
            segment.is_some()
        }));
        let path = format!("/live/{}", segment.unwrap());
        let size = common::http_get(server.http, &path).body.len();
        let deadline = Duration::from_millis(2000 + size as u64 * 1000 / 32768);
        let before = server.counter("timeouts_total");
        let mut client = small_window(server.http);
        write!(client, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        client.set_nonblocking(true).unwrap();
        // 26 bytes every 100 ms, until the server's side of the connection is closed.
        let closed = SlowReader {
            chunk: 26,
            every: Duration::from_millis(100),
        }
        .until(&client, deadline + Duration::from_secs(3), |_| {
            server_closed(server.http, &client)
        })
        .unwrap_or_else(|| {
            panic!("a {size}-byte segment reader still served after {deadline:?} + 3 s")
        });
        // Not before the write deadline (the kernel's buffers may have taken part of the
        // segment, so the whole allowance is an upper bound).
        assert!(
            closed >= Duration::from_millis(1500),
            "closed after {closed:?}"
        );
        assert_eq!(server.counter("timeouts_total"), before + 1);
    });
}
