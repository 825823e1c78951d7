//! Low-Latency HLS on a shard. On the owner: the stream's LL-HLS segmenter, started by the
//! first request and fed from the ring, then with every unit, retired when idle (as the
//! MPEG-TS segmenter is); a snapshot ([`LlView`]) goes to every shard after each part. On
//! every shard: the requests held until their part exists (blocking playlist reloads,
//! requests for the preload-hinted part), woken by one pass over the shard's
//! [`HeldReloads`] when the snapshot with that part arrives.
//!
//! A held request waits at most [`BLOCK_TARGETS`] target durations (RFC 8216bis 6.2.5.2:
//! then `503`); when the shard holds `hls.max_held_reloads` requests already, a playlist
//! request is answered at once with the current playlist, and a part request with `404`.

use super::held::Full;
use super::held::HeldReloads;
use super::hls_store::{replay, wall_ms};
use super::{LocalStream, Shard};
use crate::hls::llhls::{Awaited, Directives, LlSettings, PartId, Reload, Resource};
use crate::hls::llsegmenter::LlSegmenter;
use crate::hls::{LlView, Rendition, Snapshot, View};
use crate::hub::origin::Origin;
use crate::hub::StreamKey;
use crate::media::{now_ns, Unit};
use crate::shard::mesh::MeshMsg;
use crate::stats;
use bytes::Bytes;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::{debug, info, warn};

/// A held request is answered within this many target durations: with what it waited for,
/// or `503` (RFC 8216bis 6.2.5.2).
pub const BLOCK_TARGETS: u64 = 3;

/// What answers a Low-Latency HLS playlist request.
#[derive(Debug)]
pub enum LlAnswer {
    /// Render the playlist of this snapshot.
    Playlist(Rc<LlView>),
    /// No such live stream, LL-HLS is off, or it did not start in time: `404`.
    NotFound,
    /// Further ahead than a player may ask: `400`.
    TooFarAhead,
    /// What it waited for did not come within [`BLOCK_TARGETS`] target durations: `503`.
    TimedOut,
}

/// How a held request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// A snapshot with what it waited for arrived (or the stream ended).
    Released,
    /// Its deadline passed.
    TimedOut,
    /// The shard holds its maximum already.
    Full,
}

impl Shard {
    /// The LL-HLS snapshot of a stream, if any.
    pub fn ll_view(&self, key: &StreamKey) -> Option<Rc<LlView>> {
        self.ll.borrow().get(key)
    }

    /// Requests held on this shard now.
    pub fn held_reloads(&self) -> usize {
        self.held.borrow().len()
    }

    /// Starts the LL-HLS segmenter of a stream this shard owns, if Low-Latency HLS is on
    /// and it is not running: it is fed the stream's headers and the ring from its oldest
    /// keyframe (as [`Shard::start_hls`] does), so that its first parts and segment exist at
    /// once, and that snapshot goes to every shard.
    pub(super) fn start_ll(&self, key: &StreamKey) {
        let config = self.config();
        let hls = &config.hls;
        if !hls.enabled || !hls.low_latency {
            return;
        }
        let mut streams = self.streams.borrow_mut();
        let Some(stream) = streams.get_mut(key).and_then(LocalStream::owned) else {
            return;
        };
        if stream.origin.ll.is_some() {
            return;
        }
        let (name, instance) = self.hls_incarnation(key);
        let settings = LlSettings {
            segment_target_ms: hls.target_duration_ms,
            part_target_ms: hls.part_target_ms,
            window: hls.window_segments,
        };
        let mut segmenter = LlSegmenter::new(name, instance, settings);
        segmenter.demand().requested(now_ns());
        let errors = replay(&stream.feed.borrow(), |unit, at| {
            segmenter.push(unit, at).is_err()
        });
        stats::add(&self.stats.hls_errors, errors);
        let view = LlView::of(&segmenter);
        stream.origin.ll = Some(segmenter);
        if let Some(share) = stream.hls_share.as_mut() {
            share.set(stream.origin.hls_bytes_held());
        }
        drop(streams);
        info!(action = "ll-hls-start", shard = self.id, stream = %key, "ll-hls: started on request");
        self.publish_ll(key, view);
    }

