//! Publishing on the owner shard: who may publish (the takeover and republish-grace
//! policies, pure, with `now` passed in), and the shard operations that start and stop a
//! publisher, ingest its media and hand each unit to the owner's feed, the subscribed shards
//! and the HLS segmenter.

use super::mesh::MeshMsg;
use super::{LocalStream, Owned, Shard};
use crate::forward::TargetStatus;
use crate::hls::segmenter::Segmenter;
use crate::hls::{HlsView, LlView};
use crate::hub::budget::Share;
use crate::hub::feed::{FeedState, Offer};
use crate::hub::origin::{Origin, PublisherInfo};
use crate::hub::StreamKey;
use crate::limits::PublishRefused;
use crate::media::{now_ns, Body, Unit, UnitKind};
use crate::metrics::Stage;
use crate::stats;
use rml_rtmp::sessions::StreamMetadata;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Why a publish request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRefusal {
    /// `limits.max_streams` streams are live.
    TooManyStreams,
    /// The server is stopping.
    Stopping,
    /// Another publisher is live on the stream.
    AlreadyPublishing,
    /// The publisher's address is over one of its limits.
    Address(PublishRefused),
    /// The connection started `limits.max_publishes_per_connection` publishes.
    ConnectionPublishes,
    /// The media memory budget (`limits.max_media_memory_bytes`) is spent.
    MediaBudget,
}

impl From<PublishRefused> for PublishRefusal {
    fn from(refused: PublishRefused) -> Self {
        PublishRefusal::Address(refused)
    }
}

impl PublishRefusal {
    /// The RTMP status code and description that tell the publisher.
    pub fn status(self) -> (&'static str, &'static str) {
        match self {
            PublishRefusal::TooManyStreams => (
                "NetStream.Publish.Failed",
                "the server has its maximum number of streams",
            ),
            PublishRefusal::Stopping => ("NetStream.Publish.Failed", "the server is stopping"),
            PublishRefusal::AlreadyPublishing => (
                "NetStream.Publish.BadName",
                "stream is already being published",
            ),
            PublishRefusal::Address(PublishRefused::Streams) => (
                "NetStream.Publish.Failed",
                "this address holds its maximum number of streams",
            ),
            PublishRefusal::Address(PublishRefused::Rate) => (
                "NetStream.Publish.Failed",
                "too many publishes from this address; try again later",
            ),
            PublishRefusal::ConnectionPublishes => (
                "NetStream.Publish.Failed",
                "this connection started its maximum number of publishes",
            ),
            PublishRefusal::MediaBudget => (
                "NetStream.Publish.Failed",
                "the server's media memory budget is spent",
            ),
        }
    }
}

/// A live publisher that a new one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// The replaced publisher's connection, whose next message closes it.
    pub conn_id: u64,
    /// The replaced publisher's address (logged).
    pub peer: SocketAddr,
    /// How long it had been silent, ms (logged).
    pub silent_ms: u64,
}

/// Whether a new publisher may publish at `now` (ns, [`now_ns`] clock) on a stream whose
/// owner-side state is `origin` (`None`: no stream yet). A stream without a publisher (new,
/// or in its grace period) is free: `Ok(None)`. A live publisher is replaced only when
/// `takeover_after_ms` is set and it sent no media for that long: `Ok(Some(..))`; otherwise
/// the request is refused.
pub fn takeover(
    origin: Option<&Origin>,
    takeover_after_ms: u64,
    now: u64,
) -> Result<Option<Takeover>, PublishRefusal> {
    let Some((origin, current)) = origin.and_then(|o| o.publisher.as_ref().map(|p| (o, p))) else {
        return Ok(None);
    };
    let silent_ms = now.saturating_sub(origin.last_media_ns.max(current.since_ns)) / 1_000_000;
    if takeover_after_ms == 0 || silent_ms < takeover_after_ms {
        return Err(PublishRefusal::AlreadyPublishing);
    }
    Ok(Some(Takeover {
        conn_id: current.conn_id,
        peer: current.peer,
        silent_ms,
    }))
}

/// Whether the republish grace period that began when a publisher left at `generation` ends
/// the stream: nobody published since (a new publisher, even one gone again, bumps the
/// generation and starts a grace period of its own).
pub fn grace_ends_stream(origin: &Origin, generation: u64) -> bool {
    origin.publisher.is_none() && origin.generation == generation
}

