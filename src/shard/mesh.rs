//! The shard's side of the mesh: the messages shards exchange, and the per-peer transport
//! that delivers them in order.
//!
//! Each ordered pair of shards has one bounded glommio channel (`server.mesh_queue_units`).
//! Media units are offered with `try_send` and never wait:
//! [`Subscribers`](crate::hub::fanout::Subscribers) decides which peer gets which unit, and
//! when a peer that lost one resumes (pure). Control messages (every other [`MeshMsg`]) go
//! to a peer in the order they were sent: straight into the channel when nothing waits
//! before them, otherwise into that peer's [`Outbox`] (pure, bounded), which one task per
//! peer drains into the channel as it gets room ([`Mesh`]).

use crate::hls::{Rendition, View};
use crate::hub::StreamKey;
use crate::media::Unit;
use crate::rtmp::Handoff;
use glommio::channels::channel_mesh::Senders;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use tracing::debug;

/// Messages between shards. Media units are best effort (see
/// [`Subscribers`](crate::hub::fanout::Subscribers)); every other message is delivered in
/// order through the peer's [`Outbox`].
pub enum MeshMsg {
    /// The owner announces a new stream.
    StreamLive(StreamKey),
    /// The owner announces that a stream is over.
    StreamEnded(StreamKey),
    /// A shard got its first viewer of a stream and wants its units.
    Subscribe(StreamKey, usize),
    /// A shard's last viewer of a stream left.
    Unsubscribe(StreamKey, usize),
    /// The owner's snapshot for a new subscriber: headers, then the GOP cache.
    Sync(StreamKey, Vec<Unit>, Vec<Unit>),
    /// One media unit for a subscriber.
    Unit(StreamKey, Unit),
    /// A new HLS snapshot of a stream (MPEG-TS: after each segment; LL-HLS: after each
    /// part; both at its end).
    Hls(StreamKey, View),
    /// A shard got a playlist request for a stream whose HLS rendition is not being made:
    /// the owner starts it.
    HlsWanted(StreamKey, Rendition),
    /// A shard has a viewer of a stream no shard knows, whose application has an
    /// `[[upstream]]` rule: the owner pulls it (the servers the viewer's request went
    /// through, see [`crate::upstream::Via`]).
    PullWanted(StreamKey, crate::upstream::Via),
    /// A publisher for a stream this shard owns.
    Handoff(Box<Handoff>),
}

impl MeshMsg {
    /// The stream whose registry entry or subscription the message changes on the receiver;
    /// `None` for messages that touch no registry entry (HLS snapshots live in their own
    /// store, a handoff starts a connection, units are never queued).
    fn registry_key(&self) -> Option<&StreamKey> {
        match self {
            MeshMsg::StreamLive(key)
            | MeshMsg::StreamEnded(key)
            | MeshMsg::Subscribe(key, _)
            | MeshMsg::Unsubscribe(key, _)
            | MeshMsg::Sync(key, _, _) => Some(key),
            MeshMsg::Unit(..)
            | MeshMsg::Hls(..)
            | MeshMsg::HlsWanted(..)
            | MeshMsg::PullWanted(..)
            | MeshMsg::Handoff(_) => None,
        }
    }

    /// Whether the message is a request the sender can refuse when the peer's outbox is
    /// full (see [`OUTBOX_REQUESTS`]).
    fn refusable(&self) -> bool {
        matches!(self, MeshMsg::Handoff(_) | MeshMsg::Subscribe(..))
    }
}

/// Messages a peer's outbox holds before it refuses new requests.
///
/// Overflow action, by message:
/// - `Handoff`: refused. The handed-off descriptor and the connection's admission ticket
///   are dropped, so the publisher's connection closes; counted in `mesh_control_refused`.
/// - `Subscribe`: refused. The viewer is answered as for a stream that is not there (no
///   replica feed is made); counted in `mesh_control_refused`.
/// - Everything else (stream state, `Unsubscribe`, `Sync`, `Hls`) is never refused: a peer
///   that missed one would hold a wrong registry until the stream ends. These are bounded
///   per stream by the replacement rules of [`Outbox::push`] instead: one `Hls` and one
///   `HlsWanted` per stream, a `Sync` replaces the `Sync` before it, `StreamLive` then `StreamEnded` is
///   `StreamEnded`, repeated states collapse, and a `Subscribe` then `Unsubscribe` cancel.
pub const OUTBOX_REQUESTS: usize = 1024;

