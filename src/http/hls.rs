//! The HLS side of the HTTP server: answering playlist and segment requests from the
//! shard's snapshots, their caching rules, and the credentials carried into segment URIs.

use super::request::{byte_range, ByteRange, Method, Request};
use super::{explained, reply, send_all, simple};
use crate::auth::Policy;
use crate::hls::llhls::{multivariant, parse_directives, PlaylistRequest, Variant, PLAYLIST_NAME};
use crate::hub::StreamKey;
use crate::media::now_ns;
use crate::metrics::Stage;
use crate::shard::llhls::LlAnswer;
use crate::shard::Shard;
use crate::stats;
use bytes::Bytes;
use glommio::net::TcpStream;
use std::borrow::Cow;
use std::io;

/// The credential parameters of a query string (`token=...`, `key=...`), to carry into
/// segment URIs.
pub(super) fn credentials(query: Option<&str>) -> Option<String> {
    let parts: Vec<String> = ["token", "key"]
        .iter()
        .filter_map(|name| crate::auth::param(query, name).map(|v| format!("{name}={v}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("&"))
}

/// The kinds of HLS responses, which differ in type and caching.
#[derive(Debug, Clone, Copy)]
pub(super) enum HlsKind {
    /// Changes every segment: caches must revalidate.
    Playlist,
    /// An MPEG-TS segment: immutable under its name (names are unique per stream
    /// incarnation).
    Segment,
    /// A Low-Latency HLS initialization segment, segment or part (fMP4): immutable under its
    /// name, like a segment.
    Fmp4,
}

/// `Cache-Control` of an HLS response. Open applications: any cache (CDNs included) may keep
/// a playlist for half the target duration (at least the 1 s HTTP can say), so that a cache
/// in front asks for it at most that often whatever its number of players, while a player
/// still sees each new segment within half a target duration of its listing; segments for a
/// day (their names are unique per stream incarnation). Protected applications
/// (`protected`: a play policy other than `open`): only the viewer's own (private) cache may
/// keep a response, since a shared cache would serve it to viewers without credentials,
/// and playlists carry the viewer's credentials in their segment URIs. A private segment is
/// kept for as long as a playlist can list it, `(hls.window_segments + 1) x
/// hls.target_duration_ms` rounded up to seconds: enough for the player, no longer.
pub(super) fn hls_cache_control(
    kind: HlsKind,
    protected: bool,
    config: &crate::Config,
) -> Cow<'static, str> {
    match (kind, protected) {
        (HlsKind::Playlist, false) => Cow::Owned(format!(
            "public, max-age={}",
            (config.hls.target_duration_ms / 2000).max(1)
        )),
        (HlsKind::Playlist, true) => Cow::Borrowed("private, no-cache"),
        (HlsKind::Segment | HlsKind::Fmp4, false) => {
            Cow::Borrowed("public, max-age=86400, immutable")
        }
        (HlsKind::Segment | HlsKind::Fmp4, true) => {
            let window_ms = (config.hls.window_segments as u64 + 1)
                .saturating_mul(config.hls.target_duration_ms);
            Cow::Owned(format!(
                "private, max-age={}, immutable",
                window_ms.div_ceil(1000)
            ))
        }
    }
}

/// Answers a playlist request for a stream that the rendition cannot carry (`track`, see
/// [`crate::hls::segmenter::Segmenter::push`]; `mapping`: `"MPEG-TS"` or `"fMP4"`):
/// `501 Not Implemented`, saying why and what to play instead.
pub(super) async fn respond_unavailable(
    shard: &Shard,
    stream: &mut TcpStream,
    req: &Request,
    track: &str,
    mapping: &str,
) -> io::Result<usize> {
    let text = format!(
        "HLS is not available for this stream: its {track} has no {mapping} mapping here; \
         play it over HTTP-FLV or RTMP\n"
    );
    let head_only = req.method == Method::Head;
    let response = explained("501 Not Implemented", &text, head_only, req.keep_alive);
    reply(stream, &response, shard.config().write_timeout()).await?;
    Ok(response.len())
}

/// Answers an HLS request: `body` is the playlist or segment, `None` when unknown or expired
/// (404). Supports HEAD and a single byte range. Head and body go out in one vectored send;
/// the body is the shared snapshot, never copied.
pub(super) async fn respond_hls(
    shard: &Shard,
    stream: &mut TcpStream,
    req: &Request,
    body: Option<Bytes>,
    kind: HlsKind,
    cache: &str,
) -> io::Result<usize> {
    let limit = shard.config().write_timeout();
    let Some(body) = body else {
        let head_only = req.method == Method::Head;
        let response = simple("404 Not Found", head_only, req.keep_alive);
        reply(stream, &response, limit).await?;
        return Ok(response.len());
    };
    let content_type = match kind {
        HlsKind::Playlist => "application/vnd.apple.mpegurl",
        HlsKind::Segment => "video/mp2t",
        HlsKind::Fmp4 => "video/mp4",
    };
    let total = body.len();
    let (status, body, range) = match byte_range(req.range.as_deref(), total) {
        ByteRange::Full => ("200 OK", body, String::new()),
        ByteRange::Part(start, end) => (
            "206 Partial Content",
            body.slice(start..end),
            format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1),
        ),
        ByteRange::Unsatisfiable => (
            "416 Range Not Satisfiable",
            Bytes::new(),
            format!("Content-Range: bytes */{total}\r\n"),
        ),
    };
    let connection = if req.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let cache = if status.starts_with("416") {
        "no-store"
    } else {
        cache
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: {cache}\r\nAccess-Control-Allow-Origin: *\r\nAccept-Ranges: bytes\r\n\
         {range}Connection: {connection}\r\n\r\n",
        body.len()
    );
    let body = if req.method == Method::Head {
        Bytes::new()
    } else {
        body
    };
    // A segment may take longer than a short response, but not longer than its size at
    // http.segment_min_rate_bytes: a reader slower than that cannot keep it alive.
    let limit = match kind {
        HlsKind::Playlist => limit,
        HlsKind::Segment | HlsKind::Fmp4 => limit + shard.config().min_rate_time(body.len()),
    };
    send_all(stream, &[head.as_bytes(), &body], limit).await?;
    Ok(head.len() + body.len())
}

/// `Cache-Control` of a Low-Latency HLS media playlist. A blocking request
/// (`_HLS_msn`) names what the playlist must contain, and any later playlist contains it:
/// a shared cache may answer the same request with it for
/// [`crate::hls::llhls::SKIP_BOUNDARY_TARGETS`] target durations (no player asks for a
/// segment that old). Without directives it is the live edge: caches revalidate. Protected
/// streams: private (the URIs carry the viewer's credentials).
fn ll_playlist_cache_control(
    blocking: bool,
    protected: bool,
    config: &crate::Config,
) -> Cow<'static, str> {
    match (blocking, protected) {
        (_, true) => Cow::Borrowed("private, no-cache"),
        (true, false) => Cow::Owned(format!(
            "public, max-age={}",
            crate::hls::llhls::SKIP_BOUNDARY_TARGETS * config.hls.target_duration_ms / 1000
        )),
        (false, false) => Cow::Borrowed("no-cache"),
    }
}

