//! The checker of HLS media playlists: [`check`] parses a playlist's text into a
//! [`MediaPlaylist`] and checks it against the rules of HTTP Live Streaming 2nd edition
//! (draft-pantos-hls-rfc8216bis, "RFC 8216bis" below) that a Low-Latency HLS server must
//! follow, or returns every [`Violation`] found, each with its line; [`check_update`] checks
//! what may change from one playlist of a stream to the next. Pure: text in, model or
//! violations out. Tests run it on every playlist they receive.
//!
//! The rules, by [`Rule`]:
//!
//! - the first line is `#EXTM3U` (4.3.1.1);
//! - `EXT-X-TARGETDURATION` is present, and every `EXTINF` rounded to the nearest integer
//!   is at most it (4.4.3.1);
//! - `EXT-X-PART-INF` is present when parts are (4.4.3.7), and every part is at most
//!   `PART-TARGET` long and, unless independent, a gap, followed by a gap, or the last of its
//!   segment, at least 85% of it (4.4.4.9; see [`Rule::PartDuration`]);
//! - with parts: `EXT-X-SERVER-CONTROL` offers `CAN-BLOCK-RELOAD=YES`, and its
//!   `PART-HOLD-BACK` is at least three part targets (4.4.3.8: REQUIRED, at least two,
//!   SHOULD three; the issue that asked for LL-HLS wants three); `CAN-SKIP-UNTIL`, when
//!   present, is at least six target durations, `HOLD-BACK` at least three (4.4.3.8);
//! - an `EXT-X-PRELOAD-HINT:TYPE=PART` is present in a playlist with parts unless it ended,
//!   hints have a `TYPE` of `PART` or `MAP` and a `URI`, and no two the same `TYPE`
//!   (4.4.5.3, 6.2.6);
//! - parts are listed only for the last segments: no part starts more than three target
//!   durations before the end of the playlist (6.2.2: such `EXT-X-PART` tags SHOULD be
//!   removed);
//! - `EXT-X-MEDIA-SEQUENCE` and `EXT-X-DISCONTINUITY-SEQUENCE` come before the first
//!   segment (4.4.3.2, 4.4.3.3), and segments are numbered from them (and `EXT-X-SKIP`);
//! - `EXT-X-SKIP` comes before every segment, at most once, with `CAN-SKIP-UNTIL`
//!   advertised (4.4.5.2, 6.2.5.1), and `EXT-X-VERSION` is at least 9 with it and at least 6
//!   with `EXT-X-MAP` (8);
//! - every `EXT-X-PROGRAM-DATE-TIME` is a date-time (4.4.4.6) later than the one before;
//! - no URI is listed twice (segments, parts and part hints; corecast names each once);
//! - the parts of a segment add up to its `EXTINF` (corecast lists a segment's parts all or
//!   none);
//! - a playlist that ended lists no parts after its last segment.
//!
//! What text alone cannot tell is in the model, for tests to compare with the media: which
//! parts say they start with a keyframe (`INDEPENDENT=YES`), the URIs, the dates.
//!
//! Durations are read exactly (to the nanosecond, not as floats) and compared exactly with
//! their bounds; a sum of durations may differ from the value it is compared with by one
//! millisecond per duration it adds up, since servers write durations rounded to the
//! millisecond.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// What a sum of durations may be off by, per duration summed.
const TOLERANCE_PER_VALUE: Duration = Duration::from_millis(1);

/// A media playlist that passed [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`, if present.
    pub version: Option<u64>,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE` (0 when absent).
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` (0 when absent).
    pub discontinuity_sequence: u64,
    /// `EXT-X-SERVER-CONTROL` (all absent when the tag is).
    pub server_control: ServerControl,
    /// `EXT-X-PART-INF:PART-TARGET`, if present.
    pub part_target: Option<Duration>,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS` (0 when absent): a delta update.
    pub skipped_segments: u64,
    /// The complete segments listed, in order.
    pub segments: Vec<Segment>,
    /// The parts listed after the last complete segment: the segment being written.
    pub open: Option<OpenSegment>,
    /// `EXT-X-PRELOAD-HINT` tags.
    pub preload_hints: Vec<PreloadHint>,
    /// `EXT-X-ENDLIST` is present.
    pub ended: bool,
}

/// `EXT-X-SERVER-CONTROL`'s attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerControl {
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`.
    pub part_hold_back: Option<Duration>,
    /// `CAN-SKIP-UNTIL`: the Skip Boundary.
    pub can_skip_until: Option<Duration>,
    /// `HOLD-BACK`.
    pub hold_back: Option<Duration>,
}

/// A complete segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// `EXTINF` duration.
    pub duration: Duration,
    /// Its URI.
    pub uri: String,
    /// `EXT-X-DISCONTINUITY` applies to it.
    pub discontinuity: bool,
    /// Discontinuity sequence number: `EXT-X-DISCONTINUITY-SEQUENCE` plus the
    /// discontinuities before it (in a delta update, those listed only).
    pub discontinuity_seq: u64,
    /// `EXT-X-PROGRAM-DATE-TIME` applied to it, ms since the Unix epoch.
    pub program_date_ms: Option<i64>,
    /// The `EXT-X-MAP` URI in effect for it.
    pub map: Option<String>,
    /// Its parts listed.
    pub parts: Vec<Part>,
    /// The line of its URI.
    pub line: usize,
}

/// The parts after the last complete segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSegment {
    /// The media sequence number its segment will have.
    pub msn: u64,
    /// `EXT-X-DISCONTINUITY` applies to it.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` applied to it.
    pub program_date_ms: Option<i64>,
    /// The `EXT-X-MAP` URI in effect for it.
    pub map: Option<String>,
    /// Its parts, at least one.
    pub parts: Vec<Part>,
}

/// An `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `DURATION`.
    pub duration: Duration,
    /// `URI`.
    pub uri: String,
    /// `INDEPENDENT=YES`: it says it starts with a keyframe.
    pub independent: bool,
    /// `GAP=YES`.
    pub gap: bool,
    /// Its line.
    pub line: usize,
}

/// An `EXT-X-PRELOAD-HINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadHint {
    /// `TYPE`: `PART` or `MAP`.
    pub kind: String,
    /// `URI`.
    pub uri: String,
    /// Its line.
    pub line: usize,
}

impl MediaPlaylist {
    /// Every part listed, with the media sequence number of its segment, in order.
    pub fn parts(&self) -> impl Iterator<Item = (u64, &Part)> {
        let complete = self
            .segments
            .iter()
            .flat_map(|s| s.parts.iter().map(move |p| (s.msn, p)));
        let open = self
            .open
            .iter()
            .flat_map(|o| o.parts.iter().map(move |p| (o.msn, p)));
        complete.chain(open)
    }