/// Control messages for one peer that could not go straight into its channel, in the order
/// they were sent (pure: the [`Mesh`] moves them into the channel).
///
/// Whenever it is not idle, every control message to the peer goes through it, so none
/// overtakes an earlier one, and media units for the peer are withheld (see
/// [`Mesh::try_send_unit`]).
#[derive(Default)]
pub struct Outbox {
    /// Messages waiting for room, oldest first.
    queue: VecDeque<MeshMsg>,
    /// A drain task owns the peer's channel: it is moving (or about to move) the queue's
    /// messages into it; a message it took from the queue may be waiting for room.
    draining: bool,
}

/// What [`Outbox::push`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued (or merged into a queued message); a drain task is already running.
    Queued,
    /// Queued, and no drain task runs: the caller must start one (see [`Outbox::take_next`]).
    StartDrain,
    /// Refused: the queue is full (the message was dropped, see [`OUTBOX_REQUESTS`]).
    Refused,
}

impl Outbox {
    /// True when nothing waits for the peer: a message may go straight into its channel.
    pub fn is_idle(&self) -> bool {
        !self.draining && self.queue.is_empty()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no message waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a control message behind the ones waiting, unless it replaces one of them.
    ///
    /// Replacements, each equal for the receiver to delivering both messages in order
    /// (messages about other streams between them change nothing of this stream's):
    /// - `Hls(key, new)` replaces a queued `Hls(key, old)` that `new` supersedes (of the same
    ///   rendition), in place. Snapshots live in their own store, which keeps the one that
    ///   supersedes; nothing else reads it, so its place in the queue does not matter.
    /// - `HlsWanted(key, r)` after a queued `HlsWanted(key, r)` is dropped: the owner starts
    ///   a stream's rendition once.
    /// - `StreamEnded(key)` after a queued `StreamLive(key)` (nothing about `key` between)
    ///   removes it: the receiver would make an entry without a feed and remove it again.
    /// - `StreamEnded(key)` after a queued `StreamEnded(key)`, and `StreamLive(key)` after a
    ///   queued `StreamLive(key)`, are dropped: the second changes nothing.
    /// - `Sync(key, ..)` after a queued `Sync(key, ..)` replaces it in place: loading a
    ///   snapshot clears what the previous one loaded, and the newer one has every header
    ///   the older had.
    /// - `Unsubscribe(key, shard)` after a queued `Subscribe(key, shard)` removes both: the
    ///   owner's subscription would end as it was, and the sender has dropped the feed the
    ///   reply was for (a new viewer's feed sends its own `Subscribe`, queued after).
    pub fn push(&mut self, msg: MeshMsg) -> Pushed {
        let msg = match self.merge(msg) {
            Some(msg) => msg,
            None => return self.started(),
        };
        if msg.refusable() && self.queue.len() >= OUTBOX_REQUESTS {
            return Pushed::Refused;
        }
        self.queue.push_back(msg);
        self.started()
    }

    /// Applies the replacement rules of [`Outbox::push`]; gives the message back when it
    /// must be queued.
    fn merge(&mut self, msg: MeshMsg) -> Option<MeshMsg> {
        if let MeshMsg::Hls(key, view) = msg {
            for queued in self.queue.iter_mut() {
                if let MeshMsg::Hls(k, old) = queued {
                    if *k == key && view.supersedes(old) {
                        *old = view;
                        return None;
                    }
                }
            }
            return Some(MeshMsg::Hls(key, view));
        }
        if let MeshMsg::PullWanted(key, _) = &msg {
            let queued = self
                .queue
                .iter()
                .any(|m| matches!(m, MeshMsg::PullWanted(k, _) if k == key));
            return (!queued).then_some(msg);
        }
        if let MeshMsg::HlsWanted(key, rendition) = &msg {
            let queued = self
                .queue
                .iter()
                .any(|m| matches!(m, MeshMsg::HlsWanted(k, r) if k == key && r == rendition));
            return (!queued).then_some(msg);
        }
        let key = msg.registry_key()?.clone();
        let last = self
            .queue
            .iter()
            .rposition(|queued| queued.registry_key() == Some(&key));
        let Some(last) = last else {
            return Some(msg);
        };
        match (&self.queue[last], msg) {
            (MeshMsg::StreamLive(_), MeshMsg::StreamEnded(key)) => {
                self.queue.remove(last);
                self.merge(MeshMsg::StreamEnded(key))
            }
            (MeshMsg::StreamEnded(_), MeshMsg::StreamEnded(_))
            | (MeshMsg::StreamLive(_), MeshMsg::StreamLive(_)) => None,
            (MeshMsg::Sync(..), msg @ MeshMsg::Sync(..)) => {
                self.queue[last] = msg;
                None
            }
            (MeshMsg::Subscribe(_, a), MeshMsg::Unsubscribe(_, b)) if *a == b => {
                self.queue.remove(last);
                None
            }
            (_, msg) => Some(msg),
        }
    }

    /// Marks the queue as drained by a task; says whether the caller must start it.
    fn started(&mut self) -> Pushed {
        if self.draining || self.queue.is_empty() {
            Pushed::Queued
        } else {
            self.draining = true;
            Pushed::StartDrain
        }
    }

    /// The next message for the drain task; `None` (the queue is empty) ends the task and
    /// makes the outbox idle.
    pub fn take_next(&mut self) -> Option<MeshMsg> {
        let msg = self.queue.pop_front();
        if msg.is_none() {
            self.draining = false;
        }
        msg
    }

    /// Forgets every waiting message (the peer is gone).
    fn clear(&mut self) {
        self.queue.clear();
        self.draining = false;
    }
}

/// A control message the peer's outbox refused (see [`OUTBOX_REQUESTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer shard's outbox is full")]
pub struct OutboxFull;

/// This shard's senders to every shard, with one [`Outbox`] per peer.
pub struct Mesh {
    /// This shard's index (for logs).
    id: usize,
    /// The channels to every peer.
    senders: Senders<MeshMsg>,
    /// Per peer: control messages waiting for room in its channel.
    outboxes: Box<[RefCell<Outbox>]>,
}

/// Memory of the channels one shard receives on, in a mesh of `shards` shards whose
/// channels hold `capacity` messages: glommio allocates each channel's ring of slots (a
/// message and a flag), rounded up to a power of two, when the mesh is built.
pub fn receiving_bytes(shards: usize, capacity: usize) -> u64 {
    let slot = std::mem::size_of::<(MeshMsg, std::sync::atomic::AtomicBool)>();
    (shards.saturating_sub(1) * capacity.next_power_of_two() * slot) as u64
}

impl Mesh {
    /// Memory of the messages waiting in this shard's outboxes (their slots; units share
    /// their payload with the rings, which count it).
    pub fn waiting_bytes(&self) -> u64 {
        let waiting: usize = self.outboxes.iter().map(|o| o.borrow().len()).sum();
        (waiting * std::mem::size_of::<MeshMsg>()) as u64
    }

