//! HTTP for HLS viewers: one keep-alive HTTP/1.1 connection to the target, opened on demand
//! and reopened after the server closed it; response heads parsed and bounded
//! ([`MAX_HEAD`]), bodies bounded ([`MAX_BODY`]), each request bounded in time
//! ([`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT) unless the caller allows more); why a request failed ([`HlsError`]).

use super::{MAX_BODY, MAX_HEAD};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Read buffer for bodies that are only counted: small, since a load test holds thousands of
/// viewers.
const READ_BUFFER: usize = 16 * 1024;
/// Bytes asked for per read while a response head comes in.
const HEAD_READ: usize = 2048;
/// Most headers parsed in a response head.
const MAX_HEADERS: usize = 64;

/// Why an HLS request failed.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// The TCP connection could not be opened.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// No complete response in time.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before the response was complete.
    #[error("connection closed before the response was complete")]
    Closed,
    /// The response head is larger than [`MAX_HEAD`].
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The response head is not HTTP.
    #[error("malformed response head: {0}")]
    BadHead(String),
    /// The body's length is not given by one Content-Length.
    #[error("response without a usable Content-Length (chunked and close-delimited bodies are not supported)")]
    NoLength,
    /// The body is larger than [`MAX_BODY`].
    #[error("response body of {0} bytes is over the limit of {MAX_BODY}")]
    BodyTooLarge(u64),
    /// A status other than 200 where 200 was needed.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The playlist could not be used.
    #[error("playlist: {0}")]
    Playlist(String),
    /// The stream name, application or a segment URI cannot be requested.
    #[error("cannot request {0:?}")]
    Path(String),
}

impl From<HlsError> for io::Error {
    fn from(err: HlsError) -> Self {
        let kind = match &err {
            HlsError::Connect { source, .. } => source.kind(),
            HlsError::Io(e) => e.kind(),
            HlsError::Timeout(_) => io::ErrorKind::TimedOut,
            HlsError::Closed => io::ErrorKind::UnexpectedEof,
            HlsError::Status(404) => io::ErrorKind::NotFound,
            HlsError::Status(_) => io::ErrorKind::Other,
            HlsError::Path(_) => io::ErrorKind::InvalidInput,
            HlsError::HeadTooLarge
            | HlsError::BadHead(_)
            | HlsError::NoLength
            | HlsError::BodyTooLarge(_)
            | HlsError::Playlist(_) => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// The parts of a response head a viewer needs.
struct Head {
    status: u16,
    len: u64,
    close: bool,
}

/// Parses a complete response head; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HlsError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HlsError::BadHead(e.to_string())),
    };
    let status = response.code.unwrap_or_default();
    let mut len: Option<u64> = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().map_err(|_| HlsError::NoLength)?;
            if len.is_some_and(|l| l != n) {
                return Err(HlsError::NoLength);
            }
            len = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HlsError::NoLength);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    // HTTP/1.0 keep-alive; a `close` anywhere still wins.
                    close &= response.version == Some(1);
                }
            }
        }
    }
    // 1xx, 204 and 304 responses have no body.
    let bodiless = status < 200 || status == 204 || status == 304;
    let len = match len {
        Some(n) => n,
        None if bodiless => 0,
        None => return Err(HlsError::NoLength),
    };
    Ok(Some((Head { status, len, close }, head_len)))
}

/// One keep-alive HTTP/1.1 connection to the target, opened on demand and reopened after
/// the server closed it.
pub(crate) struct Client {
    target: SocketAddr,
    conn: Option<TcpStream>,
    /// Received bytes not consumed yet: the head being read, and anything past a body.
    buf: Vec<u8>,
    /// Scratch space for bodies that are only counted.
    scratch: Box<[u8]>,
    /// A byte of the current response arrived.
    answered: bool,
}

impl Client {
    pub(crate) fn new(target: SocketAddr) -> Self {
        Client {
            target,
            conn: None,
            buf: Vec::new(),
            scratch: vec![0; READ_BUFFER].into_boxed_slice(),
            answered: false,
        }
    }

    /// Forgets the connection (after an error or a timeout: its state is unknown).
    fn reset(&mut self) {
        self.conn = None;
        self.buf.clear();
    }

    /// `GET path`; returns the status once the whole response is read. A 200 body goes into
    /// `keep` (if given) and through `count`; other bodies are read and dropped. A request
    /// on a reused connection that the server had closed is retried once on a new one.
    async fn get(
        &mut self,
        path: &str,
        mut keep: Option<&mut Vec<u8>>,
        count: &dyn Fn(usize),
    ) -> Result<u16, HlsError> {
        let reused = self.conn.is_some();
        match self.exchange(path, keep.as_deref_mut(), count).await {
            Err(HlsError::Io(_) | HlsError::Closed) if reused && !self.answered => {
                self.reset();
                self.exchange(path, keep, count).await
            }
            result => result,
        }
        .inspect_err(|_| self.reset())
    }

