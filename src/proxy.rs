//! The PROXY protocol: the header (HAProxy's version 1 text or version 2 binary) that a load
//! balancer in front of corecast sends first on each connection, naming the client it
//! connects for. Parsing is pure (on `ppp`); [`read_header`] is the IO driver.
//!
//! A header is believed only from the networks `server.proxy_trusted` lists, on the
//! listeners `server.proxy_protocol` names: there, a connection must start with one, and the
//! client it names is the connection's peer for the per-address limits, access control,
//! logs and the API. From any other address, a connection that starts with a header is
//! refused (it would be a client claiming to be someone else).

use glommio::net::TcpStream;
use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest header accepted. A version 1 header is at most 107 bytes; a version 2 header
/// may carry up to 65,535 bytes of addresses and TLVs, but a balancer's fit in a few
/// hundred. Longer is bad input.
pub const MAX_HEADER: usize = 1024;

/// The version 1 header's start.
const V1: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;
/// The version 2 header's signature.
const V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A trusted proxy's connection did not start with a header.
    #[error("no PROXY header from a trusted proxy")]
    Missing,
    /// The header is not valid.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// The header is longer than [`MAX_HEADER`].
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// A connection from an address not in `server.proxy_trusted` started with a header.
    #[error("PROXY header from an untrusted address")]
    Untrusted,
    /// The header did not arrive in time.
    #[error("PROXY header not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed before the header ended.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: the connection's own bytes start after it.
    pub len: usize,
    /// The client it names; `None` when it names none (version 2 LOCAL, the balancer's own
    /// health check; version 1 UNKNOWN; a non-IP family): the connection is the proxy's.
    pub client: Option<SocketAddr>,
}

/// Whether `bytes` (the start of a connection) may be the start of a header: a prefix of
/// either version's signature, or longer and starting with it.
pub fn may_be_header(bytes: &[u8]) -> bool {
    let starts = |sig: &[u8]| {
        let n = bytes.len().min(sig.len());
        bytes[..n] == sig[..n]
    };
    starts(V1) || starts(V2)
}

/// Parses the header at the start of `bytes`: `Ok(None)` while it is incomplete.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, ProxyError> {
    if !may_be_header(bytes) {
        return Err(ProxyError::Missing);
    }
    // A version 1 header is one line: complete at its CRLF (ppp would judge a line cut in
    // a port as malformed), at most 107 bytes with it.
    let window = if bytes.starts_with(V1) {
        match bytes.windows(2).position(|w| w == b"\r\n") {
            Some(end) => &bytes[..end + 2],
            None if bytes.len() >= V1_MAX => {
                return Err(ProxyError::Malformed("version 1 line too long".into()))
            }
            None => return Ok(None),
        }
    } else {
        &bytes[..bytes.len().min(MAX_HEADER)]
    };
    let parsed = HeaderResult::parse(window);
    if parsed.is_incomplete() {
        return match bytes.len() >= MAX_HEADER {
            true => Err(ProxyError::TooLong),
            false => Ok(None),
        };
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            use ppp::v1::Addresses;
            let client = match header.addresses {
                Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Unknown => None,
            };
            Ok(Some(Header {
                len: header.header.len(),
                client,
            }))
        }
        HeaderResult::V2(Ok(header)) => {
            use ppp::v2::{Addresses, Command};
            let client = match (header.command, header.addresses) {
                (Command::Local, _) => None,
                (Command::Proxy, Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (Command::Proxy, _) => None,
            };
            Ok(Some(Header {
                len: header.len(),
                client,
            }))
        }
        HeaderResult::V1(Err(err)) => Err(ProxyError::Malformed(err.to_string())),
        HeaderResult::V2(Err(err)) => Err(ProxyError::Malformed(err.to_string())),
    }
}

/// Whether `ip` is in one of the `trusted` networks (an IPv4 address seen mapped into IPv6
/// by a dual-stack listener counts as itself).
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Reads the header a trusted proxy sends first on `stream`, within `limit`, and returns the
/// client it names (`None`: the proxy's own connection). Exactly the header's bytes are
/// consumed: what follows is left for the protocol. The bytes are looked at with `MSG_PEEK`,
/// and taken once they are known to belong to the header.
pub async fn read_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    let read = async {
        let mut taken: Vec<u8> = Vec::new();
        let mut peeked = vec![0u8; MAX_HEADER];
        loop {
            let room = MAX_HEADER - taken.len();
            let n = stream
                .peek(&mut peeked[..room])
                .await
                .map_err(io::Error::from)?;
            if n == 0 {
                return Err(ProxyError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let mut seen = taken.clone();
            seen.extend_from_slice(&peeked[..n]);
            match parse(&seen)? {
                Some(header) => {
                    let rest = header.len - taken.len();
                    futures_lite::AsyncReadExt::read_exact(stream, &mut peeked[..rest]).await?;
                    return Ok(header.client);
                }
                // Every byte seen belongs to the header: take them, wait for more.
                None => {
                    futures_lite::AsyncReadExt::read_exact(stream, &mut peeked[..n]).await?;
                    taken.extend_from_slice(&peeked[..n]);
                }
            }
        }
    };
    crate::util::timeout(limit, read)
        .await
        .unwrap_or(Err(ProxyError::Timeout(limit)))
}

/// Whether `stream` starts like a header (looked at without taking anything): for
/// connections from untrusted addresses on a listener that takes headers.
pub async fn starts_with_header(stream: &TcpStream, limit: Duration) -> bool {
    let peek = async {
        let mut first = [0u8; 12];
        match stream.peek(&mut first).await {
            // Whole signatures only: "P" alone may start a POST.
            Ok(n) => first[..n].starts_with(V1) || first[..n].starts_with(V2),
            Err(_) => false,
        }
    };
    crate::util::timeout(limit, peek).await.unwrap_or(false)
}

#[cfg(test)]
mod tests;
