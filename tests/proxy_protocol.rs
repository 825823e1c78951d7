//! corecast behind Debian's haproxy speaking the PROXY protocol (version 2 on the RTMP
//! listener, version 1 on the HTTP one): the per-address limit counts the clients behind the
//! balancer, logs name them, and headers that are missing, malformed or sent from an
//! untrusted address close the connection and are counted.

mod common;

use common::conn::tcp_from;
use common::logged::Logged;
use common::{free_port, have_tool, samples, wait_until, Killed};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// haproxy in front of `server`: RTMP with `send-proxy-v2`, HTTP with `send-proxy`.
struct Balancer {
    _process: Killed,
    rtmp: SocketAddr,
    http: SocketAddr,
    config: std::path::PathBuf,
}

impl Balancer {
    fn start(server: &Logged) -> Balancer {
        let (rtmp, http) = (free_port(), free_port());
        let config = std::env::temp_dir().join(format!(
            "corecast-haproxy-{}-{rtmp}.cfg",
            std::process::id()
        ));
        let text = format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n\
             frontend rtmp\n  bind 127.0.0.1:{rtmp}\n  default_backend corecast_rtmp\n\
             backend corecast_rtmp\n  server c1 {} send-proxy-v2\n\
             frontend http\n  bind 127.0.0.1:{http}\n  default_backend corecast_http\n\
             backend corecast_http\n  server c1 {} send-proxy\n",
            server.rtmp, server.http
        );
        std::fs::write(&config, text).expect("haproxy configuration");
        let process = Killed(
            Command::new("haproxy")
                .args(["-db", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start haproxy"),
        );
        let balancer = Balancer {
            _process: process,
            rtmp: SocketAddr::from(([127, 0, 0, 1], rtmp)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            config,
        };
        assert!(
            wait_until(Duration::from_secs(5), || TcpStream::connect(balancer.http)
                .is_ok()),
            "haproxy listens"
        );
        balancer
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Whether the server closed `stream` without answering, within 5 s.
fn closed_without_answer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0)) || matches!(stream.read(&mut byte), Ok(0))
}

/// The response head to `request` sent on `stream`.
fn answer(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("request");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = vec![0u8; 256];
    let n = stream.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).into_owned()
}

fn counter(server: &Logged, name: &str) -> f64 {
    samples(server.admin, None, name)
        .iter()
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn clients_behind_haproxy_are_limited_and_logged_by_their_own_address() {
    if !have_tool("haproxy") {
        return;
    }
    // The listeners take headers from 127.0.0.1 (haproxy) only.
    let server = Logged::start_with(
        "proxied",
        "json",
        "[limits]\nmax_connections_per_ip = 2\nexempt_loopback = false\n",
        &[
            ("CORECAST_SERVER_PROXY_PROTOCOL", "[\"rtmp\", \"http\"]"),
            ("CORECAST_SERVER_PROXY_TRUSTED", "[\"127.0.0.1/32\"]"),
        ],
    );
    let balancer = Balancer::start(&server);
    let request = "GET /live/absent.flv HTTP/1.1\r\nHost: t\r\n\r\n";

    // Two clients from 127.0.0.2 through haproxy: both served (404, kept alive).
    let mut first = tcp_from(balancer.http, [127, 0, 0, 2]);
    let mut second = tcp_from(balancer.http, [127, 0, 0, 2]);
    assert!(answer(&mut first, request).starts_with("HTTP/1.1 404"));
    assert!(answer(&mut second, request).starts_with("HTTP/1.1 404"));
    // A third from the same address is over its limit, though haproxy's own address
    // carries five connections by now: the limit counts the client, not the balancer.
    let refused_before = counter(&server, "corecast_connections_refused_total");
    let mut third = tcp_from(balancer.http, [127, 0, 0, 2]);
    third.write_all(request.as_bytes()).expect("request");
    assert!(closed_without_answer(&mut third), "the third is refused");
    assert!(wait_until(Duration::from_secs(5), || {
        counter(&server, "corecast_connections_refused_total") > refused_before
    }));
    // Another client is served.
    let mut other = tcp_from(balancer.http, [127, 0, 0, 3]);
    assert!(answer(&mut other, request).starts_with("HTTP/1.1 404"));

    // Logs name the client behind haproxy: an invalid name over HTTP (PROXY version 1) and
    // a bad handshake over RTMP (version 2).
    let mut named = tcp_from(balancer.http, [127, 0, 0, 4]);
    assert!(answer(
        &mut named,
        "GET /live/bad%01name.flv HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400"));
    let mut rtmp = tcp_from(balancer.rtmp, [127, 0, 0, 5]);
    rtmp.write_all(&[0x09; 1537]).expect("bad handshake");
    assert!(closed_without_answer(&mut rtmp));
    let peer_of = |message: &str| -> Vec<String> {
        server
            .parsed()
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(message)))
            .filter_map(|l| l["span"]["peer"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(5), || {
            peer_of("invalid name refused")
                .iter()
                .any(|p| p.starts_with("127.0.0.4:"))
                && peer_of("bad handshake")
                    .iter()
                    .any(|p| p.starts_with("127.0.0.5:"))
        }),
        "{:?} {:?}",
        peer_of("invalid name refused"),
        peer_of("bad handshake")
    );

    // Straight to corecast: a header from an untrusted address, a malformed one and none at
    // all from the trusted address each close the connection and are counted.
    let refused_before = counter(&server, "corecast_proxy_refused_total");
    let mut spoofed = tcp_from(server.http, [127, 0, 0, 6]);
    spoofed
        .write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 50412 8080\r\nGET / HTTP/1.1\r\n\r\n")
        .expect("header");
    assert!(closed_without_answer(&mut spoofed));
    let mut malformed = tcp_from(server.http, [127, 0, 0, 1]);
    malformed
        .write_all(b"PROXY TCP4 nonsense\r\n")
        .expect("header");
    assert!(closed_without_answer(&mut malformed));
    let mut missing = tcp_from(server.rtmp, [127, 0, 0, 1]);
    missing.write_all(&[0x03; 1537]).expect("handshake");
    assert!(closed_without_answer(&mut missing));
    assert!(
        wait_until(Duration::from_secs(5), || {
            counter(&server, "corecast_proxy_refused_total") >= refused_before + 3.0
        }),
        "three refusals counted"
    );
    // A client of its own from an untrusted address, without a header, is served directly.
    let mut direct = tcp_from(server.http, [127, 0, 0, 7]);
    assert!(answer(&mut direct, request).starts_with("HTTP/1.1 404"));
}
