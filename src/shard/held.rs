//! Blocking playlist reloads held on a shard (pure: the caller owns the wakers' tasks).
//!
//! A Low-Latency HLS player asks for the playlist that will contain a part that does not
//! exist yet (`_HLS_msn`, `_HLS_part`), and the server holds the request until it does. Many
//! players of one stream wait for the same next part, so the requests held for a stream are
//! kept ordered by what they wait for: when a part is published, one pass takes exactly the
//! requests it satisfies, and the others are not touched (no request is woken to find that
//! its part has not come yet). Each shard holds at most a fixed number; past it, a request
//! is answered at once with the current playlist, as the specification allows.
//!
//! A woken request checks the playlist again before it answers: a request for a part past
//! the last one of its segment stands for part 0 of the next segment (RFC 8216bis
//! 6.2.5.2), which the order here cannot know while the segment is open, so such a request
//! is woken when its segment closes and holds again for that part.

use crate::hls::llhls::{Awaited, Reached};
use crate::hub::StreamKey;
use std::collections::{BTreeMap, HashMap};
use std::task::Waker;

/// A held request's place, to give back when it stops waiting (answered by timeout, or its
/// connection gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    key: StreamKey,
    order: (u64, u32, u64),
}

/// No room: the shard holds its maximum of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} playlist requests already held on this shard")]
pub struct Full(pub usize);

/// The requests held on one shard, by stream, ordered by what they wait for.
#[derive(Debug)]
pub struct HeldReloads {
    streams: HashMap<StreamKey, BTreeMap<(u64, u32, u64), Waker>>,
    held: usize,
    limit: usize,
    next: u64,
}

impl HeldReloads {
    /// Room for `limit` held requests.
    pub fn new(limit: usize) -> Self {
        HeldReloads {
            streams: HashMap::new(),
            held: 0,
            limit,
            next: 0,
        }
    }

    /// A new limit (a reload): requests held beyond it stay until answered; new ones wait
    /// for room.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.held
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Holds a request for `awaited` of `key`, woken through `waker`.
    pub fn hold(
        &mut self,
        key: &StreamKey,
        awaited: Awaited,
        waker: Waker,
    ) -> Result<Ticket, Full> {
        if self.held >= self.limit {
            return Err(Full(self.limit));
        }
        let (msn, part) = awaited.key();
        let order = (msn, part, self.next);
        self.next += 1;
        self.streams
            .entry(key.clone())
            .or_default()
            .insert(order, waker);
        self.held += 1;
        Ok(Ticket {
            key: key.clone(),
            order,
        })
    }

    /// Replaces the waker of a held request (its task was polled again by another waker).
    pub fn rewake(&mut self, ticket: &Ticket, waker: &Waker) {
        if let Some(held) = self
            .streams
            .get_mut(&ticket.key)
            .and_then(|s| s.get_mut(&ticket.order))
        {
            if !held.will_wake(waker) {
                held.clone_from(waker);
            }
        }
    }

    /// Gives back a request's place (answered by timeout, or gone). False when it was not
    /// held any more (released meanwhile).
    pub fn cancel(&mut self, ticket: &Ticket) -> bool {
        let Some(stream) = self.streams.get_mut(&ticket.key) else {
            return false;
        };
        let removed = stream.remove(&ticket.order).is_some();
        if removed {
            self.held -= 1;
            if stream.is_empty() {
                self.streams.remove(&ticket.key);
            }
        }
        removed
    }

    /// The playlist of `key` reached `reached`: wakes the requests it satisfies (one pass
    /// over them alone) and forgets them. Returns how many.
    pub fn release(&mut self, key: &StreamKey, reached: Reached) -> usize {
        let Some(stream) = self.streams.get_mut(key) else {
            return 0;
        };
        let waiting = stream.split_off(&(reached.msn, reached.parts, 0));
        let ready = std::mem::replace(stream, waiting);
        if stream.is_empty() {
            self.streams.remove(key);
        }
        self.held -= ready.len();
        let woken = ready.len();
        ready.into_values().for_each(Waker::wake);
        woken
    }

    /// Wakes and forgets every request held for `key` (its stream ended: they get the final
    /// playlist). Returns how many.
    pub fn release_all(&mut self, key: &StreamKey) -> usize {
        let Some(stream) = self.streams.remove(key) else {
            return 0;
        };
        self.held -= stream.len();
        let woken = stream.len();
        stream.into_values().for_each(Waker::wake);
        woken
    }

