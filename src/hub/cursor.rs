//! A viewer's position in a stream and the slow-viewer policy (pure: time is passed in).
//!
//! The policy, in order of escalation (constants from `[viewer]` in the configuration):
//! 1. Lag is the age of the oldest unit the viewer has not been sent yet (time since it
//!    arrived on the viewer's shard). Lag above `skip_after` makes the viewer jump to the
//!    newest keyframe; the units jumped over are counted as skipped. A viewer whose next unit
//!    was already dropped from the ring (the ring never waits) jumps the same way.
//! 2. From its first jump, a viewer is "behind" until it has been sent everything. Behind
//!    for longer than `disconnect_after`: the viewer is disconnected (counted).
//!
//! A tag is never cut: when a send ends inside a tag, the rest of that tag goes out before
//! anything else, even if the ring drops it meanwhile (the cursor keeps a reference).

use super::ring::{GopHold, Ring};
use crate::media::{Format, Tracks, Wire};
use crate::rtmp::chunk::MEDIA_STREAM_ID;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

/// Slow-viewer policy thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Lag (ns) past which the viewer jumps to the newest keyframe.
    pub skip_after_ns: u64,
    /// Time (ns) behind past which the viewer is disconnected.
    pub disconnect_after_ns: u64,
}

/// What the policy decided before a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on sending.
    Send,
    /// Behind for too long: disconnect.
    Disconnect,
}

/// A viewer's read position.
#[derive(Debug)]
pub struct Cursor {
    /// Owned bytes that go out before any ring data: the response head, the stream's
    /// headers, or the rest of a tag cut by a short send.
    /// Each piece carries the ingest time of the unit it ends, if it ends one.
    pending: VecDeque<(Bytes, Option<u64>)>,
    /// Bytes of `pending[0]` already sent.
    pending_off: usize,
    /// Next ring position to send.
    pos: u64,
    /// Set after a jump that found no keyframe, or for a new viewer of a ring without one:
    /// units are passed until one arrives.
    want_key: bool,
    /// A new viewer waits for its first keyframe: what it passes meanwhile was never its
    /// to send, and is not counted as skipped.
    joining: bool,
    /// When the viewer fell behind (first jump), cleared once it has caught up.
    behind_since: Option<u64>,
    /// Units jumped over so far (by the slow-viewer policy, or dropped by the ring).
    skipped: u64,
    /// Units passed over so far: the skipped ones, and those a new viewer waited through
    /// for its first keyframe. After any, the viewer needs the stream's current headers.
    passed: u64,
    /// Which serialization of the units this viewer reads.
    format: Format,
    /// Which tracks of a multitrack stream it reads.
    tracks: Tracks,
    /// The RTMP message stream it plays on (the shared bytes' unless it created others
    /// first; see [`Cursor::stage_rewritten`]).
    stream_id: u32,
    /// The viewer's claim on the GOP its position is in, which keeps that GOP in a ring
    /// retained by viewers.
    hold: Option<GopHold>,
}

impl Cursor {
    /// A cursor that first sends `head`, then ring units (in `format`) from `pos`.
    pub fn new(format: Format, head: Vec<Bytes>, pos: u64) -> Self {
        Cursor {
            pending: head.into_iter().map(|b| (b, None)).collect(),
            pending_off: 0,
            pos,
            want_key: false,
            joining: false,
            behind_since: None,
            skipped: 0,
            passed: 0,
            format,
            tracks: Tracks::Default,
            stream_id: MEDIA_STREAM_ID,
            hold: None,
        }
    }

    /// The same cursor, reading `tracks` of a multitrack stream (the default track unless
    /// told otherwise).
    pub fn with_tracks(mut self, tracks: Tracks) -> Self {
        self.tracks = tracks;
        self
    }

    /// The same cursor, for an RTMP player on message stream `stream_id`.
    pub fn with_stream_id(mut self, stream_id: u32) -> Self {
        self.stream_id = stream_id;
        self
    }

    /// True when the shared bytes need rewriting for this viewer: an RTMP player on
    /// another message stream than theirs.
    fn rewrites(&self) -> bool {
        self.format == Format::Rtmp && self.stream_id != MEDIA_STREAM_ID
    }

