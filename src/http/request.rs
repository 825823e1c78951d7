//! HTTP/1.x request heads and routing (pure).

/// Why a request head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is not valid HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head is larger than `http.max_header_bytes`.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// The request has a body, which no route here accepts.
    #[error("request bodies are not accepted")]
    Body,
}

/// Request methods the server distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// OPTIONS (CORS preflight)
    Options,
    /// Anything else.
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// On success, also returns the head's length in bytes.
pub fn parse_head(buf: &[u8], max_len: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_len => {
            return Err(HttpError::TooLarge(max_len))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(HttpError::Malformed(err.to_string())),
    };
    if len > max_len {
        return Err(HttpError::TooLarge(max_len));
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let version = req.version.unwrap_or(0);
    let mut keep_alive = version >= 1;
    let mut range = None;
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("range") {
            range = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(String::from_utf8_lossy(h.value).into_owned());
        }
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
        {
            return Err(HttpError::Body);
        }
    }
    Ok(Some((
        Request {
            method,
            path: path.to_string(),
            query,
            keep_alive,
            range,
            authorization,
        },
        len,
    )))
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/{app}/{stream}.flv`
    Flv {
        /// Application name.
        app: &'a str,
        /// Stream name.
        stream: &'a str,
    },
    /// `/{app}/{stream}.m3u8`
    Playlist {
        /// Application name.
        app: &'a str,
        /// Stream name.
        stream: &'a str,
    },
    /// `/{app}/{stream}-{instance}-{seq}.ts`
    Segment {
        /// Application name.
        app: &'a str,
        /// Stream name.
        stream: &'a str,
        /// Stream incarnation.
        instance: u64,
        /// Media sequence number.
        seq: u64,
    },
    /// `/metrics`: Prometheus exposition.
    Metrics,
    /// `/api/v1/streams`
    ApiStreams,
    /// `/api/v1/streams/{app}/{stream}`
    ApiStream {
        /// Application name.
        app: &'a str,
        /// Stream name.
        stream: &'a str,
    },
    /// `/api/v1/stats`
    ApiStats,
    /// `/debug/pprof/profile` (pprof protobuf) or `/debug/pprof/flamegraph` (SVG).
    Profile(crate::metrics::profile::ProfileFormat),
    /// Nothing here.
    NotFound,
}

impl<'a> Route<'a> {
    /// The stream a media route plays (`app`, `stream`), for access control.
    pub fn media_stream(&self) -> Option<(&'a str, &'a str)> {
        match *self {
            Route::Flv { app, stream }
            | Route::Playlist { app, stream }
            | Route::Segment { app, stream, .. } => Some((app, stream)),
            _ => None,
        }
    }

    /// Metrics and API: served on the admin listener (when there is one), behind the token.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::Metrics
                | Route::ApiStreams
                | Route::ApiStream { .. }
                | Route::ApiStats
                | Route::Profile(_)
        )
    }
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: the whole body (200).
    Full,
    /// Bytes `start..end` (206).
    Part(usize, usize),
    /// The range lies outside the body (416).
    Unsatisfiable,
}

/// Interprets a single-range `Range: bytes=...` header (RFC 9110). Multiple ranges and
/// other units are ignored (the whole body is sent, which the RFC allows). A
/// [`ByteRange::Part`] always satisfies `start < end <= len`.
pub fn byte_range(header: Option<&str>, len: usize) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<usize>(), last.parse::<usize>()) {
        // `b` may be usize::MAX: `b + 1` would overflow (and wrap to an empty range in
        // release builds, whose slice then panics).
        (Ok(a), Ok(b)) if a <= b => (a, b.saturating_add(1).min(len)),
        (Ok(a), Err(_)) if last.is_empty() => (a, len),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => (len.saturating_sub(n), len),
        _ => return ByteRange::Full,
    };
    if range.0 >= len {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(range.0, range.1)
    }
}

/// Maps a path to a route.
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/metrics" => return Route::Metrics,
        "/api/v1/streams" | "/api/v1/streams/" => return Route::ApiStreams,
        "/api/v1/stats" => return Route::ApiStats,
        "/debug/pprof/profile" => {
            return Route::Profile(crate::metrics::profile::ProfileFormat::Pprof)
        }
        "/debug/pprof/flamegraph" => {
            return Route::Profile(crate::metrics::profile::ProfileFormat::Flamegraph)
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/v1/streams/") {
        return match rest.split_once('/') {
            Some((app, stream))
                if !app.is_empty() && !stream.is_empty() && !stream.contains('/') =>
            {
                Route::ApiStream { app, stream }
            }
            _ => Route::NotFound,
        };
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let Some((app, file)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    if app.is_empty() || file.contains('/') {
        return Route::NotFound;
    }
    if let Some(stream) = file.strip_suffix(".flv").filter(|s| !s.is_empty()) {
        return Route::Flv { app, stream };
    }
    if let Some(stream) = file.strip_suffix(".m3u8").filter(|s| !s.is_empty()) {
        return Route::Playlist { app, stream };
    }
    match crate::hls::segmenter::parse_segment_name(file) {
        Some((stream, instance, seq)) if !stream.is_empty() => Route::Segment {
            app,
            stream,
            instance,
            seq,
        },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get() {
        let raw = b"GET /live/test.flv?token=1 HTTP/1.1\r\nHost: x\r\n\r\nextra";
        let (req, len) = parse_head(raw, 8192).unwrap().unwrap();
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/live/test.flv");
        assert_eq!(req.query.as_deref(), Some("token=1"));
        assert!(req.keep_alive);
        assert_eq!(&raw[len..], b"extra");
    }

    #[test]
    fn partial_and_oversized() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHo", 8192), Ok(None));
        let big = [b'a'; 100];
        assert!(matches!(
            parse_head(&[b"GET / HTTP/1.1\r\nX: ", &big[..]].concat(), 64),
            Err(HttpError::TooLarge(64))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_head(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 8192),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn http10_closes_by_default() {
        let (req, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!req.keep_alive);
    }

    #[test]
    fn bodies_are_refused() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 8192),
            Err(HttpError::Body)
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), ByteRange::Full);
        assert_eq!(byte_range(Some("bytes=0-9"), 100), ByteRange::Part(0, 10));
        assert_eq!(
            byte_range(Some("bytes=90-200"), 100),
            ByteRange::Part(90, 100)
        );
        assert_eq!(byte_range(Some("bytes=50-"), 100), ByteRange::Part(50, 100));
        assert_eq!(byte_range(Some("bytes=-10"), 100), ByteRange::Part(90, 100));
        assert_eq!(
            byte_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), ByteRange::Full);
        assert_eq!(byte_range(Some("items=0-1"), 100), ByteRange::Full);
        assert_eq!(byte_range(Some("bytes=9-3"), 100), ByteRange::Full);
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("/live/test.flv"),
            Route::Flv {
                app: "live",
                stream: "test"
            }
        );
        assert_eq!(
            route("/live/cam-1.m3u8"),
            Route::Playlist {
                app: "live",
                stream: "cam-1"
            }
        );
        assert_eq!(
            route("/live/cam-1-77-3.ts"),
            Route::Segment {
                app: "live",
                stream: "cam-1",
                instance: 77,
                seq: 3
            }
        );
        assert_eq!(route("/live/-77-3.ts"), Route::NotFound);
        assert_eq!(route("/live/.flv"), Route::NotFound);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/api/v1/stats"), Route::ApiStats);
        assert_eq!(
            route("/api/v1/streams/live/cam"),
            Route::ApiStream {
                app: "live",
                stream: "cam"
            }
        );
        assert_eq!(route("/api/v1/streams/live"), Route::NotFound);
        assert_eq!(route("/live/a/b.flv"), Route::NotFound);
        assert_eq!(route("/test.flv"), Route::NotFound);
        assert_eq!(route("/"), Route::NotFound);
    }
}
