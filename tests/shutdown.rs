//! Graceful stop: listeners close, every stream ends for its viewers (HTTP-FLV responses
//! end, RTMP players get NetStream.Play.Stop, HLS playlists get EXT-X-ENDLIST), the drain
//! ends as soon as connections are done, and a new server binds the same ports at once.

mod common;

use common::*;
use corecast::client::{PlayEvent, Player};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn playlist(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
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
    let config = "[server]\ndrain_timeout_ms = 5000\n[hls]\ntarget_duration_ms = 1000\n";
    let server = start(config);
    let (rtmp, http) = (server.rtmp_addr(), server.http_addr());
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

    let stopping = Instant::now();
    let stopper = std::thread::spawn(move || {
        server.stop();
        stopping.elapsed()
    });
    // HLS players polling during the drain get the final playlist.
    let mut final_playlist = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while final_playlist.is_none() && Instant::now() < deadline {
        final_playlist = playlist(http, "/live/bye.m3u8").filter(|p| p.contains("#EXT-X-ENDLIST"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(final_playlist.is_some(), "EXT-X-ENDLIST during the drain");
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
