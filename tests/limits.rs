//! Admission limits: connections in total and per client address, streams, and viewers per
//! stream. Over a limit, the newcomer is refused and counted; everyone else keeps going.

mod common;

use common::*;
use corecast::client::{ClientError, Publisher};
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Whether the server closes a fresh connection at once (refused at accept).
fn closed_at_once(addr: std::net::SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0) | Err(_))
        && !matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn refused(server: &corecast::Server) -> u64 {
    total(server, |s| &s.connections_refused)
}

#[test]
fn connections_per_address_and_in_total() {
    let server = start("[limits]\nmax_connections_per_ip = 3\nexempt_loopback = false\n");
    let http = server.http_addr();
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(http).unwrap()).collect();
    // Each shard admits on its own accept: wait until all three are counted.
    std::thread::sleep(Duration::from_millis(200));
    assert!(closed_at_once(http), "a fourth connection is refused");
    assert!(wait_until(Duration::from_secs(2), || refused(&server) == 1));
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let ok = FlvViewer::open(http, "/live/none.flv");
    assert_eq!(
        ok.status, 404,
        "places are given back when connections close"
    );
    server.stop();

    let server = start("[limits]\nmax_connections = 2\n");
    let rtmp = server.rtmp_addr();
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(rtmp).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(
        closed_at_once(server.http_addr()),
        "the limit spans protocols"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(wait_until(Duration::from_secs(2), || refused(&server) == 1));
    drop(held);
    server.stop();
}

#[test]
fn streams_and_viewers_per_stream() {
    let server = start("[limits]\nmax_streams = 1\nmax_viewers_per_stream = 2\n");
    let publishing = publish_in_background(&server, "only", 2, 1.0);
    wait_live(&server, "/live/only.flv");
    match Publisher::connect(server.rtmp_addr(), "live", "second", Duration::from_secs(5)) {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, "NetStream.Publish.Failed"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a second stream was accepted"),
    }
    let http = server.http_addr();
    // wait_live's own request is a viewer until the server's next send finds it gone.
    std::thread::sleep(Duration::from_millis(500));
    let mut first = FlvViewer::open(http, "/live/only.flv");
    let mut second = FlvViewer::open(http, "/live/only.flv");
    assert_eq!((first.status, second.status), (200, 200));
    assert!(first.next_tag().is_some() && second.next_tag().is_some());
    let third = FlvViewer::open(http, "/live/only.flv");
    assert_eq!(
        third.status, 404,
        "a third viewer is over the stream's limit"
    );
    drop(first);
    assert!(wait_until(Duration::from_secs(3), || {
        FlvViewer::open(http, "/live/only.flv").status == 200
    }));
    drop(second);
    publishing.join().unwrap();
    server.stop();
}