    /// The transport of shard `id` over `senders`.
    pub fn new(id: usize, senders: Senders<MeshMsg>) -> Rc<Self> {
        let peers = senders.nr_consumers().max(id + 1);
        Rc::new(Mesh {
            id,
            senders,
            outboxes: (0..peers).map(|_| RefCell::default()).collect(),
        })
    }

    /// Sends a control message that is never refused (not a `Handoff` or `Subscribe`) to
    /// shard `to`, after every control message sent to it before, never blocking the caller.
    pub fn send(self: &Rc<Self>, to: usize, msg: MeshMsg) {
        debug_assert!(!msg.refusable(), "requests go through Mesh::request");
        if let Err(full) = self.request(to, msg) {
            debug!(shard = self.id, to, "mesh: {full}");
        }
    }

    /// Sends a control message to shard `to` after every control message sent to it before,
    /// never blocking the caller. `Err` only for a request (`Handoff`, `Subscribe`) its
    /// outbox refused: the message is dropped, see [`OUTBOX_REQUESTS`] for what the caller
    /// does.
    pub fn request(self: &Rc<Self>, to: usize, msg: MeshMsg) -> Result<(), OutboxFull> {
        let Some(outbox) = self.outboxes.get(to) else {
            debug!(shard = self.id, to, "mesh: no such peer");
            return Ok(());
        };
        let msg = if outbox.borrow().is_idle() {
            match self.senders.try_send_to(to, msg) {
                Ok(()) => return Ok(()),
                Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => msg,
                Err(err) => {
                    debug!(shard = self.id, to, "mesh peer gone: {err}");
                    return Ok(());
                }
            }
        } else {
            msg
        };
        let pushed = outbox.borrow_mut().push(msg);
        match pushed {
            Pushed::Queued => Ok(()),
            Pushed::StartDrain => {
                let mesh = self.clone();
                glommio::spawn_local(async move { mesh.drain(to).await }).detach();
                Ok(())
            }
            Pushed::Refused => Err(OutboxFull),
        }
    }