    /// Whether `ticket` is still held (not released).
    pub fn is_held(&self, ticket: &Ticket) -> bool {
        self.streams
            .get(&ticket.key)
            .is_some_and(|s| s.contains_key(&ticket.order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn key(name: &str) -> StreamKey {
        StreamKey::from(format!("live/{name}").as_str())
    }

    fn part(msn: u64, part: u32) -> Awaited {
        Awaited {
            msn,
            part: Some(part),
        }
    }

    fn segment(msn: u64) -> Awaited {
        Awaited { msn, part: None }
    }

    #[test]
    fn a_part_is_in_once_reached_passes_it_and_a_segment_once_the_next_is_written() {
        let reached = Reached { msn: 10, parts: 2 };
        assert!(part(10, 0).is_in(reached) && part(10, 1).is_in(reached));
        assert!(!part(10, 2).is_in(reached));
        assert!(part(9, 7).is_in(reached) && segment(9).is_in(reached));
        assert!(!segment(10).is_in(reached));
        assert!(segment(10).is_in(Reached { msn: 11, parts: 0 }));
        assert!(!part(11, 0).is_in(Reached { msn: 11, parts: 0 }));
    }

    #[test]
    fn a_new_part_wakes_exactly_the_requests_it_satisfies() {
        let mut held = HeldReloads::new(100);
        let cam = key("cam");
        let (next_part, w1) = counter();
        let (part_after, w2) = counter();
        let (whole_segment, w3) = counter();
        held.hold(&cam, part(5, 3), w1).unwrap();
        held.hold(&cam, part(5, 4), w2).unwrap();
        held.hold(&cam, segment(5), w3).unwrap();
        assert_eq!(held.len(), 3);
        // Part 3 of segment 5 is published: 4 parts listed.
        assert_eq!(held.release(&cam, Reached { msn: 5, parts: 4 }), 1);
        assert_eq!(next_part.0.load(Ordering::Relaxed), 1);
        assert_eq!(part_after.0.load(Ordering::Relaxed), 0);
        // Segment 5 closes and segment 6 starts: the rest are in.
        assert_eq!(held.release(&cam, Reached { msn: 6, parts: 0 }), 2);
        assert_eq!(part_after.0.load(Ordering::Relaxed), 1);
        assert_eq!(whole_segment.0.load(Ordering::Relaxed), 1);
        assert!(held.is_empty());
    }

    #[test]
    fn streams_are_apart_and_an_ended_stream_releases_all() {
        let mut held = HeldReloads::new(100);
        let (a, wa) = counter();
        let (b, wb) = counter();
        held.hold(&key("a"), part(1, 0), wa).unwrap();
        held.hold(&key("b"), part(1, 0), wb).unwrap();
        assert_eq!(held.release(&key("a"), Reached { msn: 1, parts: 1 }), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 0);
        assert_eq!(held.release_all(&key("b")), 1);
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (1, 1)
        );
        assert_eq!(held.release_all(&key("b")), 0);
        assert!(held.is_empty());
    }

    #[test]
    fn the_limit_refuses_and_cancels_give_room_back() {
        let mut held = HeldReloads::new(2);
        let cam = key("cam");
        let first = held.hold(&cam, part(1, 0), counter().1).unwrap();
        held.hold(&cam, part(1, 0), counter().1).unwrap();
        assert_eq!(held.hold(&cam, part(1, 1), counter().1), Err(Full(2)));
        assert!(held.is_held(&first));
        assert!(held.cancel(&first));
        assert!(!held.cancel(&first));
        assert!(!held.is_held(&first));
        let third = held.hold(&cam, part(1, 1), counter().1).unwrap();
        assert_eq!(held.release(&cam, Reached { msn: 2, parts: 0 }), 2);
        // Released before it was cancelled: nothing to give back.
        assert!(!held.cancel(&third));
        assert!(held.is_empty());
    }

    #[test]
    fn a_request_polled_again_is_woken_through_its_latest_waker() {
        let mut held = HeldReloads::new(4);
        let cam = key("cam");
        let (old, first) = counter();
        let (new, second) = counter();
        let ticket = held.hold(&cam, part(3, 0), first).unwrap();
        held.rewake(&ticket, &second);
        held.release(&cam, Reached { msn: 3, parts: 1 });
        assert_eq!(
            (old.0.load(Ordering::Relaxed), new.0.load(Ordering::Relaxed)),
            (0, 1)
        );
    }
}
