//! A stream as seen by one shard: its ring, its current headers, and its viewers' wakers.
//!
//! The owner shard's feed is filled by the publisher; every other shard with viewers keeps a
//! replica feed filled from the owner over the mesh. Both are the same type: viewers do not
//! care where units come from.

use super::ring::Ring;
use crate::flv::codec;
use crate::media::{Format, Tracks, Unit, UnitKind};
use bytes::Bytes;
use std::cell::Cell;
use std::task::Waker;

/// Life cycle of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedState {
    /// Replica waiting for the owner's snapshot (headers and GOP cache).
    Syncing,
    /// Units are flowing (or the publisher left and the grace period runs).
    Live,
    /// The stream is over: viewers finish what they have and their responses end.
    Ended,
}

/// Which header a unit is, for [`Headers`]: the order in which new viewers get them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// onMetaData.
    Metadata,
    /// A video sequence header (or Enhanced RTMP sequence start).
    Video,
    /// An Enhanced RTMP video metadata packet (colour information), which follows the
    /// sequence start and does not replace it.
    VideoMetadata,
    /// An audio sequence header (or Enhanced RTMP sequence start).
    Audio,
    /// An Enhanced RTMP multichannel configuration, beside the audio sequence start.
    AudioChannels,
}

/// Most header slots a stream keeps: five for the default track and room for others'
/// (multitrack streams: a sequence start, and maybe colour metadata or a channel layout,
/// per track). Headers of further tracks are not kept; their viewers start those tracks
/// at the next sequence start.
pub const MAX_HEADERS: usize = 32;

/// The stream's current decoder configuration and metadata, sent to every new viewer: the
/// last header unit of each slot and track, in slot order.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// `(slot, track, unit)`, sorted by slot then track; track 0 is the default track.
    held: Vec<(Slot, u8, Unit)>,
}

impl Headers {
    /// Remembers a header unit in its slot, replacing the previous one of its track.
    pub fn set(&mut self, unit: &Unit) {
        let (slot, track) = Headers::slot_of(unit);
        match self
            .held
            .binary_search_by(|(s, t, _)| (*s, *t).cmp(&(slot, track)))
        {
            Ok(at) => self.held[at].2 = unit.clone(),
            Err(at) if self.held.len() < MAX_HEADERS => {
                self.held.insert(at, (slot, track, unit.clone()))
            }
            Err(_) => {}
        }
    }

    /// The slot and track of a header unit (track 0 for everything that is not a
    /// multitrack tag, and for multitrack tags that carry the default track).
    fn slot_of(unit: &Unit) -> (Slot, u8) {
        let body = unit.body(Tracks::All);
        match unit.kind {
            UnitKind::Script => (Slot::Metadata, 0),
            UnitKind::Video => {
                let tag = codec::video(body);
                let track = tag.and_then(|t| t.multitrack).map_or(0, |m| m.track());
                match tag {
                    Some(t) if t.metadata => (Slot::VideoMetadata, track),
                    _ => (Slot::Video, track),
                }
            }
            UnitKind::Audio => {
                let tag = codec::audio(body);
                let track = tag.and_then(|t| t.multitrack).map_or(0, |m| m.track());
                match tag {
                    Some(t) if t.multichannel => (Slot::AudioChannels, track),
                    _ => (Slot::Audio, track),
                }
            }
        }
    }

    /// The default track's header of `slot`, if any.
    pub fn get(&self, slot: Slot) -> Option<&Unit> {
        self.held
            .iter()
            .find(|(s, t, _)| *s == slot && *t == 0)
            .map(|(_, _, unit)| unit)
    }

    /// The header units, metadata first, each track's sequence header before what completes
    /// it.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.held.iter().map(|(_, _, unit)| unit)
    }

    /// The headers in `format` for a viewer of `tracks` (on RTMP message stream
    /// `stream_id`), stamped no later than `dts`, so that a viewer starting at a unit with
    /// that timestamp never sees time go backwards.
    pub fn at(
        &self,
        dts: u32,
        format: Format,
        tracks: Tracks,
        stream_id: u32,
        chunk_size: usize,
    ) -> Vec<Bytes> {
        let mut out = Vec::new();
        for unit in self.units() {
            if unit.dts <= dts {
                out.extend(unit.wire(tracks).slices_on(format, stream_id));
            } else {
                let restamped = unit.restamped(tracks, dts, chunk_size);
                out.extend(restamped.slices_on(format, stream_id));
            }
        }
        out
    }
}