    /// Moves peer `to`'s outbox into its channel, oldest first, waiting for room; ends when
    /// the outbox is empty.
    async fn drain(&self, to: usize) {
        let outbox = &self.outboxes[to];
        loop {
            // The borrow ends before the await: senders push while this task waits.
            let next = outbox.borrow_mut().take_next();
            let Some(msg) = next else {
                return;
            };
            if let Err(err) = self.senders.send_to(to, msg).await {
                debug!(shard = self.id, to, "mesh peer gone: {err}");
                outbox.borrow_mut().clear();
                return;
            }
        }
    }

    /// Offers a media unit to shard `to`: false when it was not sent, because the channel
    /// is full or control messages wait for room before it.
    ///
    /// Units never overtake a waiting control message. The one that matters is a `Sync`:
    /// a replica loads it by clearing its ring, so units that arrived before it would be
    /// thrown away, and the first unit after it would be a sequence gap. Withholding them
    /// instead marks the peer lagging, so it resumes at the first keyframe after the `Sync`
    /// as it would after any drop.
    pub fn try_send_unit(&self, to: usize, key: &StreamKey, unit: &Unit) -> bool {
        if !self.outboxes.get(to).is_some_and(|o| o.borrow().is_idle()) {
            return false;
        }
        self.senders
            .try_send_to(to, MeshMsg::Unit(key.clone(), unit.clone()))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slot_is_a_message_and_a_flag() {
        let slot = std::mem::size_of::<(super::MeshMsg, std::sync::atomic::AtomicBool)>() as u64;
        assert_eq!(super::receiving_bytes(1, 4096), 0);
        assert_eq!(super::receiving_bytes(2, 4096), 4096 * slot);
        assert_eq!(super::receiving_bytes(4, 3000), 3 * 4096 * slot);
        eprintln!("mesh slot: {slot} bytes");
    }

    use super::*;
    use crate::hls::HlsView;
    use crate::hub::ring::tests::unit;

    fn key(name: &str) -> StreamKey {
        StreamKey::from(name)
    }

    /// A short description of a message, to compare queues.
    fn label(msg: &MeshMsg) -> String {
        match msg {
            MeshMsg::StreamLive(k) => format!("live {k}"),
            MeshMsg::StreamEnded(k) => format!("ended {k}"),
            MeshMsg::Subscribe(k, s) => format!("sub {k} {s}"),
            MeshMsg::Unsubscribe(k, s) => format!("unsub {k} {s}"),
            MeshMsg::Sync(k, _, gop) => format!("sync {k} {}", gop.len()),
            MeshMsg::Unit(k, u) => format!("unit {k} {}", u.seq),
            MeshMsg::Hls(k, View::Ts(v)) => format!("hls {k} {}", v.version),
            MeshMsg::Hls(k, View::Ll(v)) => format!("ll {k} {}", v.window.version()),
            MeshMsg::HlsWanted(k, r) => format!("hls wanted {k} {r:?}"),
            MeshMsg::PullWanted(k, _) => format!("pull wanted {k}"),
            MeshMsg::Handoff(_) => "handoff".to_string(),
        }
    }

    fn drain(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.take_next())
            .map(|m| label(&m))
            .collect()
    }

