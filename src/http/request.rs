//! HTTP/1.x request heads and routing (pure).

use crate::hub::{validate_name, NameError};
use std::borrow::Cow;

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
    /// POST (admin actions, without a body)
    Post,
    /// Anything else.
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query string, as sent (percent-encoded): [`route`] decodes it.
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
        Some("POST") => Method::Post,
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

/// What a request asks for. Application and stream names are percent-decoded and have
/// passed [`validate_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/{app}/{stream}.flv`
    Flv {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
    },
    /// `/{app}/{stream}.m3u8`
    Playlist {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
    },
    /// `/{app}/{stream}-{instance}-{seq}.ts`
    Segment {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
        /// Stream incarnation.
        instance: u64,
        /// Media sequence number.
        seq: u64,
    },
    /// `/{app}/{stream}/index.m3u8`: the Low-Latency HLS multivariant playlist.
    LlMultivariant {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
    },
    /// `/{app}/{stream}/ll.m3u8`: the Low-Latency HLS media playlist.
    LlPlaylist {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
    },
    /// `/{app}/{stream}/{stream}-{instance}-...`: a Low-Latency HLS initialization segment,
    /// segment or part (see [`crate::hls::llhls::parse_name`]).
    LlResource {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
        /// Stream incarnation.
        instance: u64,
        /// What the name names.
        resource: crate::hls::llhls::Resource,
    },
    /// `/healthz`: the process answers (liveness).
    Live,
    /// `/readyz`: every shard serves and beats, and the server is not stopping.
    Ready,
    /// `/metrics`: Prometheus exposition.
    Metrics,
    /// `/api/v1/streams`
    ApiStreams,
    /// `/api/v1/streams/{app}/{stream}`
    ApiStream {
        /// Application name.
        app: Cow<'a, str>,
        /// Stream name.
        stream: Cow<'a, str>,
    },
    /// `/api/v1/stats`
    ApiStats,
    /// `POST /api/v1/reload`: reload the configuration.
    ApiReload,
    /// `/debug/pprof/profile` (pprof protobuf) or `/debug/pprof/flamegraph` (SVG).
    Profile(crate::metrics::profile::ProfileFormat),
    /// `/debug/heap`: what holds memory (see [`crate::metrics::heap`]).
    Heap,
    /// `/` (the console's page) or `/console/{file}`: the console (see [`super::console`]).
    Console(&'static super::console::Asset),
    /// A media path (`.flv`, `.m3u8`, `.ts`) whose application or stream name, once
    /// percent-decoded, breaks the name rule: answered `400 Bad Request`.
    BadName(NameError),
    /// Nothing here.
    NotFound,
}

impl Route<'_> {
    /// The stream a media route plays (`app`, `stream`), for access control.
    pub fn media_stream(&self) -> Option<(&str, &str)> {
        match self {
            Route::Flv { app, stream }
            | Route::Playlist { app, stream }
            | Route::Segment { app, stream, .. }
            | Route::LlMultivariant { app, stream }
            | Route::LlPlaylist { app, stream }
            | Route::LlResource { app, stream, .. } => Some((app, stream)),
            _ => None,
        }
    }

    /// Requests that start playing a stream (HTTP-FLV, the playlists), which an edge may
    /// have to pull first; not segments and parts, which follow a playlist.
    pub fn starts_playback(&self) -> bool {
        matches!(
            self,
            Route::Flv { .. }
                | Route::Playlist { .. }
                | Route::LlMultivariant { .. }
                | Route::LlPlaylist { .. }
        )
    }

    /// Health checks, metrics, API and console: served on the admin listener (when there is
    /// one).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::Live
                | Route::Ready
                | Route::Metrics
                | Route::ApiStreams
                | Route::ApiStream { .. }
                | Route::ApiStats
                | Route::ApiReload
                | Route::Profile(_)
                | Route::Heap
                | Route::Console(_)
        )
    }

    /// Admin endpoints that need the admin token: all but the health checks, which
    /// container runtimes, load balancers and service managers call without one (they tell
    /// only whether the server serves).
    pub fn needs_token(&self) -> bool {
        self.is_admin() && !matches!(self, Route::Live | Route::Ready)
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

/// Percent-decodes one path segment (RFC 3986; `+` stays `+`) and checks it as a name. A
/// decoded `/` or `?` is a character of the name, refused like any other; bytes that are
/// not UTF-8 become U+FFFD, which is refused too.
fn decode_name(segment: &str) -> Result<Cow<'_, str>, NameError> {
    let name = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    validate_name(&name)?;
    Ok(name)
}