    /// A unit as this viewer reads it (empty when it has nothing for it).
    fn wire<'a>(&self, entry: &'a super::ring::Entry) -> &'a Wire {
        entry.unit.wire(self.tracks)
    }

    /// Queues what is left of a unit after its first `sent` bytes went out, as slices of its
    /// buffer; the last one carries the unit's ingest time.
    fn keep_rest(&mut self, wire: &Wire, mut sent: usize, ingest_ns: u64) {
        let mut rest = wire.pieces(self.format).enumerate().peekable();
        while let Some((i, range)) = rest.next() {
            if sent >= range.len() {
                sent -= range.len();
                continue;
            }
            let piece = match i == 0 && self.rewrites() {
                true => wire.piece_on(self.format, i, self.stream_id).slice(sent..),
                false => wire.buf().slice(range.start + sent..range.end),
            };
            sent = 0;
            let ends = rest.peek().is_none().then_some(ingest_ns);
            self.pending.push_back((piece, ends));
        }
    }

    /// For a viewer whose units are rewritten (`Cursor::rewrites`): moves the next units,
    /// up to `max_bytes` pending in all, into the pending list, rewritten, so that
    /// [`Cursor::gather`] (which sends only pending bytes to such a viewer) finds them. The
    /// type 0 header of each is a copy (12 or 16 bytes); the rest are shared slices.
    pub fn stage_rewritten(&mut self, ring: &Ring, max_bytes: usize) {
        if !self.rewrites() {
            return;
        }
        let mut staged: usize = self.pending.iter().map(|(b, _)| b.len()).sum();
        while staged < max_bytes {
            let Some(entry) = ring.get(self.pos) else {
                break;
            };
            let wire = self.wire(entry);
            staged += wire.len(self.format);
            self.keep_rest(wire, 0, entry.unit.ingest_ns);
            self.pos += 1;
        }
        self.rehold(ring);
    }

    /// A cursor for a new viewer: from the newest keyframe (the GOP cache), or, when the ring
    /// holds none, from the next keyframe to arrive.
    pub fn at_gop_start(format: Format, head: Vec<Bytes>, ring: &Ring) -> Self {
        let mut cursor = Cursor::new(format, head, ring.newest_key().unwrap_or(ring.end()));
        cursor.want_key = ring.newest_key().is_none();
        cursor.joining = cursor.want_key;
        cursor.rehold(ring);
        cursor
    }

    /// Claims the GOP the position is now in (see [`Ring::hold`]), unless it holds it
    /// already.
    fn rehold(&mut self, ring: &Ring) {
        let gop = ring.hold(self.pos);
        if gop.map(Rc::as_ptr) != self.hold.as_ref().map(Rc::as_ptr) {
            self.hold = gop.cloned();
        }
    }

    /// Whether this new viewer still waits for its first keyframe (its ring had none when
    /// it started).
    pub fn joining(&self) -> bool {
        self.joining
    }

    /// Units jumped over so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Units passed over so far, skipped or not (see [`Cursor::check`]): when this grows,
    /// headers may have been passed too.
    pub fn passed(&self) -> u64 {
        self.passed
    }

    /// Next ring position to send.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Queues owned bytes to go out before further ring data (e.g. new sequence headers).
    pub fn push_pending(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.pending.push_back((bytes, None));
        }
    }

    /// True when nothing is left to send right now.
    pub fn caught_up(&self, ring: &Ring) -> bool {
        self.pending.is_empty() && self.pos >= ring.end()
    }

    /// Arrival time of the oldest unit not yet sent, if any.
    pub fn oldest_pending_arrival(&self, ring: &Ring) -> Option<u64> {
        ring.get(self.pos.max(ring.front())).map(|e| e.arrived_ns)
    }

    /// Applies the slow-viewer policy at time `now` (jumps are counted in
    /// [`Cursor::skipped`]), and moves past units that have nothing for this viewer.
    pub fn check(&mut self, ring: &Ring, policy: &Policy, now: u64) -> Verdict {
        if self.pos < ring.front() && self.joining {
            // What the ring dropped came before the first keyframe this new viewer waits
            // for: none of it was its to send.
            self.passed += ring.front() - self.pos;
            self.pos = ring.front();
        } else if self.pos < ring.front() {
            // The ring dropped what this viewer needed next.
            self.jump(ring, now);
        } else if let Some(entry) = ring.get(self.pos) {
            if now.saturating_sub(entry.arrived_ns) > policy.skip_after_ns {
                self.jump(ring, now);
            }
        }
        if self.want_key {
            self.skip_to_key(ring);
        }
        self.pass_empty(ring);
        if self.caught_up(ring) {
            self.behind_since = None;
        }
        self.rehold(ring);
        match self.behind_since {
            Some(since) if now.saturating_sub(since) > policy.disconnect_after_ns => {
                Verdict::Disconnect
            }
            _ => Verdict::Send,
        }
    }

    /// Jumps to the newest keyframe, or to the next one when the ring holds none newer.
    fn jump(&mut self, ring: &Ring, now: u64) {
        self.behind_since.get_or_insert(now);
        let target = match ring.newest_key() {
            Some(key) if key > self.pos => key,
            // Already inside the newest GOP: a jump cannot help, keep reading.
            Some(_) if self.pos >= ring.front() => return,
            _ => {
                self.want_key = true;
                ring.end()
            }
        };
        self.skipped += target - self.pos;
        self.passed += target - self.pos;
        self.pos = target;
    }

    /// While waiting for a keyframe, passes over everything else.
    fn skip_to_key(&mut self, ring: &Ring) {
        self.pos = self.pos.max(ring.front());
        while let Some(entry) = ring.get(self.pos) {
            if entry.unit.key {
                self.want_key = false;
                self.joining = false;
                return;
            }
            self.pos += 1;
            self.passed += 1;
            self.skipped += u64::from(!self.joining);
        }
    }

    /// Collects what is to be sent into `iov`, at most `max_bytes` (but at least one piece)
    /// and at most `max_iov` slices. Returns the number of bytes gathered.
    pub fn gather<'a>(
        &'a self,
        ring: &'a Ring,
        iov: &mut Vec<IoSlice<'a>>,
        max_bytes: usize,
        max_iov: usize,
    ) -> usize {
        let mut total = 0;
        for (i, (bytes, _)) in self.pending.iter().enumerate() {
            let piece = if i == 0 {
                &bytes[self.pending_off..]
            } else {
                &bytes[..]
            };
            if !admit(iov, &mut total, piece, max_bytes, max_iov) {
                return total;
            }
        }
        if self.rewrites() {
            // Its units are staged in `pending`, rewritten.
            return total;
        }
        for entry in ring.iter_from(self.pos) {
            // Units with nothing for this viewer (another track's) have no pieces.
            let wire = self.wire(entry);
            for i in 0..wire.piece_count(self.format) {
                let piece = &wire.buf()[wire.piece(self.format, i)];
                if !admit(iov, &mut total, piece, max_bytes, max_iov) {
                    return total;
                }
            }
        }
        total
    }

    /// Makes sure the first piece to send is owned by the cursor (moving the next ring unit
    /// into its pending list if needed) and returns it. Used before waiting on a full socket,
    /// so that the bytes being written cannot be dropped by the ring meanwhile.
    pub fn pin_first(&mut self, ring: &Ring) -> Option<Bytes> {
        self.pass_empty(ring);
        if self.pending.is_empty() {
            let entry = ring.get(self.pos)?;
            self.keep_rest(self.wire(entry), 0, entry.unit.ingest_ns);
            self.pos += 1;
            self.rehold(ring);
        }
        self.pending
            .front()
            .map(|(b, _)| b.slice(self.pending_off..))
    }

    /// Records that `written` bytes of what [`Cursor::gather`] collected were sent. `done` is
    /// called with the ingest time of every unit whose last byte went out.
    pub fn advance(&mut self, ring: &Ring, mut written: usize, mut done: impl FnMut(u64)) {
        while written > 0 {
            let Some((front, ingest)) = self.pending.front() else {
                break;
            };
            let left = front.len() - self.pending_off;
            if written < left {
                self.pending_off += written;
                return;
            }
            if let Some(ingest) = ingest {
                done(*ingest);
            }
            written -= left;
            self.pending.pop_front();
            self.pending_off = 0;
        }
        while written > 0 {
            let Some(entry) = ring.get(self.pos) else {
                break;
            };
            let wire = self.wire(entry);
            let len = wire.len(self.format);
            self.pos += 1;
            if len == 0 {
                continue;
            }
            if written < len {
                // Keep the rest of the cut tag; it goes out first next time.
                self.keep_rest(wire, written, entry.unit.ingest_ns);
                break;
            }
            done(entry.unit.ingest_ns);
            written -= len;
        }
        self.pass_empty(ring);
        self.rehold(ring);
    }

    /// Moves past the units at the cursor that have nothing for this viewer (another
    /// track's), when nothing else is pending.
    fn pass_empty(&mut self, ring: &Ring) {
        while self.pending.is_empty() && ring.get(self.pos).is_some_and(|e| self.wire(e).is_empty())
        {
            self.pos += 1;
        }
    }
}