    /// Feeds a unit to the LL-HLS segmenter of `origin`, if it runs: the snapshot to hand to
    /// every shard when the playlist changed. With the media budget `spent`, the window keeps
    /// only its newest segments.
    pub(super) fn ll_push(
        &self,
        key: &StreamKey,
        origin: &mut Origin,
        unit: &Unit,
        spent: bool,
    ) -> Option<LlView> {
        let ll = origin.ll.as_mut()?;
        let was_supported = ll.writer().unsupported().is_none();
        let changed = match ll.push(unit, wall_ms()) {
            Ok(changed) => changed.any(),
            Err(err) => {
                stats::inc(&self.stats.hls_errors);
                debug!(shard = self.id, stream = %key, "ll-hls: {err}");
                // A refused part closes the segment being written.
                true
            }
        };
        let trimmed = spent && ll.trim_to(super::publish::MIN_HLS_WINDOW);
        let refused = match ll.writer().unsupported() {
            Some(track) if was_supported => {
                warn!(shard = self.id, stream = %key, track, "ll-hls: this track has no fMP4 mapping here; the stream's LL-HLS playlists answer 501 (play it over HTTP-FLV or RTMP)");
                true
            }
            _ => false,
        };
        (changed || trimmed || refused).then(|| LlView::of(ll))
    }

    /// Stops the LL-HLS segmenter of `origin` when no request came for
    /// `hls.idle_timeout_ms` (the caller sets the stream's share of the media budget):
    /// the snapshot on which every shard forgets it, when it stopped.
    pub(super) fn retire_idle_ll(&self, key: &StreamKey, origin: &mut Origin) -> Option<LlView> {
        let idle_ns = self.config().hls.idle_timeout_ms * 1_000_000;
        let segmenter = origin
            .ll
            .take_if(|ll| ll.demand().idle_for(now_ns()) > idle_ns)?;
        info!(action = "ll-hls-stop", shard = self.id, stream = %key, "ll-hls: stopped, not requested for hls.idle_timeout_ms");
        Some(LlView::retired(&segmenter))
    }

    /// Hands a new LL-HLS snapshot of `key` to every shard (this one included).
    pub(super) fn publish_ll(&self, key: &StreamKey, view: LlView) {
        self.broadcast(|| MeshMsg::Hls(key.clone(), View::Ll(view.clone())));
        self.store_ll(key.clone(), view);
    }

    /// Keeps a snapshot for serving, and wakes the requests held here that it answers: those
    /// it contains, or all of them once the stream ended or its LL-HLS stopped.
    pub(super) fn store_ll(&self, key: StreamKey, view: LlView) {
        let reached = view.window.reached();
        let last = view.ended() || view.retired();
        self.keep_snapshot(&self.ll, key.clone(), view);
        let mut held = self.held.borrow_mut();
        if last {
            held.release_all(&key);
        } else {
            held.release(&key, reached);
        }
    }

    /// The snapshot that answers a multivariant playlist request: as for a media playlist
    /// request without directives (the first one starts the stream's LL-HLS).
    pub async fn ll_multivariant_view(&self, key: &StreamKey) -> Option<Rc<LlView>> {
        self.first_view(&self.ll, key, Rendition::Ll).await
    }

    /// Answers a playlist request with delivery directives (RFC 8216bis 6.2.5): at once when
    /// the playlist has what it asks for, after holding it until a snapshot has, `400` when
    /// it asks too far ahead. The first request of a stream starts its LL-HLS (see
    /// [`Shard::hls_playlist`]).
    pub async fn ll_playlist(&self, key: &StreamKey, directives: &Directives) -> LlAnswer {
        let Some(mut view) = self.first_view(&self.ll, key, Rendition::Ll).await else {
            return LlAnswer::NotFound;
        };
        let deadline = self.block_deadline();
        loop {
            let awaited = match view.window.reload(directives) {
                Reload::Ready => return LlAnswer::Playlist(view),
                Reload::TooFarAhead => return LlAnswer::TooFarAhead,
                Reload::Wait(awaited) => awaited,
            };
            match self.hold(key, awaited, deadline).await {
                Held::Released => {}
                // Over the bound: the current playlist, as RFC 8216bis 6.2.5.2 allows.
                Held::Full => return LlAnswer::Playlist(view),
                Held::TimedOut => return LlAnswer::TimedOut,
            }
            view = match self.ll_view(key) {
                Some(view) => view,
                None => return LlAnswer::NotFound,
            };
        }
    }

