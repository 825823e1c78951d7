//! Streams: naming, ownership, and the per-shard data structures viewers read from.
//!
//! Names: [`validate_name`] is the one rule for application and stream names, applied by
//! every protocol (RTMP connect, publish and play; HTTP routes, after percent-decoding)
//! before a name is used for anything: access control, keys, logs.
//!
//! - [`ring`]: bounded ring of recent units (pure).
//! - [`budget`]: the server-wide budget of media memory that rings and HLS windows count
//!   against.
//! - [`cursor`]: a viewer's position and the slow-viewer policy (pure).
//! - [`feed`]: one stream on one shard: ring, headers, waiting viewers.
//! - [`origin`]: the owner shard's side of a stream: publisher state, unit construction (pure).
//! - [`fanout`]: which shards get a stream's units, and where a lagging one resumes (pure).

pub mod budget;
pub mod cursor;
pub mod fanout;
pub mod feed;
pub mod origin;
pub mod ring;

use std::sync::Arc;

/// A stream's name, `app/stream` (the publish name without its query string).
pub type StreamKey = Arc<str>;

/// Longest application or stream name, in bytes. Stream keys from encoders are under 100
/// bytes (Twitch, YouTube and Facebook keys are 20 to 80); 256 leaves room for generated
/// names while keeping keys, log lines and HLS URIs short.
pub const MAX_NAME_BYTES: usize = 256;

/// Why an application or stream name was refused by [`validate_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("empty name")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`] (its length in bytes).
    #[error("name of {0} bytes (at most {MAX_NAME_BYTES})")]
    TooLong(usize),
    /// The name holds a character outside `A-Z a-z 0-9 - . _ ~` (the character, escaped
    /// when shown, and its byte offset).
    #[error("character {0:?} at byte {1} not allowed (only A-Z a-z 0-9 - . _ ~)")]
    Char(char, usize),
    /// The name is made of dots only (`.`, `..`): path segments that URL resolution,
    /// proxies and CDNs rewrite.
    #[error("name made of dots only")]
    Dots,
}

/// Checks an application or stream name (without its query string). Allowed: 1 to
/// [`MAX_NAME_BYTES`] bytes of ASCII letters, digits, `-`, `.`, `_` and `~` (the unreserved
/// characters of URIs, RFC 3986 section 2.3), not made of dots only.
///
/// So a name needs no escaping in an RTMP URL, an HTTP path or a log line, `app/stream` is
/// one key for one (app, stream) pair (no `/` in either), and the signed token message
/// (`ACTION\nAPP\nSTREAM\nEXPIRY`, see [`crate::auth`]) cannot be ambiguous (no `\n`).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(NameError::Char(c, at));
    }
    if name.bytes().all(|b| b == b'.') {
        return Err(NameError::Dots);
    }
    Ok(())
}

/// Checks an application name and a stream name with [`validate_name`].
pub fn validate_names(app: &str, stream: &str) -> Result<(), NameError> {
    validate_name(app)?;
    validate_name(stream)
}

/// Builds the key of stream `name` in application `app`; both must have passed
/// [`validate_name`], which makes the key unique to the pair.
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
    fn names_follow_one_rule() {
        for good in [
            "live",
            "cam-1",
            "a.b_c~d",
            "FB-123-0-AbC",
            "...a",
            "a..",
            "0",
        ] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        let longest = "n".repeat(MAX_NAME_BYTES);
        assert_eq!(validate_name(&longest), Ok(()));
        assert_eq!(
            validate_name(&format!("{longest}n")),
            Err(NameError::TooLong(MAX_NAME_BYTES + 1))
        );
        assert_eq!(
            validate_name(&"n".repeat(64 * 1024)),
            Err(NameError::TooLong(64 * 1024))
        );
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("."), Err(NameError::Dots));
        assert_eq!(validate_name(".."), Err(NameError::Dots));
        let refused = [
            ("a/b", '/', 1),
            ("cam?token=x", '?', 3),
            ("?", '?', 0),
            ("a#b", '#', 1),
            ("a\nb", '\n', 1),
            ("a\rb", '\r', 1),
            ("a\0b", '\0', 1),
            ("a b", ' ', 1),
            ("a%2Fb", '%', 1),
            ("a\\b", '\\', 1),
            ("caf\u{e9}", '\u{e9}', 3),
            ("a\u{202e}b", '\u{202e}', 1),
        ];
        for (name, c, at) in refused {
            assert_eq!(validate_name(name), Err(NameError::Char(c, at)), "{name:?}");
        }
        assert_eq!(validate_names("live", "cam"), Ok(()));
        assert_eq!(
            validate_names("premium/a", "b"),
            Err(NameError::Char('/', 7))
        );
        assert_eq!(validate_names("live", ""), Err(NameError::Empty));
    }

    #[test]
    fn refusals_show_characters_escaped() {
        let shown = NameError::Char('\n', 3).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("'\\n'"), "{shown}");
    }

    #[test]
    fn query_is_kept_apart() {
        assert_eq!(split_query("cam?token=abc"), ("cam", Some("token=abc")));
        assert_eq!(split_query("cam"), ("cam", None));
    }
}