/// Units a syncing replica keeps aside until the owner's snapshot arrives (a few
/// milliseconds of a stream's units; beyond, they are dropped, and the replica resumes at a
/// keyframe after the snapshot).
pub const MAX_EARLY_UNITS: usize = 256;

/// Outcome of offering a unit to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Appended to the ring.
    Accepted,
    /// Dropped: the replica lost units and waits for a keyframe to resume.
    AwaitingKey,
    /// Dropped: already received (sequence number not newer than the last one).
    Stale,
    /// Kept aside: the replica waits for the owner's snapshot, which the unit overtook (see
    /// [`Feed::load_snapshot`]).
    Early,
}

/// One stream on one shard.
#[derive(Debug)]
pub struct Feed {
    /// Current headers (also inline in the ring, in order, for viewers already playing).
    pub headers: Headers,
    /// Recent units; viewers are cursors into it.
    pub ring: Ring,
    /// Life cycle.
    pub state: FeedState,
    /// Viewers of this feed on this shard, by format (HTTP-FLV, RTMP).
    pub viewers: [usize; 2],
    /// Bytes sent to this feed's viewers on this shard.
    pub bytes_out: Cell<u64>,
    /// `bytes_out` at the last report (for the outgoing bitrate).
    pub reported_bytes_out: Cell<u64>,
    /// Audio has been seen (announced in the FLV file header of new viewers).
    pub has_audio: bool,
    /// Video has been seen.
    pub has_video: bool,
    /// Sequence number expected next (gap detection on replicas).
    next_seq: Option<u64>,
    /// Units were lost; drop everything until the next keyframe.
    want_key: bool,
    /// Units that reached a syncing replica before the owner's snapshot, at most
    /// [`MAX_EARLY_UNITS`] (beyond, they are dropped and the replica resumes at a keyframe).
    early: Vec<Unit>,
    /// Viewers waiting for data.
    waiters: Vec<Waker>,
    /// A deferred wake-up (merge window) is already scheduled.
    flush_scheduled: bool,
    /// Pictures held for the viewers since they were last woken (see `shard::schedule`).
    pictures_held: u32,
    /// Wake-ups so far: a deferred one that finds this moved on has nothing to do.
    flushes: u64,
}

impl Feed {
    /// A feed with the given ring bounds.
    pub fn new(state: FeedState, ring: Ring) -> Self {
        Feed {
            headers: Headers::default(),
            ring,
            state,
            viewers: [0; 2],
            bytes_out: Cell::new(0),
            reported_bytes_out: Cell::new(0),
            has_audio: false,
            has_video: false,
            next_seq: None,
            want_key: false,
            early: Vec::new(),
            waiters: Vec::new(),
            flush_scheduled: false,
            pictures_held: 0,
            flushes: 0,
        }
    }

    /// Offers a unit (from the publisher or the owner). Units must come in sequence order;
    /// after a gap, only a keyframe (or header) resumes the feed.
    pub fn offer(&mut self, unit: Unit, now_ns: u64) -> Offer {
        if self.state == FeedState::Syncing {
            if self.early.len() < MAX_EARLY_UNITS {
                self.early.push(unit);
            }
            return Offer::Early;
        }
        if let Some(next) = self.next_seq {
            if unit.seq < next {
                return Offer::Stale;
            }
            if unit.seq > next {
                self.want_key = true;
            }
        }
        self.next_seq = Some(unit.seq + 1);
        match unit.kind {
            UnitKind::Audio => self.has_audio = true,
            UnitKind::Video => self.has_video = true,
            UnitKind::Script => {}
        }
        if unit.header {
            self.headers.set(&unit);
        } else if self.want_key {
            if !unit.key {
                return Offer::AwaitingKey;
            }
            self.want_key = false;
        }
        self.ring.push(unit, now_ns);
        Offer::Accepted
    }

    /// Loads an owner's snapshot into a replica: headers, then the GOP cache, then the units
    /// that came before it. Units travel between shards apart from control messages, so the
    /// first units sent to a new subscriber can overtake the snapshot the owner made for it
    /// when it subscribed; a syncing replica keeps them aside ([`Offer::Early`]) and takes
    /// them here, after the snapshot, each once (those the snapshot holds too are stale).
    pub fn load_snapshot(&mut self, headers: Vec<Unit>, gop: Vec<Unit>, now_ns: u64) {
        for unit in &headers {
            self.headers.set(unit);
            self.has_audio |= unit.kind == UnitKind::Audio;
            self.has_video |= unit.kind == UnitKind::Video;
        }
        self.ring.clear();
        self.next_seq = None;
        self.want_key = false;
        if self.state == FeedState::Syncing {
            self.state = FeedState::Live;
        }
        for unit in gop.into_iter().chain(std::mem::take(&mut self.early)) {
            self.offer(unit, now_ns);
        }
    }

