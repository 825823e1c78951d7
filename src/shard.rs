//! One shard: its registry of streams, its side of the cross-shard mesh, and the operations
//! the protocol drivers call.
//!
//! Ownership: every stream belongs to the shard [`owner_of`] names. The owner holds the
//! [`Origin`] and the authoritative [`Feed`]; every other shard with viewers of the stream
//! holds a replica feed that the owner fills over the mesh, one message per unit. Inside a
//! shard everything is `Rc`/`RefCell`; no borrow is held across an `.await`.

use crate::auth::{Action, Auth, Denied};
use crate::config::Config;
use crate::hls::segmenter::Segmenter;
use crate::hls::HlsView;
use crate::hub::budget::{MediaBudget, Share};
use crate::hub::cursor::Policy;
use crate::hub::feed::{Feed, FeedState, Offer};
use crate::hub::origin::{Origin, PublisherInfo};
use crate::hub::ring::Ring;
use crate::hub::{owner_of, StreamKey};
use crate::limits::{PublishLimits, PublishRefused, StreamSlot};
use crate::media::{now_ns, Format, Unit, UnitKind};
use crate::metrics::api::{OriginReport, ShardReport, StreamReport};
use crate::metrics::{Histograms, Published, Stage};
use crate::rtmp::Handoff;
use crate::stats::{self, ShardStats};
use glommio::channels::channel_mesh::Senders;
use rml_rtmp::sessions::StreamMetadata;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

/// Messages between shards. Each pair of shards has a bounded FIFO queue
/// (`server.mesh_queue_units`). Media units are offered with `try_send` (overflow: dropped,
/// counted, and the receiving shard resumes at the next keyframe); every other message is
/// delivered reliably (when the queue is full, a task waits for room, the sender does not).
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
    /// A new HLS snapshot of a stream (after each segment, and at its end).
    Hls(StreamKey, HlsView),
    /// A publisher for a stream this shard owns.
    Handoff(Box<Handoff>),
}

/// What every shard can read of every other: counters and exported histograms.
#[derive(Clone)]
pub struct Observed {
    /// Counters, by shard.
    pub all_stats: Arc<[Arc<ShardStats>]>,
    /// Histogram slots, by shard.
    pub histograms: Arc<Published>,
    /// API report slots, by shard.
    pub reports: Arc<crate::metrics::api::Reports>,
    /// Connection and viewer limits, shared by every shard.
    pub admission: Arc<crate::limits::Admission>,
    /// Per-address publish limits, shared by every shard.
    pub publish_limits: Arc<PublishLimits>,
    /// The media memory every ring and HLS window counts against.
    pub media_budget: Arc<MediaBudget>,
}

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

/// A stream as known to one shard.
struct LocalStream {
    /// The feed viewers here read from: always present on the owner, present on other shards
    /// while they have viewers.
    feed: Option<Rc<RefCell<Feed>>>,
    /// Owner-side state; `Some` only on the owner shard.
    origin: Option<Origin>,
    /// The place the stream takes under its publisher's address limits (owner shard only);
    /// kept through the republish grace period, given back when the stream ends.
    slot: Option<StreamSlot>,
    /// The HLS window's share of the media budget (owner shard only).
    hls_share: Option<Share>,
}

/// One shard's state, shared by its tasks.
pub struct Shard {
    /// Index of this shard.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// The configuration.
    pub config: Arc<Config>,
    /// This shard's counters.
    pub stats: Arc<ShardStats>,
    /// Who may publish and play.
    pub auth: Auth,
    /// Every shard's counters and exported histograms (for the metrics endpoint).
    observed: Observed,
    /// This shard's latency histograms (exported every [`crate::metrics::PUBLISH_INTERVAL`]).
    hist: RefCell<Histograms>,
    /// Senders to every other shard.
    mesh: Rc<Senders<MeshMsg>>,
    /// Streams known to this shard.
    streams: RefCell<HashMap<StreamKey, LocalStream>>,
    /// Next connection id (shard id in the low bits keeps ids unique per process).
    next_conn: Cell<u64>,
    /// HLS snapshots of live (and recently ended) streams, served by this shard.
    hls: Rc<RefCell<HashMap<StreamKey, Rc<HlsView>>>>,
    /// The server is stopping: streams have ended and idle connections close.
    stopping: Cell<bool>,
    /// Tasks waiting for the stop.
    stop_waiters: RefCell<Vec<std::task::Waker>>,
}

