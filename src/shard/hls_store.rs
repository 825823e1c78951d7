//! The HLS snapshots a shard serves: every shard keeps the newest snapshot of every stream's
//! window (the owner makes them, the mesh carries them), and forgets a final one after a
//! linger. HLS on demand: a playlist request for a live stream without snapshots asks the
//! owner to start its segmenter, and the owner retires a segmenter nobody requested for
//! `hls.idle_timeout_ms`.

use super::mesh::MeshMsg;
use super::{LocalStream, Shard};
use crate::hls::{HlsView, Rendition, Snapshot, View};
use crate::hub::feed::Feed;
use crate::hub::origin::Origin;
use crate::hub::StreamKey;
use crate::media::{now_ns, Unit};
use crate::stats;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tracing::info;

/// Snapshots of one HLS rendition (MPEG-TS: [`HlsView`]; Low-Latency HLS:
/// [`crate::hls::LlView`]) of live (and recently ended) streams, by stream (pure: the shard
/// runs the linger timers).
#[derive(Debug)]
pub struct Snapshots<V> {
    /// The newest snapshot of each stream.
    views: HashMap<StreamKey, Rc<V>>,
}

/// The MPEG-TS HLS snapshots of a shard.
pub type HlsStore = Snapshots<HlsView>;

impl<V> Default for Snapshots<V> {
    fn default() -> Self {
        Snapshots {
            views: HashMap::new(),
        }
    }
}

impl<V: Snapshot> Snapshots<V> {
    /// The snapshot of a stream, if any.
    pub fn get(&self, key: &StreamKey) -> Option<Rc<V>> {
        self.views.get(key).cloned()
    }

    /// Keeps `view` unless the one held supersedes it (an older snapshot that waited).
    /// Returns the incarnation to [`HlsStore::expire`] after the linger when `view` is a
    /// final one (the stream ended).
    pub fn keep(&mut self, key: StreamKey, view: V) -> Option<u64> {
        if view.retired() {
            if self
                .views
                .get(&key)
                .is_some_and(|v| v.instance() == view.instance())
            {
                self.views.remove(&key);
            }
            return None;
        }
        if self
            .views
            .get(&key)
            .is_some_and(|current| !view.supersedes(current))
        {
            return None;
        }
        let ended = view.ended().then_some(view.instance());
        self.views.insert(key, Rc::new(view));
        ended
    }

    /// Forgets the final snapshot of incarnation `instance` of `key`, unless the stream came
    /// back meanwhile.
    pub fn expire(&mut self, key: &StreamKey, instance: u64) {
        if self
            .views
            .get(key)
            .is_some_and(|v| v.ended() && v.instance() == instance)
        {
            self.views.remove(key);
        }
    }
}

impl Shard {
    /// Hands a new HLS snapshot of `key` to every shard (this one included).
    pub(super) fn publish_hls(&self, key: &StreamKey, view: HlsView) {
        self.broadcast(|| MeshMsg::Hls(key.clone(), View::Ts(view.clone())));
        self.store_hls(key.clone(), view);
    }

    /// Keeps a snapshot for serving.
    pub(super) fn store_hls(&self, key: StreamKey, view: HlsView) {
        self.keep_snapshot(&self.hls, key, view);
    }

