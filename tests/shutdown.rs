//! Graceful stop: every listener (RTMP, HTTP, admin) closes at once, every stream ends for its
//! viewers (HTTP-FLV responses end, RTMP players get NetStream.Play.Stop, HLS playlists get
//! EXT-X-ENDLIST), the drain ends as soon as connections are done, and a new server binds the
//! same ports at once.

mod common;

use common::*;
use corecast_testkit::client::{PlayEvent, Player};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn playlist(addr: SocketAddr, path: &str) -> Option<String> {
    playlist_on(TcpStream::connect(addr).ok()?, path)
}

/// The playlist at `path`, asked on a connection the server has already accepted.
fn playlist_on(mut s: TcpStream, path: &str) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

#[test]
fn stop_ends_every_stream_for_its_viewers_and_the_ports_rebind() {
    let config = "[server]\ndrain_timeout_ms = 5000\n[hls]\ntarget_duration_ms = 1000\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    let server = start(config);
    let (rtmp, http) = (server.rtmp_addr(), server.http_addr());
    let admin = server.admin_addr().expect("an admin listener");
    let publishing = publish_in_background(&server, "bye", 20, 1.0);
    wait_live(&server, "/live/bye.flv");
    let mut flv = FlvViewer::open(http, "/live/bye.flv");
    assert_eq!(flv.status, 200);
    let mut player = Player::connect(rtmp, "live", "bye", Duration::from_secs(5)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        playlist(http, "/live/bye.m3u8").is_some_and(|p| p.contains(".ts"))
    }));
    // Viewers are playing.
    assert!(flv.next_tag().is_some());
    assert!((0..50).any(|_| matches!(player.next_event(), Ok(Some(PlayEvent::Video { .. })))));
    // HLS players with a connection open: each is good for one request during the drain.
    let mut hls_connections: Vec<TcpStream> =
        (0..40).map(|_| TcpStream::connect(http).unwrap()).collect();

    let stopping = Instant::now();
    let stopper = std::thread::spawn(move || {
        server.stop();
        stopping.elapsed()
    });
    // Every listener closes at once: new connections are refused during the drain, so none
    // reaches a stopping process (and a new instance may take the ports at once).
    for (name, addr) in [("rtmp", rtmp), ("http", http), ("admin", admin)] {
        let refused = wait_until(
            Duration::from_secs(2),
            || matches!(TcpStream::connect(addr), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        );
        assert!(refused, "the {name} listener is closed during the drain");
    }
    assert!(
        !stopper.is_finished(),
        "the viewers' connections are still draining"
    );
    // HLS players whose connection was open get the final playlist.
    // One open connection after the other, until one gets it.
    let final_playlist = wait_until(Duration::from_secs(3), || {
        hls_connections.pop().is_some_and(|connection| {
            playlist_on(connection, "/live/bye.m3u8").is_some_and(|p| p.contains("#EXT-X-ENDLIST"))
        })
    });
    assert!(final_playlist, "EXT-X-ENDLIST during the drain");
    drop(hls_connections);
    // The FLV response ends cleanly.
    let flv_end = Instant::now();
    while flv.next_tag().is_some() {
        assert!(
            flv_end.elapsed() < Duration::from_secs(5),
            "FLV response did not end"
        );
    }
    // The RTMP player is told the stream stopped.
    let told = (0..500).any(|_| matches!(player.next_event(), Ok(Some(PlayEvent::StreamEnded))));
    assert!(told, "NetStream.Play.Stop");
    drop(player);
    let took = stopper.join().unwrap();
    // Connections finished: the drain ended long before its 5 s deadline (the HLS linger
    // is 1.5 target durations).
    assert!(took < Duration::from_millis(4000), "{took:?}");
    // The publisher was disconnected.
    let sent = publishing.join();
    assert!(
        sent.is_err(),
        "the publisher's connection was closed under it"
    );

    // A new server binds the same ports at once (SO_REUSEADDR, no TIME_WAIT trouble).
    let again = format!("[server]\nrtmp_listen = \"{rtmp}\"\nhttp_listen = \"{http}\"\n");
    let restarted = start(&again);
    assert_eq!((restarted.rtmp_addr(), restarted.http_addr()), (rtmp, http));
    restarted.stop();
}
