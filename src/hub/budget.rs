//! The server-wide budget of media memory: every ring on every shard and every stream's HLS
//! window count against it (`limits.max_media_memory_bytes`).
//!
//! Overflow action, while the budget is spent: rings drop their backlog down to the GOP
//! cache (units before the newest keyframe go, whatever their age; a viewer still reading
//! them resumes at the keyframe and the frames it skipped are counted), HLS windows keep
//! only their newest segments (three: where players start), and publishes of new streams are
//! refused. Live viewers and the GOP caches that start new ones are kept.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes held against a limit, shared by every shard.
#[derive(Debug)]
pub struct MediaBudget {
    limit: AtomicUsize,
    held: AtomicUsize,
}

impl MediaBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MediaBudget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
        })
    }

    /// Counts `bytes` more as held.
    pub fn take(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` as given back.
    pub fn give(&self, bytes: usize) {
        // Every give follows the take of the same bytes: no underflow.
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit (a reload): what is held above it is dropped as the rings next grow.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// True when more is held than the limit allows.
    pub fn spent(&self) -> bool {
        self.held() > self.limit()
    }
}

/// A share of a [`MediaBudget`] that follows a changing size (a stream's HLS window) and is
/// given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<MediaBudget>,
    bytes: usize,
}

impl Share {
    /// An empty share of `budget`.
    pub fn new(budget: Arc<MediaBudget>) -> Self {
        Share { budget, bytes: 0 }
    }

    /// Sets the share to `bytes`.
    pub fn set(&mut self, bytes: usize) {
        // Called with every unit of a stream: no write to the shared budget for no change.
        if bytes == self.bytes {
            return;
        }
        if bytes > self.bytes {
            self.budget.take(bytes - self.bytes);
        } else {
            self.budget.give(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// The budget this is a share of.
    pub fn budget(&self) -> &Arc<MediaBudget> {
        &self.budget
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// Bytes of one kind of buffer held for one shard (the units of the streams it owns, say),
/// counted against the server's budget too. A buffer made by [`Meter::hold`] counts from its
/// creation until its last holder, on whichever shard, lets it go: shared buffers count
/// once, however many rings and viewers hold them.
#[derive(Debug)]
pub struct Meter {
    budget: Arc<MediaBudget>,
    held: AtomicUsize,
}

impl Meter {
    /// A meter that counts against `budget`.
    pub fn new(budget: Arc<MediaBudget>) -> Arc<Self> {
        Arc::new(Meter {
            budget,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes of this meter's buffers alive now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// `buf` as shared bytes that count against this meter while they live.
    pub fn hold(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        self.held.fetch_add(buf.len(), Ordering::Relaxed);
        self.budget.take(buf.len());
        Bytes::from_owner(Held {
            buf,
            meter: self.clone(),
        })
    }
}

/// A buffer counted by its [`Meter`] until dropped.
struct Held {
    buf: Vec<u8>,
    meter: Arc<Meter>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.meter.held.fetch_sub(self.buf.len(), Ordering::Relaxed);
        self.meter.budget.give(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_their_size_and_give_back_on_drop() {
        let budget = MediaBudget::new(100);
        let mut a = Share::new(budget.clone());
        let mut b = Share::new(budget.clone());
        a.set(60);
        b.set(30);
        assert_eq!(budget.held(), 90);
        assert!(!budget.spent());
        b.set(50);
        assert!(budget.spent());
        a.set(10);
        assert_eq!(budget.held(), 60);
        drop(b);
        assert_eq!(budget.held(), 10);
        drop(a);
        assert_eq!(budget.held(), 0);
    }
}
