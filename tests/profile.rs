//! CPU profiles over the admin endpoints, taken while a stream plays. (In a test binary of
//! its own: the profiler's SIGPROF reaches every thread of the process.)

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn fetch(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&raw[..split]).to_string(),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn flamegraph_and_pprof_profiles_are_served_while_streaming() {
    let server = start("");
    let publishing = publish_in_background(&server, "profiled", 1, 1.0);
    wait_live(&server, "/live/profiled.flv");
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/profiled.flv");
    let reader = std::thread::spawn(move || viewer.read_all(Duration::from_secs(15)).len());
    let (head, svg) = fetch(server.http_addr(), "/debug/pprof/flamegraph?seconds=1");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("image/svg+xml"),
        "{head}"
    );
    let svg = String::from_utf8(svg).unwrap();
    let head = head.replace("\r\n", " | ");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "not an SVG: {} (head: {head})",
        &svg[..svg.len().min(300)]
    );
    let (head, pb) = fetch(server.http_addr(), "/debug/pprof/profile?seconds=1");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    use pprof::protos::Message;
    let profile = pprof::protos::Profile::decode(&pb[..]).expect("pprof protobuf");
    assert!(!profile.sample_type.is_empty());
    assert!(!profile.string_table.is_empty());
    // Streaming went on meanwhile.
    publishing.join().unwrap();
    assert!(reader.join().unwrap() > 100);
    server.stop();
}