    /// The snapshot a replica needs to start: headers and the units from the newest keyframe.
    pub fn snapshot(&self) -> (Vec<Unit>, Vec<Unit>) {
        let headers = self.headers.units().cloned().collect();
        let gop = match self.ring.newest_key() {
            Some(key) => self.ring.iter_from(key).map(|e| e.unit.clone()).collect(),
            None => Vec::new(),
        };
        (headers, gop)
    }

    /// Timestamp at ring position `pos`, or of the newest unit when `pos` is not held yet.
    pub fn dts_at(&self, pos: u64) -> u32 {
        self.ring
            .get(pos)
            .or_else(|| {
                self.ring
                    .end()
                    .checked_sub(1)
                    .and_then(|p| self.ring.get(p))
            })
            .map_or(0, |e| e.unit.dts)
    }

    /// Registers a viewer task to wake on new data or a state change. `listed` is the
    /// viewer's own note of the wake-up it last registered for: a viewer polled again
    /// before that wake-up (by its outbox, say) is already listed, which the note tells
    /// without a scan of the list (a scan per registration made every pass over N viewers
    /// cost N^2 comparisons: 4% of a shard's time at 4,000 viewers).
    pub fn register(&mut self, waker: &Waker, listed: &mut Option<u64>) {
        if *listed != Some(self.flushes) {
            self.waiters.push(waker.clone());
            *listed = Some(self.flushes);
        }
    }

    /// Wakes every waiting viewer.
    pub fn wake_all(&mut self) {
        self.flush_scheduled = false;
        self.pictures_held = 0;
        self.flushes += 1;
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }

    /// Whether any viewer waits to be woken (the others are busy and look at the ring
    /// again before they wait).
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Pictures held for the viewers since they were last woken.
    pub fn pictures_held(&self) -> u32 {
        self.pictures_held
    }

    /// Notes that a unit (a `picture` or not) is held for a deferred wake-up; returns the
    /// token to pass to [`Feed::deferred_wake`] when the caller must schedule one (none is
    /// pending yet).
    pub fn hold(&mut self, picture: bool) -> Option<u64> {
        self.pictures_held += u32::from(picture);
        (!std::mem::replace(&mut self.flush_scheduled, true)).then_some(self.flushes)
    }

    /// A deferred wake-up scheduled with `token`: wakes the viewers unless they were woken
    /// since (by an earlier flush), in which case there is nothing new to wake them for.
    pub fn deferred_wake(&mut self, token: u64) {
        if self.flushes == token {
            self.wake_all();
        }
    }

    /// Viewers of every format.
    pub fn total_viewers(&self) -> usize {
        self.viewers.iter().sum()
    }