/// Answers a Low-Latency HLS media playlist request: its delivery directives (`400` when
/// malformed or too far ahead), held until the playlist has what they ask for (`503` when
/// it does not come in time), then the playlist rendered for this request (a delta update
/// for `_HLS_skip`; a protected stream's credentials carried into every URI). Returns the
/// bytes sent and when the answer was ready (for the service time, which leaves out the
/// holding).
pub(super) async fn respond_ll_playlist(
    shard: &Shard,
    stream: &mut TcpStream,
    req: &Request,
    app: &str,
    key: &StreamKey,
) -> io::Result<(usize, u64)> {
    let head_only = req.method == Method::Head;
    let limit = shard.config().write_timeout();
    let query = req.query.as_deref();
    let directives = match parse_directives(query) {
        Ok(directives) => directives,
        Err(err) => {
            let response = explained(
                "400 Bad Request",
                &format!("{err}\n"),
                head_only,
                req.keep_alive,
            );
            reply(stream, &response, limit).await?;
            return Ok((response.len(), now_ns()));
        }
    };
    let answer = shard.ll_playlist(key, &directives).await;
    let ready = now_ns();
    let refusal = match answer {
        LlAnswer::Playlist(view) => {
            if let Some(track) = &view.unsupported {
                let sent = respond_unavailable(shard, stream, req, track, "fMP4").await?;
                return Ok((sent, ready));
            }
            let protected = shard.auth().policy(app).play != Policy::Open;
            let credentials = credentials(query).filter(|_| protected);
            let text = view.window.playlist(&PlaylistRequest {
                skip: directives.skip,
                query: credentials.as_deref(),
            });
            let config = shard.config();
            let cache = ll_playlist_cache_control(directives.msn.is_some(), protected, &config);
            let body = Some(Bytes::from(text));
            let sent = respond_hls(shard, stream, req, body, HlsKind::Playlist, &cache).await?;
            return Ok((sent, ready));
        }
        LlAnswer::NotFound => "404 Not Found",
        LlAnswer::TooFarAhead => "400 Bad Request",
        LlAnswer::TimedOut => "503 Service Unavailable",
    };
    let response = simple(refusal, head_only, req.keep_alive);
    reply(stream, &response, limit).await?;
    Ok((response.len(), ready))
}

