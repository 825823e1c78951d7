//! PROXY protocol headers (`corecast::proxy::parse`), as the accept path reads them from a
//! trusted balancer: whatever the bytes, parsing never panics, a complete header lies within
//! the bytes and the bound, and a header found in a prefix is found, the same, in the whole.
//!
//! Input: a byte choosing where to cut, then the bytes.
#![no_main]

use corecast::proxy::{parse, MAX_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, bytes @ ..] = data else {
        return;
    };
    let whole = parse(bytes);
    if let Ok(Some(header)) = &whole {
        assert!(header.len <= bytes.len() && header.len <= MAX_HEADER);
        // The connection's own bytes follow: they never change the header.
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"\x03GET / HTTP/1.1\r\n");
        assert_eq!(parse(&more).ok().flatten(), Some(*header));
    }
    // The driver parses what it has after every read: an incomplete prefix of a header
    // stays incomplete or becomes the same header.
    let end = usize::from(*cut) * bytes.len() / 255;
    if let (Ok(Some(early)), Ok(Some(header))) = (parse(&bytes[..end]), &whole) {
        assert_eq!(early, *header);
    }
});