    fn hls(instance: u64, version: u64) -> View {
        View::Ts(HlsView::empty(instance, version, false))
    }

    #[test]
    fn outbox_keeps_order_and_starts_one_drain() {
        let mut o = Outbox::default();
        assert!(o.is_idle());
        assert_eq!(o.push(MeshMsg::StreamLive(key("a/1"))), Pushed::StartDrain);
        assert!(!o.is_idle());
        assert_eq!(o.push(MeshMsg::Subscribe(key("a/2"), 1)), Pushed::Queued);
        assert_eq!(o.push(MeshMsg::StreamLive(key("a/3"))), Pushed::Queued);
        assert_eq!(drain(&mut o), ["live a/1", "sub a/2 1", "live a/3"]);
        assert!(o.is_idle(), "an empty queue ends the drain");
        assert_eq!(o.push(MeshMsg::StreamLive(key("a/4"))), Pushed::StartDrain);
    }

    #[test]
    fn a_message_taken_by_the_drain_keeps_later_ones_queued() {
        let mut o = Outbox::default();
        o.push(MeshMsg::StreamLive(key("a/1")));
        assert_eq!(label(&o.take_next().unwrap()), "live a/1");
        // The drain task holds that message while it waits for room: not idle.
        assert!(!o.is_idle());
        assert_eq!(o.push(MeshMsg::StreamEnded(key("a/1"))), Pushed::Queued);
        assert_eq!(drain(&mut o), ["ended a/1"]);
    }

    #[test]
    fn hls_snapshots_replace_older_ones_of_their_stream() {
        let mut o = Outbox::default();
        o.push(MeshMsg::Hls(key("a/1"), hls(7, 1)));
        o.push(MeshMsg::StreamLive(key("a/2")));
        o.push(MeshMsg::Hls(key("a/2"), hls(9, 1)));
        for version in 2..100 {
            o.push(MeshMsg::Hls(key("a/1"), hls(7, version)));
        }
        // An older snapshot (overtaken elsewhere) does not replace a newer one.
        o.push(MeshMsg::Hls(key("a/2"), hls(9, 0)));
        assert_eq!(
            drain(&mut o),
            ["hls a/1 99", "live a/2", "hls a/2 1", "hls a/2 0"]
        );
    }

    #[test]
    fn renditions_replace_and_want_only_their_own() {
        use crate::hls::llhls::LlSettings;
        use crate::hls::llsegmenter::LlSegmenter;
        use crate::hls::{LlView, Rendition};
        let settings = LlSettings {
            segment_target_ms: 2000,
            part_target_ms: 250,
            window: 6,
        };
        let ll = View::Ll(LlView::of(&LlSegmenter::new("1", 7, settings)));
        let mut o = Outbox::default();
        o.push(MeshMsg::Hls(key("a/1"), ll.clone()));
        o.push(MeshMsg::Hls(key("a/1"), hls(7, 1)));
        o.push(MeshMsg::Hls(key("a/1"), hls(7, 2)));
        o.push(MeshMsg::Hls(key("a/1"), ll));
        for rendition in [Rendition::Ts, Rendition::Ll, Rendition::Ts, Rendition::Ll] {
            o.push(MeshMsg::HlsWanted(key("a/1"), rendition));
        }
        // The second LL snapshot is not newer than the first: both stay.
        assert_eq!(
            drain(&mut o),
            [
                "ll a/1 0",
                "hls a/1 2",
                "ll a/1 0",
                "hls wanted a/1 Ts",
                "hls wanted a/1 Ll"
            ]
        );
    }