/// Answers a Low-Latency HLS multivariant playlist request: one variant, the media playlist,
/// with its `CODECS`, `RESOLUTION` and bandwidth (from the segments in the window). Starts
/// the stream's LL-HLS like a media playlist request.
pub(super) async fn respond_ll_multivariant(
    shard: &Shard,
    stream: &mut TcpStream,
    req: &Request,
    app: &str,
    key: &StreamKey,
) -> io::Result<usize> {
    let view = shard.ll_multivariant_view(key).await;
    if let Some(track) = view.as_ref().and_then(|v| v.unsupported.clone()) {
        return respond_unavailable(shard, stream, req, &track, "fMP4").await;
    }
    let protected = shard.auth().policy(app).play != Policy::Open;
    let credentials = credentials(req.query.as_deref()).filter(|_| protected);
    let body = view.and_then(|view| {
        let codecs = view.codecs.clone()?;
        let (peak, average) = view.bandwidth();
        let variant = Variant {
            uri: PLAYLIST_NAME,
            bandwidth: peak,
            average_bandwidth: Some(average),
            codecs: &codecs,
            resolution: view.resolution.map(|(w, h)| (u32::from(w), u32::from(h))),
            frame_rate: None,
        };
        Some(Bytes::from(multivariant(
            &[variant],
            credentials.as_deref(),
        )))
    });
    let cache = hls_cache_control(HlsKind::Playlist, protected, &shard.config());
    respond_hls(shard, stream, req, body, HlsKind::Playlist, &cache).await
}

/// Counts an HLS request and records its service time, from `parsed_ns` to now.
pub(super) fn record_hls(shard: &Shard, parsed_ns: u64) {
    let took = now_ns().saturating_sub(parsed_ns);
    stats::inc(&shard.stats.hls_requests);
    stats::add(&shard.stats.hls_service_ns_total, took);
    shard.record(Stage::HttpService, took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_hls_is_for_private_caches_only() {
        let config = crate::Config::default();
        let window_s = (config.hls.window_segments as u64 + 1) * config.hls.target_duration_ms;
        let window_s = window_s.div_ceil(1000);
        assert_eq!(
            hls_cache_control(HlsKind::Segment, false, &config),
            "public, max-age=86400, immutable"
        );
        assert_eq!(
            hls_cache_control(HlsKind::Segment, true, &config),
            format!("private, max-age={window_s}, immutable")
        );
        assert_eq!(
            hls_cache_control(HlsKind::Playlist, false, &config),
            "public, max-age=1"
        );
        let mut long = crate::Config::default();
        long.hls.target_duration_ms = 6000;
        assert_eq!(
            hls_cache_control(HlsKind::Playlist, false, &long),
            "public, max-age=3"
        );
        assert_eq!(
            hls_cache_control(HlsKind::Playlist, true, &config),
            "private, no-cache"
        );
    }
}
