//! One shard: its registry of streams and the operations the protocol drivers call on it.
//!
//! Ownership: every stream belongs to the shard [`owner_of`] names. The owner holds the
//! [`Origin`] and the authoritative [`Feed`]; every other shard with viewers of the stream
//! holds a replica feed that the owner fills over the mesh, one message per unit. Inside a
//! shard everything is `Rc`/`RefCell`; no borrow is held across an `.await`.
//!
//! The registry and the viewer side are here; the other jobs have a file each:
//! - [`mesh`]: the messages between shards and their transport (per-peer ordered, bounded
//!   outboxes for control messages; units best effort).
//! - [`publish`]: who may publish (takeover and republish grace, pure), and publishing,
//!   ingest and distribution on the owner.
//! - [`hls_store`]: the HLS snapshots every shard serves, HLS on demand.
//! - [`llhls`]: Low-Latency HLS on the shard: its segmenter on the owner, blocking playlist
//!   reloads and preload-hinted parts held on every shard.
//! - [`held`]: Low-Latency HLS playlist requests held until their part exists (pure).
//! - [`report`]: histograms, the JSON API's reports and figures, Prometheus.
//! - [`schedule`]: when viewers are woken: pictures at once, or merge windows, by load (pure).
//!
//! `tests.rs` runs shards on real executors joined by a real mesh.

pub mod held;
pub mod hls_store;
pub mod llhls;
pub mod mesh;
pub mod publish;
pub mod pull;
pub mod report;
pub mod schedule;

pub use mesh::MeshMsg;
pub use publish::PublishRefusal;
pub use report::{Bound, Observed};

use crate::auth::{Action, Auth, Denied};
use crate::config::Config;
use crate::hls::{Rendition, View};
use crate::hub::budget::{Meter, Share};
use crate::hub::cursor::Policy;
use crate::hub::feed::{Feed, FeedState, Offer};
use crate::hub::origin::Origin;
use crate::hub::ring::Ring;
use crate::hub::{owner_of, StreamKey};
use crate::limits::StreamSlot;
use crate::media::{now_ns, Format, UnitKind};
use crate::metrics::{Histograms, Stage};
use crate::net::readiness::Readiness;
use crate::rtmp::Handoff;
use crate::stats::{self, ShardStats};
use glommio::channels::channel_mesh::{Receivers, Senders};
use mesh::Mesh;
use schedule::Wake;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

/// A stream as known to one shard.
#[derive(Default)]
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
    /// When this shard last asked the owner to start each of the stream's HLS renditions
    /// (ns, 0: never), by [`crate::hls::Rendition::index`].
    hls_wanted_ns: [u64; 2],
}

/// The owner shard's parts of a stream.
struct Owned<'a> {
    feed: &'a Rc<RefCell<Feed>>,
    origin: &'a mut Origin,
    hls_share: &'a mut Option<Share>,
}

impl LocalStream {
    /// The owner's parts of the stream; `None` on other shards.
    fn owned(&mut self) -> Option<Owned<'_>> {
        match self {
            LocalStream {
                feed: Some(feed),
                origin: Some(origin),
                hls_share,
                ..
            } => Some(Owned {
                feed,
                origin,
                hls_share,
            }),
            _ => None,
        }
    }
}

/// One shard's state, shared by its tasks.
pub struct Shard {
    /// Index of this shard.
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// The configuration this shard runs (replaced by a reload, see [`Shard::take_config`]).
    config: RefCell<Arc<Config>>,
    /// Its version (see [`crate::server::reload::Reloads`]).
    config_version: Cell<u64>,
    /// This shard's counters.
    pub stats: Arc<ShardStats>,
    /// Who may publish and play (from the configuration).
    auth: RefCell<Rc<Auth>>,
    /// Every shard's counters and exported histograms (for the metrics endpoint).
    observed: Observed,
    /// This shard's latency histograms (exported every [`crate::metrics::PUBLISH_INTERVAL`]).
    hist: RefCell<Histograms>,
    /// Senders to every other shard, with their outboxes.
    mesh: Rc<Mesh>,
    /// Streams known to this shard.
    streams: RefCell<HashMap<StreamKey, LocalStream>>,
    /// Next connection id (shard id in the low bits keeps ids unique per process).
    next_conn: Cell<u64>,
    /// HLS snapshots of live (and recently ended) streams, served by this shard.
    hls: hls_store::SharedStore<crate::hls::HlsView>,
    /// Low-Latency HLS snapshots of live (and recently ended) streams.
    ll: hls_store::SharedStore<crate::hls::LlView>,
    /// LL-HLS requests held until their part exists.
    held: RefCell<held::HeldReloads>,
    /// The server is stopping: streams have ended and idle connections close.
    stopping: Cell<bool>,
    /// Notified when the stop begins. Each waiting connection listens with a listener of
    /// its own, which leaves the list when dropped: a connection that never sees a stop
    /// leaves nothing behind.
    stop: event_listener::Event,
    /// When viewers are woken, and the load it follows.
    schedule: RefCell<schedule::SendSchedule>,
    /// Sends frames would have made since the last load sample (see [`schedule`]).
    frame_sends: Cell<u64>,
    /// What the units of the streams this shard owns count against while they live.
    units: Arc<Meter>,
    /// The epoll set that RTMP publishers are read from (`rtmp.input_poll_us`).
    readiness: Readiness,
    /// The pulls of streams this shard owns from their origins (`[[upstream]]`).
    pulls: RefCell<HashMap<StreamKey, Rc<pull::Pull>>>,
}