impl Shard {
    /// A shard's state around its mesh senders.
    pub fn new(id: usize, config: Arc<Config>, observed: Observed, mesh: Senders<MeshMsg>) -> Self {
        Shard {
            id,
            count: observed.all_stats.len(),
            auth: Auth::from_config(&config.auth),
            config,
            stats: observed.all_stats[id].clone(),
            observed,
            hist: RefCell::new(Histograms::default()),
            mesh: Rc::new(mesh),
            streams: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            hls: Rc::new(RefCell::new(HashMap::new())),
            stopping: Cell::new(false),
            stop_waiters: RefCell::new(Vec::new()),
        }
    }

    /// Records a latency sample (ns) in this shard's histograms.
    #[inline]
    pub fn record(&self, stage: Stage, ns: u64) {
        self.hist.borrow_mut().record(stage, ns);
    }

    /// Copies this shard's histograms to its export slot (see [`crate::metrics`]).
    pub fn publish_histograms(&self) {
        self.observed
            .histograms
            .publish(self.id, &self.hist.borrow());
    }

    /// This shard's report for the API: every stream it knows, with bitrates over the last
    /// `interval_s` seconds.
    pub fn report(&self, interval_s: f64, busy: f64) -> ShardReport {
        let kbps = |bytes: u64| bytes as f64 * 8.0 / 1000.0 / interval_s.max(1e-3);
        let now = now_ns();
        let mut streams = self.streams.borrow_mut();
        let reports = streams
            .iter_mut()
            .map(|(key, stream)| {
                let (flv_viewers, rtmp_players, bitrate_out_kbps) = match &stream.feed {
                    Some(feed) => {
                        let f = feed.borrow();
                        let out = f.bytes_out.get();
                        let delta = out - f.reported_bytes_out.replace(out);
                        (f.viewers[0] as u64, f.viewers[1] as u64, kbps(delta))
                    }
                    None => (0, 0, 0.0),
                };
                let origin = stream.origin.as_mut().map(|o| {
                    let bytes_in = o.take_bytes_in();
                    let meta = o.metadata.as_ref();
                    OriginReport {
                        publisher: o.publisher.as_ref().map(|p| p.peer.to_string()),
                        publishing_seconds: o
                            .publisher
                            .as_ref()
                            .map(|p| now.saturating_sub(p.since_ns) as f64 / 1e9),
                        video_codec: o.video_codec.map(crate::metrics::api::video_codec_name),
                        audio_codec: o.audio_codec.map(crate::metrics::api::audio_codec_name),
                        width: meta.and_then(|m| m.video_width),
                        height: meta.and_then(|m| m.video_height),
                        frame_rate: meta.and_then(|m| m.video_frame_rate),
                        gop_ms: o.gop_ms,
                        bitrate_in_kbps: kbps(bytes_in),
                    }
                });
                StreamReport {
                    name: key.to_string(),
                    owner_shard: self.owner(key),
                    flv_viewers,
                    rtmp_players,
                    bitrate_out_kbps,
                    origin,
                }
            })
            .collect();
        ShardReport {
            shard: self.id,
            busy,
            streams: reports,
        }
    }

    /// Publishes this shard's report (see [`crate::metrics::api`]).
    pub fn publish_report(&self, interval_s: f64, busy: f64) {
        let report = self.report(interval_s, busy);
        self.observed.reports.publish(report);
    }

    /// The API's view of every stream, or of one.
    pub fn api_streams(&self) -> Vec<crate::metrics::api::StreamView> {
        self.observed.reports.streams()
    }