    #[test]
    fn stream_states_collapse() {
        let mut o = Outbox::default();
        o.push(MeshMsg::StreamEnded(key("a/0")));
        o.push(MeshMsg::StreamLive(key("a/1")));
        o.push(MeshMsg::StreamEnded(key("a/1")));
        o.push(MeshMsg::StreamLive(key("a/2")));
        o.push(MeshMsg::StreamLive(key("a/2")));
        o.push(MeshMsg::StreamEnded(key("a/0")));
        assert_eq!(drain(&mut o), ["ended a/0", "ended a/1", "live a/2"]);
        // Ended then live stays: the receiver ends the old feed, then knows the new stream.
        o.push(MeshMsg::StreamEnded(key("a/3")));
        o.push(MeshMsg::StreamLive(key("a/3")));
        o.push(MeshMsg::StreamEnded(key("a/3")));
        assert_eq!(drain(&mut o), ["ended a/3"]);
        // A sync between live and ended keeps both: its viewers get the GOP, then the end.
        o.push(MeshMsg::StreamLive(key("a/4")));
        o.push(MeshMsg::Sync(key("a/4"), Vec::new(), Vec::new()));
        o.push(MeshMsg::StreamEnded(key("a/4")));
        assert_eq!(drain(&mut o), ["live a/4", "sync a/4 0", "ended a/4"]);
    }

    #[test]
    fn syncs_replace_and_subscriptions_cancel() {
        let mut o = Outbox::default();
        o.push(MeshMsg::Sync(
            key("a/1"),
            Vec::new(),
            vec![unit(0, true, 1)],
        ));
        o.push(MeshMsg::StreamLive(key("a/2")));
        o.push(MeshMsg::Sync(
            key("a/1"),
            Vec::new(),
            vec![unit(3, true, 1); 2],
        ));
        o.push(MeshMsg::Subscribe(key("a/3"), 1));
        o.push(MeshMsg::Unsubscribe(key("a/3"), 1));
        o.push(MeshMsg::Unsubscribe(key("a/4"), 1));
        o.push(MeshMsg::Subscribe(key("a/4"), 1));
        assert_eq!(
            drain(&mut o),
            ["sync a/1 2", "live a/2", "unsub a/4 1", "sub a/4 1"]
        );
    }

    #[test]
    fn a_flooded_outbox_refuses_requests_and_keeps_order() {
        let mut o = Outbox::default();
        let mut refused = 0;
        o.push(MeshMsg::Hls(key("a/hls"), hls(1, 0)));
        for i in 0..OUTBOX_REQUESTS + 500 {
            let sub = MeshMsg::Subscribe(key(&format!("a/{i}")), 1);
            refused += usize::from(o.push(sub) == Pushed::Refused);
            // Snapshots of one stream never take more than one place, full queue or not.
            assert_ne!(
                o.push(MeshMsg::Hls(key("a/hls"), hls(1, 1 + i as u64))),
                Pushed::Refused
            );
        }
        assert_eq!(o.len(), OUTBOX_REQUESTS, "the bound holds");
        // The snapshot holds one place: one request fewer fits.
        assert_eq!(refused, 500 + 1);
        // State changes are never refused.
        o.push(MeshMsg::Unsubscribe(key("a/x"), 1));
        assert_eq!(o.len(), OUTBOX_REQUESTS + 1);
        let order = drain(&mut o);
        assert_eq!(order[0], format!("hls a/hls {}", OUTBOX_REQUESTS + 500));
        let subscribed: Vec<usize> = order
            .iter()
            .filter_map(|l| l.strip_prefix("sub a/")?.strip_suffix(" 1")?.parse().ok())
            .collect();
        assert_eq!(
            subscribed,
            (0..OUTBOX_REQUESTS - 1).collect::<Vec<_>>(),
            "in order"
        );
        assert_eq!(order.last().map(String::as_str), Some("unsub a/x 1"));
    }

