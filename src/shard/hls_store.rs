//! The HLS snapshots a shard serves: every shard keeps the newest snapshot of every stream's
//! window (the owner makes them, the mesh carries them), and forgets a final one after a
//! linger.

use super::mesh::MeshMsg;
use super::Shard;
use crate::hls::HlsView;
use crate::hub::StreamKey;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// HLS snapshots of live (and recently ended) streams, by stream (pure: the shard runs the
/// linger timers).
#[derive(Debug, Default)]
pub struct HlsStore {
    /// The newest snapshot of each stream.
    views: HashMap<StreamKey, Rc<HlsView>>,
}

impl HlsStore {
    /// The snapshot of a stream, if any.
    pub fn get(&self, key: &StreamKey) -> Option<Rc<HlsView>> {
        self.views.get(key).cloned()
    }

    /// Keeps `view` unless the one held supersedes it (an older snapshot that waited).
    /// Returns the incarnation to [`HlsStore::expire`] after the linger when `view` is a
    /// final one (the stream ended).
    pub fn keep(&mut self, key: StreamKey, view: HlsView) -> Option<u64> {
        if self
            .views
            .get(&key)
            .is_some_and(|current| !view.supersedes(current))
        {
            return None;
        }
        let ended = view.ended.then_some(view.instance);
        self.views.insert(key, Rc::new(view));
        ended
    }

    /// Forgets the final snapshot of incarnation `instance` of `key`, unless the stream came
    /// back meanwhile.
    pub fn expire(&mut self, key: &StreamKey, instance: u64) {
        if self
            .views
            .get(key)
            .is_some_and(|v| v.ended && v.instance == instance)
        {
            self.views.remove(key);
        }
    }
}

impl Shard {
    /// Hands a new HLS snapshot of `key` to every shard (this one included).
    pub(super) fn publish_hls(&self, key: &StreamKey, view: HlsView) {
        self.broadcast(|| MeshMsg::Hls(key.clone(), view.clone()));
        self.store_hls(key.clone(), view);
    }

    /// Keeps a snapshot for serving. A final one (stream ended) is dropped after a linger of
    /// twice the window's duration, unless the stream came back meanwhile.
    pub(super) fn store_hls(&self, key: StreamKey, view: HlsView) {
        let Some(instance) = self.hls.borrow_mut().keep(key.clone(), view) else {
            return;
        };
        let hls = &self.config.hls;
        let linger = Duration::from_millis(2 * hls.target_duration_ms * hls.window_segments as u64);
        let store = self.hls.clone();
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
}

/// The shared store of one shard.
pub(super) type SharedStore = Rc<RefCell<HlsStore>>;

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
        HlsView {
            playlist: bytes::Bytes::new(),
            instance,
            segments: Vec::new(),
            ended,
            version,
            unsupported: None,
        }
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
