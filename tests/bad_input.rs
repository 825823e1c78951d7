//! Malformed input closes only the offending connection, is counted, and never disturbs
//! other streams.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// A live stream that must keep flowing while bad clients come and go.
struct Witness {
    publisher: corecast_testkit::client::Publisher,
    viewer: FlvViewer,
    tags: Vec<corecast::flv::reader::FlvTag>,
    next: usize,
}

impl Witness {
    fn new(server: &corecast::Server) -> Witness {
        let tags = fixture_tags();
        let mut publisher = publisher(server, "witness");
        for tag in tags.iter().take(10) {
            publisher.send_tag(tag).unwrap();
        }
        let viewer = FlvViewer::open(server.http_addr(), "/live/witness.flv");
        Witness {
            publisher,
            viewer,
            tags,
            next: 10,
        }
    }

    /// Publishes a few more tags and checks the viewer receives them.
    fn still_flows(&mut self) {
        for tag in &self.tags[self.next..self.next + 10] {
            self.publisher.send_tag(tag).unwrap();
        }
        self.next += 10;
        let got = (0..5).map_while(|_| self.viewer.next_tag()).count();
        assert_eq!(got, 5, "the witness stream stalled");
    }
}

/// Sends `bytes` on a new RTMP connection (after a valid handshake when `handshake`), then
/// checks that the server closed it, counted it as bad input, and kept the witness flowing.
fn assert_rejected(handshake: bool, bytes: &[u8]) {
    let server = start("");
    let mut witness = Witness::new(&server);
    let mut bad = TcpStream::connect(server.rtmp_addr()).unwrap();
    if handshake {
        rtmp_handshake(&mut bad);
    }
    // The server may close before taking everything: a failed write is fine.
    let _ = bad.write_all(bytes);
    read_until_closed(&mut bad, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.rtmp_bad_input
    }) == 1));
    witness.still_flows();
    server.stop();
}

#[test]
fn bad_rtmp_handshake_is_closed_and_counted() {
    // A TLS ClientHello where C0 should be.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0u8; 1600]);
    assert_rejected(false, &hello);
}

#[test]
fn garbage_after_handshake_is_closed_and_counted() {
    // A type-0 chunk header for a 20-byte AMF0 command whose body is garbage.
    let mut junk = vec![0x03, 0, 0, 0, 0, 0, 20, 0x14, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xff; 20]);
    assert_rejected(true, &junk);
}

#[test]
fn absurd_message_length_is_refused_at_its_header() {
    let server = start("");
    let mut witness = Witness::new(&server);
    let mut bad = TcpStream::connect(server.rtmp_addr()).unwrap();
    rtmp_handshake(&mut bad);
    // A message header announcing 16 MiB, followed by far less: refused by the input guard
    // (over the 64 KiB allowed before publishing), not left waiting for the rest.
    let mut junk = vec![0x04, 0, 0, 0, 0xff, 0xff, 0xff, 0x09, 1, 0, 0, 0];
    junk.extend_from_slice(&[0xab; 3000]);
    let _ = bad.write_all(&junk);
    read_until_closed(&mut bad, Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.rtmp_limits_hit
    }) == 1));
    assert_eq!(total(&server, |s| &s.timeouts), 0);
    witness.still_flows();
    server.stop();
}

#[test]
fn silent_rtmp_client_hits_the_handshake_timeout() {
    let server = start("[rtmp]\nhandshake_timeout_ms = 500\n");
    let mut idle = TcpStream::connect(server.rtmp_addr()).unwrap();
    let (_, took) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.timeouts
    }) == 1));
    server.stop();
}

