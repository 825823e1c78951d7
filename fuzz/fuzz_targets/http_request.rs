//! HTTP request heads (`corecast::http::request::parse_head`), routing (`route`) and
//! `Range` headers (`byte_range`), as the HTTP driver applies them to what it reads.
//!
//! Every media route's names pass the name rule (`corecast::hub::validate_names`).
//!
//! Input: two bytes of limits (head size limit, body length for ranges), then the bytes.
#![no_main]

use corecast::http::request::{byte_range, parse_head, route, ByteRange, Route};
use corecast::hub::validate_names;
use libfuzzer_sys::fuzz_target;

/// A route's names, when it has any, follow the name rule.
fn check_names(route: &Route<'_>) {
    if let Some((app, stream)) = route.media_stream() {
        assert_eq!(validate_names(app, stream), Ok(()), "{route:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit, len, head @ ..] = data else {
        return;
    };
    let max_len = usize::from(*limit) * 64 + 16;
    // The driver parses what it has so far after every read.
    for end in [head.len() / 3, head.len() / 2, head.len()] {
        let Ok(Some((request, used))) = parse_head(&head[..end], max_len) else {
            continue;
        };
        assert!(used <= end && used <= max_len);
        let routed = route(&request.path);
        let _ = routed.is_admin();
        check_names(&routed);
        let body_len = usize::from(*len) * 1000 + usize::from(*limit);
        match byte_range(request.range.as_deref(), body_len) {
            ByteRange::Part(start, stop) => assert!(start < stop && stop <= body_len),
            ByteRange::Full | ByteRange::Unsatisfiable => {}
        }
    }
    // Paths and range headers that httparse would not let through.
    let text = String::from_utf8_lossy(head);
    check_names(&route(&text));
    for body_len in [0, 1, usize::from(*len), usize::MAX] {
        if let ByteRange::Part(start, stop) = byte_range(Some(&text), body_len) {
            assert!(
                start < stop && stop <= body_len,
                "{text:?} of {body_len}: {start}..{stop}"
            );
        }
    }
});