/// Maps a path (as sent, percent-encoded) to a route. The path is split at `/` first, then
/// each name is decoded and checked with [`validate_name`]: `%2F` cannot add a level, and
/// `show%31` names the stream `show1`, as RTMP does. A media path with an invalid name is
/// [`Route::BadName`]; an API path with one is [`Route::NotFound`] (no stream has it).
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/" => return Route::Console(&super::console::INDEX),
        "/healthz" => return Route::Live,
        "/readyz" => return Route::Ready,
        "/metrics" => return Route::Metrics,
        "/api/v1/streams" | "/api/v1/streams/" => return Route::ApiStreams,
        "/api/v1/stats" => return Route::ApiStats,
        "/api/v1/reload" => return Route::ApiReload,
        "/debug/pprof/profile" => {
            return Route::Profile(crate::metrics::profile::ProfileFormat::Pprof)
        }
        "/debug/pprof/flamegraph" => {
            return Route::Profile(crate::metrics::profile::ProfileFormat::Flamegraph)
        }
        "/debug/heap" => return Route::Heap,
        _ => {}
    }
    // Only the console's own files: `/console/{stream}.flv` stays a media path of the
    // application `console`.
    if let Some(asset) = path
        .strip_prefix("/console/")
        .and_then(super::console::asset)
    {
        return Route::Console(asset);
    }
    if let Some(rest) = path.strip_prefix("/api/v1/streams/") {
        let Some((app, stream)) = rest.split_once('/').filter(|(_, s)| !s.contains('/')) else {
            return Route::NotFound;
        };
        return match (decode_name(app), decode_name(stream)) {
            (Ok(app), Ok(stream)) => Route::ApiStream { app, stream },
            _ => Route::NotFound,
        };
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let Some((app, file)) = rest.split_once('/') else {
        return Route::NotFound;
    };
    if app.is_empty() {
        return Route::NotFound;
    }
    if let Some((stream, file)) = file.split_once('/') {
        if stream.is_empty() || file.contains('/') {
            return Route::NotFound;
        }
        return ll_route(app, stream, file).unwrap_or_else(Route::BadName);
    }
    let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    match media_route(app, file) {
        Ok(route) => route,
        Err(err) => Route::BadName(err),
    }
}

/// The media route of `/{app}/{file}` (`file` decoded), its names checked.
fn media_route<'a>(app: &'a str, file: Cow<'a, str>) -> Result<Route<'a>, NameError> {
    // The suffix decides the kind, the stream name is what precedes it: a name may itself
    // end in `.flv` or `-1-2.ts`, the last suffix still tells the kind.
    let (kind, stream) = if let Some(stream) = file.strip_suffix(".flv") {
        (Kind::Flv, stream.len())
    } else if let Some(stream) = file.strip_suffix(".m3u8") {
        (Kind::Playlist, stream.len())
    } else if let Some((stream, instance, seq)) = crate::hls::segmenter::parse_segment_name(&file) {
        (Kind::Segment { instance, seq }, stream.len())
    } else {
        return Ok(Route::NotFound);
    };
    if stream == 0 {
        return Ok(Route::NotFound);
    }
    let app = decode_name(app)?;
    let stream = prefix(file, stream);
    validate_name(&stream)?;
    Ok(match kind {
        Kind::Flv => Route::Flv { app, stream },
        Kind::Playlist => Route::Playlist { app, stream },
        Kind::Segment { instance, seq } => Route::Segment {
            app,
            stream,
            instance,
            seq,
        },
    })
}

/// The Low-Latency HLS route of `/{app}/{stream}/{file}`, its names checked: the stream's
/// playlists, and its resources, whose names carry the stream's name again.
fn ll_route<'a>(app: &'a str, stream: &'a str, file: &'a str) -> Result<Route<'a>, NameError> {
    use crate::hls::llhls::{parse_name, MULTIVARIANT_NAME, PLAYLIST_NAME};
    let app = decode_name(app)?;
    let stream = decode_name(stream)?;
    let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    Ok(match &*file {
        MULTIVARIANT_NAME => Route::LlMultivariant { app, stream },
        PLAYLIST_NAME => Route::LlPlaylist { app, stream },
        name => match parse_name(name) {
            Some((of, instance, resource)) if of == stream => Route::LlResource {
                app,
                stream,
                instance,
                resource,
            },
            _ => Route::NotFound,
        },
    })
}