/// Segments an HLS window keeps while the media budget is spent: players start three
/// target durations from the end of a playlist (RFC 8216, section 6.3.3).
pub(super) const MIN_HLS_WINDOW: usize = 3;

impl Shard {
    /// Starts publishing `key` (this shard must own it). A stream in its grace period is
    /// taken over by the new publisher; a live one is refused unless its publisher has been
    /// silent for `auth.takeover_after_ms` ([`takeover`]). The publisher's address must be
    /// within its limits ([`crate::limits::PublishLimits`]), and a new stream within
    /// `limits.max_streams`. The request is decided at `publisher.since_ns`, the time the
    /// caller read for it. Logs inside the caller's connection span.
    pub fn start_publishing(
        self: &Rc<Self>,
        key: &StreamKey,
        publisher: PublisherInfo,
    ) -> Result<(), PublishRefusal> {
        if self.stopping.get() {
            return Err(PublishRefusal::Stopping);
        }
        let now = publisher.since_ns;
        let mut streams = self.streams.borrow_mut();
        let existing = streams.get(key).filter(|s| s.origin.is_some());
        let replaced = takeover(
            existing.and_then(|s| s.origin.as_ref()),
            self.config().auth.takeover_after_ms,
            now,
        )?;
        if existing.is_none() {
            let live: u64 = self
                .observed
                .all_stats
                .iter()
                .map(|s| stats::get(&s.streams))
                .sum();
            if live >= self.config().limits.max_streams as u64 {
                return Err(PublishRefusal::TooManyStreams);
            }
            if self.observed.media_budget.spent() {
                return Err(PublishRefusal::MediaBudget);
            }
        }
        let slot = match publisher.pulled {
            true => None,
            false => self.observed.publish_limits.admit(
                publisher.peer.ip(),
                now,
                existing.and_then(|s| s.slot.as_ref()),
            )?,
        };
        let stream = streams.entry(key.clone()).or_default();
        if let Some(slot) = slot {
            stream.slot = Some(slot);
        }
        let new_stream = stream.origin.is_none();
        let origin = match &mut stream.origin {
            Some(origin) => origin,
            None => {
                stream.feed = Some(self.new_feed(FeedState::Live, true));
                stream.hls_share = Some(Share::new(self.observed.media_budget.clone()));
                self.broadcast(|| MeshMsg::StreamLive(key.clone()));
                stats::inc(&self.stats.streams);
                let config = self.config();
                let chunk_size = config.rtmp.chunk_size as usize;
                let hls = &config.hls;
                let segmenter = (hls.enabled && !hls.on_demand).then(|| self.segmenter(key));
                let origin =
                    Origin::new(self.count, chunk_size, segmenter).with_meter(self.units.clone());
                stream.origin.insert(origin)
            }
        };
        if let Some(old) = replaced {
            info!(action = "publish-takeover", old = %old.peer, silent_ms = old.silent_ms, "publisher taken over");
            stats::inc(&self.stats.publishers_taken_over);
            stats::dec(&self.stats.publishers);
            origin.stop_publishing(old.conn_id);
        }
        info!(action = "publish-start", "publish start");
        let resumes = origin.resumes();
        origin.start_publishing(publisher);
        // A republish may have closed a segment (the discontinuity): publish the playlist.
        let view = origin
            .hls
            .as_ref()
            .filter(|h| !h.segments().is_empty())
            .map(|hls| HlsView::of(hls, hls.instance(), false));
        let ll_view = match origin.ll.as_mut() {
            Some(ll) if resumes => {
                if let Err(err) = ll.discontinuity(super::hls_store::wall_ms()) {
                    stats::inc(&self.stats.hls_errors);
                    debug!(shard = self.id, stream = %key, "ll-hls: {err}");
                }
                Some(LlView::of(ll))
            }
            _ => None,
        };
        drop(streams);
        if let Some(view) = view {
            self.publish_hls(key, view);
        }
        if let Some(view) = ll_view {
            self.publish_ll(key, view);
        }
        if new_stream {
            self.start_forwards(key, &self.config().forward);
        }
        stats::inc(&self.stats.publishers);
        Ok(())
    }