    async fn exchange(
        &mut self,
        path: &str,
        keep: Option<&mut Vec<u8>>,
        count: &dyn Fn(usize),
    ) -> Result<u16, HlsError> {
        self.answered = false;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.buf.clear();
                let addr = self.target;
                let conn = TcpStream::connect(addr)
                    .await
                    .map_err(|e| HlsError::Connect {
                        addr,
                        source: e.into(),
                    })?;
                // Requests are single small writes: no reason to hold them back.
                let _ = conn.set_nodelay(true);
                conn
            }
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
        conn.write_all(request.as_bytes()).await?;
        let (head, head_len) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(HlsError::HeadTooLarge);
            }
            let start = self.buf.len();
            self.buf.resize((start + HEAD_READ).min(MAX_HEAD), 0);
            let read = conn.read(&mut self.buf[start..]).await;
            self.buf.truncate(start + read.as_ref().map_or(0, |&n| n));
            match read? {
                0 => return Err(HlsError::Closed),
                _ => self.answered = true,
            }
        };
        self.buf.drain(..head_len);
        let len = usize::try_from(head.len)
            .ok()
            .filter(|_| head.len <= MAX_BODY)
            .ok_or(HlsError::BodyTooLarge(head.len))?;
        let ok = head.status == 200;
        let counted = |n: usize| {
            if ok && n > 0 {
                count(n)
            }
        };
        // Body bytes that came with the head.
        let early = len.min(self.buf.len());
        counted(early);
        match keep.filter(|_| ok) {
            Some(body) => {
                body.clear();
                body.extend(self.buf.drain(..early));
                body.resize(len, 0);
                let mut filled = early;
                while filled < len {
                    match conn.read(&mut body[filled..]).await? {
                        0 => return Err(HlsError::Closed),
                        n => {
                            filled += n;
                            counted(n);
                        }
                    }
                }
            }
            None => {
                self.buf.drain(..early);
                let mut left = len - early;
                while left > 0 {
                    let want = left.min(self.scratch.len());
                    match conn.read(&mut self.scratch[..want]).await? {
                        0 => return Err(HlsError::Closed),
                        n => {
                            left -= n;
                            counted(n);
                        }
                    }
                }
            }
        }
        if !head.close {
            self.conn = Some(conn);
        }
        Ok(head.status)
    }
}

/// How a request within a deadline ended.
pub(crate) enum Fetch {
    /// A complete response: its status and how long the request took.
    Done(u16, Duration),
    /// No complete response.
    Failed(HlsError),
    /// The viewer's deadline came first.
    Deadline,
}

/// `client.get` bounded by `timeout` ([`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT), or more for a request the server
/// may hold) and by `deadline`.
pub(crate) async fn fetch(
    client: &mut Client,
    path: &str,
    keep: Option<&mut Vec<u8>>,
    count: &dyn Fn(usize),
    deadline: Instant,
    timeout: Duration,
) -> Fetch {
    let issued = Instant::now();
    let limit = timeout.min(deadline.saturating_duration_since(issued));
    if limit.is_zero() {
        return Fetch::Deadline;
    }
    let result =
        glommio::timer::timeout(limit, async { Ok(client.get(path, keep, count).await) }).await;
    match result {
        Ok(Ok(status)) => Fetch::Done(status, issued.elapsed()),
        Ok(Err(err)) => Fetch::Failed(err),
        Err(_) => {
            client.reset();
            if limit < timeout {
                Fetch::Deadline
            } else {
                Fetch::Failed(HlsError::Timeout(limit))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        let (head, len) = parse_head(ok).unwrap().unwrap();
        assert_eq!(
            (head.status, head.len, head.close, len),
            (200, 5, false, ok.len() - 5)
        );
        assert!(parse_head(&ok[..20]).unwrap().is_none());
        let close = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (head, _) = parse_head(close).unwrap().unwrap();
        assert_eq!((head.status, head.close), (404, true));
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_head(old).unwrap().unwrap().0.close);
        let old_kept = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(!parse_head(old_kept).unwrap().unwrap().0.close);
        let listed = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: upgrade, close\r\n\r\n";
        assert!(parse_head(listed).unwrap().unwrap().0.close);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(chunked), Err(HlsError::NoLength)));
        let none = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(parse_head(none), Err(HlsError::NoLength)));
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(parse_head(two), Err(HlsError::NoLength)));
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(parse_head(huge).is_err());
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HlsError::BadHead(_))
        ));
    }
}