impl Shard {
    /// A shard's state around its mesh senders.
    pub fn new(id: usize, observed: Observed, mesh: Senders<MeshMsg>) -> Self {
        let (version, config) = observed.reloads.current();
        Shard {
            id,
            count: observed.all_stats.len(),
            auth: RefCell::new(Rc::new(Auth::from_config(&config.auth))),
            schedule: RefCell::new(schedule::SendSchedule::new(
                config.viewer.schedule(),
                config.viewer.flush_on_video,
            )),
            frame_sends: Cell::new(0),
            units: Meter::new(observed.media_budget.clone()),
            readiness: Readiness::new(),
            pulls: RefCell::new(HashMap::new()),
            held: RefCell::new(held::HeldReloads::new(config.hls.max_held_reloads)),
            config: RefCell::new(config),
            config_version: Cell::new(version),
            stats: observed.all_stats[id].clone(),
            observed,
            hist: RefCell::new(Histograms::default()),
            mesh: Mesh::new(id, mesh),
            streams: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            hls: Rc::default(),
            ll: Rc::default(),
            stopping: Cell::new(false),
            stop: event_listener::Event::new(),
        }
    }

    /// The configuration this shard runs.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Who may publish and play.
    pub fn auth(&self) -> Rc<Auth> {
        self.auth.borrow().clone()
    }

    /// Takes up the configuration of the last reload, if this shard does not run it yet:
    /// what is derived from it (access policies, the send schedule) is made anew, and the
    /// HLS windows of the streams it owns follow `hls.window_segments`. Called with each
    /// load sample.
    pub fn take_config(&self) {
        let reloads = &self.observed.reloads;
        if reloads.version() == self.config_version.get() {
            return;
        }
        let (version, config) = reloads.current();
        *self.auth.borrow_mut() = Rc::new(Auth::from_config(&config.auth));
        self.schedule
            .borrow_mut()
            .reconfigure(config.viewer.schedule(), config.viewer.flush_on_video);
        for stream in self.streams.borrow_mut().values_mut() {
            if let Some(hls) = stream.origin.as_mut().and_then(|o| o.hls.as_mut()) {
                hls.set_window(config.hls.window_segments);
            }
        }
        self.held
            .borrow_mut()
            .set_limit(config.hls.max_held_reloads);
        *self.config.borrow_mut() = config;
        self.config_version.set(version);
        reloads.took(self.id, version);
        info!(shard = self.id, version, "configuration reloaded");
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
        let viewer = &self.config().viewer;
        Policy {
            skip_after_ns: viewer.skip_after_ms * 1_000_000,
            disconnect_after_ns: viewer.disconnect_after_ms * 1_000_000,
        }
    }

    /// A feed whose ring keeps what this shard's viewers read and, on the owner of a
    /// stream with HLS on demand, one target duration before the newest keyframe (the first
    /// segment of a first HLS request, see [`crate::hub::ring`]).
    fn new_feed(&self, state: FeedState, owner: bool) -> Rc<RefCell<Feed>> {
        let config = self.config();
        let hls = &config.hls;
        let keep_ms = if owner && hls.enabled && hls.on_demand {
            u32::try_from(hls.target_duration_ms).unwrap_or(u32::MAX)
        } else {
            0
        };
        let ring = Ring::new(
            config.stream.ring_max_bytes,
            config.stream.ring_max_duration_ms * 1_000_000,
        )
        .retained_by_viewers(keep_ms)
        .with_budget(self.observed.media_budget.clone());
        Rc::new(RefCell::new(Feed::new(state, ring)))
    }

