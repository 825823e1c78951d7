# Varnish as an HTTP cache in front of corecast's HLS and Low-Latency HLS: many players,
# about one request per segment, part, initialization segment and playlist refresh to
# corecast. Run it with `varnishd -f /etc/varnish/hls-cache.vcl -a :80 -s malloc,1g` (or
# as /etc/varnish/default.vcl) and set the backend to your corecast box. Tested by
# loadtest/tests/hls_cache.rs, which runs this file (with the backend's address replaced)
# in front of a corecast and 200 LL-HLS players.
#
# Why Varnish for LL-HLS: requests for an object being fetched wait on its waiting list
# and are all answered the moment the answer comes (request coalescing). A blocking
# playlist reload (?_HLS_msn=..&_HLS_part=..) that every player of a stream sends at the
# same time, and the part they then all ask for, reach corecast once per cache. nginx's
# proxy_cache_lock collapses too, but wakes its waiters every 500 ms, too late for parts
# of 250 ms (deploy/nginx/hls-cache.conf caches LL-HLS without it).
#
# What corecast sends, and what this file relies on (docs/OPERATIONS.md, "HLS behind a
# cache"):
# - Segments, parts and initialization segments of open applications: "public,
#   max-age=86400, immutable" (their names are unique per stream incarnation).
# - Playlists of open applications: MPEG-TS "public, max-age=N", N half the target duration;
#   an LL-HLS blocking reload "public, max-age" six target durations (any later playlist
#   has what it asks for); the LL-HLS live-edge playlist without directives (a player's
#   first request) "no-cache": Varnish's built-in rules pass each to corecast.
# - Protected applications (play tokens): "private": never stored, every request (its
#   credentials in the query) passed to corecast, which checks each.
# - Errors (404 for a segment that left the window, 503 for a reload that came too late):
#   "no-store", never stored.
# - HTTP-FLV (one endless response per viewer) is not cached: players reach corecast
#   directly, or through this file's pipe.

vcl 4.1;

backend corecast {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    # corecast holds a blocking reload until its part exists: at most three part targets,
    # or a target duration; then it answers 503.
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 10s;
    # Fetches at once (a miss, a refresh, a pass). Over it: 503 for that request.
    .max_connections = 1000;
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # HTTP-FLV: a byte stream, not a cacheable object.
    if (req.url ~ "^[^?]*\.flv(\?|$)") {
        return (pipe);
    }
    # HLS and LL-HLS: playlists, segments, parts, initialization segments.
    if (req.url ~ "^[^?]*\.(m3u8|ts|m4s|mp4)(\?|$)") {
        # corecast's HLS sets no cookie and reads none; the query (delivery directives,
        # credentials) is in the key with the path, as the default hash has it.
        unset req.http.Cookie;
        unset req.http.Authorization;
        return (hash);
    }
    # The API, metrics and console are not for a public cache.
    return (pass);
}

sub vcl_backend_response {
    # A stale playlist is served while its refresh is fetched for at most one more
    # max-age (the default grace of 10 s would show players a playlist 10 s behind).
    if (bereq.url ~ "^[^?]*\.m3u8(\?|$)") {
        set beresp.grace = beresp.ttl;
    }
}

sub vcl_deliver {
    # Hit, miss or pass, for the operator.
    if (obj.uncacheable) {
        set resp.http.X-Cache = "pass";
    } elsif (obj.hits > 0) {
        set resp.http.X-Cache = "hit";
    } else {
        set resp.http.X-Cache = "miss";
    }
}