    /// Server-wide figures and per-shard load, for `/api/v1/stats`.
    pub fn api_stats(&self) -> serde_json::Value {
        let all = &self.observed.all_stats;
        let total = |f: fn(&ShardStats) -> &std::sync::atomic::AtomicU64| -> u64 {
            all.iter().map(|s| stats::get(f(s))).sum()
        };
        let per_shard: Vec<serde_json::Value> = self
            .observed
            .reports
            .all()
            .iter()
            .map(|r| {
                let s = &all[r.shard];
                serde_json::json!({
                    "shard": r.shard,
                    "busy": r.busy,
                    "streams": r.streams.len(),
                    "publishers": stats::get(&s.publishers),
                    "flv_viewers": stats::get(&s.flv_viewers),
                    "rtmp_players": stats::get(&s.rtmp_players),
                    "bytes_out": stats::get(&s.flv_bytes_out) + stats::get(&s.rtmp_bytes_out),
                })
            })
            .collect();
        serde_json::json!({
            "shards": all.len(),
            "streams": self.observed.reports.streams().len(),
            "publishers": total(|s| &s.publishers),
            "viewers": {
                "flv": total(|s| &s.flv_viewers),
                "rtmp": total(|s| &s.rtmp_players),
            },
            "bytes_in": total(|s| &s.bytes_in),
            "bytes_out": {
                "flv": total(|s| &s.flv_bytes_out),
                "rtmp": total(|s| &s.rtmp_bytes_out),
            },
            "hls_requests": total(|s| &s.hls_requests),
            "frames_skipped": total(|s| &s.frames_skipped),
            "viewers_disconnected_slow": total(|s| &s.viewers_disconnected_slow),
            "per_shard": per_shard,
        })
    }

    /// The Prometheus exposition of every shard's counters and the merged histograms.
    pub fn prometheus(&self) -> String {
        crate::metrics::prometheus::render(
            &self.observed.all_stats,
            &self.observed.media_budget,
            &self.observed.histograms,
        )
    }

    /// A process-unique connection id.
    pub fn conn_id(&self) -> u64 {
        let n = self.next_conn.get() + 1;
        self.next_conn.set(n);
        (n << 8) | self.id as u64
    }

    /// The owner shard of a stream.
    pub fn owner(&self, key: &str) -> usize {
        owner_of(key, self.count)
    }

    /// The slow-viewer policy from the configuration.
    pub fn policy(&self) -> Policy {
        Policy {
            skip_after_ns: self.config.viewer.skip_after_ms * 1_000_000,
            disconnect_after_ns: self.config.viewer.disconnect_after_ms * 1_000_000,
        }
    }

    fn new_feed(&self, state: FeedState) -> Rc<RefCell<Feed>> {
        let ring = Ring::new(
            self.config.stream.ring_max_bytes,
            self.config.stream.ring_max_duration_ms * 1_000_000,
        )
        .with_budget(self.observed.media_budget.clone());
        Rc::new(RefCell::new(Feed::new(state, ring)))
    }

    // ---- mesh ---------------------------------------------------------------------------

