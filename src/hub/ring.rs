//! The per-stream, per-shard ring of recent units (pure: time is passed in).
//!
//! Viewers are cursors (absolute positions) into the ring; the ring never waits for them.
//! What it keeps:
//! - the current GOP (from the newest keyframe on): the GOP cache that starts new viewers;
//! - before it, with [`Ring::retained_by_viewers`], only the GOPs a viewer of this ring is
//!   still reading ([`Ring::hold`]: a viewer holds the GOP its position is in) and those
//!   within `keep` before the newest keyframe (the owner keeps one HLS target duration, so
//!   that a first HLS request gets a segment at once); without it, everything within the
//!   bounds below (tests of what the bounds do).
//!
//! Bounds, and what happens past them:
//! - bytes: past `max_bytes` the oldest units are dropped, whatever they are;
//! - age: units older than `max_age_ns` are dropped, except the current GOP;
//! - the server's media budget ([`super::budget`]): while it is spent, units before the
//!   newest keyframe are dropped whatever their age or readers.
//!
//! A viewer whose position has been dropped resumes at the newest keyframe (see
//! [`super::cursor`]), so a ring never holds more than the slow-viewer policy lets a viewer
//! lag (`viewer.skip_after_ms`, under `stream.ring_max_duration_ms`).

use super::budget::MediaBudget;
use crate::media::Unit;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// A unit in the ring, with the time it arrived on this shard.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The shared unit.
    pub unit: Unit,
    /// Monotonic ns at which it entered this ring (viewer lag is measured from here).
    pub arrived_ns: u64,
}

/// A viewer's claim on the GOP its position is in: while any is held, a ring retained by
/// viewers keeps that GOP (see [`Ring::hold`]).
pub type GopHold = Rc<()>;

/// A GOP in the ring: from a keyframe to the next.
#[derive(Debug)]
struct Gop {
    /// Absolute position of its keyframe.
    start: u64,
    /// Timestamp of its keyframe, ms.
    dts: u32,
    /// Cloned by the viewers reading it; only the ring's own when nobody is.
    holders: GopHold,
}

/// Bounded ring of units with absolute positions.
#[derive(Debug)]
pub struct Ring {
    /// Units, oldest first.
    entries: VecDeque<Entry>,
    /// Absolute position of `entries[0]`.
    front: u64,
    /// Sum of `unit.len()` over `entries`.
    bytes: usize,
    /// The GOPs whose keyframe is still held, oldest first.
    gops: VecDeque<Gop>,
    /// Byte bound (also bounds the GOP cache).
    max_bytes: usize,
    /// Age bound for units before the newest keyframe.
    max_age_ns: u64,
    /// With `Some(keep)`, GOPs before the newest are kept only while a viewer holds them or
    /// they lie within `keep` ms before the newest keyframe.
    keep_ms: Option<u32>,
    /// The server's media budget: while it is spent, the ring keeps its GOP cache alone.
    budget: Option<Arc<MediaBudget>>,
}

impl Ring {
    /// An empty ring with the given bounds, keeping everything within them.
    pub fn new(max_bytes: usize, max_age_ns: u64) -> Self {
        Ring {
            entries: VecDeque::new(),
            front: 0,
            bytes: 0,
            gops: VecDeque::new(),
            max_bytes,
            max_age_ns,
            keep_ms: None,
            budget: None,
        }
    }

    /// The same ring, keeping GOPs before the newest only while a viewer holds them or
    /// they lie within `keep_ms` before the newest keyframe.
    pub fn retained_by_viewers(mut self, keep_ms: u32) -> Self {
        self.keep_ms = Some(keep_ms);
        self
    }