    /// Keeps a snapshot in `store`. A final one (stream ended) is dropped after a linger of
    /// twice the window's duration, unless the stream came back meanwhile.
    pub(super) fn keep_snapshot<V: Snapshot + 'static>(
        &self,
        store: &SharedStore<V>,
        key: StreamKey,
        view: V,
    ) {
        let Some(instance) = store.borrow_mut().keep(key.clone(), view) else {
            return;
        };
        let config = self.config();
        let hls = &config.hls;
        let linger = Duration::from_millis(2 * hls.target_duration_ms * hls.window_segments as u64);
        let store = store.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(linger).await;
            store.borrow_mut().expire(&key, instance);
        })
        .detach();
    }

    /// The HLS snapshot of a stream, if any.
    pub fn hls_view(&self, key: &StreamKey) -> Option<Rc<HlsView>> {
        self.hls.borrow().get(key)
    }

    /// The snapshot that answers a playlist request for `key`, the request noted as demand:
    /// the stream's current one; for a live stream whose HLS is not being made, the first
    /// one after asking its owner to start it ([`Shard::start_hls`]), waited for at most
    /// [`HLS_START_WAITS`] target durations. `None`: no such stream, or no segment in time.
    pub async fn hls_playlist(&self, key: &StreamKey) -> Option<Rc<HlsView>> {
        self.first_view(&self.hls, key, Rendition::Ts).await
    }

    /// The snapshot of `rendition` in `store` that answers a playlist request, as
    /// [`Shard::hls_playlist`] describes.
    pub(super) async fn first_view<V: Snapshot>(
        &self,
        store: &SharedStore<V>,
        key: &StreamKey,
        rendition: Rendition,
    ) -> Option<Rc<V>> {
        let config = self.config();
        let hls = &config.hls;
        let enabled = hls.enabled && (rendition == Rendition::Ts || hls.low_latency);
        let deadline = now_ns() + HLS_START_WAITS * hls.target_duration_ms * 1_000_000;
        loop {
            let now = now_ns();
            if let Some(view) = store.borrow().get(key).filter(|v| v.servable()) {
                view.demand().requested(now);
                return Some(view);
            }
            if !enabled || !self.is_live(key) || now >= deadline {
                return None;
            }
            self.want(key, rendition, now);
            glommio::timer::sleep(HLS_START_POLL).await;
        }
    }

    /// Asks the owner of `key` to start its HLS rendition: at once on the owner, else over
    /// the mesh at most once per [`HLS_WANT_INTERVAL`] per stream and rendition (the owner
    /// ignores the request while that segmenter runs).
    fn want(&self, key: &StreamKey, rendition: Rendition, now: u64) {
        let owner = self.owner(key);
        if owner == self.id {
            match rendition {
                Rendition::Ts => self.start_hls(key),
                Rendition::Ll => self.start_ll(key),
            }
            return;
        }
        let mut streams = self.streams.borrow_mut();
        let Some(stream) = streams.get_mut(key) else {
            return;
        };
        let interval = HLS_WANT_INTERVAL.as_nanos() as u64;
        let wanted = &mut stream.hls_wanted_ns[rendition.index()];
        if *wanted != 0 && now.saturating_sub(*wanted) < interval {
            return;
        }
        *wanted = now;
        drop(streams);
        self.mesh
            .send(owner, MeshMsg::HlsWanted(key.clone(), rendition));
    }

    /// Starts the HLS segmenter of a stream this shard owns, if HLS is enabled and it is
    /// not running: it is fed the stream's headers and the ring from its oldest keyframe
    /// (the owner's ring keeps one target duration before the newest keyframe for this), so
    /// its first segment closes at once, and that snapshot goes to every shard.
    pub(super) fn start_hls(&self, key: &StreamKey) {
        if !self.config().hls.enabled {
            return;
        }
        let mut streams = self.streams.borrow_mut();
        let Some(stream) = streams.get_mut(key).and_then(LocalStream::owned) else {
            return;
        };
        if stream.origin.hls.is_some() {
            return;
        }
        let mut segmenter = self.segmenter(key);
        segmenter.demand().requested(now_ns());
        let errors = replay(&stream.feed.borrow(), |unit, at| {
            segmenter.push(unit, at).is_err()
        });
        stats::add(&self.stats.hls_errors, errors);
        let view = (!segmenter.segments().is_empty() || segmenter.unsupported().is_some())
            .then(|| HlsView::of(&segmenter, segmenter.instance(), false));
        stream.origin.hls = Some(segmenter);
        if let Some(share) = stream.hls_share.as_mut() {
            share.set(stream.origin.hls_bytes_held());
        }
        drop(streams);
        info!(action = "hls-start", shard = self.id, stream = %key, "hls: started on request");
        if let Some(view) = view {
            self.publish_hls(key, view);
        }
    }

    /// Stops the HLS segmenter of `origin` (a stream this shard owns) when no request came
    /// for `hls.idle_timeout_ms`: its segments are freed (the caller sets the stream's share
    /// of the media budget). Returns the snapshot on which every shard forgets them, when
    /// it stopped.
    pub(super) fn retire_idle_hls(&self, key: &StreamKey, origin: &mut Origin) -> Option<HlsView> {
        let idle_ns = self.config().hls.idle_timeout_ms * 1_000_000;
        let segmenter = origin
            .hls
            .take_if(|h| h.demand().idle_for(now_ns()) > idle_ns)?;
        info!(action = "hls-stop", shard = self.id, stream = %key, "hls: stopped, not requested for hls.idle_timeout_ms");
        Some(HlsView::retired(&segmenter, segmenter.instance()))
    }
}

/// Feeds `push` a stream's headers and its ring from the oldest keyframe, each unit with the
/// wall-clock time it arrived (ms since the Unix epoch): how a segmenter started by a
/// request catches up at once. `push` answers whether it refused the unit; returns how many
/// it refused.
pub(super) fn replay(feed: &Feed, mut push: impl FnMut(&Unit, u64) -> bool) -> u64 {
    let (now, wall) = (now_ns(), wall_ms());
    let ring = &feed.ring;
    let units = feed.headers.units().map(|u| (u, wall)).chain(
        ring.iter_from(ring.oldest_key().unwrap_or(ring.end()))
            .map(|e| {
                let age_ms = now.saturating_sub(e.arrived_ns) / 1_000_000;
                (&e.unit, wall.saturating_sub(age_ms))
            }),
    );
    units.map(|(unit, at)| u64::from(push(unit, at))).sum()
}

/// A playlist request for a stream whose HLS is not being made waits for its first segment
/// at most this many target durations.
pub const HLS_START_WAITS: u64 = 3;

/// How often a waiting playlist request looks for the first snapshot.
const HLS_START_POLL: Duration = Duration::from_millis(10);

/// A shard asks a stream's owner to start its HLS at most this often.
const HLS_WANT_INTERVAL: Duration = Duration::from_millis(500);

/// A shard's store of one rendition's snapshots.
pub(super) type SharedStore<V> = Rc<RefCell<Snapshots<V>>>;

/// Wall-clock milliseconds since the Unix epoch (for EXT-X-PROGRAM-DATE-TIME).
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(instance: u64, version: u64, ended: bool) -> HlsView {
        HlsView::empty(instance, version, ended)
    }

    #[test]
    fn keeps_the_newest_and_expires_only_its_final_snapshot() {
        let key = StreamKey::from("live/a");
        let mut store = HlsStore::default();
        assert_eq!(store.keep(key.clone(), view(1, 2, false)), None);
        assert_eq!(store.keep(key.clone(), view(1, 1, false)), None);
        assert_eq!(store.get(&key).map(|v| v.version), Some(2), "older ignored");
        assert_eq!(store.keep(key.clone(), view(1, 3, true)), Some(1));
        // The stream came back (a new incarnation) before the linger ran out.
        assert_eq!(store.keep(key.clone(), view(2, 0, false)), None);
        store.expire(&key, 1);
        assert_eq!(store.get(&key).map(|v| v.instance), Some(2));
        assert_eq!(store.keep(key.clone(), view(2, 1, true)), Some(2));
        store.expire(&key, 2);
        assert!(store.get(&key).is_none());
    }
}