    /// Sends a control message to every other shard.
    fn broadcast(&self, make: impl Fn() -> MeshMsg) {
        for to in (0..self.count).filter(|&s| s != self.id) {
            self.mesh.send(to, make());
        }
    }

    /// Starts one task per peer shard that hands its messages to [`Shard::on_mesh`], until
    /// the peer's channel closes.
    pub fn receive_mesh(self: &Rc<Self>, receivers: &mut Receivers<MeshMsg>) {
        for (_, receiver) in receivers.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    shard.on_mesh(msg);
                }
            })
            .detach();
        }
    }

    /// Handles a message from another shard.
    pub fn on_mesh(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::StreamLive(key) => {
                self.streams.borrow_mut().entry(key).or_default();
            }
            MeshMsg::StreamEnded(key) => {
                if let Some(stream) = self.streams.borrow_mut().remove(&key) {
                    if let Some(feed) = stream.feed {
                        feed.borrow_mut().end();
                    }
                }
            }
            MeshMsg::Subscribe(key, from) => self.on_subscribe(key, from),
            MeshMsg::HlsWanted(key, Rendition::Ts) => self.start_hls(&key),
            MeshMsg::HlsWanted(key, Rendition::Ll) => self.start_ll(&key),
            MeshMsg::PullWanted(key, via) => self.start_pull(&key, via),
            MeshMsg::Unsubscribe(key, from) => {
                let mut streams = self.streams.borrow_mut();
                if let Some(origin) = streams.get_mut(&key).and_then(|s| s.origin.as_mut()) {
                    origin.subscribers.unsubscribe(from);
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
            MeshMsg::Hls(key, View::Ts(view)) => self.store_hls(key, view),
            MeshMsg::Hls(key, View::Ll(view)) => self.store_ll(key, view),
            MeshMsg::Handoff(handoff) => {
                stats::inc(&self.stats.handoffs_received);
                let shard = self.clone();
                glommio::spawn_local(crate::rtmp::resume(shard, handoff)).detach();
            }
        }
    }

    /// Shard `from` subscribes to `key`: it gets the stream's snapshot, then its units.
    fn on_subscribe(&self, key: StreamKey, from: usize) {
        let reply = answer_subscribe(self.streams.borrow_mut().get_mut(&key), key, from);
        self.mesh.send(from, reply);
    }

    /// The epoll set that RTMP publishers are read from (`rtmp.input_poll_us`).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The connection and viewer limits shared by every shard.
    pub fn admission(&self) -> &Arc<crate::limits::Admission> {
        &self.observed.admission
    }

    /// Checks `action` on `app/stream` with the credentials in `query`; a refusal is logged
    /// (without the credentials; called inside the connection's span) and counted.
    pub fn authorize(
        &self,
        action: Action,
        app: &str,
        stream: &str,
        query: Option<&str>,
    ) -> Result<(), Denied> {
        let result = self
            .auth()
            .check(action, app, stream, query, crate::auth::unix_now());
        if let Err(denied) = result {
            stats::inc(match action {
                Action::Publish => &self.stats.auth_rejected_publish,
                Action::Play => &self.stats.auth_rejected_play,
            });
            let refused = match action {
                Action::Publish => "publish-refused",
                Action::Play => "play-refused",
            };
            info!(action = refused, stream = %format_args!("{app}/{stream}"), reason = denied.label(), "refused: {denied}");
        }
        result
    }

    fn feed(&self, key: &StreamKey) -> Option<Rc<RefCell<Feed>>> {
        self.streams.borrow().get(key)?.feed.clone()
    }

    /// Wakes a feed's viewers now, or at the end of the merge window, as the send schedule
    /// says (see [`schedule`]). Nothing to do while none waits: a stream nobody watches
    /// costs no wake-up and no timer.
    fn notify(&self, feed: &Rc<RefCell<Feed>>, kind: UnitKind) {
        let mut f = feed.borrow_mut();
        let picture = schedule::is_picture(kind, f.has_video);
        if picture {
            self.frame_sends
                .set(self.frame_sends.get() + f.total_viewers() as u64);
        }
        if !f.has_waiters() {
            return;
        }
        let wake = self
            .schedule
            .borrow()
            .wake(kind, f.has_video, f.pictures_held());
        match wake {
            Wake::Now => f.wake_all(),
            Wake::After(window) => {
                if let Some(token) = f.hold(picture) {
                    let feed = feed.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(window).await;
                        feed.borrow_mut().deferred_wake(token);
                    })
                    .detach();
                }
            }
        }
    }

    /// Takes a load sample for the send schedule: the executor ran tasks for `ran` of the
    /// last `wall`.
    pub fn observe_load(&self, ran: Duration, wall: Duration) {
        let sample = schedule::Sample {
            ran,
            wall,
            frame_sends: self.frame_sends.replace(0),
        };
        self.schedule.borrow_mut().observe(sample);
    }

    /// The window pictures wait for now (zero: they go out at once).
    pub fn send_window(&self) -> Duration {
        self.schedule.borrow().picture_window()
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
        self.stop.notify(usize::MAX);
    }

    /// Whether a graceful stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once a graceful stop begins.
    pub async fn stopped(&self) {
        while !self.stopping.get() {
            // Listening before looking again: a stop in between is not missed.
            let listener = self.stop.listen();
            if self.stopping.get() {
                break;
            }
            listener.await;
        }
    }

    /// Connections waiting for the stop now (each `stopped` being awaited).
    pub fn stop_listeners(&self) -> usize {
        self.stop.total_listeners()
    }

    /// Hands a publisher to the owner shard of its stream. When the owner's outbox is full
    /// the handoff is refused: the descriptor and the connection's ticket are dropped, so
    /// the connection closes (counted in `mesh_control_refused`).
    pub fn hand_off(&self, owner: usize, handoff: Handoff) {
        match self
            .mesh
            .request(owner, MeshMsg::Handoff(Box::new(handoff)))
        {
            Ok(()) => stats::inc(&self.stats.handoffs_sent),
            Err(full) => {
                stats::inc(&self.stats.mesh_control_refused);
                info!(
                    action = "connection-close",
                    owner, "publisher not handed off, closing: {full}"
                );
            }
        }
    }

    // ---- viewers ------------------------------------------------------------------------

    /// The metadata of a stream this shard owns, as its publisher last sent it.
    pub fn stream_metadata(&self, key: &StreamKey) -> Option<rml_rtmp::sessions::StreamMetadata> {
        self.streams
            .borrow()
            .get(key)?
            .origin
            .as_ref()?
            .metadata
            .clone()
    }

    /// True when the stream is known (published, or within its grace period).
    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.streams.borrow().contains_key(key)
    }

    /// Attaches a viewer to `key`. On a shard other than the owner, the first viewer
    /// subscribes this shard to the stream. `None` when the stream is unknown, has its
    /// maximum of viewers, or the subscription cannot be sent (the owner's outbox is full,
    /// counted in `mesh_control_refused`).
    pub fn attach_viewer(&self, key: &StreamKey, format: Format) -> Option<Rc<RefCell<Feed>>> {
        let mut streams = self.streams.borrow_mut();
        let stream = streams.get_mut(key)?;
        if !self.observed.admission.add_viewer(key) {
            return None;
        }
        let feed = match &stream.feed {
            Some(feed) => feed.clone(),
            None => {
                let subscribe = MeshMsg::Subscribe(key.clone(), self.id);
                if let Err(full) = self.mesh.request(self.owner(key), subscribe) {
                    self.observed.admission.remove_viewer(key);
                    stats::inc(&self.stats.mesh_control_refused);
                    debug!(shard = self.id, stream = %key, "viewer refused: {full}");
                    return None;
                }
                let feed = self.new_feed(FeedState::Syncing, false);
                stream.feed = Some(feed.clone());
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
                self.mesh
                    .send(self.owner(key), MeshMsg::Unsubscribe(key.clone(), self.id));
            }
        }
    }
}

/// The owner's answer to shard `from` subscribing to `key` (its registry entry is `stream`):
/// the feed's headers and GOP cache, after which `from` gets every unit; or `StreamEnded`
/// when this shard does not own the stream (any more).
fn answer_subscribe(stream: Option<&mut LocalStream>, key: StreamKey, from: usize) -> MeshMsg {
    match stream {
        Some(LocalStream {
            feed: Some(feed),
            origin: Some(origin),
            ..
        }) => {
            origin.subscribers.subscribe(from);
            let (headers, gop) = feed.borrow().snapshot();
            MeshMsg::Sync(key, headers, gop)
        }
        _ => MeshMsg::StreamEnded(key),
    }
}

#[cfg(test)]
mod tests;
