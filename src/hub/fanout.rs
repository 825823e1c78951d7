//! Which shards get a stream's units, on its owner (pure): a shard subscribes with its first
//! viewer and unsubscribes with its last; a shard whose queue was full when a unit was
//! offered is lagging, and is offered only keyframes and headers until one gets through.

use crate::media::Unit;

/// Per peer shard, for one stream on its owner: whether the peer receives the stream's
/// units, and whether it lost one (pure).
#[derive(Debug, Clone, Default)]
pub struct Subscribers {
    /// Per shard: it has viewers of this stream and receives its units.
    subscribed: Vec<bool>,
    /// Per shard: a unit was dropped on the way (queue full); nothing more is sent to it
    /// until the next keyframe or header, where it resumes.
    lagging: Vec<bool>,
}

impl Subscribers {
    /// No subscriber among `shards` shards.
    pub fn new(shards: usize) -> Self {
        Subscribers {
            subscribed: vec![false; shards],
            lagging: vec![false; shards],
        }
    }

    /// Shard `peer` subscribes: it gets every unit from now on (it starts from a snapshot).
    pub fn subscribe(&mut self, peer: usize) {
        if let (Some(s), Some(l)) = (self.subscribed.get_mut(peer), self.lagging.get_mut(peer)) {
            *s = true;
            *l = false;
        }
    }

    /// Shard `peer` has no viewers left.
    pub fn unsubscribe(&mut self, peer: usize) {
        if let Some(s) = self.subscribed.get_mut(peer) {
            *s = false;
        }
    }

    /// Whether any shard is subscribed.
    pub fn any(&self) -> bool {
        self.subscribed.iter().any(|&s| s)
    }

    /// Whether shard `peer` receives units.
    pub fn is_subscribed(&self, peer: usize) -> bool {
        self.subscribed.get(peer).copied().unwrap_or(false)
    }

    /// Whether shard `peer` lost a unit and waits for a keyframe.
    pub fn is_lagging(&self, peer: usize) -> bool {
        self.lagging.get(peer).copied().unwrap_or(false)
    }

    /// Offers `unit` to every subscribed shard with `send` (true: sent); returns how many
    /// were dropped. A shard that lost a unit is lagging: it is offered only keyframes and
    /// headers until one gets through.
    pub fn fan_out(&mut self, unit: &Unit, mut send: impl FnMut(usize) -> bool) -> u64 {
        let mut dropped = 0;
        for (peer, (subscribed, lagging)) in self
            .subscribed
            .iter()
            .zip(self.lagging.iter_mut())
            .enumerate()
        {
            if !subscribed || (*lagging && !unit.key && !unit.header) {
                continue;
            }
            *lagging = !send(peer);
            dropped += u64::from(*lagging);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ring::tests::unit;

    #[test]
    fn a_full_queue_drops_units_and_the_peer_resumes_at_a_keyframe() {
        let mut subs = Subscribers::new(3);
        subs.subscribe(1);
        subs.subscribe(2);
        let mut room = [true; 3];
        let mut delivered: Vec<Vec<u64>> = vec![Vec::new(); 3];
        let mut dropped = 0;
        let mut offer = |subs: &mut Subscribers, u: Unit, room: &[bool; 3]| {
            dropped += subs.fan_out(&u, |peer| {
                if room[peer] {
                    delivered[peer].push(u.seq);
                }
                room[peer]
            });
        };
        offer(&mut subs, unit(0, true, 1), &room);
        room[2] = false;
        offer(&mut subs, unit(1, false, 1), &room);
        assert!(subs.is_lagging(2) && !subs.is_lagging(1));
        room[2] = true;
        // Room again, but shard 2 waits for a keyframe (or a header).
        offer(&mut subs, unit(2, false, 1), &room);
        let mut header = unit(3, false, 1);
        header.header = true;
        offer(&mut subs, header, &room);
        offer(&mut subs, unit(4, false, 1), &room);
        offer(&mut subs, unit(5, true, 1), &room);
        offer(&mut subs, unit(6, false, 1), &room);
        assert_eq!(dropped, 1, "only the unit that met a full queue counts");
        assert_eq!(delivered[0], Vec::<u64>::new(), "not subscribed");
        assert_eq!(delivered[1], [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(delivered[2], [0, 3, 4, 5, 6]);
        // A header got through, which resumed it: it is not lagging.
        assert!(!subs.is_lagging(2));
    }

    #[test]
    fn a_new_subscription_starts_fresh() {
        let mut subs = Subscribers::new(2);
        subs.subscribe(1);
        assert_eq!(subs.fan_out(&unit(0, false, 1), |_| false), 1);
        assert!(subs.is_lagging(1));
        subs.unsubscribe(1);
        assert_eq!(subs.fan_out(&unit(1, true, 1), |_| true), 0);
        assert!(!subs.is_subscribed(1));
        subs.subscribe(1);
        assert!(subs.is_subscribed(1) && !subs.is_lagging(1));
        subs.subscribe(9);
        assert!(!subs.is_subscribed(9), "an unknown shard is ignored");
    }
}
