//! The HTTP/1.1 server: request heads are parsed with httparse ([`request`]), HTTP-FLV
//! responses are streamed by [`crate::viewer`].
//!
//! Routes ([`request::route`] has them all): `GET`/`HEAD /{app}/{stream}.flv` (HTTP-FLV),
//! `/{app}/{stream}.m3u8` and `/{app}/{stream}-{instance}-{seq}.ts` (HLS), and the admin
//! endpoints `/metrics`, `/api/v1/...`, `/debug/pprof/...` and the [`console`] (`/` and
//! `/console/...`), on `admin.listen` when it is set; `OPTIONS` (CORS preflight). Short
//! responses keep the connection alive; an FLV response owns it until the stream ends.

mod admin;
pub mod console;
mod hls;
pub mod probe;
pub mod request;

use admin::{admin_body, authorized, UNAUTHORIZED};
use hls::{credentials, hls_cache_control, record_hls, respond_hls, respond_unavailable, HlsKind};

use crate::auth::{Action, Denied, Policy};
use crate::hub::stream_key;
use crate::logging::connection_span;
use crate::media::now_ns;
use crate::media::{Format, Tracks};
use crate::metrics::profile::{self, ProfileFormat};
use crate::net;
use crate::shard::Shard;
use crate::stats;
use crate::util::Escaped;
use crate::viewer::{self, Delivery, Ending};
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use request::{parse_head, route, HttpError, Method, Request, Route};
use std::io;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;
use tracing::{debug, info, Span};

/// Head of every HTTP-FLV response. The body runs until the stream ends, then the connection
/// closes (no length, no chunking: every FLV reader accepts it, and the shared tag bytes go
/// out untouched).
pub const FLV_RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: video/x-flv\r\n\
Access-Control-Allow-Origin: *\r\n\
Cache-Control: no-cache, no-store\r\n\
Connection: close\r\n\r\n";

