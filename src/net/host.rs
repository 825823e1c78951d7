//! The servers that URLs in the configuration name (origins, forward targets): an address,
//! or a DNS name that is resolved again at every connect, so an origin that moves is
//! followed without a reload.
//!
//! The resolver (`getaddrinfo`) blocks, so it runs on the shard's blocking thread (glommio's
//! `spawn_blocking`), never on the shard; the caller's deadline bounds the lookup and the
//! connects together. A lookup that outlives the deadline finishes on that thread and its
//! answer is dropped.

use glommio::net::TcpStream;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Most bytes of a DNS name (RFC 1035).
const MAX_NAME_BYTES: usize = 253;
/// Most bytes of one label of a name.
const MAX_LABEL_BYTES: usize = 63;

/// A server named in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address and port.
    Addr(SocketAddr),
    /// A DNS name and port.
    Name {
        /// The name, lower case.
        name: String,
        /// The port.
        port: u16,
    },
}

impl Host {
    /// The server of a URL's authority: `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`, or any of
    /// them without `:PORT`, which is then `default_port`. None when it is none of these (a
    /// name of other characters than letters, digits, `-` and `.`, a label too long, a port
    /// that is not a number from 1 to 65535).
    pub fn parse(authority: &str, default_port: u16) -> Option<Host> {
        if let Ok(addr) = authority.parse::<SocketAddr>() {
            return (addr.port() != 0).then_some(Host::Addr(addr));
        }
        let bare = |ip: &str| ip.parse::<IpAddr>().ok();
        if let Some(ip) = authority
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(bare)
            .filter(IpAddr::is_ipv6)
            .or_else(|| bare(authority).filter(IpAddr::is_ipv4))
        {
            return Some(Host::Addr(SocketAddr::new(ip, default_port)));
        }
        let (name, port) = match authority.rsplit_once(':') {
            Some((name, port)) => (name, port.parse::<u16>().ok().filter(|&p| p != 0)?),
            None => (authority, default_port),
        };
        valid_name(name).then(|| Host::Name {
            name: name.to_ascii_lowercase(),
            port,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Host::Addr(addr) => addr.port(),
            Host::Name { port, .. } => *port,
        }
    }

    /// The addresses of the server, in the resolver's order.
    async fn addresses(&self) -> io::Result<Vec<SocketAddr>> {
        let (name, port) = match self {
            Host::Addr(addr) => return Ok(vec![*addr]),
            Host::Name { name, port } => (name.clone(), *port),
        };
        let shown = self.to_string();
        let lookup = move || (name.as_str(), port).to_socket_addrs().map(Vec::from_iter);
        let found = glommio::executor().spawn_blocking(lookup).await;
        match found {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{shown}: the name has no address"),
            )),
            Err(err) => Err(io::Error::new(err.kind(), format!("{shown}: {err}"))),
        }
    }

    /// A connection to the server, and the address it went to: the name resolved, then its
    /// addresses tried in order, all within `within` (`TimedOut` after it). The error of
    /// the last address tried when none accepts.
    pub async fn connect(&self, within: Duration) -> io::Result<(TcpStream, SocketAddr)> {
        let attempt = async {
            let mut last = None;
            for addr in self.addresses().await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok((stream, addr)),
                    Err(err) => last = Some(io::Error::from(err)),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
        };
        crate::util::timeout(within, attempt)
            .await
            .unwrap_or_else(|| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{self}: no connection within {within:?}"),
                ))
            })
    }
}

impl fmt::Display for Host {
    /// `IP:PORT`, `[IPv6]:PORT` or `NAME:PORT`: the URL's authority with its port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Addr(addr) => write!(f, "{addr}"),
            Host::Name { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels (no label empty, longer
/// than 63 bytes, or starting or ending with a hyphen), whose last label is not a number
/// (that is a malformed address, not a name).
fn valid_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=MAX_LABEL_BYTES).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    name.len() <= MAX_NAME_BYTES && name.split('.').all(label_ok) && !last_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_addresses_or_names_with_a_port() {
        let parse = |s| Host::parse(s, 1935);
        let addr = |s: &str| Some(Host::Addr(s.parse().unwrap()));
        let name = |n: &str, port| {
            Some(Host::Name {
                name: n.into(),
                port,
            })
        };
        assert_eq!(parse("192.0.2.7:19350"), addr("192.0.2.7:19350"));
        assert_eq!(parse("192.0.2.7"), addr("192.0.2.7:1935"));
        assert_eq!(parse("[2001:db8::7]:443"), addr("[2001:db8::7]:443"));
        assert_eq!(parse("[2001:db8::7]"), addr("[2001:db8::7]:1935"));
        assert_eq!(
            parse("Origin-1.Example.net:8443"),
            name("origin-1.example.net", 8443)
        );
        assert_eq!(parse("localhost"), name("localhost", 1935));
        assert_eq!(
            parse("origin.example:443").map(|h| h.to_string()),
            Some("origin.example:443".into())
        );
        assert_eq!(
            parse("[2001:db8::7]").map(|h| h.to_string()),
            Some("[2001:db8::7]:1935".into())
        );
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "abcdefgh.".repeat(28));
        for bad in [
            "",
            ":1935",
            "192.0.2.7:0",
            "192.0.2.7:65536",
            "192.0.2.300",
            "2001:db8::7",
            "origin.example:",
            "origin.example:http",
            "-origin.example",
            "origin..example",
            "origin_1.example",
            "user@origin.example",
            "origin.example/live",
            "origin example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
