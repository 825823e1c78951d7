//! Access control for publishing and playing: per application, each action is open, needs
//! a static key, or needs a signed token. Pure: the caller passes the query string and the
//! current Unix time; nothing here does IO.
//!
//! Credentials travel in the query string of the stream name (RTMP: `stream?token=...`,
//! HTTP: `/app/stream.flv?token=...`), so every encoder and player can carry them:
//! - `key=K`: a static key, from `auth.apps.<app>.publish_keys` / `play_keys` (by stream
//!   name, `*` for any stream of the app);
//! - `token=EXPIRY.MAC`: `EXPIRY` is a Unix time in seconds, `MAC` the lowercase hex
//!   HMAC-SHA256, keyed with `auth.secret`, of `"{action}\n{app}\n{stream}\n{EXPIRY}"` where
//!   `action` is `publish` or `play`. [`mint`] makes one (`corecast token` on the command
//!   line). Only the canonical form is accepted: `EXPIRY` in decimal digits without sign or
//!   leading zeros (fitting a `u64`), `MAC` exactly 64 lowercase hex digits; so a token has
//!   one spelling, and a cache or log keyed on it cannot be fooled by another.
//!
//! The message is unambiguous because app and stream names pass
//! [`crate::hub::validate_name`] (no `\n`) before any check: every protocol validates them
//! first, and [`Auth::check`] refuses a token for an invalid name all the same.
//!
//! Comparisons of keys and MACs take the same time whatever the input.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Push a stream.
    Publish,
    /// Pull a stream (RTMP, HTTP-FLV, HLS playlist and segments).
    Play,
}

impl Action {
    /// The name signed in tokens and shown in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one action of one application is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone.
    #[default]
    Open,
    /// A static key (`?key=`) listed for the stream.
    Key,
    /// A signed, unexpired token (`?token=`).
    Token,
    /// A static key or a signed token.
    KeyOrToken,
}

/// The policies of one application (`[auth.apps.<app>]`), or the default ones (`[auth]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppPolicy {
    /// Who may publish.
    pub publish: Policy,
    /// Who may play.
    pub play: Policy,
    /// Static publish keys by stream name (`*`: any stream).
    pub publish_keys: BTreeMap<String, String>,
    /// Static play keys by stream name (`*`: any stream).
    pub play_keys: BTreeMap<String, String>,
}

/// Why a request was refused. Never carries the credential itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The policy asks for credentials and none were given.
    #[error("credentials required")]
    Missing,
    /// A key was given but is not the stream's.
    #[error("wrong key")]
    BadKey,
    /// A token was given but is malformed or its MAC does not match.
    #[error("invalid token")]
    BadToken,
    /// The token's expiry has passed.
    #[error("token expired")]
    Expired,
    /// Tokens are required but no secret is configured (a configuration the server refuses
    /// at start-up; kept for completeness).
    #[error("tokens are not configured")]
    NoSecret,
}

impl Denied {
    /// All reasons, for metrics.
    pub const ALL: [Denied; 5] = [
        Denied::Missing,
        Denied::BadKey,
        Denied::BadToken,
        Denied::Expired,
        Denied::NoSecret,
    ];

    /// The reason as told to the client.
    pub fn message(self) -> &'static str {
        match self {
            Denied::Missing => "unauthorized: credentials required (?key= or ?token=)",
            Denied::BadKey => "unauthorized: wrong key",
            Denied::BadToken => "unauthorized: invalid token",
            Denied::Expired => "unauthorized: token expired",
            Denied::NoSecret => "unauthorized: tokens are not configured",
        }
    }

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::BadKey => "bad_key",
            Denied::BadToken => "bad_token",
            Denied::Expired => "expired",
            Denied::NoSecret => "no_secret",
        }
    }
}

/// The access rules of a server.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    secret: Vec<u8>,
    default: AppPolicy,
    apps: BTreeMap<String, AppPolicy>,
}

impl Auth {
    /// Rules from the configuration: the token secret, the default policies and the
    /// per-application ones.
    pub fn new(secret: &str, default: AppPolicy, apps: BTreeMap<String, AppPolicy>) -> Self {
        Auth {
            secret: secret.as_bytes().to_vec(),
            default,
            apps,
        }
    }

