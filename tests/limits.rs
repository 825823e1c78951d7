//! Admission limits: connections in total and per client address, streams, and viewers per
//! stream. Over a limit, the newcomer is refused and counted; everyone else keeps going.

mod common;

use common::conn::wait_server_closed;
use common::*;
use corecast_testkit::client::{ClientError, Publisher};
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

/// Connections admitted (and counted) on every listener so far.
fn admitted(server: &corecast::Server) -> u64 {
    total(server, |s| &s.http_accepted) + total(server, |s| &s.rtmp_accepted)
}

/// Closes `held` and waits until the server has closed its side of each, giving their
/// places back.
fn give_back(server: std::net::SocketAddr, held: Vec<TcpStream>) {
    for s in &held {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    for s in &held {
        assert!(
            wait_server_closed(server, s, WAIT).is_some(),
            "the server did not close its side"
        );
    }
}

#[test]
fn connections_per_address_and_in_total() {
    let server = start("[limits]\nmax_connections_per_ip = 3\nexempt_loopback = false\n");
    let http = server.http_addr();
    let held = hold(&server, http, 3);
    assert!(closed_at_once(http), "a fourth connection is refused");
    assert!(wait_until(Duration::from_secs(2), || refused(&server) == 1));
    give_back(http, held);
    let ok = FlvViewer::open(http, "/live/none.flv");
    assert_eq!(
        ok.status, 404,
        "places are given back when connections close"
    );
    server.stop();

    let server = start("[limits]\nmax_connections = 2\n");
    let rtmp = server.rtmp_addr();
    let held = hold(&server, rtmp, 2);
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
    assert!(
        wait_until(WAIT, || total(&server, |s| &s.flv_viewers) == 0),
        "wait_live's viewer is gone"
    );
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

/// Holds `n` connections to `addr` and waits until the server has admitted (and counted)
/// them: each shard admits on its own accept.
fn hold(server: &corecast::Server, addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let before = admitted(server);
    let held = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert!(
        wait_until(WAIT, || admitted(server) == before + n as u64),
        "{n} connections to {addr} admitted"
    );
    held
}

#[test]
fn admin_connections_count_with_a_headroom() {
    let server = start("[limits]\nmax_connections = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let admin = server.admin_addr().unwrap();
    let public = hold(&server, server.http_addr(), 2);
    assert!(
        closed_at_once(server.http_addr()),
        "the public side is full"
    );
    // Operators still get the metrics.
    assert_eq!(http_get(admin, "/metrics").status, 200);
    // Admin connections count: one held makes room for one public connection less.
    give_back(server.http_addr(), public);
    let operator = hold(&server, admin, 1);
    let _public = hold(&server, server.http_addr(), 1);
    assert!(
        closed_at_once(server.http_addr()),
        "the admin connection counts"
    );
    // Past the headroom (corecast::limits::ADMIN_HEADROOM), admin connections are refused.
    let operators = hold(&server, admin, corecast::limits::ADMIN_HEADROOM);
    assert!(closed_at_once(admin), "beyond the headroom");
    drop((operator, operators));
    server.stop();
}

#[test]
fn a_dual_stack_listener_sees_ipv4_clients_as_ipv4() {
    if !dual_stack() {
        return;
    }
    // On "[::]:P", an IPv4 client arrives as ::ffff:a.b.c.d: 127.0.0.1 is still loopback,
    // and exempt.
    let config = "[server]\nhttp_listen = \"[::]:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                  [limits]\nmax_connections_per_ip = 1\nexempt_loopback = true\n";
    let server = start(config);
    let port = server.http_addr().port();
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let _held = (hold(&server, v4, 3), hold(&server, v6, 3));
    assert_eq!(http_get(v4, "/live/none.flv").status, 404);
    assert_eq!(refused(&server), 0, "loopback in both forms is exempt");
    server.stop();

    // Not exempt: 127.0.0.1 (seen as ::ffff:127.0.0.1) counts as itself, ::1 apart from it.
    let server = start(&config.replace("exempt_loopback = true", "exempt_loopback = false"));
    let port = server.http_addr().port();
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let _v4 = hold(&server, v4, 1);
    assert!(
        closed_at_once(v4),
        "a second IPv4 connection is over the limit"
    );
    let _v6 = hold(&server, v6, 1);
    assert!(wait_until(Duration::from_secs(2), || refused(&server) == 1));
    assert!(
        closed_at_once(v6),
        "a second ::1 connection is over the limit"
    );
    assert!(wait_until(Duration::from_secs(2), || refused(&server) == 2));
    server.stop();
}
