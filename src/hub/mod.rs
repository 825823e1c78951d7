//! Streams: naming, ownership, and the per-shard data structures viewers read from.
//!
//! - [`ring`]: bounded ring of recent units (pure).
//! - [`budget`]: the server-wide budget of media memory that rings and HLS windows count
//!   against.
//! - [`cursor`]: a viewer's position and the slow-viewer policy (pure).
//! - [`feed`]: one stream on one shard: ring, headers, waiting viewers.
//! - [`origin`]: the owner shard's side of a stream: publisher state, unit construction (pure).

pub mod budget;
pub mod cursor;
pub mod feed;
pub mod origin;
pub mod ring;

use std::sync::Arc;

/// A stream's name, `app/stream` (the publish name without its query string).
pub type StreamKey = Arc<str>;

/// Builds the key of stream `name` in application `app`.
pub fn stream_key(app: &str, name: &str) -> StreamKey {
    Arc::from(format!("{app}/{name}"))
}

/// Splits a publish or play name into the name and its query string (`name?token=...`).
pub fn split_query(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (name, None),
    }
}

/// The shard that owns a stream: FNV-1a (64-bit) of the UTF-8 bytes of `app/stream`, modulo
/// the number of shards. Stable across runs and versions, so operators can predict it.
pub fn owner_of(key: &str, shards: usize) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable() {
        // Pinned values: changing the hash would move streams between shards.
        assert_eq!(owner_of("live/test", 1), 0);
        assert_eq!(owner_of("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as usize);
        let spread: std::collections::HashSet<usize> = (0..64)
            .map(|i| owner_of(&format!("live/s{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn query_is_kept_apart() {
        assert_eq!(split_query("cam?token=abc"), ("cam", Some("token=abc")));
        assert_eq!(split_query("cam"), ("cam", None));
    }
}