fn http_exchange(server: &corecast::Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.http_addr()).unwrap();
    let _ = stream.write_all(request);
    let (out, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn bad_http_requests_get_clear_errors() {
    let server = start("[http]\nmax_header_bytes = 1024\n");
    let mut witness = Witness::new(&server);
    let garbage = http_exchange(&server, b"\x16\x03\x01garbage\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let huge = format!(
        "GET /live/witness.flv HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let huge = http_exchange(&server, huge.as_bytes());
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
    let post = http_exchange(&server, b"POST /live/x.flv HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert_eq!(total(&server, |s| &s.http_bad_input), 2);
    witness.still_flows();
    server.stop();
}

#[test]
fn slow_http_headers_are_cut_off() {
    let server = start("[http]\nheader_timeout_ms = 500\n");
    let mut slow = TcpStream::connect(server.http_addr()).unwrap();
    slow.write_all(b"GET /live/x.flv HTTP/1.1\r\nHost: slo")
        .unwrap();
    let (_, took) = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(wait_until(Duration::from_secs(2), || total(&server, |s| {
        &s.timeouts
    }) == 1));
    server.stop();
}

#[test]
fn http_routes_answer_properly() {
    let server = start("");
    let not_found = http_exchange(
        &server,
        b"GET /live/none.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let head = http_exchange(
        &server,
        b"HEAD /live/none.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 404 ") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let options = http_exchange(
        &server,
        b"OPTIONS /live/any.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(options.starts_with("HTTP/1.1 204 "), "{options}");
    assert!(options.contains("Access-Control-Allow-Methods: GET, HEAD, OPTIONS"));
    // Keep-alive: two requests on one connection.
    let two = http_exchange(
        &server,
        b"GET /nothing HTTP/1.1\r\n\r\nGET /live/none.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(two.matches("HTTP/1.1 404 ").count(), 2, "{two}");
    let _witness = Witness::new(&server);
    let head = http_exchange(
        &server,
        b"HEAD /live/witness.flv HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 200 ") && head.contains("video/x-flv"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    server.stop();
}

#[test]
fn invalid_names_are_refused_on_every_protocol() {
    use corecast_testkit::client::{Player, Publisher};
    let server = start("");
    let mut witness = Witness::new(&server);
    let (rtmp, timeout) = (server.rtmp_addr(), Duration::from_secs(5));
    // Longer than hub::MAX_NAME_BYTES, within the 64 KiB a command may have before
    // publishing (a 64 KiB name is refused by that limit, at its message header).
    let long = "n".repeat(60_000);
    let names = [
        "a\nINFO forged line",
        "a\0b",
        "?",
        "?key=k",
        "a/b",
        "..",
        "a%2Fb",
        "a b",
        long.as_str(),
    ];
    for name in names {
        let code = rejected_code(Publisher::connect(rtmp, "live", name, timeout));
        assert_eq!(code, "NetStream.Publish.BadName", "{name:.20?}");
        let code = rejected_code(Player::connect(rtmp, "live", name, timeout));
        assert_eq!(code, "NetStream.Play.BadName", "{name:.20?}");
    }
    // A 64 KiB name (the longest AMF0 string) makes a command longer than the 64 KiB a
    // connection may send before publishing: closed at the message header, before any name
    // check.
    let longest = "n".repeat(usize::from(u16::MAX));
    assert!(Publisher::connect(rtmp, "live", &longest, timeout).is_err());
    // Counted as the connection ends, which the client may see first.
    assert!(wait_until(Duration::from_secs(2), || {
        total(&server, |s| &s.rtmp_limits_hit) == 1
    }));
    let apps = ["a\nb", "live/x", "..", ""];
    for app in apps {
        let code = rejected_code(Player::connect(rtmp, app, "cam", timeout));
        assert_eq!(code, "NetConnection.Connect.Rejected", "{app:?}");
    }
    let paths = [
        "/live/a%0AINFO%20forged.flv",
        "/live/a%00b.flv",
        "/live/%3F.m3u8",
        "/live/a%2Fb.flv",
        "/live%2Fa/b.flv",
        "/live/%2E%2E.flv",
        "/live/..-1-2.ts",
        "/%2E%2E/cam.m3u8",
        "/live/caf%C3%A9.flv",
    ];
    for path in paths {
        assert_eq!(http_get(server.http_addr(), path).status, 400, "{path}");
    }
    let long_path = format!("/live/{}.flv", &long[..1000]);
    assert_eq!(http_get(server.http_addr(), &long_path).status, 400);
    // Each refusal counted once, as a name refusal only.
    let refused = 2 * names.len() + apps.len() + paths.len() + 1;
    assert_eq!(total(&server, |s| &s.names_rejected), refused as u64);
    assert_eq!(total(&server, |s| &s.rtmp_bad_input), 0);
    assert_eq!(total(&server, |s| &s.http_bad_input), 0);
    assert_eq!(total(&server, |s| &s.publish_rejected), 0);
    assert_eq!(total(&server, |s| &s.play_rejected), 0);
    witness.still_flows();
    server.stop();
}
