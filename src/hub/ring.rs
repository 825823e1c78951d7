//! The per-stream, per-shard ring of recent units (pure: time is passed in).
//!
//! Viewers are cursors (absolute positions) into the ring; the ring never waits for them.
//! Bounds, and what happens past them:
//! - bytes: past `max_bytes` the oldest units are dropped, whatever they are;
//! - age: units older than `max_age_ns` are dropped, except the current GOP (from the newest
//!   keyframe on), which is the GOP cache that starts new viewers.
//!
//! - the server's media budget ([`super::budget`]): while it is spent, units before the
//!   newest keyframe are dropped whatever their age.
//!
//! A viewer whose position has been dropped resumes at the newest keyframe (see
//! [`super::cursor`]).

use super::budget::{MediaBudget, Share};
use crate::media::Unit;
use std::collections::VecDeque;
use std::sync::Arc;

/// A unit in the ring, with the time it arrived on this shard.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The shared unit.
    pub unit: Unit,
    /// Monotonic ns at which it entered this ring (viewer lag is measured from here).
    pub arrived_ns: u64,
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
    /// Absolute position of the newest keyframe still in the ring.
    newest_key: Option<u64>,
    /// Byte bound (also bounds the GOP cache).
    max_bytes: usize,
    /// Age bound for units before the newest keyframe.
    max_age_ns: u64,
    /// The server's media budget, which `bytes` counts against.
    share: Option<Share>,
}

impl Ring {
    /// An empty ring with the given bounds.
    pub fn new(max_bytes: usize, max_age_ns: u64) -> Self {
        Ring {
            entries: VecDeque::new(),
            front: 0,
            bytes: 0,
            newest_key: None,
            max_bytes,
            max_age_ns,
            share: None,
        }
    }

    /// The same ring, counting its bytes against `budget`.
    pub fn with_budget(mut self, budget: Arc<MediaBudget>) -> Self {
        let mut share = Share::new(budget);
        share.set(self.bytes);
        self.share = Some(share);
        self
    }

    /// Appends a unit and enforces the bounds. Returns the unit's position.
    pub fn push(&mut self, unit: Unit, now_ns: u64) -> u64 {
        let pos = self.end();
        if unit.key {
            self.newest_key = Some(pos);
        }
        self.bytes += unit.len();
        self.entries.push_back(Entry {
            unit,
            arrived_ns: now_ns,
        });
        self.evict(now_ns);
        self.account();
        pos
    }

    /// Drops units past the bounds.
    pub fn evict(&mut self, now_ns: u64) {
        let spent = self
            .share
            .as_ref()
            .is_some_and(|share| share.budget().spent());
        while let Some(first) = self.entries.front() {
            let over_bytes = self.bytes > self.max_bytes;
            let before_gop = self.newest_key.is_some_and(|k| self.front < k);
            let too_old = now_ns.saturating_sub(first.arrived_ns) > self.max_age_ns;
            if !(over_bytes || ((too_old || spent) && before_gop)) {
                break;
            }
            self.bytes -= first.unit.len();
            self.entries.pop_front();
            self.front += 1;
            if self.newest_key.is_some_and(|k| k < self.front) {
                self.newest_key = None;
            }
        }
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
        self.newest_key
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
        self.newest_key = None;
        self.account();
    }

    /// Brings the budget's count of this ring up to date.
    fn account(&mut self) {
        if let Some(share) = self.share.as_mut() {
            share.set(self.bytes);
        }
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
            flv: Bytes::from(vec![0u8; len]),
            rtmp: Bytes::new(),
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
        assert_eq!((ring.front(), budget.held()), (0, 800));
        // Another ring spends the budget: this one keeps only its GOP cache (from 4 on).
        let mut other = Ring::new(1 << 20, u64::MAX).with_budget(budget.clone());
        other.push(unit(0, true, 500), 0);
        ring.push(unit(8, false, 100), 0);
        assert_eq!(ring.front(), 4);
        assert_eq!(budget.held(), 500 + 500);
        // Dropping a ring gives its bytes back.
        drop(other);
        assert_eq!(budget.held(), 500);
        ring.clear();
        assert_eq!(budget.held(), 0);
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