/// The first `len` bytes of `text`; `len` is the length of a prefix found by stripping a
/// suffix, so it falls on a character boundary.
fn prefix(text: Cow<'_, str>, len: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.get(..len).unwrap_or_default()),
        Cow::Owned(mut text) => {
            text.truncate(len);
            Cow::Owned(text)
        }
    }
}

/// The kinds of media paths, by suffix.
enum Kind {
    Flv,
    Playlist,
    Segment { instance: u64, seq: u64 },
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
        assert_eq!(route("/live/test.flv"), flv("live", "test"));
        assert_eq!(
            route("/live/cam-1.m3u8"),
            Route::Playlist {
                app: "live".into(),
                stream: "cam-1".into()
            }
        );
        assert_eq!(
            route("/live/cam-1-77-3.ts"),
            Route::Segment {
                app: "live".into(),
                stream: "cam-1".into(),
                instance: 77,
                seq: 3
            }
        );
        assert_eq!(route("/live/-77-3.ts"), Route::NotFound);
        assert_eq!(route("/live/.flv"), Route::NotFound);
        assert_eq!(route("/healthz"), Route::Live);
        assert_eq!(route("/readyz"), Route::Ready);
        assert!(Route::Ready.is_admin() && !Route::Ready.needs_token());
        assert!(Route::Metrics.needs_token() && !Route::NotFound.needs_token());
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/api/v1/stats"), Route::ApiStats);
        assert_eq!(route("/api/v1/reload"), Route::ApiReload);
        assert_eq!(route("/debug/heap"), Route::Heap);
        assert!(Route::Heap.is_admin() && Route::Heap.needs_token());
        assert!(Route::ApiReload.needs_token());
        assert_eq!(
            route("/api/v1/streams/live/cam"),
            Route::ApiStream {
                app: "live".into(),
                stream: "cam".into()
            }
        );
        assert_eq!(route("/api/v1/streams/live"), Route::NotFound);
        assert_eq!(route("/live/a/b.flv"), Route::NotFound);
        assert_eq!(route("/live//ll.m3u8"), Route::NotFound);
        assert_eq!(route("/live/a/b/ll.m3u8"), Route::NotFound);
        assert_eq!(route("/test.flv"), Route::NotFound);
        assert_eq!(route("//"), Route::NotFound);
    }

    #[test]
    fn console_routes() {
        use crate::http::console::{asset, INDEX, MPEGTS};
        assert_eq!(route("/"), Route::Console(&INDEX));
        let script = route("/console/console.js");
        assert_eq!(script, Route::Console(asset("console.js").unwrap()));
        let player = format!("/console/{MPEGTS}");
        assert_eq!(route(&player), Route::Console(asset(MPEGTS).unwrap()));
        // Admin routes behind the token, like the API it reads.
        assert!(script.is_admin() && script.needs_token());
        assert!(Route::Console(&INDEX).needs_token());
        for path in [
            "/console/",
            "/console",
            "/console/nothing.js",
            "/console/index.html",
            "/console/vendor/",
            "/console/console.js/",
            "/console/%63onsole.js",
            "/console/../console/console.js",
            "/index.html",
        ] {
            assert_eq!(route(path), Route::NotFound, "{path}");
        }
        // Media of an application named `console` is still media.
        assert_eq!(route("/console/cam.flv"), flv("console", "cam"));
    }

    fn flv<'a>(app: &'a str, stream: &'a str) -> Route<'a> {
        Route::Flv {
            app: app.into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn names_are_decoded_then_checked() {
        // Decoded names are the names RTMP uses.
        assert_eq!(route("/live/show%31.flv"), flv("live", "show1"));
        assert_eq!(route("/l%69ve/cam%2D1.flv"), flv("live", "cam-1"));
        assert_eq!(route("/live/cam%2Eflv"), flv("live", "cam"));
        assert_eq!(
            route("/live/cam%2D1-77-3.ts"),
            Route::Segment {
                app: "live".into(),
                stream: "cam-1".into(),
                instance: 77,
                seq: 3
            }
        );
        // A decoded `/` is a character of the name, never a separator.
        assert_eq!(
            route("/premium%2Fa/b.flv"),
            Route::BadName(NameError::Char('/', 7))
        );
        assert_eq!(
            route("/live/a%2Fb.flv"),
            Route::BadName(NameError::Char('/', 1))
        );
        assert_eq!(
            route("/live/a%2fb.m3u8"),
            Route::BadName(NameError::Char('/', 1))
        );
        for (path, err) in [
            ("/live/a%0Ab.flv", NameError::Char('\n', 1)),
            ("/live/a%00b.flv", NameError::Char('\0', 1)),
            ("/live/%3F.flv", NameError::Char('?', 0)),
            ("/live/a%23b.flv", NameError::Char('#', 1)),
            ("/live/a%20b.flv", NameError::Char(' ', 1)),
            ("/live/a+b.flv", NameError::Char('+', 1)),
            ("/live/a%25b.flv", NameError::Char('%', 1)),
            ("/live/a%zzb.flv", NameError::Char('%', 1)),
            ("/live/%ff.flv", NameError::Char('\u{fffd}', 0)),
            ("/../cam.flv", NameError::Dots),
            ("/live/%2E%2E.m3u8", NameError::Dots),
            ("/live/..-1-2.ts", NameError::Dots),
        ] {
            assert_eq!(route(path), Route::BadName(err), "{path}");
        }
        let long = "n".repeat(crate::hub::MAX_NAME_BYTES + 1);
        assert_eq!(
            route(&format!("/live/{long}.flv")),
            Route::BadName(NameError::TooLong(crate::hub::MAX_NAME_BYTES + 1))
        );
        // API paths: no stream has an invalid name.
        assert_eq!(route("/api/v1/streams/live/a%2Fb"), Route::NotFound);
        assert_eq!(
            route("/api/v1/streams/live/show%31"),
            Route::ApiStream {
                app: "live".into(),
                stream: "show1".into()
            }
        );
    }

    #[test]
    fn low_latency_routes() {
        use crate::hls::llhls::{PartId, Resource};
        let (app, stream): (Cow<str>, Cow<str>) = ("live".into(), "cam-1".into());
        assert_eq!(
            route("/live/cam-1/index.m3u8"),
            Route::LlMultivariant {
                app: app.clone(),
                stream: stream.clone()
            }
        );
        assert_eq!(
            route("/live/cam-1/ll.m3u8"),
            Route::LlPlaylist {
                app: app.clone(),
                stream: stream.clone()
            }
        );
        for (file, resource) in [
            ("cam-1-77-init0.mp4", Resource::Init(0)),
            ("cam-1-77-3.m4s", Resource::Segment(3)),
            (
                "cam-1-77-3.2.m4s",
                Resource::Part(PartId { msn: 3, part: 2 }),
            ),
        ] {
            assert_eq!(
                route(&format!("/live/cam-1/{file}")),
                Route::LlResource {
                    app: app.clone(),
                    stream: stream.clone(),
                    instance: 77,
                    resource
                },
                "{file}"
            );
        }
        // Names are decoded and checked as everywhere; a resource of another stream, or in
        // one spelling only, is nowhere.
        assert_eq!(
            route("/live/cam%2D1/ll.m3u8"),
            Route::LlPlaylist { app, stream }
        );
        assert_eq!(
            route("/live/a%2Fb/ll.m3u8"),
            Route::BadName(NameError::Char('/', 1))
        );
        assert_eq!(
            route("/live/%2E%2E/ll.m3u8"),
            Route::BadName(NameError::Dots)
        );
        for path in [
            "/live/cam-1/other-77-3.m4s",
            "/live/cam-1/cam-1-077-3.m4s",
            "/live/cam-1/cam-1-77-3.ts",
            "/live/cam-1/x.m3u8",
            "/live/cam-1/",
        ] {
            assert_eq!(route(path), Route::NotFound, "{path}");
        }
        assert!(route("/live/cam-1/cam-1-77-3.m4s").media_stream() == Some(("live", "cam-1")));
    }

    #[test]
    fn suffixes_decide_the_kind_whatever_the_name() {
        assert_eq!(route("/live/x.m3u8.flv"), flv("live", "x.m3u8"));
        assert_eq!(route("/live/x-1-2.ts.flv"), flv("live", "x-1-2.ts"));
        assert_eq!(
            route("/live/x.flv.m3u8"),
            Route::Playlist {
                app: "live".into(),
                stream: "x.flv".into()
            }
        );
        assert_eq!(
            route("/live/x-1-2.ts-5-6.ts"),
            Route::Segment {
                app: "live".into(),
                stream: "x-1-2.ts".into(),
                instance: 5,
                seq: 6
            }
        );
        // One spelling per segment.
        assert_eq!(route("/live/x-01-2.ts"), Route::NotFound);
        assert_eq!(route("/live/x-1-+2.ts"), Route::NotFound);
    }
}