    /// The policies that apply to `app`.
    pub fn policy(&self, app: &str) -> &AppPolicy {
        self.apps.get(app).unwrap_or(&self.default)
    }

    /// Rules from the `[auth]` configuration section.
    pub fn from_config(c: &crate::config::AuthConfig) -> Self {
        Auth::new(
            &c.secret,
            AppPolicy {
                publish: c.publish,
                play: c.play,
                publish_keys: c.publish_keys.clone(),
                play_keys: c.play_keys.clone(),
            },
            c.apps.clone(),
        )
    }

    /// Whether some policy needs the token secret.
    pub fn uses_tokens(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.apps.values())
            .any(|p| {
                [p.publish, p.play]
                    .iter()
                    .any(|r| matches!(r, Policy::Token | Policy::KeyOrToken))
            })
    }

    /// Whether every action of every application is open (no checks at all).
    pub fn is_open(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.apps.values())
            .all(|p| p.publish == Policy::Open && p.play == Policy::Open)
    }

    /// Decides whether `action` on `app/stream` is allowed with the credentials in `query`
    /// (the part after `?`, undecoded) at Unix time `now`.
    pub fn check(
        &self,
        action: Action,
        app: &str,
        stream: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<(), Denied> {
        let policy = self.policy(app);
        let (rule, keys) = match action {
            Action::Publish => (policy.publish, &policy.publish_keys),
            Action::Play => (policy.play, &policy.play_keys),
        };
        let key = param(query, "key");
        let token = param(query, "token");
        let by_key = || match key {
            None => Err(Denied::Missing),
            Some(given) => {
                let wanted = keys.get(stream).or_else(|| keys.get("*"));
                match wanted {
                    Some(wanted) if constant_time_eq(given.as_bytes(), wanted.as_bytes()) => Ok(()),
                    _ => Err(Denied::BadKey),
                }
            }
        };
        let by_token = || match token {
            None => Err(Denied::Missing),
            Some(token) => self.verify(action, app, stream, token, now),
        };
        match rule {
            Policy::Open => Ok(()),
            Policy::Key => by_key(),
            Policy::Token => by_token(),
            Policy::KeyOrToken => match (key, token) {
                (_, Some(_)) => by_token(),
                _ => by_key(),
            },
        }
    }

    fn verify(
        &self,
        action: Action,
        app: &str,
        stream: &str,
        token: &str,
        now: u64,
    ) -> Result<(), Denied> {
        if self.secret.is_empty() {
            return Err(Denied::NoSecret);
        }
        // Signed messages exist for valid names only (see the module documentation).
        if crate::hub::validate_names(app, stream).is_err() {
            return Err(Denied::BadToken);
        }
        let (expiry, mac) = parse_token(token).ok_or(Denied::BadToken)?;
        let mut h = hmac(&self.secret);
        h.update(signed_text(action, app, stream, expiry).as_bytes());
        // verify_slice compares in constant time.
        h.verify_slice(&mac).map_err(|_| Denied::BadToken)?;
        if now > expiry {
            return Err(Denied::Expired);
        }
        Ok(())
    }
}

fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length")
}

fn signed_text(action: Action, app: &str, stream: &str, expiry: u64) -> String {
    format!("{}\n{app}\n{stream}\n{expiry}", action.as_str())
}

/// A token allowing `action` on `app/stream` until Unix time `expiry` (seconds).
pub fn mint(secret: &str, action: Action, app: &str, stream: &str, expiry: u64) -> String {
    let mut h = hmac(secret.as_bytes());
    h.update(signed_text(action, app, stream, expiry).as_bytes());
    let mac = h.finalize().into_bytes();
    let mut out = format!("{expiry}.");
    for b in mac {
        out += &format!("{b:02x}");
    }
    out
}

/// The value of `name` in a query string (`a=1&b=2`), undecoded.
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares in time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Length of a token's MAC in hex digits (HMAC-SHA256: 32 bytes).
const MAC_HEX_DIGITS: usize = 64;

