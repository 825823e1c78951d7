//! `corecast probe`: the client side of the health checks, so that a container image needs
//! no HTTP client of its own (`HEALTHCHECK CMD corecast probe http://127.0.0.1:8081/readyz`).
//! One `GET` over plain HTTP/1.1 with a deadline on every step; success is a `200`.

use crate::net::host::Host;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most of an answer that is read (a health check's is a line).
const MAX_ANSWER: u64 = 64 * 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("not an http:// URL with a host: {0}")]
    Url(String),
    /// The host did not resolve, or the server could not be reached.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The host and port.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The exchange failed or took longer than allowed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not an HTTP response.
    #[error("the answer is not an HTTP response")]
    Malformed,
    /// The server answered, with another status than 200.
    #[error("{code} {body}")]
    Status {
        /// The status code.
        code: u16,
        /// The body's first line.
        body: String,
    },
}

/// Asks `url` within `timeout` and returns the first line of a `200`'s body.
pub fn probe(url: &str, timeout: Duration) -> Result<String, ProbeError> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let bad_url = || ProbeError::Url(url.to_string());
    let (host, path) = split_url(url).ok_or_else(bad_url)?;
    // `host:port`, `[v6]:port`, or no port (80).
    let addr = Host::parse(host, 80).ok_or_else(bad_url)?.to_string();
    let unreachable = |source| ProbeError::Connect {
        addr: addr.clone(),
        source,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| unreachable(std::io::ErrorKind::NotFound.into()))?;
    let mut stream = TcpStream::connect_timeout(&target, left()).map_err(unreachable)?;
    stream.set_write_timeout(Some(left()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast-probe\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut reader = (&mut stream).take(MAX_ANSWER);
    let mut chunk = [0u8; 4096];
    loop {
        reader.get_ref().set_read_timeout(Some(left()))?;
        match reader.read(&mut chunk)? {
            0 => break,
            n => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let (code, body) = parse_answer(&answer).ok_or(ProbeError::Malformed)?;
    if code == 200 {
        Ok(body)
    } else {
        Err(ProbeError::Status { code, body })
    }
}

/// `http://host[:port][/path]` as (`host[:port]`, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let clean = !host.is_empty() && !host.contains(['@', ' ']) && !path.contains([' ', '\r', '\n']);
    clean.then_some((host, path))
}

/// The status code and the body's first line of a complete answer.
fn parse_answer(answer: &[u8]) -> Option<(u16, String)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(answer).ok()? else {
        return None;
    };
    let body = String::from_utf8_lossy(&answer[head..]);
    Some((
        response.code?,
        body.lines().next().unwrap_or("").to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/readyz"),
            Some(("127.0.0.1:8081", "/readyz"))
        );
        assert_eq!(split_url("http://localhost"), Some(("localhost", "/")));
        assert_eq!(
            split_url("http://[::1]:8081/healthz"),
            Some(("[::1]:8081", "/healthz"))
        );
        assert_eq!(split_url("https://example.com/"), None);
        assert_eq!(split_url("http:///readyz"), None);
        assert_eq!(split_url("http://user@host/"), None);
        assert_eq!(split_url("http://host/a b"), None);
    }

    #[test]
    fn answers_give_status_and_first_line() {
        let ready = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nready\n";
        assert_eq!(parse_answer(ready), Some((200, "ready".to_string())));
        let stalled = b"HTTP/1.1 503 Service Unavailable\r\n\r\nshard 1 stalled\nmore";
        assert_eq!(
            parse_answer(stalled),
            Some((503, "shard 1 stalled".to_string()))
        );
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
    }
}
