//! Listeners: a second process on the served addresses, the admin endpoints and their
//! connections, and IPv4 clients of a dual-stack listener.

use super::*;
use crate::common::raw_rtmp::RawClient;
use crate::common::{dual_stack, listening, run_to_exit};

/// The refusals of every listener so far.
fn refused(server: &Corecast) -> u64 {
    server.counter("connections_refused_total")
}

/// Waits for the server to have taken every connection just opened to these listeners
/// (each shard accepts on its own, in its own time).
fn settle(addrs: &[SocketAddr]) {
    assert!(
        common::conn::wait_all_accepted(addrs, Duration::from_secs(5)),
        "connections still wait to be accepted on {addrs:?}"
    );
}

/// Opens a connection to `addr` from `source` and checks that the server closes it at once
/// (refused at accept).
fn assert_refused(addr: SocketAddr, source: [u8; 4], what: &str) {
    let stream = tcp_from(addr, source);
    assert!(
        wait_server_closed(addr, &stream, Duration::from_secs(2)).is_some(),
        "{what}: not refused"
    );
}

/// Holds `count` connections to `addr` from `source`.
fn hold(addr: SocketAddr, source: [u8; 4], count: usize) -> Vec<TcpStream> {
    (0..count).map(|_| tcp_from(addr, source)).collect()
}

/// A second corecast started on the running server's addresses, one listener at a time,
/// exactly or through a wildcard on the same port (and the dual-stack wildcard where the
/// host has one), exits with status 1 within 5 s, naming the address; the first keeps every
/// listener and never refuses a connection meanwhile.
#[test]
fn a_second_process_on_served_addresses_exits_naming_them() {
    hostile("", |server| {
        let before = refused(server);
        let served = [server.rtmp, server.http, server.admin];
        let ipv6 = dual_stack();
        let mut attempts = Vec::new();
        for (listener, addr) in served.iter().enumerate() {
            let mut named = vec![addr.to_string(), format!("0.0.0.0:{}", addr.port())];
            if ipv6 {
                named.push(format!("[::]:{}", addr.port()));
            }
            for named in named {
                let mut addrs = [
                    "127.0.0.1:0".to_string(),
                    "127.0.0.1:0".into(),
                    "127.0.0.1:0".into(),
                ];
                addrs[listener] = named.clone();
                attempts.push((addrs, named));
            }
        }
        for (i, ([rtmp, http, admin], named)) in attempts.iter().enumerate() {
            let started = Instant::now();
            // A wildcard admin address needs a token; the token changes nothing else.
            let config = listening(rtmp, http, admin, "token = \"t0ken\"\n");
            let out = run_to_exit(&format!("hostile-second-{i}"), &config);
            let took = started.elapsed();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{named}: {err}");
            let expected = format!(
                "cannot listen on {named}: address already in use (another process serves it)"
            );
            assert!(err.contains(&expected), "{named}: {err}");
            assert!(
                took < Duration::from_secs(5),
                "{named}: exited after {took:?}"
            );
        }
        // The first serves on every listener.
        assert_eq!(common::http_get(server.http, "/live/none.flv").status, 404);
        let mut rtmp = RawClient::connect(server.rtmp);
        let connect = rtmp.connect_app();
        rtmp.send(&connect);
        assert!(rtmp.stays_open(Duration::from_millis(300)));
        assert_eq!(refused(server), before);
    });
}

/// The admin endpoints, asked for on the public HTTP port (also with a bearer token), are
/// not found there: the admin listener serves them, and nothing but them.
#[test]
fn admin_endpoints_are_not_on_the_public_port() {
    hostile("", |server| {
        let paths = [
            "/metrics",
            "/api/v1/stats",
            "/api/v1/streams",
            "/api/v1/streams/live/witness",
            "/debug/pprof/profile?seconds=1",
            "/debug/pprof/flamegraph?seconds=1",
            "/",
            "/console/console.js",
        ];
        for path in paths {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {CREDENTIAL}\r\n\
                 Connection: close\r\n\r\n"
            );
            let response = common::http_request(server.http, &request);
            assert_eq!(response.status, 404, "{path} on the public port");
            assert!(
                !String::from_utf8_lossy(&response.body).contains("corecast_"),
                "{path}"
            );
        }
        for path in ["/metrics", "/api/v1/stats", "/api/v1/streams", "/"] {
            assert_eq!(common::http_get(server.admin, path).status, 200, "{path}");
        }
        assert_eq!(
            common::http_get(server.admin, &format!("/{WITNESS}.m3u8")).status,
            404,
            "media on the admin listener"
        );
    });
}

/// Connection limits of these attacks: loopback counts like any address (each attacker has
/// one of its own in 127.0.0.0/8; the witness and the harness's scrapes come from
/// 127.0.0.1, three connections at most), four per address and twelve in all.
const ADMIN_LIMITS: &str = "[limits]\nexempt_loopback = false\nmax_connections_per_ip = 4\n\
                            max_connections = 12\n";