const CORS_PREFLIGHT: &[u8] = b"HTTP/1.1 204 No Content\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
Access-Control-Allow-Headers: *\r\n\
Access-Control-Max-Age: 86400\r\n\
Content-Length: 0\r\n\r\n";

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("request head not received within the header timeout")]
    HeaderTimeout,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Which listener accepted a connection: it decides which routes exist there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.http_listen`: media (HTTP-FLV, HLS), and the admin endpoints when no admin
    /// listener is configured.
    Public,
    /// `admin.listen`: the admin endpoints only.
    Admin,
}

/// Serves one HTTP connection.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr, listener: Listener) {
    stats::inc(&shard.stats.http_accepted);
    let _ = stream.set_nodelay(true);
    let span = connection_span(shard.conn_id(), "http", shard.id, peer);
    const CLOSE: &str = "connection-close";
    match run(&shard, &mut stream, &span, listener).await {
        Ok(()) => {}
        Err(ConnError::Http(err)) => {
            stats::inc(&shard.stats.http_bad_input);
            info!(parent: &span, action = CLOSE, "http: closing: {err}");
            let status = match err {
                HttpError::TooLarge(_) => "431 Request Header Fields Too Large",
                HttpError::Body => "413 Content Too Large",
                HttpError::Malformed(_) => "400 Bad Request",
            };
            let _ = reply(
                &mut stream,
                &simple(status, false, false),
                shard.config().write_timeout(),
            )
            .await;
        }
        Err(ConnError::HeaderTimeout) => {
            stats::inc(&shard.stats.timeouts);
            info!(parent: &span, action = CLOSE, "http: closing: header timeout");
        }
        Err(ConnError::Io(err)) if err.kind() == io::ErrorKind::TimedOut => {
            stats::inc(&shard.stats.timeouts);
            info!(parent: &span, action = CLOSE, "http: closing: {err}");
        }
        Err(ConnError::Io(err)) => debug!(parent: &span, action = CLOSE, "http: {err}"),
    }
    let _ = stream.close().await;
}

async fn run(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    span: &Span,
    listener: Listener,
) -> Result<(), ConnError> {
    let mut buf = Vec::with_capacity(1024);
    let limit = shard.config().write_timeout();
    let mut held = stats::Held::new(shard.stats.clone(), |s| &s.connection_buffer_bytes);
    loop {
        held.set(buf.capacity() as u64);
        let Some(mut req) = read_head(shard, stream, &mut buf).await? else {
            return Ok(());
        };
        held.set(buf.capacity() as u64);
        // During a stop, a connection gets one answer, then closes.
        req.keep_alive &= !shard.is_stopping();
        let route = match (listener, route(&req.path)) {
            // Admin endpoints live on the admin listener when there is one; media never does.
            (Listener::Admin, r) if !r.is_admin() => Route::NotFound,
            (Listener::Public, r) if r.is_admin() && shard.config().admin.address().is_some() => {
                Route::NotFound
            }
            (_, r) => r,
        };
        if let Route::BadName(err) = route {
            // Refused before access control, so never logged with the name unescaped.
            stats::inc(&shard.stats.names_rejected);
            info!(parent: span, action = "name-refused", path = %Escaped(&req.path), "invalid name refused: {err}");
            let head_only = req.method == Method::Head;
            stream
                .write_all(&simple("400 Bad Request", head_only, req.keep_alive))
                .await?;
            if !req.keep_alive {
                return Ok(());
            }
            continue;
        }
        if route.needs_token() && !authorized(&shard.config().admin.token, &req) {
            reply(stream, UNAUTHORIZED, limit).await?;
            if !req.keep_alive {
                return Ok(());
            }
            continue;
        }
        if let (Some((app, name)), false) = (route.media_stream(), req.method == Method::Options) {
            let query = req.query.as_deref();
            let auth = span.in_scope(|| shard.authorize(Action::Play, app, name, query));
            if let Err(denied) = auth {
                // 401 without credentials; 403 with wrong or expired ones.
                let status = match denied {
                    Denied::Missing => "401 Unauthorized",
                    _ => "403 Forbidden",
                };
                let head_only = req.method == Method::Head;
                reply(stream, &simple(status, head_only, req.keep_alive), limit).await?;
                if !req.keep_alive {
                    return Ok(());
                }
                continue;
            }
            // A stream that starts playing here may have to be pulled from an origin first
            // (once authorized: no one else can make this server pull).
            if req.method == Method::Get && route.starts_playback() {
                let key = stream_key(app, name);
                if let Err(looped) = shard.live_or_pulled(&key, query).await {
                    refuse_loop(stream, span, &looped, &req, limit).await?;
                    if !req.keep_alive {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        match (req.method, route) {
            (Method::Options, _) => reply(stream, CORS_PREFLIGHT, limit).await?,
            (Method::Post, Route::ApiReload) => {
                info!(parent: span, action = "config-reload", "configuration reload requested");
                let (status, body) = admin::reload(shard).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                send_all(stream, &[head.as_bytes(), body.as_bytes()], limit).await?;
                return Ok(());
            }
            (Method::Post, _) | (_, Route::ApiReload) | (Method::Other, _) => {
                reply(
                    stream,
                    &simple("405 Method Not Allowed", false, false),
                    limit,
                )
                .await?;
                return Ok(());
            }
            (Method::Get, Route::Profile(format)) => {
                let seconds = crate::auth::param(req.query.as_deref(), "seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10);
                info!(parent: span, action = "cpu-profile", seconds, "cpu profile requested");
                let (status, content_type, body) = match profile::capture(seconds, format).await {
                    Ok(body) => {
                        let content_type = match format {
                            ProfileFormat::Flamegraph => "image/svg+xml",
                            ProfileFormat::Pprof => "application/octet-stream",
                        };
                        ("200 OK", content_type, body)
                    }
                    Err(err @ profile::ProfileError::Busy(_)) => {
                        ("409 Conflict", "text/plain", err.to_string().into_bytes())
                    }
                    Err(err) => (
                        "500 Internal Server Error",
                        "text/plain",
                        err.to_string().into_bytes(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
                     Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                send_all(stream, &[head.as_bytes(), &body], limit).await?;
                return Ok(());
            }
            (
                Method::Get | Method::Head,
                route @ (Route::Live
                | Route::Ready
                | Route::Metrics
                | Route::ApiStreams
                | Route::ApiStream { .. }
                | Route::ApiStats
                | Route::Heap),
            ) => {
                let (status, content_type, body) = admin_body(shard, &route);
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
                     Content-Length: {}\r\nCache-Control: no-store\r\n\
                     Connection: {}\r\n\r\n",
                    body.len(),
                    if req.keep_alive {
                        "keep-alive"
                    } else {
                        "close"
                    }
                );
                let body = if req.method == Method::Head {
                    ""
                } else {
                    &body
                };
                send_all(stream, &[head.as_bytes(), body.as_bytes()], limit).await?;
            }
            (Method::Get | Method::Head, Route::Console(asset)) => {
                // The player reads HTTP-FLV from the media listener.
                let media_port = shard.bound().http.port();
                let head = console::head(asset, media_port, req.keep_alive);
                let body: &[u8] = if req.method == Method::Head {
                    b""
                } else {
                    asset.body
                };
                send_all(stream, &[head.as_bytes(), body], limit).await?;
            }
            (Method::Get | Method::Head, Route::Flv { app, stream: name }) => {
                let key = stream_key(&app, &name);
                if req.method == Method::Head {
                    if shard.is_live(&key) {
                        // The head says `Connection: close`, as a GET's would.
                        reply(stream, FLV_RESPONSE_HEAD, limit).await?;
                        return Ok(());
                    }
                    reply(
                        stream,
                        &simple("404 Not Found", true, req.keep_alive),
                        limit,
                    )
                    .await?;
                } else if let Some(feed) = shard.attach_viewer(&key, Format::Flv) {
                    span.record("stream", tracing::field::display(&key));
                    debug!(parent: span, action = "play-start", "flv viewer start");
                    stats::inc(&shard.stats.flv_viewers);
                    stats::inc(&shard.stats.flv_viewers_total);
                    // The connection ends with this response: nothing more is read.
                    drop(std::mem::take(&mut buf));
                    held.set(0);
                    let delivery = Delivery {
                        format: Format::Flv,
                        tracks: tracks(req.query.as_deref()),
                        stream_id: crate::rtmp::chunk::MEDIA_STREAM_ID,
                        head: vec![Bytes::from_static(FLV_RESPONSE_HEAD)],
                        outbox: None,
                    };
                    let ending = viewer::deliver(shard, &feed, stream, delivery).await;
                    shard.detach_viewer(&key, &feed, Format::Flv);
                    stats::dec(&shard.stats.flv_viewers);
                    span.in_scope(|| ending.record(shard));
                    if let Ending::Unavailable = ending {
                        reply(stream, &simple("404 Not Found", false, false), limit).await?;
                    }
                    return Ok(());
                } else {
                    reply(
                        stream,
                        &simple("404 Not Found", false, req.keep_alive),
                        limit,
                    )
                    .await?;
                }
            }
            (Method::Get | Method::Head, Route::Playlist { app, stream: name }) => {
                let parsed = now_ns();
                let view = shard.hls_playlist(&stream_key(&app, &name)).await;
                // Segments are checked like the playlist: they carry its credentials.
                let credentials = credentials(req.query.as_deref());
                let protected = shard.auth().policy(&app).play != Policy::Open;
                let body = view.as_ref().map(|v| match &credentials {
                    Some(query) if protected => v.playlist_with_query(query),
                    _ => v.playlist.clone(),
                });
                let cache = hls_cache_control(HlsKind::Playlist, protected, &shard.config());
                let sent = match view.as_ref().and_then(|v| v.unsupported.clone()) {
                    Some(track) => {
                        respond_unavailable(shard, stream, &req, &track, "MPEG-TS").await?
                    }
                    None => {
                        respond_hls(shard, stream, &req, body, HlsKind::Playlist, &cache).await?
                    }
                };
                stats::add(&shard.stats.hls_bytes_out, sent as u64);
                record_hls(shard, parsed);
            }
            (
                Method::Get | Method::Head,
                Route::Segment {
                    app,
                    stream: name,
                    instance,
                    seq,
                },
            ) => {
                let parsed = now_ns();
                let view = shard.hls_view(&stream_key(&app, &name));
                if let Some(view) = &view {
                    view.requested(parsed);
                }
                let body = view.and_then(|v| v.segment(instance, seq).cloned());
                let protected = shard.auth().policy(&app).play != Policy::Open;
                let cache = hls_cache_control(HlsKind::Segment, protected, &shard.config());
                let sent = respond_hls(shard, stream, &req, body, HlsKind::Segment, &cache).await?;
                stats::add(&shard.stats.hls_bytes_out, sent as u64);
                record_hls(shard, parsed);
            }
            (Method::Get | Method::Head, Route::LlPlaylist { app, stream: name }) => {
                let key = stream_key(&app, &name);
                let (sent, ready) =
                    hls::respond_ll_playlist(shard, stream, &req, &app, &key).await?;
                stats::add(&shard.stats.hls_bytes_out, sent as u64);
                record_hls(shard, ready);
            }
            (Method::Get | Method::Head, Route::LlMultivariant { app, stream: name }) => {
                let parsed = now_ns();
                let key = stream_key(&app, &name);
                let sent = hls::respond_ll_multivariant(shard, stream, &req, &app, &key).await?;
                stats::add(&shard.stats.hls_bytes_out, sent as u64);
                record_hls(shard, parsed);
            }
            (
                Method::Get | Method::Head,
                Route::LlResource {
                    app,
                    stream: name,
                    instance,
                    resource,
                },
            ) => {
                let key = stream_key(&app, &name);
                let body = shard.ll_resource(&key, instance, resource).await;
                let ready = now_ns();
                let protected = shard.auth().policy(&app).play != Policy::Open;
                let cache = hls_cache_control(HlsKind::Fmp4, protected, &shard.config());
                let sent = respond_hls(shard, stream, &req, body, HlsKind::Fmp4, &cache).await?;
                stats::add(&shard.stats.hls_bytes_out, sent as u64);
                record_hls(shard, ready);
            }
            (Method::Get | Method::Head, Route::NotFound | Route::BadName(_))
            | (Method::Head, Route::Profile(_)) => {
                let head_only = req.method == Method::Head;
                reply(
                    stream,
                    &simple("404 Not Found", head_only, req.keep_alive),
                    limit,
                )
                .await?;
            }
        }
        if !req.keep_alive {
            return Ok(());
        }
        // Pipelined requests wait until this response has left: a client that sends
        // requests without reading the answers cannot make the server queue them.
        drained(stream, limit).await?;
    }
}

/// Unsent response bytes above which the next request of a connection is not read.
const PIPELINE_QUEUE_BYTES: usize = 16 * 1024;

/// How often a connection with queued responses checks whether they have left.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Waits, up to `limit`, until at most [`PIPELINE_QUEUE_BYTES`] of what was written to
/// `stream` remain unsent; `TimedOut` when they do not leave in time.
async fn drained(stream: &TcpStream, limit: Duration) -> io::Result<()> {
    let deadline = now_ns().saturating_add(limit.as_nanos() as u64);
    while net::unsent_bytes(stream.as_raw_fd())? > PIPELINE_QUEUE_BYTES {
        if now_ns() >= deadline {
            return Err(write_timeout());
        }
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    Ok(())
}

/// Reads one request head within the header timeout. `None` when the peer closed cleanly
/// between requests, or when the server stopped and no request came within a playlist
/// reload interval (1.5 HLS target durations: HLS players on open connections fetch their
/// final playlist, with EXT-X-ENDLIST, during the drain). Bytes after the head stay in `buf`
/// for the next request.
async fn read_head(
    shard: &Shard,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, ConnError> {
    let max = shard.config().http.max_header_bytes;
    let read = async {
        loop {
            if !buf.is_empty() {
                if let Some((req, len)) = parse_head(buf, max)? {
                    buf.drain(..len);
                    return Ok(Some(req));
                }
            }
            let n = net::read_with(stream, |bytes| buf.extend_from_slice(bytes)).await?;
            if n == 0 {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HttpError::Malformed("connection closed mid-request".into()).into())
                };
            }
        }
    };
    let read = async { Some(crate::util::timeout(shard.config().header_timeout(), read).await) };
    let stop = async {
        shard.stopped().await;
        let reload = shard.config().hls.target_duration_ms * 3 / 2;
        glommio::timer::sleep(Duration::from_millis(reload)).await;
        None
    };
    // A stopping server closes connections that wait for a request.
    let Some(read) = futures_lite::future::or(read, stop).await else {
        return Ok(None);
    };
    match read {
        Some(result) => result,
        // Idle between requests: a normal end of a keep-alive connection.
        None if buf.is_empty() => Ok(None),
        None => Err(ConnError::HeaderTimeout),
    }
}

fn write_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "response not taken by the client within its deadline",
    )
}

/// Sends one short response within `limit` (see [`send_all`]).
async fn reply(stream: &mut TcpStream, response: &[u8], limit: Duration) -> io::Result<()> {
    send_all(stream, &[response], limit).await
}

/// Sends every byte of `parts` within `limit` in total; `TimedOut` (the connection is then
/// closed) when the client does not take them in time.
async fn send_all(stream: &mut TcpStream, parts: &[&[u8]], limit: Duration) -> io::Result<()> {
    crate::util::timeout(limit, send_parts(stream, parts))
        .await
        .ok_or_else(write_timeout)?
}

/// Sends every byte of `parts` with vectored sends, waiting while the socket is full.
async fn send_parts(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        let mut skip = sent;
        let mut iov = Vec::with_capacity(parts.len());
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            iov.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
        match net::send_vectored(fd, &iov) {
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // Park until writable, sending the first pending slice through glommio.
                let first: &[u8] = &iov[0];
                sent += stream.write(first).await?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The tracks an HTTP-FLV request asks for: every track of a multitrack stream with
/// `?tracks=all` (HTTP has no `connect` to announce it in), the default track otherwise.
fn tracks(query: Option<&str>) -> Tracks {
    if crate::auth::param(query, "tracks") == Some("all") {
        Tracks::All
    } else {
        Tracks::Default
    }
}

/// Refuses a request that would make a pull loop (see [`crate::upstream`]): `508 Loop
/// Detected`.
async fn refuse_loop(
    stream: &mut TcpStream,
    span: &Span,
    looped: &crate::upstream::LoopError,
    req: &Request,
    limit: Duration,
) -> io::Result<()> {
    info!(parent: span, action = "pull-loop", "http: refused: {looped}");
    let text = format!("{looped}\n");
    let response = explained("508 Loop Detected", &text, false, req.keep_alive);
    reply(stream, &response, limit).await
}

/// A response with no body.
fn simple(status: &str, head_only: bool, keep_alive: bool) -> Vec<u8> {
    explained(status, status, head_only, keep_alive)
}

/// A response whose plain-text body is `text`.
fn explained(status: &str, text: &str, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let body: &str = if head_only { "" } else { text };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: text/plain\r\n\
Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        text.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}
