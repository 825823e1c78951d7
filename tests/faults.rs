//! Faults and abuse: slowloris connections closed by the timeouts while a normal viewer
//! plays, and viewers that reset their connection in the middle of a write.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes that arrived on `socket` and were not read (FIONREAD).
fn unread(socket: &socket2::Socket) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int, at a valid address, for a descriptor we own.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::FIONREAD,
            &mut n,
        )
    };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn slowloris_connections_are_closed_by_the_timeouts_while_viewers_play() {
    let server = start("[rtmp]\nhandshake_timeout_ms = 1500\n[http]\nheader_timeout_ms = 1500\n");
    let publishing = publish_in_background(&server, "steady", 3, 1.0);
    wait_live(&server, "/live/steady.flv");
    let baseline = open_fds();

    // 1,000 connections that send nothing useful: half of an HTTP request head, or the
    // first bytes of an RTMP handshake.
    let mut idle = Vec::new();
    for i in 0..1000 {
        let (addr, bytes): (_, &[u8]) = if i % 2 == 0 {
            (
                server.http_addr(),
                b"GET /live/steady.flv HTTP/1.1\r\nHost: x\r\n",
            )
        } else {
            (server.rtmp_addr(), &[3u8, 0, 0, 0])
        };
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(bytes).unwrap();
        idle.push(s);
    }
    // Meanwhile a normal viewer connects and plays.
    let started = Instant::now();
    let mut viewer = FlvViewer::open(server.http_addr(), "/live/steady.flv");
    assert_eq!(viewer.status, 200);
    let mut tags = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert!(viewer.next_tag().is_some(), "the viewer keeps playing");
        tags += 1;
    }
    assert!(tags > 50, "{tags} tags in 3 s");

    // Every idle connection was closed by the server.
    for s in &mut idle {
        read_until_closed(s, Duration::from_secs(5));
    }
    assert!(total(&server, |s| &s.timeouts) >= 1000);
    drop(idle);
    drop(viewer);
    // Descriptors return to the baseline once the clients' sides are closed too.
    assert!(
        wait_until(Duration::from_secs(5), || open_fds() <= baseline + 2),
        "{} open, baseline {baseline}",
        open_fds()
    );
    publishing.join().unwrap();
    server.stop();
}

#[test]
fn viewers_resetting_mid_write_are_cleaned_up_and_others_flow() {
    let server = start("");
    let publishing = publish_in_background(&server, "resets", 2, 2.0);
    wait_live(&server, "/live/resets.flv");
    let http = server.http_addr();
    let mut witness = FlvViewer::open(http, "/live/resets.flv");
    for round in 0..50 {
        // A small receive buffer that is never read fills up, so the server is in the middle
        // of a write when the reset (SO_LINGER 0) arrives.
        let v = FlvViewer::open_with(http, "/live/resets.flv", Some(4096));
        assert_eq!(v.status, 200, "round {round}");
        let socket = socket2::Socket::from(v.stream);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || unread(&socket) > 0),
            "the server writes to the viewer (round {round})"
        );
        drop(socket);
        assert!(
            witness.next_tag().is_some(),
            "the witness flows (round {round})"
        );
    }
    // Every reset viewer was detached; only the witness remains.
    assert!(wait_until(Duration::from_secs(5), || {
        server
            .stats()
            .iter()
            .map(|s| corecast::stats::get(&s.flv_viewers))
            .sum::<u64>()
            == 1
    }));
    drop(witness);
    publishing.join().unwrap();
    server.stop();
}