    /// A segmenter for `key`, its HLS starting (see [`Shard::start_hls`]).
    pub(super) fn segmenter(&self, key: &StreamKey) -> Segmenter {
        let config = self.config();
        let hls = &config.hls;
        let (name, instance) = self.hls_incarnation(key);
        Segmenter::new(name, instance, hls.target_duration_ms, hls.window_segments)
    }

    /// The name (the key's last component) and a new incarnation number of a segmenter of
    /// `key`: unique per segmenter in this process (time of creation, then a counter), so
    /// that no cache serves an earlier incarnation's segment under a name of this one.
    pub(super) fn hls_incarnation<'k>(&self, key: &'k StreamKey) -> (&'k str, u64) {
        let name = key.rsplit('/').next().unwrap_or(key);
        let instance = super::hls_store::wall_ms() * 1000 + self.next_conn.get() % 1000;
        (name, instance)
    }

    /// An audio or video message from publisher `conn_id` of `key`. False when `conn_id` is
    /// no longer the stream's publisher (it was taken over, or the stream ended): the
    /// connection should close.
    pub fn ingest_media(
        &self,
        key: &StreamKey,
        conn_id: u64,
        kind: UnitKind,
        ts: u32,
        body: impl Into<Body>,
        at: u64,
    ) -> bool {
        self.ingest(key, conn_id, |origin| origin.media(kind, ts, body, at))
    }

    /// Metadata (onMetaData) from publisher `conn_id` of `key`; false as for
    /// [`Shard::ingest_media`].
    pub fn ingest_metadata(
        &self,
        key: &StreamKey,
        conn_id: u64,
        metadata: &StreamMetadata,
        at: u64,
    ) -> bool {
        self.ingest(key, conn_id, |origin| Some(origin.metadata(metadata, at)))
    }

    /// Makes a unit with the origin of `key` if `conn_id` still publishes it, and
    /// distributes it; false when it does not.
    fn ingest(
        &self,
        key: &StreamKey,
        conn_id: u64,
        make: impl FnOnce(&mut Origin) -> Option<Unit>,
    ) -> bool {
        let unit = {
            let mut streams = self.streams.borrow_mut();
            let Some(origin) = streams
                .get_mut(key)
                .and_then(|s| s.origin.as_mut())
                .filter(|o| o.is_publisher(conn_id))
            else {
                return false;
            };
            make(origin)
        };
        if let Some(unit) = unit {
            self.distribute(key, unit);
        }
        true
    }

    /// Puts a unit into the owner's feed, forwards it once to every subscribed shard, and
    /// feeds the HLS segmenter.
    fn distribute(&self, key: &StreamKey, unit: Unit) {
        let mut streams = self.streams.borrow_mut();
        let Some(Owned {
            feed,
            origin,
            hls_share,
        }) = streams.get_mut(key).and_then(LocalStream::owned)
        else {
            return;
        };
        let spent = self.observed.media_budget.spent();
        let hls_view = origin.hls.as_mut().and_then(|hls| {
            let was_supported = hls.unsupported().is_none();
            let closed = match hls.push(&unit, super::hls_store::wall_ms()) {
                Ok(closed) => closed,
                Err(err) => {
                    stats::inc(&self.stats.hls_errors);
                    debug!(shard = self.id, stream = %key, "hls: {err}");
                    false
                }
            };
            // A spent media budget keeps only the newest segments a player needs to start.
            let trimmed = spent && hls.trim_to(MIN_HLS_WINDOW);
            let refused = match hls.unsupported() {
                Some(track) if was_supported => {
                    warn!(shard = self.id, stream = %key, track, "hls: this track has no MPEG-TS mapping here; the stream's HLS playlist answers 501 (play it over HTTP-FLV or RTMP)");
                    true
                }
                _ => false,
            };
            (closed || trimmed || refused)
                .then(|| (HlsView::of(hls, hls.instance(), false), closed))
        });
        let ll_view = self.ll_push(key, origin, &unit, spent);
        // Checked at keyframes only. Low-Latency HLS is always made on demand
        // (`hls.on_demand` is about MPEG-TS).
        let (retired, ll_retired) = match unit.key {
            true => (
                self.config()
                    .hls
                    .on_demand
                    .then(|| self.retire_idle_hls(key, origin))
                    .flatten(),
                self.retire_idle_ll(key, origin),
            ),
            false => (None, None),
        };
        if let Some(share) = hls_share.as_mut() {
            share.set(origin.hls_bytes_held());
        }
        if let Some(view) = ll_retired.or(ll_view) {
            self.publish_ll(key, view);
        }
        if let Some(view) = retired {
            self.publish_hls(key, view);
        } else if let Some((view, closed)) = hls_view {
            self.publish_hls(key, view);
            if closed {
                stats::inc(&self.stats.hls_segments);
                // Keyframe that closed the segment -> playlist listing it handed to every
                // shard.
                let latency = now_ns().saturating_sub(unit.ingest_ns);
                stats::add(&self.stats.hls_publish_ns_total, latency);
                self.record(Stage::HlsPublish, latency);
            }
        }
        let dropped = origin
            .subscribers
            .fan_out(&unit, |to| self.mesh.try_send_unit(to, key, &unit));
        if dropped > 0 {
            stats::add(&self.stats.mesh_units_dropped, dropped);
        }
        let feed = feed.clone();
        drop(streams);
        let ingest_ns = unit.ingest_ns;
        let now = now_ns();
        let kind = unit.kind;
        if feed.borrow_mut().offer(unit, now) == Offer::Accepted {
            self.record(Stage::IngestToRing, now.saturating_sub(ingest_ns));
            self.notify(&feed, kind);
        }
    }

    /// Starts pushing a new stream to the `[[forward]]` targets of its application, each
    /// by a task of its own that lasts as long as the stream (see [`crate::forward`]).
    fn start_forwards(self: &Rc<Self>, key: &StreamKey, rules: &[crate::config::ForwardRule]) {
        for target in crate::forward::Target::of(rules, key) {
            match target {
                Ok(target) => {
                    let status = Rc::new(RefCell::new(TargetStatus::new(&target)));
                    if let Some(origin) = self
                        .streams
                        .borrow_mut()
                        .get_mut(key)
                        .and_then(|s| s.origin.as_mut())
                    {
                        origin.forwards.push(status.clone());
                    }
                    let run = crate::forward::run(self.clone(), key.clone(), target, status);
                    glommio::spawn_local(run).detach();
                }
                // Checked with the configuration: only a stream name can break it.
                Err(err) => warn!(shard = self.id, stream = %key, "forward: {err}"),
            }
        }
    }

    /// The publisher `conn_id` of `key` left: viewers wait `republish_grace_ms` for the
    /// stream to come back, then the stream ends ([`grace_ends_stream`]). Logs inside the
    /// caller's connection span.
    pub fn stop_publishing(self: &Rc<Self>, key: &StreamKey, conn_id: u64) {
        let (generation, ll_view) = {
            let mut streams = self.streams.borrow_mut();
            let Some(origin) = streams.get_mut(key).and_then(|s| s.origin.as_mut()) else {
                return;
            };
            if !origin.stop_publishing(conn_id) {
                return;
            }
            // LL-HLS players get the publisher's last frames now, not at the grace's end.
            let ll_view =
                origin
                    .ll
                    .as_mut()
                    .and_then(|ll| match ll.flush(super::hls_store::wall_ms()) {
                        Ok(changed) => changed.any().then(|| LlView::of(ll)),
                        Err(err) => {
                            stats::inc(&self.stats.hls_errors);
                            debug!(shard = self.id, stream = %key, "ll-hls: {err}");
                            Some(LlView::of(ll))
                        }
                    });
            (origin.generation, ll_view)
        };
        if let Some(view) = ll_view {
            self.publish_ll(key, view);
        }
        stats::dec(&self.stats.publishers);
        info!(action = "publish-stop", "publish stop; grace period starts");
        let shard = self.clone();
        let key = key.clone();
        let grace = Duration::from_millis(self.config().stream.republish_grace_ms);
        glommio::spawn_local(async move {
            glommio::timer::sleep(grace).await;
            shard.end_if_unpublished(&key, generation);
        })
        .detach();
    }

    /// The end of the grace period that began at `generation`: ends the stream unless it was
    /// published again meanwhile.
    fn end_if_unpublished(&self, key: &StreamKey, generation: u64) {
        let ends = self
            .streams
            .borrow()
            .get(key)
            .and_then(|s| s.origin.as_ref())
            .is_some_and(|o| grace_ends_stream(o, generation));
        if ends {
            self.end_stream(key);
        }
    }

    /// Ends a stream this shard owns: HLS gets its last segment and EXT-X-ENDLIST, local
    /// viewers reach the end, other shards are told.
    pub(super) fn end_stream(&self, key: &StreamKey) {
        let Some(mut stream) = self.streams.borrow_mut().remove(key) else {
            return;
        };
        info!(action = "stream-end", shard = self.id, stream = %key, "stream ended");
        stats::dec(&self.stats.streams);
        if let Some(origin) = stream.origin.as_mut() {
            if origin.publisher.is_some() {
                stats::dec(&self.stats.publishers);
            }
            if let Some(hls) = origin.hls.as_mut() {
                hls.end();
                self.publish_hls(key, HlsView::of(hls, hls.instance(), true));
            }
            if let Some(ll) = origin.ll.as_mut() {
                if let Err(err) = ll.end(super::hls_store::wall_ms()) {
                    stats::inc(&self.stats.hls_errors);
                    debug!(shard = self.id, stream = %key, "ll-hls: {err}");
                }
                self.publish_ll(key, LlView::of(ll));
            }
        }
        if let Some(feed) = stream.feed {
            feed.borrow_mut().end();
        }
        self.broadcast(|| MeshMsg::StreamEnded(key.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn publisher(conn_id: u64, since_ns: u64) -> PublisherInfo {
        PublisherInfo {
            conn_id,
            peer: SocketAddr::from(([192, 0, 2, 1], 4000 + conn_id as u16)),
            query: None,
            since_ns,
            pulled: false,
        }
    }

    /// An origin published by connection 1 since `since`, whose last media came at `media`.
    fn published(since: u64, media: u64) -> Origin {
        let mut origin = Origin::new(1, 4096, None);
        origin.start_publishing(publisher(1, since));
        origin.media(UnitKind::Video, 0, &[0x17, 1, 0, 0, 0, 0xaa], media);
        origin
    }

    #[test]
    fn a_free_stream_is_taken_without_takeover() {
        assert_eq!(takeover(None, 800, 0), Ok(None));
        let mut origin = published(0, 0);
        origin.stop_publishing(1);
        assert_eq!(takeover(Some(&origin), 0, 10_000 * MS), Ok(None), "grace");
    }

    #[test]
    fn a_fresh_publisher_is_not_taken_over() {
        let origin = published(1_000 * MS, 5_000 * MS);
        let refused = Err(PublishRefusal::AlreadyPublishing);
        assert_eq!(takeover(Some(&origin), 800, 5_000 * MS), refused);
        assert_eq!(takeover(Some(&origin), 800, 5_799 * MS), refused);
        // Disabled: never, however long the silence.
        assert_eq!(takeover(Some(&origin), 0, 1_000_000 * MS), refused);
    }

    #[test]
    fn a_silent_publisher_is_taken_over_after_the_delay() {
        let origin = published(1_000 * MS, 5_000 * MS);
        let taken = takeover(Some(&origin), 800, 5_800 * MS);
        assert_eq!(
            taken,
            Ok(Some(Takeover {
                conn_id: 1,
                peer: publisher(1, 0).peer,
                silent_ms: 800,
            }))
        );
        // A publisher that never sent media counts from its start.
        let mut quiet = Origin::new(1, 4096, None);
        quiet.start_publishing(publisher(2, 3_000 * MS));
        let refused = Err(PublishRefusal::AlreadyPublishing);
        assert_eq!(takeover(Some(&quiet), 800, 3_500 * MS), refused);
        assert!(matches!(takeover(Some(&quiet), 800, 3_800 * MS), Ok(Some(t)) if t.conn_id == 2));
    }

    #[test]
    fn grace_ends_only_an_unpublished_stream_of_its_generation() {
        let mut origin = published(0, 0);
        assert!(origin.stop_publishing(1));
        let left = origin.generation;
        assert!(grace_ends_stream(&origin, left), "nobody came back");
        // A new publisher came within the grace: the stream goes on.
        origin.start_publishing(publisher(2, 10 * MS));
        assert!(!grace_ends_stream(&origin, left));
        // It left again: the first grace is stale; its own grace decides.
        assert!(origin.stop_publishing(2));
        assert!(!grace_ends_stream(&origin, left));
        assert!(grace_ends_stream(&origin, origin.generation));
    }
}