/// Splits a token into its expiry and MAC, in the canonical form only: `EXPIRY` is `0` or
/// decimal digits not starting with `0` (no sign, no spaces) that fit a `u64`; `MAC` is
/// exactly [`MAC_HEX_DIGITS`] lowercase hex digits.
fn parse_token(token: &str) -> Option<(u64, [u8; MAC_HEX_DIGITS / 2])> {
    let (expiry, mac) = token.split_once('.')?;
    let expiry = crate::util::parse_canonical_u64(expiry)?;
    Some((expiry, decode_mac(mac)?))
}

/// Decodes exactly [`MAC_HEX_DIGITS`] lowercase hex digits.
fn decode_mac(text: &str) -> Option<[u8; MAC_HEX_DIGITS / 2]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != MAC_HEX_DIGITS {
        return None;
    }
    let mut mac = [0u8; MAC_HEX_DIGITS / 2];
    for (byte, pair) in mac.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(mac)
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "correct horse battery staple";

    fn auth(live: AppPolicy) -> Auth {
        Auth::new(
            SECRET,
            AppPolicy::default(),
            BTreeMap::from([("live".to_string(), live)]),
        )
    }

    #[test]
    fn open_by_default() {
        let a = Auth::default();
        assert!(a.is_open());
        assert_eq!(a.check(Action::Publish, "live", "s", None, 0), Ok(()));
        let guarded = auth(AppPolicy {
            play: Policy::Token,
            ..AppPolicy::default()
        });
        assert!(!guarded.is_open());
        // Other apps keep the default (open) policy.
        assert_eq!(guarded.check(Action::Play, "other", "s", None, 0), Ok(()));
    }

    #[test]
    fn tokens_are_bound_to_action_app_stream_and_expiry() {
        let a = auth(AppPolicy {
            publish: Policy::Token,
            play: Policy::Token,
            ..AppPolicy::default()
        });
        let t = mint(SECRET, Action::Play, "live", "cam", 1_000);
        let q = format!("token={t}");
        let check =
            |action, stream, query: &str, now| a.check(action, "live", stream, Some(query), now);
        assert_eq!(check(Action::Play, "cam", &q, 999), Ok(()));
        assert_eq!(check(Action::Play, "cam", &q, 1_000), Ok(()));
        assert_eq!(check(Action::Play, "cam", &q, 1_001), Err(Denied::Expired));
        assert_eq!(check(Action::Play, "cam2", &q, 0), Err(Denied::BadToken));
        assert_eq!(check(Action::Publish, "cam", &q, 0), Err(Denied::BadToken));
        // A moved expiry breaks the MAC.
        let forged = q.replacen("1000.", "9999.", 1);
        assert_eq!(
            check(Action::Play, "cam", &forged, 0),
            Err(Denied::BadToken)
        );
        // Another secret's token is refused.
        let other = mint("other", Action::Play, "live", "cam", 1_000);
        assert_eq!(
            check(Action::Play, "cam", &format!("token={other}"), 0),
            Err(Denied::BadToken)
        );
        for garbage in [
            "token=",
            "token=abc",
            "token=1.zz",
            "token=.",
            "token=1.abc",
        ] {
            assert_eq!(
                check(Action::Play, "cam", garbage, 0),
                Err(Denied::BadToken)
            );
        }
        assert_eq!(check(Action::Play, "cam", "a=b", 0), Err(Denied::Missing));
        // Other parameters around the token do not matter.
        assert_eq!(
            check(Action::Play, "cam", &format!("x=1&{q}&y=2"), 5),
            Ok(())
        );
    }

    #[test]
    fn only_canonical_tokens_are_accepted() {
        let a = auth(AppPolicy {
            play: Policy::Token,
            ..AppPolicy::default()
        });
        let check = |token: &str| {
            a.check(
                Action::Play,
                "live",
                "cam",
                Some(&format!("token={token}")),
                0,
            )
        };
        let t = mint(SECRET, Action::Play, "live", "cam", 1_000);
        let mac = t.strip_prefix("1000.").expect("expiry, dot, MAC");
        assert_eq!(mac.len(), MAC_HEX_DIGITS);
        assert_eq!(check(&t), Ok(()));
        let refused = [
            format!("+1000.{mac}"),
            format!("-1000.{mac}"),
            format!("01000.{mac}"),
            format!("0001000.{mac}"),
            format!(" 1000.{mac}"),
            format!("1000 .{mac}"),
            format!("1000. {mac}"),
            format!("1000.{mac} "),
            format!("1000.{mac}\n"),
            format!("1_000.{mac}"),
            format!("1000.{}", mac.to_ascii_uppercase()),
            format!("1000.{}", &mac[..MAC_HEX_DIGITS - 2]),
            format!("1000.{mac}00"),
            format!("1000.{}", &mac[..MAC_HEX_DIGITS - 1]),
            format!("1000.{mac}.{mac}"),
            format!(".{mac}"),
            "1000.".to_string(),
            // Larger than u64::MAX.
            format!("18446744073709551616.{mac}"),
        ];
        for token in &refused {
            assert_eq!(check(token), Err(Denied::BadToken), "{token:?}");
        }
        // The canonical forms of the extremes.
        let zero = mint(SECRET, Action::Play, "live", "cam", 0);
        assert!(zero.starts_with("0."), "{zero}");
        assert_eq!(check(&zero), Ok(()));
        let last = mint(SECRET, Action::Play, "live", "cam", u64::MAX);
        assert_eq!(check(&last), Ok(()));
        assert_eq!(parse_token(&format!("00.{mac}")), None);
    }

    #[test]
    fn tokens_for_invalid_names_are_refused() {
        let a = Auth::new(
            SECRET,
            AppPolicy {
                play: Policy::Token,
                ..AppPolicy::default()
            },
            BTreeMap::new(),
        );
        // Without the name rule, "a\nb" in the app and "c" as stream would sign the same
        // message as "a" and "b\nc".
        for (app, stream) in [
            ("a\nb", "c"),
            ("a", "b\nc"),
            ("premium/a", "b"),
            ("live", ""),
        ] {
            let t = mint(SECRET, Action::Play, app, stream, 10);
            assert_eq!(
                a.check(Action::Play, app, stream, Some(&format!("token={t}")), 0),
                Err(Denied::BadToken),
                "{app:?} {stream:?}"
            );
        }
    }

    #[test]
    fn static_keys_by_stream_or_wildcard() {
        let a = auth(AppPolicy {
            publish: Policy::Key,
            play: Policy::KeyOrToken,
            publish_keys: BTreeMap::from([("cam".into(), "k1".into()), ("*".into(), "any".into())]),
            play_keys: BTreeMap::from([("cam".into(), "p1".into())]),
        });
        let publish =
            |stream: &str, query: &str| a.check(Action::Publish, "live", stream, Some(query), 0);
        assert_eq!(publish("cam", "key=k1"), Ok(()));
        assert_eq!(
            publish("cam", "key=any"),
            Err(Denied::BadKey),
            "the stream's own key wins"
        );
        assert_eq!(publish("other", "key=any"), Ok(()));
        assert_eq!(publish("cam", "key=k"), Err(Denied::BadKey));
        assert_eq!(publish("cam", ""), Err(Denied::Missing));
        let play = |query: &str| a.check(Action::Play, "live", "cam", Some(query), 0);
        assert_eq!(play("key=p1"), Ok(()));
        let t = mint(SECRET, Action::Play, "live", "cam", 10);
        assert_eq!(play(&format!("token={t}")), Ok(()));
        assert_eq!(play("key=nope"), Err(Denied::BadKey));
    }

    #[test]
    fn tokens_without_a_secret_are_refused() {
        let a = Auth::new(
            "",
            AppPolicy {
                play: Policy::Token,
                ..AppPolicy::default()
            },
            BTreeMap::new(),
        );
        let t = mint("", Action::Play, "live", "cam", 10);
        assert_eq!(
            a.check(Action::Play, "live", "cam", Some(&format!("token={t}")), 0),
            Err(Denied::NoSecret)
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
