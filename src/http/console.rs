//! The console: a web page on the admin listener that shows live streams, shard load and
//! latency quantiles from the JSON API, and plays any stream (pure: the embedded files and
//! the headers they are served with).
//!
//! The page (`console/index.html`, `console.js`, `console.css`) polls `/api/v1/stats` and
//! `/api/v1/streams` once a second. Its player is the vendored mpegts.js (see
//! `console/vendor/README.md`), which reads HTTP-FLV from the media listener with `fetch`
//! and feeds the `<video>` element through Media Source Extensions. Everything is embedded
//! in the binary: no build step, nothing fetched from elsewhere.

/// The vendored player's file name (the version is part of it, so it may be cached long).
pub const MPEGTS: &str = "vendor/mpegts-1.8.2.min.js";

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// Its path below `/console/` (the page itself is served at `/`).
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control`: the page and its scripts change with the binary and are
    /// revalidated; the versioned player is kept a year. `private`: the files are served
    /// behind the admin token, shared caches must not keep them.
    pub cache_control: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// Revalidate on every use.
const NO_CACHE: &str = "private, no-cache";

/// The page, served at `/`.
pub static INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    cache_control: NO_CACHE,
    body: include_bytes!("console/index.html"),
};

/// The files below `/console/`.
static ASSETS: [Asset; 5] = [
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        cache_control: NO_CACHE,
        body: include_bytes!("console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        cache_control: NO_CACHE,
        body: include_bytes!("console/console.css"),
    },
    Asset {
        name: MPEGTS,
        content_type: "text/javascript; charset=utf-8",
        cache_control: "private, max-age=31536000, immutable",
        body: include_bytes!("console/vendor/mpegts-1.8.2.min.js"),
    },
    Asset {
        name: "vendor/LICENSE-mpegts.js",
        content_type: "text/plain; charset=utf-8",
        cache_control: NO_CACHE,
        body: include_bytes!("console/vendor/LICENSE-mpegts.js"),
    },
    Asset {
        name: "vendor/LICENSE-mpegts.js-bundled",
        content_type: "text/plain; charset=utf-8",
        cache_control: NO_CACHE,
        body: include_bytes!("console/vendor/LICENSE-mpegts.js-bundled"),
    },
];

/// The file at `/console/{name}`, if there is one (names are compared as sent: none needs
/// percent-encoding).
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The `Content-Security-Policy` of the console's responses: scripts, styles and API calls
/// from the console's own origin only; the player may read media from port `media_port` of
/// any host (the page names the host it was opened with, which the server does not know)
/// and play it from `blob:` URLs (Media Source Extensions). mpegts.js runs without a
/// worker, so none is allowed; nothing may frame the page.
pub fn content_security_policy(media_port: u16) -> String {
    let media = format!("http://*:{media_port}");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {media}; media-src 'self' blob: {media}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// The response head of `asset`, with `Content-Length` (also for `HEAD`), the caching
/// rule, the [`content_security_policy`], no MIME sniffing and no referrer (the page's URL
/// is not sent with the player's requests to the media listener).
pub fn head(asset: &Asset, media_port: u16, keep_alive: bool) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: {}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: {}\r\nConnection: {}\r\n\r\n",
        asset.content_type,
        asset.body.len(),
        asset.cache_control,
        content_security_policy(media_port),
        if keep_alive { "keep-alive" } else { "close" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        let named: Vec<&str> = page
            .split("\"/console/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(named.contains(&"console.js") && named.contains(&"console.css"));
        assert!(named.contains(&MPEGTS), "{named:?}");
        for name in named {
            assert!(asset(name).is_some(), "/console/{name} is not served");
        }
    }

    #[test]
    fn the_player_is_the_vendored_file_and_unknown_names_are_not_served() {
        let player = asset(MPEGTS).unwrap();
        assert!(player.body.starts_with(b"/*! For license information"));
        assert!(player.cache_control.contains("immutable"));
        assert_eq!(asset("index.html"), None);
        assert_eq!(asset("vendor/../console.js"), None);
        assert_eq!(asset(""), None);
    }

    #[test]
    fn heads() {
        let head = head(&INDEX, 8080, true);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.ends_with("\r\nConnection: keep-alive\r\n\r\n"),
            "{head}"
        );
        for line in [
            "Content-Type: text/html; charset=utf-8".to_string(),
            format!("Content-Length: {}", INDEX.body.len()),
            "Cache-Control: private, no-cache".to_string(),
            "X-Content-Type-Options: nosniff".to_string(),
            "Referrer-Policy: no-referrer".to_string(),
            format!("Content-Security-Policy: {}", content_security_policy(8080)),
        ] {
            assert!(head.contains(&format!("\r\n{line}\r\n")), "{line}: {head}");
        }
        let player = super::head(asset(MPEGTS).unwrap(), 8080, false);
        assert!(player.contains("\r\nCache-Control: private, max-age=31536000, immutable\r\n"));
        assert!(player.contains("\r\nContent-Type: text/javascript; charset=utf-8\r\n"));
        assert!(player.ends_with("\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn the_policy_allows_the_media_port_only() {
        let csp = content_security_policy(8080);
        assert!(csp.contains("connect-src 'self' http://*:8080;"), "{csp}");
        assert!(
            csp.contains("media-src 'self' blob: http://*:8080;"),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