/// Admin connections held from one address count toward its limit, with no headroom: past
/// four, that address is refused on the admin listener and on both public ones. Held from
/// many addresses, they fill the server's total for the public side, and past the total and
/// corecast::limits::ADMIN_HEADROOM they are refused too; each refusal is counted, and the
/// witness, already connected, plays on.
#[test]
fn admin_connections_are_bounded_like_any_other() {
    hostile(ADMIN_LIMITS, |server| {
        let before = refused(server);
        let attacker = [127, 0, 0, 20];
        let held = hold(server.admin, attacker, 4);
        settle(&[server.admin]);
        assert_refused(server.admin, attacker, "a fifth admin connection");
        assert_refused(server.http, attacker, "HTTP after four admin connections");
        assert_refused(server.rtmp, attacker, "RTMP after four admin connections");
        assert!(
            held.iter().all(|s| !server_closed(server.admin, s)),
            "the four held were admitted"
        );
        // Another address is not affected.
        let other = tcp_from(server.http, [127, 0, 0, 21]);
        settle(&[server.http]);
        assert!(!server_closed(server.http, &other));
        assert_eq!(refused(server), before + 3);
        let fds = server.fds();
        drop((held, other));
        // Closed, so their places are given back.
        assert!(server.fds_back_to(fds - 5, Duration::from_secs(3)));

        // The witness holds two connections (its publisher and its viewer): ten admin
        // connections fill the total of twelve for the public side...
        let before = refused(server);
        let fds = server.fds();
        let sources: Vec<[u8; 4]> = (1..=5).map(|n| [127, 0, 1, n]).collect();
        let mut held = Vec::new();
        for source in &sources[..2] {
            held.extend(hold(server.admin, *source, 4));
        }
        held.extend(hold(server.admin, sources[2], 2));
        settle(&[server.admin]);
        assert_refused(server.http, [127, 0, 2, 1], "HTTP over the total");
        assert_refused(server.rtmp, [127, 0, 2, 1], "RTMP over the total");
        // ... and the admin listener gets its headroom, then no more.
        let headroom = corecast::limits::ADMIN_HEADROOM;
        held.extend(hold(server.admin, sources[2], 2));
        held.extend(hold(server.admin, sources[3], 4));
        held.extend(hold(server.admin, sources[4], headroom - 6));
        settle(&[server.admin]);
        assert_refused(server.admin, [127, 0, 2, 2], "admin over the headroom");
        assert!(
            held.iter().all(|s| !server_closed(server.admin, s)),
            "the {} held were admitted",
            held.len()
        );
        assert_eq!(held.len(), 10 + headroom);
        drop(held);
        // The harness's scrape is an admin connection: it waits for the places to be given
        // back.
        assert!(server.fds_back_to(fds, Duration::from_secs(3)));
        assert_eq!(refused(server), before + 3);
    });
}

/// With `http_listen = "[::]:0"` (dual-stack), IPv4 clients arrive as `::ffff:a.b.c.d` and
/// count as their IPv4 address: one address's connections through the dual-stack HTTP
/// listener and the IPv4 RTMP listener share its limit, and each refusal is counted; the
/// witness plays through the dual-stack listener over IPv4. Skipped (saying why) on a host
/// without IPv6 loopback or dual-stack listeners.
#[test]
fn ipv4_clients_of_a_dual_stack_listener_count_as_ipv4() {
    if !dual_stack() {
        return;
    }
    let config = "[server]\nhttp_listen = \"[::]:0\"\n\
                  [limits]\nexempt_loopback = false\nmax_connections_per_ip = 4\n";
    hostile(config, |server| {
        let before = refused(server);
        let attacker = [127, 0, 0, 30];
        let mut held = hold(server.http, attacker, 3);
        held.extend(hold(server.rtmp, attacker, 1));
        settle(&[server.http, server.rtmp]);
        assert_refused(
            server.http,
            attacker,
            "a fifth connection, dual-stack listener",
        );
        assert_refused(server.rtmp, attacker, "a fifth connection, IPv4 listener");
        assert!(held[..3].iter().all(|s| !server_closed(server.http, s)));
        assert!(!server_closed(server.rtmp, &held[3]));
        // ::1 is another address: it has its own four.
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.http.port()));
        let ipv6: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(v6).unwrap()).collect();
        settle(&[v6]);
        assert_eq!(refused(server), before + 2);
        drop((held, ipv6));
    });
    // Loopback exempt: mapped 127.0.0.0/8 is loopback too.
    let exempt = config.replace("exempt_loopback = false", "exempt_loopback = true");
    hostile(&exempt, |server| {
        let before = refused(server);
        let held = hold(server.http, [127, 0, 0, 30], 20);
        settle(&[server.http]);
        assert!(held.iter().all(|s| !server_closed(server.http, s)));
        assert_eq!(refused(server), before);
    });
}