    /// An initialization segment, segment or part of incarnation `instance` of `key`. A part
    /// that does not exist yet but is the next one (the preload hint names it) is waited
    /// for, as long as a held playlist request would be. `None`: not (or no longer) there.
    pub async fn ll_resource(
        &self,
        key: &StreamKey,
        instance: u64,
        resource: Resource,
    ) -> Option<Bytes> {
        let mut view = self.ll_view(key)?;
        view.demand.requested(now_ns());
        let deadline = self.block_deadline();
        loop {
            if view.instance() != instance {
                return None;
            }
            let id = match resource {
                Resource::Init(seq) => return view.init(instance, seq).cloned(),
                Resource::Segment(msn) => return view.window.segment(msn).cloned(),
                Resource::Part(id) => id,
            };
            if let Some(part) = view.window.part(id) {
                return Some(part.clone());
            }
            if !is_next(&view, id) {
                return None;
            }
            let awaited = Awaited {
                msn: id.msn,
                part: Some(id.part),
            };
            if self.hold(key, awaited, deadline).await != Held::Released {
                return None;
            }
            view = self.ll_view(key)?;
        }
    }

    /// When a request held from now is answered at the latest (ns).
    fn block_deadline(&self) -> u64 {
        now_ns() + BLOCK_TARGETS * self.config().hls.target_duration_ms * 1_000_000
    }

    /// Holds the request until a snapshot of `key` contains `awaited`, at most until
    /// `deadline_ns`.
    async fn hold(&self, key: &StreamKey, awaited: Awaited, deadline_ns: u64) -> Held {
        let wait = Holding {
            held: &self.held,
            key,
            awaited,
            ticket: None,
        };
        let left = Duration::from_nanos(deadline_ns.saturating_sub(now_ns()));
        let timeout = async {
            glommio::timer::sleep(left).await;
            Held::TimedOut
        };
        let held = futures_lite::future::or(wait, timeout).await;
        match held {
            Held::Full => stats::add(&self.stats.hls_held_full, 1),
            Held::TimedOut => stats::add(&self.stats.hls_held_timeouts, 1),
            Held::Released => {}
        }
        held
    }
}

/// Whether `id` is the part the playlist hints (`EXT-X-PRELOAD-HINT`), or the first part of
/// the next segment when the hinted one is part 0 of it (either may come next).
fn is_next(view: &LlView, id: PartId) -> bool {
    let reached = view.window.reached();
    let next_in_segment = PartId {
        msn: reached.msn,
        part: reached.parts,
    };
    let next_segment = PartId {
        msn: reached.msn + 1,
        part: 0,
    };
    !view.ended()
        && (id == next_in_segment
            || (id == next_segment && reached.parts > 0)
            || view.window.preload_hint() == Some(id))
}

/// A request in a shard's [`HeldReloads`] while it waits: ready when a snapshot released
/// it; gives its place back when dropped before (a timeout, or the connection gone).
struct Holding<'a> {
    held: &'a RefCell<HeldReloads>,
    key: &'a StreamKey,
    awaited: Awaited,
    ticket: Option<super::held::Ticket>,
}

impl Future for Holding<'_> {
    type Output = Held;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Held> {
        let this = &mut *self;
        let mut held = this.held.borrow_mut();
        match &this.ticket {
            None => match held.hold(this.key, this.awaited, cx.waker().clone()) {
                Ok(ticket) => {
                    this.ticket = Some(ticket);
                    Poll::Pending
                }
                Err(Full(_)) => Poll::Ready(Held::Full),
            },
            Some(ticket) if held.is_held(ticket) => {
                held.rewake(ticket, cx.waker());
                Poll::Pending
            }
            Some(_) => {
                this.ticket = None;
                Poll::Ready(Held::Released)
            }
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.held.borrow_mut().cancel(&ticket);
        }
    }
}