    /// The same ring, trimmed to its GOP cache while `budget` is spent.
    pub fn with_budget(mut self, budget: Arc<MediaBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Appends a unit and enforces the bounds. Returns the unit's position.
    pub fn push(&mut self, unit: Unit, now_ns: u64) -> u64 {
        let pos = self.end();
        if unit.key {
            self.gops.push_back(Gop {
                start: pos,
                dts: unit.dts,
                holders: Rc::new(()),
            });
        }
        self.bytes += unit.len();
        self.entries.push_back(Entry {
            unit,
            arrived_ns: now_ns,
        });
        self.evict(now_ns);
        pos
    }

    /// Drops units past the bounds, and GOPs nobody needs.
    pub fn evict(&mut self, now_ns: u64) {
        let spent = self.budget.as_ref().is_some_and(|b| b.spent());
        while let Some(first) = self.entries.front() {
            let over_bytes = self.bytes > self.max_bytes;
            let before_gop = self.newest_key().is_some_and(|k| self.front < k);
            let too_old = now_ns.saturating_sub(first.arrived_ns) > self.max_age_ns;
            if !(over_bytes || (before_gop && (too_old || spent || !self.needed()))) {
                break;
            }
            self.bytes -= first.unit.len();
            self.entries.pop_front();
            self.front += 1;
            if self.gops.front().is_some_and(|g| g.start < self.front) {
                self.gops.pop_front();
            }
        }
    }

    /// Whether the front unit (before the newest GOP) must stay for a viewer or for `keep`.
    fn needed(&self) -> bool {
        let Some(keep_ms) = self.keep_ms else {
            return true;
        };
        // Units before the oldest keyframe held start no GOP a viewer can hold.
        let (Some(first), Some(second), Some(newest)) =
            (self.gops.front(), self.gops.get(1), self.gops.back())
        else {
            return false;
        };
        if first.start > self.front {
            return false;
        }
        // Without the first GOP, the rest still covers `keep` before the newest keyframe.
        let covered = newest.dts.wrapping_sub(second.dts) >= keep_ms;
        Rc::strong_count(&first.holders) > 1 || !covered
    }

    /// The token of the GOP that position `pos` is in (the newest one for a position past
    /// the end), or `None` before the oldest keyframe held. A clone of it is a claim: a ring
    /// retained by viewers keeps that GOP while the claim lives.
    pub fn hold(&self, pos: u64) -> Option<&GopHold> {
        // Most viewers read the newest GOP: found without a search.
        let gop = match self.gops.back() {
            Some(newest) if newest.start <= pos => newest,
            _ => {
                let after = self.gops.partition_point(|g| g.start <= pos);
                self.gops.get(after.checked_sub(1)?)?
            }
        };
        Some(&gop.holders)
    }

    /// Position of the oldest unit still held.
    pub fn front(&self) -> u64 {
        self.front
    }

    /// Position the next pushed unit will get (one past the newest).
    pub fn end(&self) -> u64 {
        self.front + self.entries.len() as u64
    }

    /// Position of the newest keyframe, if the ring holds one.
    pub fn newest_key(&self) -> Option<u64> {
        self.gops.back().map(|g| g.start)
    }

    /// Position of the oldest keyframe held, if any.
    pub fn oldest_key(&self) -> Option<u64> {
        self.gops.front().map(|g| g.start)
    }

    /// Bytes of the GOP cache: the units from the newest keyframe on.
    pub fn gop_cache_bytes(&self) -> usize {
        self.newest_key()
            .map_or(0, |k| self.iter_from(k).map(|e| e.unit.len()).sum())
    }

    /// The entry at an absolute position, if still held.
    pub fn get(&self, pos: u64) -> Option<&Entry> {
        let idx = usize::try_from(pos.checked_sub(self.front)?).ok()?;
        self.entries.get(idx)
    }

    /// Entries from `pos` (clamped to the front) to the newest.
    pub fn iter_from(&self, pos: u64) -> impl Iterator<Item = &Entry> {
        let skip = pos.saturating_sub(self.front);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of units held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no unit is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops everything (positions keep increasing).
    pub fn clear(&mut self) {
        self.front = self.end();
        self.entries.clear();
        self.bytes = 0;
        self.gops.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::UnitKind;
    use bytes::Bytes;

    pub(crate) fn unit(seq: u64, key: bool, len: usize) -> Unit {
        Unit {
            kind: UnitKind::Video,
            seq,
            dts: seq as u32 * 40,
            key,
            header: false,
            wire: crate::media::Wire::raw(Bytes::from(vec![0u8; len])),
            default_track: None,
            ingest_ns: 0,
        }
    }

    #[test]
    fn byte_bound_evicts_oldest() {
        let mut ring = Ring::new(250, u64::MAX);
        for i in 0..5 {
            ring.push(unit(i, i == 0, 100), 0);
        }
        assert!(ring.bytes() <= 250);
        assert_eq!(ring.front(), 3);
        assert_eq!(ring.end(), 5);
        assert_eq!(ring.newest_key(), None, "the only keyframe was evicted");
    }

    #[test]
    fn age_bound_keeps_current_gop() {
        let mut ring = Ring::new(1 << 20, 1_000);
        ring.push(unit(0, true, 10), 0);
        ring.push(unit(1, false, 10), 0);
        ring.push(unit(2, true, 10), 500);
        ring.push(unit(3, false, 10), 600);
        // Everything is older than 1000 ns at t=5000, but the GOP from position 2 stays.
        ring.evict(5_000);
        assert_eq!(ring.front(), 2);
        assert_eq!(ring.newest_key(), Some(2));
        assert_eq!(ring.iter_from(0).count(), 2);
    }

    #[test]
    fn a_spent_budget_trims_the_backlog_to_the_gop_cache() {
        let budget = MediaBudget::new(1000);
        let mut ring = Ring::new(1 << 20, u64::MAX).with_budget(budget.clone());
        for i in 0..8 {
            ring.push(unit(i, i % 4 == 0, 100), 0);
        }
        assert_eq!(ring.front(), 0);
        // Other streams spend the budget: this ring keeps only its GOP cache (from 4 on).
        budget.take(1001);
        ring.push(unit(8, false, 100), 0);
        assert_eq!(ring.front(), 4);
        assert_eq!(ring.gop_cache_bytes(), 500);
    }

    /// A ring retained by viewers, with GOPs of four units (keyframes at 0, 4, 8, ...) 40 ms
    /// apart.
    fn retained(keep_ms: u32) -> Ring {
        Ring::new(1 << 20, u64::MAX).retained_by_viewers(keep_ms)
    }

    #[test]
    fn without_viewers_only_the_gop_cache_stays() {
        let mut ring = retained(0);
        for i in 0..3 {
            ring.push(unit(i, false, 10), 0);
        }
        assert_eq!(ring.front(), 0, "no keyframe yet: nothing to trim to");
        for i in 3..10 {
            ring.push(unit(i, i % 4 == 0, 10), 0);
        }
        assert_eq!((ring.front(), ring.newest_key()), (8, Some(8)));
        assert_eq!(ring.gop_cache_bytes(), 20);
    }

    #[test]
    fn a_viewer_keeps_the_gop_it_reads_and_no_older_one() {
        let mut ring = retained(0);
        for i in 0..6 {
            ring.push(unit(i, i % 4 == 0, 10), 0);
        }
        // A viewer reading position 5 (in the GOP from 4) holds that GOP.
        let hold = ring.hold(5).cloned();
        for i in 6..13 {
            ring.push(unit(i, i % 4 == 0, 10), 0);
        }
        assert_eq!(ring.front(), 4, "the GOP from 0 went, the held one stays");
        assert!(ring.hold(3).is_none(), "before the oldest keyframe held");
        // It moves on to the GOP from 8: the one from 4 goes with the next unit.
        let moved = ring.hold(8).cloned();
        drop(hold);
        ring.push(unit(13, false, 10), 0);
        assert_eq!(ring.front(), 8);
        // A caught-up viewer holds the newest GOP; keyframe 16 then frees the one from 8.
        drop(moved);
        let caught_up = ring.hold(ring.end()).cloned();
        for i in 14..17 {
            ring.push(unit(i, i % 4 == 0, 10), 0);
        }
        assert_eq!(ring.front(), 12);
        drop(caught_up);
    }

    #[test]
    fn keep_holds_gops_within_its_span_before_the_newest_keyframe() {
        // Keyframes every 4 units, 40 ms apart: 160 ms per GOP. Keep 200 ms: two GOPs
        // before the newest one are needed to cover it.
        let mut ring = retained(200);
        for i in 0..21 {
            ring.push(unit(i, i % 4 == 0, 10), 0);
        }
        // Newest keyframe 20 (800 ms); GOP from 12 (480 ms) covers 320 ms >= 200, so the one
        // from 8 goes; the one from 12 stays (without it only 160 ms would be left).
        assert_eq!((ring.front(), ring.newest_key()), (12, Some(20)));
    }

    #[test]
    fn bounds_still_apply_to_held_gops() {
        let mut ring = Ring::new(1 << 20, 1_000).retained_by_viewers(0);
        ring.push(unit(0, true, 10), 0);
        let hold = ring.hold(0).cloned();
        ring.push(unit(1, false, 10), 0);
        ring.push(unit(2, true, 10), 500);
        assert_eq!(ring.front(), 0, "held");
        ring.push(unit(3, false, 10), 2_000);
        assert_eq!(ring.front(), 2, "too old, held or not");
        drop(hold);
    }

    #[test]
    fn positions_survive_clear() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        ring.push(unit(0, true, 10), 0);
        ring.clear();
        assert_eq!(ring.push(unit(1, true, 10), 0), 1);
        assert!(ring.get(0).is_none());
        assert!(ring.get(1).is_some());
    }
}
