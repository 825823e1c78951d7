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
    for h in req.headers.iter() {
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
    /// Nothing here.
    NotFound,
}

/// Maps a path to a route.
pub fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    match rest.split_once('/') {
        Some((app, file)) if !app.is_empty() && !file.contains('/') => {
            match file.strip_suffix(".flv") {
                Some(stream) if !stream.is_empty() => Route::Flv { app, stream },
                _ => Route::NotFound,
            }
        }
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
    fn routes() {
        assert_eq!(
            route("/live/test.flv"),
            Route::Flv {
                app: "live",
                stream: "test"
            }
        );
        assert_eq!(route("/live/.flv"), Route::NotFound);
        assert_eq!(route("/live/a/b.flv"), Route::NotFound);
        assert_eq!(route("/test.flv"), Route::NotFound);
        assert_eq!(route("/"), Route::NotFound);
    }
}