    /// Two executors joined by a real channel mesh of 4 messages: shard 0 floods shard 1,
    /// which reads nothing until the flood is over. The outbox holds at most
    /// `OUTBOX_REQUESTS` requests, refuses the rest, and shard 1 then receives every message
    /// that was accepted, in the order it was sent.
    #[test]
    fn a_flooded_peer_gets_what_was_accepted_in_order() {
        use glommio::channels::channel_mesh::MeshBuilder;
        use glommio::{LocalExecutorBuilder, Placement};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        const CHANNEL: usize = 4;
        const FLOOD: usize = OUTBOX_REQUESTS + 300;
        let mesh = MeshBuilder::<MeshMsg, _>::full(2, CHANNEL);
        let flooded = Arc::new(AtomicBool::new(false));
        let builder =
            || LocalExecutorBuilder::new(Placement::Unbound).io_memory(crate::server::IO_MEMORY);
        let sender = {
            let (mesh, flooded) = (mesh.clone(), flooded.clone());
            builder().spawn(move || async move {
                let (senders, _receivers) = mesh.join().await.expect("joined");
                let mesh = Mesh::new(0, senders);
                let mut refused = 0;
                for i in 0..FLOOD {
                    let sub = MeshMsg::Subscribe(key(&format!("a/{i}")), 0);
                    refused += usize::from(mesh.request(1, sub).is_err());
                    mesh.send(1, MeshMsg::Hls(key("a/hls"), hls(1, i as u64)));
                    assert!(mesh.outboxes[1].borrow().len() <= OUTBOX_REQUESTS);
                }
                mesh.send(1, MeshMsg::StreamEnded(key("a/end")));
                flooded.store(true, Ordering::Relaxed);
                while !mesh.outboxes[1].borrow().is_idle() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                refused
            })
        }
        .expect("an executor");
        let receiver = builder().spawn(move || async move {
            let (_senders, mut receivers) = mesh.join().await.expect("joined");
            while !flooded.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let mut got = Vec::new();
            for (_, stream) in receivers.streams() {
                while let Some(msg) = stream.recv().await {
                    got.push(label(&msg));
                    if got.last().is_some_and(|l| l == "ended a/end") {
                        return got;
                    }
                }
            }
            got
        });
        let receiver = receiver.expect("an executor");
        let refused = sender.join().expect("sender");
        let got = receiver.join().expect("receiver");
        let subscribed: Vec<usize> = got
            .iter()
            .filter_map(|l| l.strip_prefix("sub a/")?.strip_suffix(" 0")?.parse().ok())
            .collect();
        // The channel took the first requests and snapshots (the flood never yields, so the
        // drain starts only after it); the outbox then took requests up to its bound, one
        // place going to the stream's single queued HLS snapshot.
        let accepted = subscribed.len();
        let straight = accepted - (OUTBOX_REQUESTS - 1);
        assert!(
            (1..=CHANNEL).contains(&straight),
            "{straight} in the channel"
        );
        assert_eq!(accepted + refused, FLOOD);
        assert_eq!(subscribed, (0..accepted).collect::<Vec<_>>(), "in order");
        let snapshots: Vec<u64> = got
            .iter()
            .filter_map(|l| l.strip_prefix("hls a/hls ")?.parse().ok())
            .collect();
        assert!(snapshots.windows(2).all(|w| w[0] < w[1]), "{snapshots:?}");
        assert_eq!(
            snapshots.last(),
            Some(&(FLOOD as u64 - 1)),
            "the newest arrives"
        );
        assert!(
            snapshots.len() <= straight + 1,
            "queued ones replaced: {snapshots:?}"
        );
        assert_eq!(got.len(), accepted + snapshots.len() + 1);
        assert_eq!(got.last().map(String::as_str), Some("ended a/end"));
    }
}