    /// The `TYPE=PART` preload hint's URI.
    pub fn part_hint(&self) -> Option<&str> {
        self.preload_hints
            .iter()
            .find(|h| h.kind == "PART")
            .map(|h| h.uri.as_str())
    }
}

/// The rule a [`Violation`] breaks (sections of RFC 8216bis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// 4.3.1.1: the first line is `#EXTM3U`.
    Header,
    /// Malformed: a tag's value or attribute list, a tag given twice, a URI without
    /// `EXTINF`, an `EXTINF` without URI (4.1, 4.2, 4.3.2.1).
    Syntax,
    /// 4.4.3.1: `EXT-X-TARGETDURATION` is REQUIRED, and each `EXTINF` rounded to the nearest
    /// integer MUST be at most it.
    TargetDuration,
    /// 4.4.3.7: `EXT-X-PART-INF` is REQUIRED if the playlist contains `EXT-X-PART` tags.
    PartInf,
    /// 4.4.4.9: "The duration of a Partial Segment MUST be less than or equal to the Part
    /// Target Duration. The duration of each Partial Segment MUST be at least 85% of the
    /// Part Target Duration, with the exception of Partial Segments with the INDEPENDENT=YES
    /// or GAP=YES attribute, Partial Segments that are immediately followed by a Partial
    /// Segment with a GAP=YES attribute, and the final Partial Segment of any Parent
    /// Segment." No excess is allowed. The last part listed after the last complete
    /// segment is not held to the 85%: it may turn out to be the final part of its segment.
    PartDuration,
    /// 4.4.3.8: `PART-HOLD-BACK` is REQUIRED with `EXT-X-PART-INF`, at least twice the part
    /// target, and SHOULD be three times; three is checked.
    PartHoldBack,
    /// A playlist with parts offers blocking reloads (`CAN-BLOCK-RELOAD=YES`), as
    /// Low-Latency HLS needs (6.2.5.2).
    BlockingReload,
    /// 4.4.3.8: `CAN-SKIP-UNTIL`, the Skip Boundary, MUST be at least six target durations.
    CanSkipUntil,
    /// 4.4.3.8: `HOLD-BACK` MUST be at least three target durations.
    HoldBack,
    /// An `EXT-X-PRELOAD-HINT:TYPE=PART` in a playlist with parts that has not ended;
    /// `TYPE` is `PART` or `MAP` and `URI` present (4.4.5.3); at most one hint per `TYPE`
    /// (6.2.6).
    PreloadHint,
    /// 6.2.2: `EXT-X-PART` tags more than three target durations from the end of the
    /// playlist SHOULD be removed (measured from the part's start).
    PartsNearEnd,
    /// 4.4.3.2, 4.4.3.3: `EXT-X-MEDIA-SEQUENCE` and `EXT-X-DISCONTINUITY-SEQUENCE` MUST
    /// appear before the first media segment.
    MediaSequence,
    /// 4.4.5.2, 6.2.5.1: `EXT-X-SKIP` at most once, before every media segment, and only
    /// where `CAN-SKIP-UNTIL` is advertised.
    Skip,
    /// 8: `EXT-X-VERSION` at least 9 with `EXT-X-SKIP`, at least 6 with `EXT-X-MAP`.
    Version,
    /// 4.4.4.6: a date-time; and each later than the one before.
    ProgramDateTime,
    /// A URI listed twice.
    DuplicateUri,
    /// The parts of a segment add up to its `EXTINF`.
    PartSum,
    /// Parts after the last segment of a playlist with `EXT-X-ENDLIST`.
    Ended,
    /// [`check_update`]: 6.2.1 (the target duration MUST NOT change, segments keep their
    /// URIs and durations, an ended playlist stays ended), 6.2.2 (media and discontinuity
    /// sequence numbers MUST NOT decrease).
    Update,
}

/// One rule broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Line number, from 1; 0 for the playlist as a whole.
    pub line: usize,
    /// The rule.
    pub rule: Rule,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "playlist: {:?}: {}", self.rule, self.detail),
            line => write!(f, "line {line}: {:?}: {}", self.rule, self.detail),
        }
    }
}

/// The violations as lines of text (for assertion messages).
pub fn report(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("{v}\n")).collect()
}

/// Parses and checks a media playlist (see the module's rules).
pub fn check(text: &str) -> Result<MediaPlaylist, Vec<Violation>> {
    let mut parser = Parser::default();
    for (index, line) in text.lines().enumerate() {
        parser.line(index + 1, line.strip_suffix('\r').unwrap_or(line));
    }
    if text.is_empty() {
        parser.violation(1, Rule::Header, "empty playlist");
    }
    let playlist = parser.finish();
    let mut violations = parser.violations;
    if let Some(playlist) = &playlist {
        rules(playlist, &parser.facts, &mut violations);
    }
    match playlist {
        Some(playlist) if violations.is_empty() => Ok(playlist),
        _ => Err(violations),
    }
}

/// Checks what may change from `previous` to `next`, two playlists of one stream in the
/// order they were served. Violations carry `next`'s lines.
pub fn check_update(previous: &MediaPlaylist, next: &MediaPlaylist) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut violation = |line, detail: String| {
        out.push(Violation {
            line,
            rule: Rule::Update,
            detail,
        })
    };
    if next.target_duration != previous.target_duration {
        violation(
            0,
            format!(
                "EXT-X-TARGETDURATION changed from {} to {}",
                previous.target_duration, next.target_duration
            ),
        );
    }
    if next.part_target != previous.part_target {
        violation(
            0,
            format!(
                "PART-TARGET changed from {:?} to {:?}",
                previous.part_target, next.part_target
            ),
        );
    }
    if next.media_sequence < previous.media_sequence {
        violation(
            0,
            format!(
                "EXT-X-MEDIA-SEQUENCE went back from {} to {}",
                previous.media_sequence, next.media_sequence
            ),
        );
    }
    if next.discontinuity_sequence < previous.discontinuity_sequence {
        violation(
            0,
            format!(
                "EXT-X-DISCONTINUITY-SEQUENCE went back from {} to {}",
                previous.discontinuity_sequence, next.discontinuity_sequence
            ),
        );
    }
    if previous.ended && !next.ended {
        violation(0, "EXT-X-ENDLIST went away".to_string());
    }
    let last = |p: &MediaPlaylist| p.segments.last().map(|s| s.msn);
    if last(next) < last(previous) {
        violation(
            0,
            format!(
                "the last segment went back from {:?} to {:?}",
                last(previous),
                last(next)
            ),
        );
    }
    let before: HashMap<u64, &Segment> = previous.segments.iter().map(|s| (s.msn, s)).collect();
    let deltas = previous.skipped_segments > 0 || next.skipped_segments > 0;
    for segment in &next.segments {
        let Some(old) = before.get(&segment.msn) else {
            continue;
        };
        if old.uri != segment.uri || old.duration != segment.duration {
            violation(
                segment.line,
                format!(
                    "segment {} was {} ({:?}), is {} ({:?})",
                    segment.msn, old.uri, old.duration, segment.uri, segment.duration
                ),
            );
        }
        if !deltas && old.discontinuity_seq != segment.discontinuity_seq {
            violation(
                segment.line,
                format!(
                    "segment {} had discontinuity sequence number {}, has {}",
                    segment.msn, old.discontinuity_seq, segment.discontinuity_seq
                ),
            );
        }
    }
    let parts: HashMap<&str, &Part> = previous.parts().map(|(_, p)| (p.uri.as_str(), p)).collect();
    for (_, part) in next.parts() {
        if let Some(old) = parts.get(part.uri.as_str()) {
            if old.duration != part.duration || old.independent != part.independent {
                violation(
                    part.line,
                    format!(
                        "part {} was {:?} (independent: {}), is {:?} (independent: {})",
                        part.uri, old.duration, old.independent, part.duration, part.independent
                    ),
                );
            }
        }
    }
    out
}