/// Adds `piece` to `iov` unless that would pass `max_iov` slices or `max_bytes` (but always
/// the first piece); false when it did not.
fn admit<'a>(
    iov: &mut Vec<IoSlice<'a>>,
    total: &mut usize,
    piece: &'a [u8],
    max_bytes: usize,
    max_iov: usize,
) -> bool {
    if iov.len() >= max_iov || (*total > 0 && *total + piece.len() > max_bytes) {
        return false;
    }
    *total += piece.len();
    iov.push(IoSlice::new(piece));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ring::tests::unit;
    use crate::media::UnitKind;

    const POLICY: Policy = Policy {
        skip_after_ns: 1_000,
        disconnect_after_ns: 5_000,
    };

    fn send_all(cursor: &mut Cursor, ring: &Ring, max: usize) -> Vec<u8> {
        let mut iov = Vec::new();
        cursor.gather(ring, &mut iov, max, 64);
        let bytes: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
        drop(iov);
        cursor.advance(ring, bytes.len(), |_| {});
        bytes
    }

    #[test]
    fn new_viewer_starts_at_newest_keyframe() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        for i in 0..6 {
            ring.push(unit(i, i % 3 == 0, 10), 0);
        }
        let cursor = Cursor::at_gop_start(Format::Flv, vec![Bytes::from_static(b"head")], &ring);
        assert_eq!(cursor.position(), 3);
    }

    /// A unit of another track than the default one: `len` bytes for viewers of every
    /// track, nothing for the others.
    fn other_track(seq: u64, len: usize) -> crate::media::Unit {
        let mut unit = unit(seq, false, len);
        unit.default_track = Some(std::sync::Arc::new(Wire::default()));
        unit
    }

    /// A video unit of `len` body bytes in its real layout, chunked at 128.
    fn chunked(seq: u64, key: bool, len: usize) -> crate::media::Unit {
        let body: Vec<u8> = (0..len).map(|i| (i as u64 + seq) as u8).collect();
        crate::media::Unit {
            wire: Wire::new(UnitKind::Video, seq as u32 * 40, &body, 128, None),
            ..unit(seq, key, len)
        }
    }

    #[test]
    fn a_player_on_another_message_stream_gets_every_unit_on_it() {
        use crate::rtmp::chunk::tests::decode;
        let mut ring = Ring::new(1 << 20, u64::MAX);
        for i in 0..5 {
            ring.push(chunked(i, i == 0, 300 + i as usize), 0);
        }
        let mut first_stream = Cursor::at_gop_start(Format::Rtmp, vec![], &ring);
        let shared = send_all(&mut first_stream, &ring, 1 << 20);
        // Sent in small pieces, with short sends that cut units (and headers) anywhere.
        let mut cursor = Cursor::at_gop_start(Format::Rtmp, vec![], &ring).with_stream_id(3);
        let mut got = Vec::new();
        while !cursor.caught_up(&ring) {
            cursor.stage_rewritten(&ring, 500);
            let mut iov = Vec::new();
            cursor.gather(&ring, &mut iov, 500, 64);
            let bytes: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            drop(iov);
            let sent = bytes.len().min(7 + got.len() % 13);
            got.extend_from_slice(&bytes[..sent]);
            cursor.advance(&ring, sent, |_| {});
        }
        let expected: Vec<_> = decode(&shared, 128)
            .into_iter()
            .map(|(type_id, ts, stream, body)| {
                assert_eq!(stream, MEDIA_STREAM_ID);
                (type_id, ts, 3, body)
            })
            .collect();
        assert_eq!(expected.len(), 5);
        assert_eq!(decode(&got, 128), expected);
        // The same bytes but for the stream ids.
        assert_eq!(got.len(), shared.len());
    }

    #[test]
    fn units_of_other_tracks_reach_only_viewers_of_every_track() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        ring.push(unit(0, true, 10), 0);
        ring.push(other_track(1, 7), 0);
        ring.push(unit(2, false, 10), 0);
        ring.push(other_track(3, 7), 0);
        let mut all = Cursor::at_gop_start(Format::Flv, Vec::new(), &ring).with_tracks(Tracks::All);
        assert_eq!(send_all(&mut all, &ring, 1 << 20).len(), 34);
        assert!(all.caught_up(&ring));
        let mut default = Cursor::at_gop_start(Format::Flv, Vec::new(), &ring);
        assert_eq!(send_all(&mut default, &ring, 1 << 20).len(), 20);
        assert!(
            default.caught_up(&ring),
            "the last unit, empty for it, is passed"
        );
        // One slice per unit it gets, none for the others.
        let mut late = Cursor::new(Format::Flv, Vec::new(), 1);
        let mut iov = Vec::new();
        late.gather(&ring, &mut iov, 1 << 20, 64);
        assert_eq!(iov.len(), 1);
        drop(iov);
        // Waiting on a full socket pins the next unit it gets, not an empty one.
        assert_eq!(late.pin_first(&ring).map(|b| b.len()), Some(10));
        assert_eq!(late.position(), 3);
        // Nothing written, and only empty units left: passed, caught up.
        let mut idle = Cursor::new(Format::Flv, Vec::new(), 3);
        assert!(!idle.caught_up(&ring));
        idle.advance(&ring, 0, |_| panic!("nothing was sent"));
        assert!(idle.caught_up(&ring));
        let mut checked = Cursor::new(Format::Flv, Vec::new(), 3);
        assert_eq!(checked.check(&ring, &POLICY, 0), Verdict::Send);
        assert!(checked.caught_up(&ring));
    }

    #[test]
    fn short_send_keeps_tag_whole() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        ring.push(unit(0, true, 10), 0);
        ring.push(unit(1, false, 10), 0);
        let mut cursor = Cursor::at_gop_start(Format::Flv, vec![Bytes::from_static(b"hd")], &ring);
        cursor.advance(&ring, 5, |_| {}); // "hd" and 3 bytes of the first tag
        assert_eq!(cursor.position(), 1);
        ring.clear(); // the ring drops the cut tag; the cursor still holds its rest
        let rest = send_all(&mut cursor, &ring, 1 << 20);
        assert_eq!(rest.len(), 7);
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        assert!(cursor.caught_up(&ring));
    }

    #[test]
    fn lagging_viewer_jumps_to_newest_key_then_is_disconnected() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        let mut cursor = Cursor::new(Format::Flv, Vec::new(), 0);
        for i in 0..10 {
            ring.push(unit(i, i == 0 || i == 8, 10), i * 10);
        }
        assert_eq!(cursor.check(&ring, &POLICY, 500), Verdict::Send);
        assert_eq!(cursor.position(), 0);
        assert_eq!(cursor.check(&ring, &POLICY, 2_000), Verdict::Send);
        assert_eq!(cursor.position(), 8);
        assert_eq!(cursor.skipped(), 8);
        // Still not caught up 5 us after falling behind: disconnect.
        assert_eq!(cursor.check(&ring, &POLICY, 7_100), Verdict::Disconnect);
    }

    #[test]
    fn catching_up_clears_behind() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        let mut cursor = Cursor::new(Format::Flv, Vec::new(), 0);
        for i in 0..4 {
            ring.push(unit(i, i == 2, 10), 0);
        }
        assert_eq!(cursor.check(&ring, &POLICY, 2_000), Verdict::Send);
        send_all(&mut cursor, &ring, 1 << 20);
        assert_eq!(cursor.check(&ring, &POLICY, 2_001), Verdict::Send);
        assert_eq!(cursor.check(&ring, &POLICY, 100_000), Verdict::Send);
    }

    #[test]
    fn a_new_viewer_waiting_for_the_first_keyframe_skips_nothing() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        let mut cursor = Cursor::at_gop_start(Format::Flv, Vec::new(), &ring);
        for i in 0..3 {
            ring.push(unit(i, false, 10), 0);
        }
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        ring.push(unit(3, true, 10), 0);
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        assert_eq!((cursor.position(), cursor.skipped()), (3, 0));
        // Passed all the same: headers that came meanwhile are the viewer's to get.
        assert_eq!(cursor.passed(), 3);
        // Also when the ring has dropped what came before that keyframe (a ring retained
        // by viewers drops it once the keyframe arrives) before the viewer looks again.
        let mut ring = Ring::new(1 << 20, u64::MAX).retained_by_viewers(0);
        let mut cursor = Cursor::at_gop_start(Format::Flv, Vec::new(), &ring);
        for i in 0..4 {
            ring.push(unit(i, i == 3, 10), 0);
        }
        assert_eq!(ring.front(), 3);
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        assert_eq!(
            (cursor.position(), cursor.skipped(), cursor.passed()),
            (3, 0, 3)
        );
    }

    #[test]
    fn dropped_position_waits_for_next_keyframe() {
        let mut ring = Ring::new(35, u64::MAX);
        let mut cursor = Cursor::new(Format::Flv, Vec::new(), 0);
        for i in 0..5 {
            ring.push(unit(i, i == 0, 10), 0);
        }
        // Positions 0 and 1 were dropped and no keyframe is left: skip until one arrives.
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        assert!(cursor.caught_up(&ring));
        ring.push(unit(5, false, 10), 0);
        ring.push(unit(6, true, 10), 0);
        assert_eq!(cursor.check(&ring, &POLICY, 0), Verdict::Send);
        assert_eq!(cursor.position(), 6);
        assert_eq!(cursor.skipped(), 6);
    }

    #[test]
    fn a_reader_keeps_its_gop_in_a_ring_retained_by_viewers_until_it_moves_on() {
        let mut ring = Ring::new(1 << 20, u64::MAX).retained_by_viewers(0);
        for i in 0..4 {
            ring.push(unit(i, i % 2 == 0, 10), 0);
        }
        // A new viewer starts at the GOP cache (from 2) and holds it.
        let mut cursor = Cursor::at_gop_start(Format::Flv, Vec::new(), &ring);
        for i in 4..8 {
            ring.push(unit(i, i % 2 == 0, 10), 0);
        }
        assert_eq!(ring.front(), 2, "the GOP the viewer reads stays");
        // Sent up to the GOP from 6: the ones before it go with the next unit.
        let sent = send_all(&mut cursor, &ring, 1 << 20);
        assert_eq!(sent.len(), 60);
        ring.push(unit(8, true, 10), 0);
        assert_eq!(ring.front(), 6, "only what the caught-up viewer holds");
        drop(cursor);
        ring.push(unit(9, false, 10), 0);
        assert_eq!(ring.front(), 8, "nobody reads: the GOP cache alone");
    }

    #[test]
    fn gather_respects_byte_budget() {
        let mut ring = Ring::new(1 << 20, u64::MAX);
        for i in 0..4 {
            ring.push(unit(i, i == 0, 100), 0);
        }
        let cursor = Cursor::new(Format::Flv, Vec::new(), 0);
        let mut iov = Vec::new();
        assert_eq!(cursor.gather(&ring, &mut iov, 250, 64), 200);
        iov.clear();
        assert_eq!(
            cursor.gather(&ring, &mut iov, 50, 64),
            100,
            "at least one piece"
        );
    }
}