    /// Delivers a control message to shard `to`, never blocking the caller: if the queue is
    /// full, a task waits for room.
    fn send_reliable(&self, to: usize, msg: MeshMsg) {
        if let Err(err) = self.mesh.try_send_to(to, msg) {
            let glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg)) = err else {
                debug!(shard = self.id, to, "mesh peer gone: {err}");
                return;
            };
            let mesh = self.mesh.clone();
            glommio::spawn_local(async move {
                // An error means the peer shard is shutting down; nothing is left to do.
                let _ = mesh.send_to(to, msg).await;
            })
            .detach();
        }
    }

    fn broadcast(&self, make: impl Fn() -> MeshMsg) {
        for to in (0..self.count).filter(|&s| s != self.id) {
            self.send_reliable(to, make());
        }
    }

    /// Handles a message from another shard.
    pub fn on_mesh(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::StreamLive(key) => {
                self.streams.borrow_mut().entry(key).or_insert(LocalStream {
                    feed: None,
                    origin: None,
                    slot: None,
                    hls_share: None,
                });
            }
            MeshMsg::StreamEnded(key) => {
                if let Some(stream) = self.streams.borrow_mut().remove(&key) {
                    if let Some(feed) = stream.feed {
                        feed.borrow_mut().end();
                    }
                }
            }
            MeshMsg::Subscribe(key, from) => self.on_subscribe(key, from),
            MeshMsg::Unsubscribe(key, from) => {
                let mut streams = self.streams.borrow_mut();
                if let Some(origin) = streams.get_mut(&key).and_then(|s| s.origin.as_mut()) {
                    origin.subscribed[from] = false;
                }
            }
            MeshMsg::Sync(key, headers, gop) => {
                if let Some(feed) = self.feed(&key) {
                    let mut feed = feed.borrow_mut();
                    feed.load_snapshot(headers, gop, now_ns());
                    feed.wake_all();
                }
            }
            MeshMsg::Unit(key, unit) => {
                if let Some(feed) = self.feed(&key) {
                    let ingest_ns = unit.ingest_ns;
                    let now = now_ns();
                    let kind = unit.kind;
                    if feed.borrow_mut().offer(unit, now) == Offer::Accepted {
                        self.record(Stage::MeshHop, now.saturating_sub(ingest_ns));
                        self.notify(&feed, kind);
                    }
                }
            }
            MeshMsg::Hls(key, view) => self.store_hls(key, view),
            MeshMsg::Handoff(handoff) => {
                stats::inc(&self.stats.handoffs_received);
                let shard = self.clone();
                glommio::spawn_local(crate::rtmp::resume(shard, handoff)).detach();
            }
        }
    }

    fn on_subscribe(&self, key: StreamKey, from: usize) {
        let reply = {
            let mut streams = self.streams.borrow_mut();
            match streams.get_mut(&key) {
                Some(LocalStream {
                    feed: Some(feed),
                    origin: Some(origin),
                    ..
                }) => {
                    origin.subscribed[from] = true;
                    origin.lagging[from] = false;
                    let (headers, gop) = feed.borrow().snapshot();
                    MeshMsg::Sync(key, headers, gop)
                }
                _ => MeshMsg::StreamEnded(key),
            }
        };
        self.send_reliable(from, reply);
    }

    /// The connection and viewer limits shared by every shard.
    pub fn admission(&self) -> &Arc<crate::limits::Admission> {
        &self.observed.admission
    }

    /// Checks `action` on `app/stream` with the credentials in `query`; a refusal is logged
    /// (without the credentials) and counted.
    pub fn authorize(
        &self,
        action: Action,
        app: &str,
        stream: &str,
        query: Option<&str>,
        protocol: &'static str,
        peer: std::net::SocketAddr,
    ) -> Result<(), Denied> {
        let result = self
            .auth
            .check(action, app, stream, query, crate::auth::unix_now());
        if let Err(denied) = result {
            stats::inc(match action {
                Action::Publish => &self.stats.auth_rejected_publish,
                Action::Play => &self.stats.auth_rejected_play,
            });
            info!(protocol, shard = self.id, %peer, stream = %format_args!("{app}/{stream}"), %action, reason = denied.label(), "refused: {denied}");
        }
        result
    }

    fn feed(&self, key: &StreamKey) -> Option<Rc<RefCell<Feed>>> {
        self.streams.borrow().get(key)?.feed.clone()
    }

    /// Wakes a feed's viewers now, or at the end of the merge window. With
    /// `flush_on_video`, a video frame flushes at once: it carries the audio merged since
    /// the previous one, so audio waits at most one frame interval (or the window).
    fn notify(&self, feed: &Rc<RefCell<Feed>>, kind: UnitKind) {
        let window = self.config.viewer.merge_window_ms;
        let mut f = feed.borrow_mut();
        if window == 0 || (kind == UnitKind::Video && self.config.viewer.flush_on_video) {
            f.wake_all();
        } else if let Some(token) = f.want_flush() {
            let feed = feed.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(window)).await;
                feed.borrow_mut().deferred_wake(token);
            })
            .detach();
        }
    }

    // ---- publishing (owner shard) -------------------------------------------------------

    /// Starts publishing `key` (this shard must own it). A stream in its grace period is
    /// taken over by the new publisher; a live one is refused unless its publisher has been
    /// silent for `auth.takeover_after_ms`. The publisher's address must be within its
    /// limits ([`PublishLimits`]), and a new stream within `limits.max_streams`.
    pub fn start_publishing(
        &self,
        key: &StreamKey,
        publisher: PublisherInfo,
    ) -> Result<(), PublishRefusal> {
        if self.stopping.get() {
            return Err(PublishRefusal::Stopping);
        }
        let now = now_ns();
        let mut streams = self.streams.borrow_mut();
        let existing = streams.get(key).filter(|s| s.origin.is_some());
        // The current publisher, if it may be replaced; refused if it may not.
        let replaced = match existing
            .and_then(|s| s.origin.as_ref())
            .and_then(|o| o.publisher.as_ref().map(|p| (o, p)))
        {
            Some((origin, current)) => {
                let takeover = self.config.auth.takeover_after_ms;
                let silent_ms =
                    now.saturating_sub(origin.last_media_ns.max(current.since_ns)) / 1_000_000;
                if takeover == 0 || silent_ms < takeover {
                    return Err(PublishRefusal::AlreadyPublishing);
                }
                Some((current.conn_id, current.peer, silent_ms))
            }
            None => None,
        };
        if existing.is_none() {
            let live: u64 = self
                .observed
                .all_stats
                .iter()
                .map(|s| stats::get(&s.streams))
                .sum();
            if live >= self.config.limits.max_streams as u64 {
                return Err(PublishRefusal::TooManyStreams);
            }
            if self.observed.media_budget.spent() {
                return Err(PublishRefusal::MediaBudget);
            }
        }
        let slot = self.observed.publish_limits.admit(
            publisher.peer.ip(),
            now,
            existing.and_then(|s| s.slot.as_ref()),
        )?;
        let stream = streams.entry(key.clone()).or_insert_with(|| LocalStream {
            feed: None,
            origin: None,
            slot: None,
            hls_share: None,
        });
        if let Some(slot) = slot {
            stream.slot = Some(slot);
        }
        let origin = match &mut stream.origin {
            Some(origin) => origin,
            None => {
                stream.feed = Some(self.new_feed(FeedState::Live));
                stream.hls_share = Some(Share::new(self.observed.media_budget.clone()));
                self.broadcast(|| MeshMsg::StreamLive(key.clone()));
                stats::inc(&self.stats.streams);
                let chunk_size = self.config.rtmp.chunk_size as usize;
                stream
                    .origin
                    .insert(Origin::new(self.count, chunk_size, self.segmenter(key)))
            }
        };
        if let Some((old, old_peer, silent_ms)) = replaced {
            info!(shard = self.id, stream = %key, old = %old_peer, new = %publisher.peer, silent_ms, "publisher taken over");
            stats::inc(&self.stats.publishers_taken_over);
            stats::dec(&self.stats.publishers);
            origin.stop_publishing(old);
        }
        info!(shard = self.id, stream = %key, peer = %publisher.peer, "publish start");
        origin.start_publishing(publisher);
        // A republish may have closed a segment (the discontinuity): publish the playlist.
        if let Some(hls) = origin.hls.as_ref().filter(|h| !h.segments().is_empty()) {
            let view = HlsView::of(hls, hls.instance(), false);
            drop(streams);
            self.publish_hls(key, view);
        }
        stats::inc(&self.stats.publishers);
        Ok(())
    }

    /// A segmenter for a new stream, when HLS is enabled.
    fn segmenter(&self, key: &StreamKey) -> Option<Segmenter> {
        let hls = &self.config.hls;
        let name = key.rsplit('/').next().unwrap_or(key);
        // Unique per stream incarnation in this process: time of creation, then a counter.
        let instance = wall_ms() * 1000 + self.next_conn.get() % 1000;
        hls.enabled
            .then(|| Segmenter::new(name, instance, hls.target_duration_ms, hls.window_segments))
    }

    /// Hands a new HLS snapshot of `key` to every shard (this one included).
    fn publish_hls(&self, key: &StreamKey, view: HlsView) {
        self.broadcast(|| MeshMsg::Hls(key.clone(), view.clone()));
        self.store_hls(key.clone(), view);
    }

    /// Keeps a snapshot for serving. A final one (stream ended) is dropped after a linger of
    /// twice the window's duration, unless the stream came back meanwhile.
    fn store_hls(&self, key: StreamKey, view: HlsView) {
        let ended = view.ended.then_some(view.instance);
        {
            let mut views = self.hls.borrow_mut();
            if views
                .get(&key)
                .is_some_and(|current| !view.supersedes(current))
            {
                // An older snapshot overtaken on the mesh.
                return;
            }
            views.insert(key.clone(), Rc::new(view));
        }
        if let Some(instance) = ended {
            let hls = &self.config.hls;
            let linger =
                Duration::from_millis(2 * hls.target_duration_ms * hls.window_segments as u64);
            let views = self.hls.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(linger).await;
                let mut views = views.borrow_mut();
                if views
                    .get(&key)
                    .is_some_and(|v| v.ended && v.instance == instance)
                {
                    views.remove(&key);
                }
            })
            .detach();
        }
    }

    /// The HLS snapshot of a stream, if any.
    pub fn hls_view(&self, key: &StreamKey) -> Option<Rc<HlsView>> {
        self.hls.borrow().get(key).cloned()
    }

    /// A media message from the publisher of `key`.
    /// An audio or video message from publisher `conn_id` of `key`. False when `conn_id` is
    /// no longer the stream's publisher (it was taken over, or the stream ended): the
    /// connection should close.
    pub fn ingest_media(
        &self,
        key: &StreamKey,
        conn_id: u64,
        kind: UnitKind,
        ts: u32,
        body: &[u8],
        at: u64,
    ) -> bool {
        let unit = {
            let mut streams = self.streams.borrow_mut();
            let Some(origin) = streams.get_mut(key).and_then(|s| s.origin.as_mut()) else {
                return false;
            };
            if !origin.is_publisher(conn_id) {
                return false;
            }
            origin.media(kind, ts, body, at)
        };
        if let Some(unit) = unit {
            self.distribute(key, unit);
        }
        true
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
        let unit = {
            let mut streams = self.streams.borrow_mut();
            let Some(origin) = streams.get_mut(key).and_then(|s| s.origin.as_mut()) else {
                return false;
            };
            if !origin.is_publisher(conn_id) {
                return false;
            }
            origin.metadata(metadata, at)
        };
        self.distribute(key, unit);
        true
    }

    /// Puts a unit into the owner's feed, forwards it once to every subscribed shard, and
    /// feeds the HLS segmenter.
    fn distribute(&self, key: &StreamKey, unit: Unit) {
        let mut streams = self.streams.borrow_mut();
        let Some(LocalStream {
            feed: Some(feed),
            origin: Some(origin),
            hls_share,
            ..
        }) = streams.get_mut(key)
        else {
            return;
        };
        let spent = self.observed.media_budget.spent();
        let hls_view = origin.hls.as_mut().and_then(|hls| {
            let closed = match hls.push(&unit, wall_ms()) {
                Ok(closed) => closed,
                Err(err) => {
                    stats::inc(&self.stats.hls_errors);
                    debug!(shard = self.id, stream = %key, "hls: {err}");
                    false
                }
            };
            // A spent media budget keeps only the newest segments a player needs to start.
            let trimmed = spent && hls.trim_to(MIN_HLS_WINDOW);
            (closed || trimmed).then(|| (HlsView::of(hls, hls.instance(), false), closed))
        });
        if let (Some(share), Some(hls)) = (hls_share.as_mut(), origin.hls.as_ref()) {
            share.set(hls.bytes_held());
        }
        if let Some((view, closed)) = hls_view {
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
        for to in 0..self.count {
            if !origin.subscribed[to] || (origin.lagging[to] && !unit.key && !unit.header) {
                continue;
            }
            match self
                .mesh
                .try_send_to(to, MeshMsg::Unit(key.clone(), unit.clone()))
            {
                Ok(()) => origin.lagging[to] = false,
                Err(_) => {
                    origin.lagging[to] = true;
                    stats::inc(&self.stats.mesh_units_dropped);
                }
            }
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

    /// The publisher `conn_id` of `key` left: viewers wait `republish_grace_ms` for the
    /// stream to come back, then the stream ends.
    pub fn stop_publishing(self: &Rc<Self>, key: &StreamKey, conn_id: u64) {
        let generation = {
            let mut streams = self.streams.borrow_mut();
            let Some(origin) = streams.get_mut(key).and_then(|s| s.origin.as_mut()) else {
                return;
            };
            if !origin.stop_publishing(conn_id) {
                return;
            }
            origin.generation
        };
        stats::dec(&self.stats.publishers);
        info!(shard = self.id, stream = %key, "publish stop; grace period starts");
        let shard = self.clone();
        let key = key.clone();
        let grace = Duration::from_millis(self.config.stream.republish_grace_ms);
        glommio::spawn_local(async move {
            glommio::timer::sleep(grace).await;
            shard.end_if_unpublished(&key, generation);
        })
        .detach();
    }

    fn end_if_unpublished(&self, key: &StreamKey, generation: u64) {
        let still_idle = self
            .streams
            .borrow()
            .get(key)
            .and_then(|s| s.origin.as_ref())
            .is_some_and(|o| o.publisher.is_none() && o.generation == generation);
        if still_idle {
            self.end_stream(key);
        }
    }

    /// Ends a stream this shard owns: HLS gets its last segment and EXT-X-ENDLIST, local
    /// viewers reach the end, other shards are told.
    fn end_stream(&self, key: &StreamKey) {
        let Some(mut stream) = self.streams.borrow_mut().remove(key) else {
            return;
        };
        info!(shard = self.id, stream = %key, "stream ended");
        stats::dec(&self.stats.streams);
        if let Some(origin) = stream.origin.as_mut() {
            if origin.publisher.is_some() {
                stats::dec(&self.stats.publishers);
            }
            if let Some(hls) = origin.hls.as_mut() {
                hls.end();
                self.publish_hls(key, HlsView::of(hls, hls.instance(), true));
            }
        }
        if let Some(feed) = stream.feed {
            feed.borrow_mut().end();
        }
        self.broadcast(|| MeshMsg::StreamEnded(key.clone()));
    }

    /// Starts a graceful stop: every stream this shard owns ends now (no republish grace),
    /// replica feeds end, and connections waiting in [`Shard::stopped`] give up.
    pub fn begin_stop(&self) {
        if self.stopping.replace(true) {
            return;
        }
        let (owned, replicas): (Vec<StreamKey>, Vec<Rc<RefCell<Feed>>>) = {
            let streams = self.streams.borrow();
            let owned = streams
                .iter()
                .filter(|(_, s)| s.origin.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            let replicas = streams
                .values()
                .filter(|s| s.origin.is_none())
                .filter_map(|s| s.feed.clone())
                .collect();
            (owned, replicas)
        };
        for key in owned {
            self.end_stream(&key);
        }
        for feed in replicas {
            feed.borrow_mut().end();
        }
        for waker in self.stop_waiters.take() {
            waker.wake();
        }
    }

    /// Whether a graceful stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once a graceful stop begins.
    pub async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            if self.stopping.get() {
                return std::task::Poll::Ready(());
            }
            let mut waiters = self.stop_waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Hands a publisher to the owner shard of its stream.
    pub fn hand_off(&self, owner: usize, handoff: Handoff) {
        stats::inc(&self.stats.handoffs_sent);
        self.send_reliable(owner, MeshMsg::Handoff(Box::new(handoff)));
    }

    // ---- viewers ------------------------------------------------------------------------

    /// True when the stream is known (published, or within its grace period).
    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.streams.borrow().contains_key(key)
    }

    /// Attaches a viewer to `key`. On a shard other than the owner, the first viewer
    /// subscribes this shard to the stream. `None` when the stream is unknown.
    pub fn attach_viewer(&self, key: &StreamKey, format: Format) -> Option<Rc<RefCell<Feed>>> {
        let mut streams = self.streams.borrow_mut();
        let stream = streams.get_mut(key)?;
        if !self.observed.admission.add_viewer(key) {
            return None;
        }
        let feed = match &stream.feed {
            Some(feed) => feed.clone(),
            None => {
                let feed = self.new_feed(FeedState::Syncing);
                stream.feed = Some(feed.clone());
                self.send_reliable(self.owner(key), MeshMsg::Subscribe(key.clone(), self.id));
                feed
            }
        };
        feed.borrow_mut().viewers[format as usize] += 1;
        Some(feed)
    }

    /// Detaches a viewer; the last viewer on a non-owner shard unsubscribes it.
    pub fn detach_viewer(&self, key: &StreamKey, feed: &Rc<RefCell<Feed>>, format: Format) {
        self.observed.admission.remove_viewer(key);
        let left = {
            let mut f = feed.borrow_mut();
            let n = &mut f.viewers[format as usize];
            *n = n.saturating_sub(1);
            f.total_viewers()
        };
        if left > 0 || self.owner(key) == self.id {
            return;
        }
        let mut streams = self.streams.borrow_mut();
        if let Some(stream) = streams.get_mut(key) {
            if stream.feed.as_ref().is_some_and(|f| Rc::ptr_eq(f, feed)) {
                stream.feed = None;
                self.send_reliable(self.owner(key), MeshMsg::Unsubscribe(key.clone(), self.id));
            }
        }
    }
}

/// Segments an HLS window keeps while the media budget is spent: players start three
/// target durations from the end of a playlist (RFC 8216, section 6.3.3).
const MIN_HLS_WINDOW: usize = 3;

/// Wall-clock milliseconds since the Unix epoch (for EXT-X-PROGRAM-DATE-TIME).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