/// What the parser saw that the model does not keep, for the rules.
#[derive(Debug, Default)]
struct Facts {
    /// The line of `EXT-X-SKIP`.
    skip_line: Option<usize>,
    /// The line of the first `EXT-X-MAP`.
    map_line: Option<usize>,
}

/// The tags that apply to the next segment, gathered until its URI.
#[derive(Debug, Default)]
struct Pending {
    /// `EXTINF` duration and line.
    extinf: Option<(Duration, usize)>,
    /// `EXT-X-DISCONTINUITY`.
    discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME`.
    program_date_ms: Option<i64>,
    /// `EXT-X-PART` tags.
    parts: Vec<Part>,
}

/// A playlist being read.
#[derive(Debug, Default)]
struct Parser {
    violations: Vec<Violation>,
    facts: Facts,
    version: Option<u64>,
    target_duration: Option<u64>,
    media_sequence: Option<u64>,
    discontinuity_sequence: Option<u64>,
    server_control: Option<ServerControl>,
    part_target: Option<Duration>,
    skipped_segments: Option<u64>,
    /// A media segment tag or URI was seen: header tags and `EXT-X-SKIP` come too late.
    in_segments: bool,
    /// The `EXT-X-MAP` URI in effect.
    map: Option<String>,
    /// Discontinuities so far.
    discontinuities: u64,
    pending: Pending,
    /// Complete segments, `msn` set in [`Parser::finish`].
    segments: Vec<Segment>,
    preload_hints: Vec<PreloadHint>,
    ended: bool,
}

impl Parser {
    fn violation(&mut self, line: usize, rule: Rule, detail: impl Into<String>) {
        self.violations.push(Violation {
            line,
            rule,
            detail: detail.into(),
        });
    }

    /// Sets a header value given at most once.
    fn once<T>(&mut self, line: usize, tag: &str, slot: fn(&mut Self) -> &mut Option<T>, value: T) {
        if slot(self).replace(value).is_some() {
            self.violation(line, Rule::Syntax, format!("{tag} given twice"));
        }
    }

    fn line(&mut self, n: usize, line: &str) {
        if n == 1 {
            if line != "#EXTM3U" {
                self.violation(n, Rule::Header, format!("first line is {line:?}"));
            }
            return;
        }
        if line.trim().is_empty() {
            return;
        }
        if !line.starts_with('#') {
            self.uri(n, line);
            return;
        }
        if !line.starts_with("#EXT") {
            return;
        }
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        match tag {
            "#EXTM3U" => self.violation(n, Rule::Header, "#EXTM3U again"),
            "#EXT-X-VERSION" => match integer(value) {
                Some(v) => self.once(n, tag, |p| &mut p.version, v),
                None => self.violation(n, Rule::Syntax, format!("version {value:?}")),
            },
            "#EXT-X-TARGETDURATION" => match integer(value) {
                Some(v) => self.once(n, tag, |p| &mut p.target_duration, v),
                None => self.violation(n, Rule::TargetDuration, format!("{value:?}")),
            },
            "#EXT-X-MEDIA-SEQUENCE" | "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                if self.in_segments {
                    self.violation(n, Rule::MediaSequence, format!("{tag} after a segment"));
                }
                let Some(v) = integer(value) else {
                    return self.violation(n, Rule::Syntax, format!("{tag}:{value:?}"));
                };
                if tag == "#EXT-X-MEDIA-SEQUENCE" {
                    self.once(n, tag, |p| &mut p.media_sequence, v);
                } else {
                    self.once(n, tag, |p| &mut p.discontinuity_sequence, v);
                }
            }
            "#EXT-X-SERVER-CONTROL" => {
                if let Some(control) = self.attributes(n, tag, value, server_control) {
                    self.once(n, tag, |p| &mut p.server_control, control);
                }
            }
            "#EXT-X-PART-INF" => {
                let target = self.attributes(n, tag, value, |a| {
                    seconds(required(a, "PART-TARGET")?, "PART-TARGET")
                });
                if let Some(target) = target {
                    self.once(n, tag, |p| &mut p.part_target, target);
                }
            }
            "#EXT-X-SKIP" => {
                if self.in_segments || !self.pending_is_empty() {
                    self.violation(n, Rule::Skip, "EXT-X-SKIP after a media segment tag");
                }
                let count = self.attributes(n, tag, value, |a| {
                    let count = required(a, "SKIPPED-SEGMENTS")?;
                    integer(count).ok_or(format!("SKIPPED-SEGMENTS={count}"))
                });
                if let Some(count) = count {
                    if self.skipped_segments.replace(count).is_some() {
                        self.violation(n, Rule::Skip, "EXT-X-SKIP twice");
                    }
                    self.facts.skip_line.get_or_insert(n);
                }
            }
            "#EXT-X-MAP" => {
                self.in_segments = true;
                self.facts.map_line.get_or_insert(n);
                if let Some(uri) =
                    self.attributes(n, tag, value, |a| Ok(quoted(a, "URI")?.to_string()))
                {
                    self.map = Some(uri);
                }
            }
            "#EXT-X-PROGRAM-DATE-TIME" => {
                self.in_segments = true;
                match date_time_ms(value) {
                    Some(ms) => self.pending.program_date_ms = Some(ms),
                    None => self.violation(n, Rule::ProgramDateTime, format!("{value:?}")),
                }
            }
            "#EXT-X-DISCONTINUITY" => {
                self.in_segments = true;
                self.pending.discontinuity = true;
            }
            "#EXTINF" => {
                self.in_segments = true;
                let duration = value.split(',').next().unwrap_or("");
                match seconds(duration, "EXTINF") {
                    Ok(d) => {
                        if self.pending.extinf.replace((d, n)).is_some() {
                            self.violation(n, Rule::Syntax, "two EXTINF for one segment");
                        }
                    }
                    Err(e) => self.violation(n, Rule::Syntax, e),
                }
            }
            "#EXT-X-PART" => {
                self.in_segments = true;
                let part = self.attributes(n, tag, value, |a| {
                    Ok(Part {
                        duration: seconds(required(a, "DURATION")?, "DURATION")?,
                        uri: quoted(a, "URI")?.to_string(),
                        independent: yes(a, "INDEPENDENT")?,
                        gap: yes(a, "GAP")?,
                        line: n,
                    })
                });
                if let Some(part) = part {
                    self.pending.parts.push(part);
                }
            }
            "#EXT-X-PRELOAD-HINT" => {
                let hint = self.attributes(n, tag, value, |a| {
                    let kind = required(a, "TYPE")?;
                    if !matches!(kind, "PART" | "MAP") {
                        return Err(format!("TYPE={kind}"));
                    }
                    Ok(PreloadHint {
                        kind: kind.to_string(),
                        uri: quoted(a, "URI")?.to_string(),
                        line: n,
                    })
                });
                match hint {
                    Some(hint) => self.preload_hints.push(hint),
                    None => {
                        // Report it under its rule too.
                        if let Some(last) = self.violations.last_mut() {
                            last.rule = Rule::PreloadHint;
                        }
                    }
                }
            }
            "#EXT-X-ENDLIST" => self.ended = true,
            _ => {}
        }
    }

    /// An attribute list read with `read`; a violation of [`Rule::Syntax`] and `None` when
    /// malformed.
    fn attributes<T>(
        &mut self,
        n: usize,
        tag: &str,
        value: &str,
        read: impl FnOnce(&[(&str, Value<'_>)]) -> Result<T, String>,
    ) -> Option<T> {
        match attribute_list(value).and_then(|a| read(&a)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.violation(n, Rule::Syntax, format!("{tag}: {e}"));
                None
            }
        }
    }

    fn pending_is_empty(&self) -> bool {
        let p = &self.pending;
        p.extinf.is_none() && !p.discontinuity && p.program_date_ms.is_none() && p.parts.is_empty()
    }

    /// A segment's URI line.
    fn uri(&mut self, n: usize, uri: &str) {
        self.in_segments = true;
        let pending = std::mem::take(&mut self.pending);
        let Some((duration, _)) = pending.extinf else {
            return self.violation(n, Rule::Syntax, format!("URI {uri:?} without EXTINF"));
        };
        if pending.discontinuity {
            self.discontinuities += 1;
        }
        self.segments.push(Segment {
            msn: 0,
            duration,
            uri: uri.to_string(),
            discontinuity: pending.discontinuity,
            discontinuity_seq: self.discontinuities,
            program_date_ms: pending.program_date_ms,
            map: self.map.clone(),
            parts: pending.parts,
            line: n,
        });
    }

    /// The model, with media sequence numbers; `None` without a target duration.
    fn finish(&mut self) -> Option<MediaPlaylist> {
        let pending = std::mem::take(&mut self.pending);
        if let Some((_, line)) = pending.extinf {
            self.violation(line, Rule::Syntax, "EXTINF without URI");
        }
        let Some(target_duration) = self.target_duration else {
            self.violation(0, Rule::TargetDuration, "no EXT-X-TARGETDURATION");
            return None;
        };
        let media_sequence = self.media_sequence.unwrap_or(0);
        let discontinuity_sequence = self.discontinuity_sequence.unwrap_or(0);
        let skipped_segments = self.skipped_segments.unwrap_or(0);
        let first = media_sequence + skipped_segments;
        let mut segments = std::mem::take(&mut self.segments);
        for (i, segment) in segments.iter_mut().enumerate() {
            segment.msn = first + i as u64;
            segment.discontinuity_seq += discontinuity_sequence;
        }
        let open = (!pending.parts.is_empty()).then(|| OpenSegment {
            msn: first + segments.len() as u64,
            discontinuity: pending.discontinuity,
            program_date_ms: pending.program_date_ms,
            map: self.map.clone(),
            parts: pending.parts,
        });
        Some(MediaPlaylist {
            version: self.version,
            target_duration,
            media_sequence,
            discontinuity_sequence,
            server_control: self.server_control.clone().unwrap_or_default(),
            part_target: self.part_target,
            skipped_segments,
            segments,
            open,
            preload_hints: std::mem::take(&mut self.preload_hints),
            ended: self.ended,
        })
    }
}

/// The rules on a parsed playlist.
fn rules(p: &MediaPlaylist, facts: &Facts, out: &mut Vec<Violation>) {
    let mut violation =
        |line: usize, rule: Rule, detail: String| out.push(Violation { line, rule, detail });
    let target = Duration::from_secs(p.target_duration);
    for segment in &p.segments {
        let rounded = (segment.duration + Duration::from_millis(500)).as_secs();
        if rounded > p.target_duration {
            violation(
                segment.line,
                Rule::TargetDuration,
                format!(
                    "EXTINF {:?} rounds to {rounded} s, over EXT-X-TARGETDURATION {}",
                    segment.duration, p.target_duration
                ),
            );
        }
    }

    let has_parts = p.parts().next().is_some();
    match p.part_target {
        None if has_parts => {
            let line = p.parts().next().map_or(0, |(_, part)| part.line);
            violation(
                line,
                Rule::PartInf,
                "EXT-X-PART without EXT-X-PART-INF".into(),
            );
        }
        None => {}
        Some(part_target) => {
            part_rules(p, part_target, &mut violation);
            let control = &p.server_control;
            match control.part_hold_back {
                None => violation(0, Rule::PartHoldBack, "no PART-HOLD-BACK".into()),
                Some(hold) if hold < part_target * 3 => violation(
                    0,
                    Rule::PartHoldBack,
                    format!("PART-HOLD-BACK {hold:?} under 3 x PART-TARGET {part_target:?}"),
                ),
                Some(_) => {}
            }
            if !control.can_block_reload {
                violation(0, Rule::BlockingReload, "no CAN-BLOCK-RELOAD=YES".into());
            }
            if !p.ended && p.part_hint().is_none() {
                violation(
                    0,
                    Rule::PreloadHint,
                    "no EXT-X-PRELOAD-HINT:TYPE=PART".into(),
                );
            }
        }
    }
    if let Some(skip) = p.server_control.can_skip_until {
        if skip < target * 6 {
            violation(
                0,
                Rule::CanSkipUntil,
                format!("CAN-SKIP-UNTIL {skip:?} under 6 x EXT-X-TARGETDURATION"),
            );
        }
    }
    if let Some(hold) = p.server_control.hold_back {
        if hold < target * 3 {
            violation(
                0,
                Rule::HoldBack,
                format!("HOLD-BACK {hold:?} under 3 x EXT-X-TARGETDURATION"),
            );
        }
    }
    for (i, hint) in p.preload_hints.iter().enumerate() {
        if p.preload_hints[..i].iter().any(|h| h.kind == hint.kind) {
            violation(
                hint.line,
                Rule::PreloadHint,
                format!("a second hint of TYPE={}", hint.kind),
            );
        }
    }

    let version = p.version.unwrap_or(1);
    if let Some(line) = facts.skip_line {
        if version < 9 {
            violation(
                line,
                Rule::Version,
                format!("EXT-X-SKIP at version {version}"),
            );
        }
        if p.server_control.can_skip_until.is_none() {
            violation(line, Rule::Skip, "EXT-X-SKIP without CAN-SKIP-UNTIL".into());
        }
    }
    if let Some(line) = facts.map_line {
        if version < 6 {
            violation(
                line,
                Rule::Version,
                format!("EXT-X-MAP at version {version}"),
            );
        }
    }

    let mut last_date: Option<i64> = None;
    let dates = p
        .segments
        .iter()
        .map(|s| (s.program_date_ms, s.line))
        .chain(p.open.iter().map(|o| (o.program_date_ms, o.parts[0].line)));
    for (date, line) in dates {
        let Some(date) = date else { continue };
        if last_date.is_some_and(|last| date <= last) {
            violation(
                line,
                Rule::ProgramDateTime,
                format!("{date} ms is not after the date before, {last_date:?} ms"),
            );
        }
        last_date = Some(date);
    }

    let mut uris: HashMap<&str, usize> = HashMap::new();
    let listed = p
        .segments
        .iter()
        .map(|s| (s.uri.as_str(), s.line))
        .chain(p.parts().map(|(_, part)| (part.uri.as_str(), part.line)))
        .chain(
            p.preload_hints
                .iter()
                .filter(|h| h.kind == "PART")
                .map(|h| (h.uri.as_str(), h.line)),
        );
    for (uri, line) in listed {
        if let Some(first) = uris.insert(uri, line) {
            violation(
                line,
                Rule::DuplicateUri,
                format!("{uri} already on line {first}"),
            );
        }
    }

    if p.ended {
        if let Some(open) = &p.open {
            violation(
                open.parts[0].line,
                Rule::Ended,
                "parts after the last segment of a playlist that ended".into(),
            );
        }
    }
}

/// The rules on parts, given `EXT-X-PART-INF`.
fn part_rules(
    p: &MediaPlaylist,
    part_target: Duration,
    violation: &mut impl FnMut(usize, Rule, String),
) {
    let open_parts: &[Part] = p.open.as_ref().map_or(&[], |o| &o.parts);
    let lists = p
        .segments
        .iter()
        .map(|s| (&s.parts[..], true))
        .chain(std::iter::once((open_parts, false)));
    for (parts, complete) in lists {
        for (i, part) in parts.iter().enumerate() {
            if part.duration > part_target {
                violation(
                    part.line,
                    Rule::PartDuration,
                    format!("{:?} over PART-TARGET {part_target:?}", part.duration),
                );
            }
            let last = i + 1 == parts.len();
            let next_gap = parts.get(i + 1).is_some_and(|n| n.gap);
            let exempt = part.independent || part.gap || next_gap || last;
            if !exempt && (part.duration + TOLERANCE_PER_VALUE) * 20 < part_target * 17 {
                violation(
                    part.line,
                    Rule::PartDuration,
                    format!(
                        "{:?} under 85% of PART-TARGET {part_target:?} (not independent, \
                         not the last of its segment{})",
                        part.duration,
                        if complete { "" } else { " so far" }
                    ),
                );
            }
        }
    }

    // `after`: the duration from a segment's end to the end of the playlist, the sum of
    // `values` durations: the open parts' and the later segments'.
    let target = Duration::from_secs(p.target_duration);
    let mut after = open_parts
        .iter()
        .map(|part| part.duration)
        .sum::<Duration>();
    for (later, segment) in p.segments.iter().rev().enumerate() {
        let values = (open_parts.len() + later) as u32;
        if !segment.parts.is_empty() {
            let sum: Duration = segment.parts.iter().map(|part| part.duration).sum();
            let tolerance = TOLERANCE_PER_VALUE * (segment.parts.len() as u32 + 1);
            if sum.abs_diff(segment.duration) > tolerance {
                violation(
                    segment.line,
                    Rule::PartSum,
                    format!(
                        "parts of segment {} add up to {sum:?}, its EXTINF is {:?}",
                        segment.msn, segment.duration
                    ),
                );
            }
            // The first part starts furthest from the end.
            let from_end = after + sum;
            let tolerance = TOLERANCE_PER_VALUE * (values + segment.parts.len() as u32);
            if from_end > target * 3 + tolerance {
                violation(
                    segment.parts[0].line,
                    Rule::PartsNearEnd,
                    format!(
                        "parts of segment {} start {from_end:?} before the end, over 3 x \
                         EXT-X-TARGETDURATION",
                        segment.msn
                    ),
                );
            }
        }
        after += segment.duration;
    }
}

/// An attribute value: quoted-string or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    /// A quoted-string, without its quotes.
    Quoted(&'a str),
    /// Any other value (decimal-integer, decimal-floating-point, enumerated-string, ...).
    Plain(&'a str),
}

/// An attribute list (RFC 8216bis 4.2): `NAME=value` pairs separated by commas, names of
/// `A-Z`, `0-9` and `-`, each at most once; a quoted-string may hold commas.
fn attribute_list(text: &str) -> Result<Vec<(&str, Value<'_>)>, String> {
    let mut out: Vec<(&str, Value<'_>)> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("no '=' in {rest:?}"))?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!("attribute name {name:?}"));
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| format!("{name}: unterminated quoted-string"))?;
                (Value::Quoted(&quoted[..end]), &quoted[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (Value::Plain(&after[..end]), &after[end..])
            }
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name} twice"));
        }
        out.push((name, value));
        rest = match after.strip_prefix(',') {
            Some(next) if !next.is_empty() => next,
            Some(_) => return Err("trailing ','".to_string()),
            None if after.is_empty() => after,
            None => return Err(format!("{name}: {after:?} after the value")),
        };
    }
    Ok(out)
}

/// An unquoted attribute that must be present.
fn required<'a>(attributes: &[(&str, Value<'a>)], name: &str) -> Result<&'a str, String> {
    match attributes.iter().find(|(n, _)| *n == name) {
        Some((_, Value::Plain(v))) => Ok(v),
        Some((_, Value::Quoted(_))) => Err(format!("{name} quoted")),
        None => Err(format!("no {name}")),
    }
}

/// A quoted-string attribute that must be present.
fn quoted<'a>(attributes: &[(&str, Value<'a>)], name: &str) -> Result<&'a str, String> {
    match attributes.iter().find(|(n, _)| *n == name) {
        Some((_, Value::Quoted(v))) => Ok(v),
        Some((_, Value::Plain(_))) => Err(format!("{name} not quoted")),
        None => Err(format!("no {name}")),
    }
}

/// An optional `YES`/`NO` attribute (absent: no).
fn yes(attributes: &[(&str, Value<'_>)], name: &str) -> Result<bool, String> {
    match attributes.iter().find(|(n, _)| *n == name) {
        None => Ok(false),
        Some((_, Value::Plain("YES"))) => Ok(true),
        Some((_, Value::Plain("NO"))) => Ok(false),
        Some((_, v)) => Err(format!("{name}={v:?}")),
    }
}

/// `EXT-X-SERVER-CONTROL`'s attributes.
fn server_control(attributes: &[(&str, Value<'_>)]) -> Result<ServerControl, String> {
    let optional = |name| {
        attributes
            .iter()
            .any(|(n, _)| *n == name)
            .then(|| seconds(required(attributes, name)?, name))
            .transpose()
    };
    Ok(ServerControl {
        can_block_reload: yes(attributes, "CAN-BLOCK-RELOAD")?,
        part_hold_back: optional("PART-HOLD-BACK")?,
        can_skip_until: optional("CAN-SKIP-UNTIL")?,
        hold_back: optional("HOLD-BACK")?,
    })
}

/// A decimal-integer (RFC 8216bis 4.2).
fn integer(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decimal-floating-point number of seconds (RFC 8216bis 4.2, without sign), exactly
/// to the nanosecond (further digits are dropped).
fn seconds(text: &str, what: &str) -> Result<Duration, String> {
    let malformed = || format!("{what} {text:?}");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return Err(malformed());
    }
    let secs: u64 = whole.parse().map_err(|_| malformed())?;
    let mut nanos = 0u32;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    Ok(Duration::new(secs, nanos))
}

/// An ISO 8601 date-time with time zone (RFC 8216bis 4.4.4.6:
/// `YYYY-MM-DDThh:mm:ss[.f...](Z|+hh:mm|-hh:mm)`), as ms since the Unix epoch.
fn date_time_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut at = 19;
    let mut ms = 0;
    if b[at] == b'.' {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        for (i, c) in b[at + 1..at + 1 + digits.min(3)].iter().enumerate() {
            ms += i64::from(c - b'0') * 10i64.pow(2 - i as u32);
        }
        at += 1 + digits;
    }
    let offset_min = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes = number(at + 1..at + 3)? * 60 + number(at + 4..at + 6)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live LL-HLS playlist that breaks no rule: target 2 s, parts of 0.5 s, segments 10
    /// to 13, parts listed for 12, 13 and the open 14.
    const LIVE: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-MAP:URI=\"cam-7-init2.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.000Z
#EXTINF:2.000,
cam-7-10.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:26.000Z
#EXTINF:2.000,
cam-7-11.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:28.000Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.1.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.2.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.3.m4s\"
#EXTINF:2.000,
cam-7-12.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"cam-7-init3.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:08:00.000Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-13.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-13.1.m4s\"
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-13.2.m4s\"
#EXT-X-PART:DURATION=0.300,URI=\"cam-7-13.3.m4s\"
#EXTINF:1.800,
cam-7-13.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:08:01.800Z
#EXT-X-PART:DURATION=0.500,URI=\"cam-7-14.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI=\"cam-7-14.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-14.2.m4s\"
";

    /// The rules `text` breaks, with their lines.
    fn broken(text: &str) -> Vec<(usize, Rule)> {
        match check(text) {
            Ok(_) => Vec::new(),
            Err(v) => v.iter().map(|v| (v.line, v.rule)).collect(),
        }
    }

    /// `LIVE` with `from` replaced by `to` (which must occur).
    fn live_with(from: &str, to: &str) -> String {
        assert!(LIVE.contains(from), "{from}");
        LIVE.replacen(from, to, 1)
    }

    #[test]
    fn a_live_playlist_is_read_into_its_model() {
        let p = check(LIVE).unwrap_or_else(|v| panic!("{}", report(&v)));
        assert_eq!(p.version, Some(6));
        assert_eq!(p.target_duration, 2);
        assert_eq!((p.media_sequence, p.discontinuity_sequence), (10, 2));
        assert_eq!(
            p.server_control,
            ServerControl {
                can_block_reload: true,
                part_hold_back: Some(Duration::from_millis(1500)),
                can_skip_until: Some(Duration::from_secs(12)),
                hold_back: None,
            }
        );
        assert_eq!(p.part_target, Some(Duration::from_millis(500)));
        let msns: Vec<u64> = p.segments.iter().map(|s| s.msn).collect();
        assert_eq!(msns, [10, 11, 12, 13]);
        let dsns: Vec<u64> = p.segments.iter().map(|s| s.discontinuity_seq).collect();
        assert_eq!(dsns, [2, 2, 2, 3]);
        let maps: Vec<_> = p.segments.iter().map(|s| s.map.as_deref()).collect();
        assert_eq!(
            maps,
            [
                Some("cam-7-init2.mp4"),
                Some("cam-7-init2.mp4"),
                Some("cam-7-init2.mp4"),
                Some("cam-7-init3.mp4")
            ]
        );
        let s13 = &p.segments[3];
        assert!(s13.discontinuity);
        assert_eq!(s13.uri, "cam-7-13.m4s");
        assert_eq!(s13.line, 30);
        assert_eq!(s13.duration, Duration::from_millis(1800));
        assert_eq!(s13.program_date_ms, Some(1_795_547_280_000));
        let independent: Vec<bool> = s13.parts.iter().map(|p| p.independent).collect();
        assert_eq!(independent, [true, false, false, false]);
        let open = p.open.as_ref().unwrap();
        assert_eq!((open.msn, open.parts.len()), (14, 2));
        assert_eq!(open.program_date_ms, Some(1_795_547_281_800));
        assert_eq!(p.part_hint(), Some("cam-7-14.2.m4s"));
        assert_eq!(p.parts().count(), 10);
        assert!(!p.ended);
    }

    #[test]
    fn plain_and_final_playlists_pass() {
        // MPEG-TS, no parts: none of the low-latency rules apply.
        let ts = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n\
                  #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF:2.400,\ncam-1-4.ts\n#EXTINF:2.000,\n\
                  cam-1-5.ts\n#EXT-X-ENDLIST\n";
        let p = check(ts).unwrap_or_else(|v| panic!("{}", report(&v)));
        assert_eq!(p.segments[1].msn, 5);
        assert!(p.ended);
        // A final LL playlist needs no hint.
        let ended = live_with(
            "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:08:01.800Z\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-14.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.200,URI=\"cam-7-14.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-14.2.m4s\"\n",
            "#EXT-X-ENDLIST\n",
        );
        assert_eq!(broken(&ended), []);
    }

    #[test]
    fn header_target_duration_and_syntax() {
        assert_eq!(broken(""), [(1, Rule::Header), (0, Rule::TargetDuration)]);
        assert_eq!(
            broken(&LIVE.replacen("#EXTM3U", "#EXTM3U8", 1)),
            [(1, Rule::Header)]
        );
        assert_eq!(
            broken(&live_with("#EXT-X-TARGETDURATION:2\n", "")),
            [(0, Rule::TargetDuration)]
        );
        assert_eq!(
            broken(&live_with(
                "#EXT-X-TARGETDURATION:2",
                "#EXT-X-TARGETDURATION:2.0"
            )),
            [(3, Rule::TargetDuration), (0, Rule::TargetDuration)]
        );
        // 2.5 rounds to 3.
        assert_eq!(
            broken(&live_with(
                "#EXTINF:2.000,\ncam-7-10.m4s",
                "#EXTINF:2.500,\ncam-7-10.m4s"
            )),
            [(11, Rule::TargetDuration)]
        );
        assert_eq!(
            broken(&live_with(
                "#EXTINF:2.000,\ncam-7-10.m4s",
                "#EXTINF:2.499,\ncam-7-10.m4s"
            )),
            []
        );
        assert_eq!(
            broken(&live_with("#EXTINF:2.000,\ncam-7-10.m4s", "cam-7-10.m4s")),
            [(10, Rule::Syntax)]
        );
        assert_eq!(
            broken(&format!("{LIVE}#EXTINF:1.0,\n")),
            [(35, Rule::Syntax)]
        );
        assert_eq!(
            broken(&live_with(
                "#EXT-X-VERSION:6\n",
                "#EXT-X-VERSION:6\n#EXT-X-VERSION:6\n"
            )),
            [(3, Rule::Syntax)]
        );
        assert_eq!(
            broken(&live_with("DURATION=0.200,", "DURATION=.2,")),
            [(33, Rule::Syntax)]
        );
        assert_eq!(
            broken(&live_with("URI=\"cam-7-14.1.m4s\"", "URI=cam-7-14.1.m4s")),
            [(33, Rule::Syntax)]
        );
        assert_eq!(
            broken(&live_with(
                ",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.200",
                ",INDEPENDENT=yes\n#EXT-X-PART:DURATION=0.200"
            )),
            [(32, Rule::Syntax)]
        );
    }

    #[test]
    fn part_rules() {
        assert_eq!(
            broken(&live_with("#EXT-X-PART-INF:PART-TARGET=0.500\n", "")),
            [(15, Rule::PartInf)]
        );
        // Over the part target, by any amount.
        assert_eq!(
            broken(&live_with(
                "DURATION=0.500,URI=\"cam-7-12.1.m4s\"",
                "DURATION=0.5001,URI=\"cam-7-12.1.m4s\""
            )),
            [(17, Rule::PartDuration)]
        );
        // Under 85% and neither independent nor last: 0.423 (and 1 ms) < 0.425.
        assert_eq!(
            broken(&live_with(
                "DURATION=0.500,URI=\"cam-7-12.1.m4s\"",
                "DURATION=0.423,URI=\"cam-7-12.1.m4s\""
            ))
            .first(),
            Some(&(17, Rule::PartDuration))
        );
        // An independent part, a gap and the part before it may be shorter.
        let short = live_with(
            "#EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.2.m4s\"\n",
            "#EXT-X-PART:DURATION=0.100,URI=\"cam-7-12.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.100,URI=\"cam-7-12.1b.m4s\",GAP=YES\n\
             #EXT-X-PART:DURATION=0.300,URI=\"cam-7-12.1c.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-12.2.m4s\"\n",
        );
        assert_eq!(broken(&short), []);
        // The sum of the parts is the EXTINF, to a millisecond a value.
        assert_eq!(
            broken(&live_with("#EXTINF:1.800,", "#EXTINF:1.806,")),
            [(30, Rule::PartSum)]
        );
        assert_eq!(broken(&live_with("#EXTINF:1.800,", "#EXTINF:1.805,")), []);
        // Parts of segment 11, which starts 6.5 s before the end.
        let old = live_with(
            "#EXTINF:2.000,\ncam-7-11.m4s",
            "#EXT-X-PART:DURATION=0.500,URI=\"cam-7-11.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-11.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-11.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"cam-7-11.3.m4s\"\n\
             #EXTINF:2.000,\ncam-7-11.m4s",
        );
        assert_eq!(broken(&old), [(13, Rule::PartsNearEnd)]);
        // At a target of 1 s, segment 12, which starts 4.5 s before the end, is too far.
        let late = live_with("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:1");
        assert!(broken(&late).contains(&(16, Rule::PartsNearEnd)));
    }

    #[test]
    fn server_control_and_hints() {
        assert_eq!(
            broken(&live_with("PART-HOLD-BACK=1.500", "PART-HOLD-BACK=1.499")),
            [(0, Rule::PartHoldBack)]
        );
        assert_eq!(
            broken(&live_with("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,", "")),
            [(0, Rule::PartHoldBack), (0, Rule::BlockingReload)]
        );
        assert_eq!(
            broken(&live_with("CAN-SKIP-UNTIL=12.000", "CAN-SKIP-UNTIL=11.999")),
            [(0, Rule::CanSkipUntil)]
        );
        assert_eq!(
            broken(&live_with(
                "CAN-SKIP-UNTIL=12.000",
                "CAN-SKIP-UNTIL=12.0,HOLD-BACK=5.9"
            )),
            [(0, Rule::HoldBack)]
        );
        assert_eq!(
            broken(&live_with(
                "CAN-SKIP-UNTIL=12.000",
                "CAN-SKIP-UNTIL=12.0,CAN-SKIP-UNTIL=13"
            )),
            [
                (4, Rule::Syntax),
                (0, Rule::PartHoldBack),
                (0, Rule::BlockingReload)
            ]
        );
        let hint = "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-14.2.m4s\"\n";
        assert_eq!(broken(&live_with(hint, "")), [(0, Rule::PreloadHint)]);
        assert_eq!(
            broken(&format!(
                "{LIVE}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-14.3.m4s\"\n"
            )),
            [(35, Rule::PreloadHint)]
        );
        assert_eq!(
            broken(&format!(
                "{LIVE}#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"cam-7-init4.mp4\"\n"
            )),
            []
        );
        assert_eq!(
            broken(&format!(
                "{LIVE}#EXT-X-PRELOAD-HINT:TYPE=SEGMENT,URI=\"x\"\n"
            )),
            [(35, Rule::PreloadHint)]
        );
    }

    #[test]
    fn sequence_numbers_skip_and_version() {
        // The media sequence comes before the segments.
        let late = live_with("#EXT-X-MEDIA-SEQUENCE:10\n", "").replacen(
            "cam-7-10.m4s\n",
            "cam-7-10.m4s\n#EXT-X-MEDIA-SEQUENCE:10\n",
            1,
        );
        assert_eq!(broken(&late), [(11, Rule::MediaSequence)]);
        // A delta update.
        let delta = live_with("#EXT-X-VERSION:6", "#EXT-X-VERSION:9").replacen(
            "#EXT-X-DISCONTINUITY-SEQUENCE:2\n",
            "#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n",
            1,
        );
        let p = check(&delta).unwrap_or_else(|v| panic!("{}", report(&v)));
        assert_eq!(p.skipped_segments, 5);
        assert_eq!(p.segments[0].msn, 15);
        assert_eq!(p.open.as_ref().map(|o| o.msn), Some(19));
        assert_eq!(
            broken(&delta.replacen("#EXT-X-VERSION:9", "#EXT-X-VERSION:8", 1)),
            [(8, Rule::Version)]
        );
        assert_eq!(
            broken(&delta.replacen(",CAN-SKIP-UNTIL=12.000", "", 1)),
            [(8, Rule::Skip)]
        );
        let low = delta.replacen(
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n#EXT-X-MAP:URI=\"cam-7-init2.mp4\"\n",
            "#EXT-X-MAP:URI=\"cam-7-init2.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n",
            1,
        );
        assert_eq!(broken(&low), [(9, Rule::Skip)]);
        assert_eq!(
            broken(&delta.replacen(
                "#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n",
                "#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n",
                1
            )),
            [(9, Rule::Skip)]
        );
        assert_eq!(
            broken(&live_with("#EXT-X-VERSION:6", "#EXT-X-VERSION:5")),
            [(8, Rule::Version)]
        );
    }

    #[test]
    fn dates_uris_and_the_end() {
        assert_eq!(
            broken(&live_with(
                "2026-11-24T19:07:26.000Z",
                "2026-11-24T19:07:24.000Z"
            )),
            [(14, Rule::ProgramDateTime)]
        );
        assert_eq!(
            broken(&live_with(
                "2026-11-24T19:07:26.000Z",
                "2026-11-24 19:07:26Z"
            )),
            [(12, Rule::ProgramDateTime)]
        );
        assert_eq!(
            broken(&live_with(
                "URI=\"cam-7-14.2.m4s\"",
                "URI=\"cam-7-14.1.m4s\""
            )),
            [(34, Rule::DuplicateUri)]
        );
        assert_eq!(
            broken(&live_with("cam-7-11.m4s", "cam-7-10.m4s")),
            [(14, Rule::DuplicateUri)]
        );
        assert_eq!(
            broken(&format!("{LIVE}#EXT-X-ENDLIST\n")),
            [(32, Rule::Ended)]
        );
    }

    #[test]
    fn dates_are_read_in_their_zones() {
        assert_eq!(date_time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(date_time_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(date_time_ms("1970-01-01T00:00:00.123456Z"), Some(123));
        assert_eq!(date_time_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(date_time_ms("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(
            date_time_ms("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "2001-02-29T00:00:00Z",
            "2026-11-24T19:07:24",
            "2026-11-24T19:07:24.Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24t19:07:24Z",
            "2026-11-24T19:07:24+0100",
            "",
        ] {
            assert_eq!(date_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn attribute_lists() {
        assert_eq!(
            attribute_list("A=1,B=\"x,y\",C-2=NO"),
            Ok(vec![
                ("A", Value::Plain("1")),
                ("B", Value::Quoted("x,y")),
                ("C-2", Value::Plain("NO"))
            ])
        );
        assert_eq!(attribute_list(""), Ok(vec![]));
        for bad in ["A", "a=1", "A=1,", "A=1,A=2", "A=\"x", "A=\"x\"y", "=1"] {
            assert!(attribute_list(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("2", "x"), Ok(Duration::from_secs(2)));
        assert_eq!(
            seconds("0.33334", "x"),
            Ok(Duration::from_nanos(333_340_000))
        );
        assert_eq!(
            seconds("1.0000000019", "x"),
            Ok(Duration::from_nanos(1_000_000_001))
        );
        for bad in ["", ".5", "5.", "-1", "1e3", "1.2.3"] {
            assert!(seconds(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn updates() {
        let first = check(LIVE).unwrap();
        assert_eq!(check_update(&first, &first), []);
        // The next playlist: segment 14 closed, segment 10 left.
        let next = check(
            &LIVE
                .replacen("#EXT-X-MEDIA-SEQUENCE:10", "#EXT-X-MEDIA-SEQUENCE:11", 1)
                .replacen(
                    "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:07:24.000Z\n#EXTINF:2.000,\ncam-7-10.m4s\n",
                    "",
                    1,
                )
                .replacen(
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-7-14.2.m4s\"\n",
                    "#EXTINF:0.700,\ncam-7-14.m4s\n#EXT-X-ENDLIST\n",
                    1,
                ),
        )
        .unwrap_or_else(|v| panic!("{}", report(&v)));
        assert_eq!(check_update(&first, &next), []);
        let rules = |v: Vec<Violation>| v.into_iter().map(|v| (v.line, v.rule)).collect::<Vec<_>>();
        // Back: the media sequence, the end and the last segment.
        assert_eq!(
            rules(check_update(&next, &first)),
            [(0, Rule::Update), (0, Rule::Update), (0, Rule::Update)]
        );
        let changed = check(
            &live_with("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:3").replacen(
                "CAN-SKIP-UNTIL=12.000",
                "CAN-SKIP-UNTIL=18.000",
                1,
            ),
        )
        .unwrap_or_else(|v| panic!("{}", report(&v)));
        assert_eq!(rules(check_update(&first, &changed)), [(0, Rule::Update)]);
        let renamed = check(&live_with("cam-7-12.m4s", "cam-7-12b.m4s")).unwrap();
        assert_eq!(rules(check_update(&first, &renamed)), [(21, Rule::Update)]);
        let part = check(&live_with(
            "URI=\"cam-7-13.1.m4s\"",
            "URI=\"cam-7-13.1.m4s\",INDEPENDENT=YES",
        ))
        .unwrap();
        assert_eq!(rules(check_update(&first, &part)), [(26, Rule::Update)]);
        let dsn = check(&live_with(
            "#EXT-X-DISCONTINUITY-SEQUENCE:2",
            "#EXT-X-DISCONTINUITY-SEQUENCE:3",
        ))
        .unwrap();
        let found = rules(check_update(&first, &dsn));
        assert_eq!(found.len(), 4, "{found:?}");
    }
}
