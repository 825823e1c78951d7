//! Connections as the server sees them, read from the kernel's tables: whether the server
//! has closed its side of a connection, whether it has taken every connection waiting on a
//! listener; and connections from chosen loopback addresses.

use super::wait_until;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// True once the server side of `client`'s connection is closed: the kernel's table has no
/// established socket from the server's address to `client`'s (after a close, the server's
/// socket is gone, or in FIN-WAIT while the kernel sends what was left). A dual-stack `[::]`
/// listener's connections from IPv4 clients are in the IPv6 table, as mapped addresses.
pub fn server_closed(server: SocketAddr, client: &TcpStream) -> bool {
    let local = client.local_addr().unwrap();
    let (SocketAddr::V4(server), SocketAddr::V4(local)) = (server, local) else {
        unreachable!("the hostile tests connect over IPv4")
    };
    let v4 = |addr: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(addr.ip().octets()),
            addr.port()
        )
    };
    // /proc/net/tcp6 writes an address as four 32-bit words, each in host (little-endian)
    // byte order.
    let mapped = |addr: std::net::SocketAddrV4| {
        let octets = addr.ip().to_ipv6_mapped().octets();
        let words: String = octets
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect();
        format!("{words}:{:04X}", addr.port())
    };
    let established = |table: &str, from: String, to: String| {
        let table = std::fs::read_to_string(table).unwrap_or_default();
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, remote address, state (01 = ESTABLISHED, 08 = CLOSE_WAIT).
            fields.len() > 3
                && fields[1] == from
                && fields[2] == to
                && matches!(fields[3], "01" | "08")
        })
    };
    !established("/proc/net/tcp", v4(server), v4(local))
        && !established("/proc/net/tcp6", mapped(server), mapped(local))
}

/// Waits until the server closes `client`'s connection; how long that took, or `None` after
/// `limit`.
pub fn wait_server_closed(
    server: SocketAddr,
    client: &TcpStream,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    wait_until(limit, || server_closed(server, client)).then(|| started.elapsed())
}

/// A TCP connection to `addr` from `source` (an address of 127.0.0.0/8: each attacker can
/// have an address of its own).
pub fn tcp_from(addr: SocketAddr, source: [u8; 4]) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local = SocketAddr::from((source, 0));
    socket.bind(&local.into()).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .unwrap();
    socket.into()
}

/// True when no connection waits in the accept queue of any listening socket on `port`
/// (each shard has one): the server has taken every connection made so far, and admitted
/// or refused it.
pub fn all_accepted(port: u16) -> bool {
    let waiting = |table: &str| {
        let table = std::fs::read_to_string(table).unwrap_or_default();
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, remote address, state (0A = LISTEN), tx_queue:rx_queue (for a
            // listener, rx_queue is the accept queue's length).
            fields.len() > 4
                && fields[3] == "0A"
                && fields[1].ends_with(&format!(":{port:04X}"))
                && fields[4].split(':').nth(1) != Some("00000000")
        })
    };
    !waiting("/proc/net/tcp") && !waiting("/proc/net/tcp6")
}

/// Waits until the server has taken every connection made so far to the listeners on
/// these addresses' ports (see [`all_accepted`]); false after `limit`.
pub fn wait_all_accepted(addrs: &[SocketAddr], limit: Duration) -> bool {
    wait_until(limit, || addrs.iter().all(|a| all_accepted(a.port())))
}
