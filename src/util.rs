//! Small helpers: timeouts for glommio tasks, client text made safe for logs, canonical
//! decimal numbers.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Runs `fut` for at most `limit`; `None` when the time ran out first.
pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// Most characters of client-supplied text shown in a log line by [`Escaped`].
pub const LOG_TEXT_CHARS: usize = 128;

/// Client-supplied text (a name, a command, a path) as it may appear in a log line: control
/// characters, quotes and backslashes escaped as in Rust's `{:?}` (so a `\n` cannot start a
/// forged line), cut after [`LOG_TEXT_CHARS`] characters with its full length in bytes
/// appended (so a 64 KiB name does not make a 64 KiB line).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(LOG_TEXT_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Parses a number written in its one canonical form: `0`, or ASCII decimal digits not
/// starting with `0` (no sign, spaces or separators), fitting a `u64`. So each value has a
/// single spelling in URLs and tokens.
pub fn parse_canonical_u64(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_one_spelling() {
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("42"), Some(42));
        assert_eq!(parse_canonical_u64("18446744073709551615"), Some(u64::MAX));
        for refused in [
            "",
            "00",
            "042",
            "+42",
            "-1",
            " 42",
            "42 ",
            "4_2",
            "4.2",
            "0x10",
            "18446744073709551616",
        ] {
            assert_eq!(parse_canonical_u64(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn escaped_text_stays_on_one_short_line() {
        assert_eq!(Escaped("cam-1").to_string(), "cam-1");
        assert_eq!(
            Escaped("a\nINFO forged\r\0\"\\").to_string(),
            "a\\nINFO forged\\r\\0\\\"\\\\"
        );
        let long = "x".repeat(65_536);
        let shown = Escaped(&long).to_string();
        assert_eq!(
            shown,
            format!("{}...(65536 bytes)", "x".repeat(LOG_TEXT_CHARS))
        );
    }
}