    /// Ends the feed; viewers drain what they have and close.
    pub fn end(&mut self) {
        self.state = FeedState::Ended;
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ring::tests::unit;

    fn feed() -> Feed {
        Feed::new(FeedState::Live, Ring::new(1 << 20, u64::MAX))
    }

    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_deferred_wake_after_a_flush_does_nothing() {
        let count = std::sync::Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let woken = || count.0.load(std::sync::atomic::Ordering::Relaxed);
        let mut f = feed();
        let mut listed = None;
        f.register(&waker, &mut listed);
        // Registering again before a wake-up lists the viewer once.
        f.register(&waker, &mut listed);
        let token = f.hold(false).expect("the first unit held schedules");
        assert_eq!(f.hold(true), None, "one deferred wake at a time");
        assert_eq!(f.pictures_held(), 1);
        // A picture flushes first; the viewer registers again and waits.
        f.wake_all();
        assert_eq!((woken(), f.pictures_held()), (1, 0));
        f.register(&waker, &mut listed);
        f.deferred_wake(token);
        assert_eq!(woken(), 1, "nothing new since the flush");
        let token = f.hold(true).expect("a new window");
        f.deferred_wake(token);
        assert_eq!((woken(), f.pictures_held()), (2, 0));
    }

    #[test]
    fn gap_waits_for_keyframe() {
        let mut f = feed();
        assert_eq!(f.offer(unit(0, true, 10), 0), Offer::Accepted);
        assert_eq!(f.offer(unit(1, false, 10), 0), Offer::Accepted);
        assert_eq!(f.offer(unit(3, false, 10), 0), Offer::AwaitingKey);
        assert_eq!(f.offer(unit(4, false, 10), 0), Offer::AwaitingKey);
        assert_eq!(f.offer(unit(5, true, 10), 0), Offer::Accepted);
        assert_eq!(f.offer(unit(5, true, 10), 0), Offer::Stale);
        assert_eq!(f.ring.len(), 3);
    }

    #[test]
    fn snapshot_is_gop_cache() {
        let mut f = feed();
        for i in 0..7 {
            f.offer(unit(i, i % 3 == 0, 10), 0);
        }
        let (_, gop) = f.snapshot();
        assert_eq!(gop.iter().map(|u| u.seq).collect::<Vec<_>>(), vec![6]);
        let mut replica = Feed::new(FeedState::Syncing, Ring::new(1 << 20, u64::MAX));
        replica.load_snapshot(Vec::new(), gop, 0);
        assert_eq!(replica.state, FeedState::Live);
        assert_eq!(replica.offer(unit(7, false, 10), 0), Offer::Accepted);
    }

    #[test]
    fn units_that_overtake_the_snapshot_come_after_it_once() {
        let mut owner = feed();
        for i in 0..5 {
            owner.offer(unit(i, i == 3, 10), 0);
        }
        // The replica subscribed when the owner had units 0-4; units 4 (again, in flight)
        // and 5-6 reach it before the snapshot does.
        let (headers, gop) = owner.snapshot();
        let mut replica = Feed::new(FeedState::Syncing, Ring::new(1 << 20, u64::MAX));
        for seq in [4, 5, 6] {
            assert_eq!(replica.offer(unit(seq, false, 10), 0), Offer::Early);
        }
        assert!(replica.ring.is_empty());
        replica.load_snapshot(headers, gop, 0);
        let seqs: Vec<u64> = replica
            .ring
            .iter_from(replica.ring.front())
            .map(|e| e.unit.seq)
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6], "each unit once, in order");
        assert_eq!(replica.offer(unit(7, false, 10), 0), Offer::Accepted);
    }

    #[test]
    fn headers_are_kept_per_track() {
        // Header units as the owner makes them (sequence numbers 0, 1, 2, ...).
        let mut origin = crate::hub::origin::Origin::new(1, 4096, None);
        origin.rebaser.new_session();
        let mut header = |body: &[u8]| {
            origin
                .media(UnitKind::Video, 0, body, 0)
                .expect("a video header")
        };
        let mut h = Headers::default();
        // The default track's sequence header (legacy AVC), then track 1's (multitrack,
        // one track), as ffmpeg sends a second rendition: neither replaces the other.
        h.set(&header(&[0x17, 0, 0, 0, 0, 1]));
        h.set(&header(&[0x96, 0x00, b'a', b'v', b'c', b'1', 1, 1]));
        assert_eq!(h.units().map(|u| u.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(h.at(0, Format::Flv, Tracks::All, 1, 4096).len(), 2);
        let default = h.at(0, Format::Flv, Tracks::Default, 1, 4096);
        assert_eq!(
            default.len(),
            1,
            "track 1's header is not for default viewers"
        );
        assert_eq!(&default[0][11..13], &[0x17, 0]);
        // A new header of track 1 replaces track 1's.
        h.set(&header(&[0x96, 0x00, b'a', b'v', b'c', b'1', 1, 2]));
        assert_eq!(h.units().map(|u| u.seq).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(h.get(Slot::Video).map(|u| u.seq), Some(0));
        // Bounded: headers of ever more tracks are not kept.
        for track in 2..=255u8 {
            h.set(&header(&[0x96, 0x00, b'a', b'v', b'c', b'1', track, 1]));
        }
        assert_eq!(h.units().count(), MAX_HEADERS);
    }

    #[test]
    fn headers_are_restamped_not_later_than_start() {
        let mut h = Headers::default();
        let u = Unit::serialize(
            UnitKind::Video,
            5_000,
            false,
            true,
            &[0x17, 0, 0, 0, 0],
            4096,
            None,
        );
        h.set(&u);
        let tags = h.at(4_000, Format::Flv, Tracks::All, 1, 4096);
        assert_eq!(&tags[0][4..7], &[0, 0x0f, 0xa0]);
        assert!(
            h.at(6_000, Format::Flv, Tracks::Default, 1, 4096)[0].as_ptr() == u.wire.flv().as_ptr(),
            "no copy when in order"
        );
        let rtmp = h.at(4_000, Format::Rtmp, Tracks::Default, 1, 4096);
        assert_eq!(
            &rtmp[0][1..4],
            &[0, 0x0f, 0xa0],
            "RTMP header timestamp restamped"
        );
    }
}
