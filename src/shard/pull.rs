//! Edge pulls on the shards (see [`crate::upstream`]): a viewer's wait for a stream that a
//! pull brings, and the owner's registry of the pulls it runs.

use super::mesh::MeshMsg;
use super::Shard;
use crate::hub::StreamKey;
use crate::media::now_ns;
use crate::metrics::api::UpstreamReport;
use crate::stats;
use crate::upstream::{driver, LoopError, OriginUrl, PullStatus, Via};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tracing::info;

/// How often a waiting viewer looks whether its stream went live.
const POLL: Duration = Duration::from_millis(20);

/// A waiting viewer's shard asks the owner again this often: the owner keeps a pull that
/// is asked for, and a request lost to a full outbox is made again.
const ASK_INTERVAL_NS: u64 = 500_000_000;

/// A pull on its owner shard.
#[derive(Debug)]
pub struct Pull {
    /// Its state, for the API.
    pub status: RefCell<PullStatus>,
    /// When a viewer last asked for the stream, or the stream last had viewers (ns).
    pub wanted_ns: Cell<u64>,
}

impl Shard {
    /// The origins of `key` by its application's `[[upstream]]` rule; `None` without one.
    fn origins(&self, key: &StreamKey) -> Option<Vec<OriginUrl>> {
        let (app, stream) = key.split_once('/')?;
        let config = self.config();
        let rule = config.upstream.iter().find(|r| r.app == app)?;
        let origins = rule.origins.iter();
        // Checked with the configuration: only a stream name could break one.
        Some(
            origins
                .filter_map(|url| OriginUrl::parse(url, app, stream).ok())
                .collect(),
        )
    }

    /// This server's id in the lists of servers pulls went through.
    pub fn node_id(&self) -> u64 {
        self.observed.node_id
    }

    /// Whether a request for `key` may have to wait for a pull: no shard knows the stream,
    /// and its application has an `[[upstream]]` rule.
    pub fn may_pull(&self, key: &StreamKey) -> bool {
        !self.is_live(key) && self.origins(key).is_some_and(|o| !o.is_empty())
    }

    /// Whether `key` is live here, once a pull brought it when needed: a stream no shard
    /// knows, of an application with an `[[upstream]]` rule, is asked of its owner, and this
    /// waits for it at most `edge.start_timeout_ms`. `query` is the viewer's request's,
    /// whose `corecast_via` lists the servers it went through: a request that would make a
    /// loop is refused (`Err`, counted).
    pub async fn live_or_pulled(
        self: &Rc<Self>,
        key: &StreamKey,
        query: Option<&str>,
    ) -> Result<bool, LoopError> {
        if !self.may_pull(key) {
            return Ok(self.is_live(key));
        }
        let via = Via::of(query, self.node_id())
            .inspect_err(|_| stats::inc(&self.stats.upstream_loops_refused))?;
        Ok(self.wait_pulled(key, &via).await)
    }

    /// Asks the owner to pull `key` and waits at most `edge.start_timeout_ms` for it to be
    /// live here.
    async fn wait_pulled(self: &Rc<Self>, key: &StreamKey, via: &Via) -> bool {
        let timeout = self.config().edge.start_timeout_ms * 1_000_000;
        let start = now_ns();
        let mut asked: Option<u64> = None;
        loop {
            if self.is_live(key) {
                return true;
            }
            let now = now_ns();
            if now.saturating_sub(start) >= timeout || self.is_stopping() {
                return false;
            }
            if asked.is_none_or(|at| now.saturating_sub(at) >= ASK_INTERVAL_NS) {
                self.ask_pull(key, via);
                asked = Some(now);
            }
            glommio::timer::sleep(POLL).await;
        }
    }

    /// Asks the owner of `key` to pull it.
    fn ask_pull(self: &Rc<Self>, key: &StreamKey, via: &Via) {
        let owner = self.owner(key);
        if owner == self.id {
            self.start_pull(key, via.clone());
        } else {
            self.mesh
                .send(owner, MeshMsg::PullWanted(key.clone(), via.clone()));
        }
    }

    /// On the owner: starts pulling `key` from its origins, unless a pull of it runs (which
    /// is then kept wanted) or it is published here.
    pub(super) fn start_pull(self: &Rc<Self>, key: &StreamKey, via: Via) {
        let now = now_ns();
        if let Some(pull) = self.pulls.borrow().get(key) {
            pull.wanted_ns.set(now);
            return;
        }
        let published = self
            .streams
            .borrow()
            .get(key)
            .is_some_and(|s| s.origin.is_some());
        if published || self.is_stopping() {
            return;
        }
        let Some(origins) = self.origins(key).filter(|o| !o.is_empty()) else {
            return;
        };
        let pull = Rc::new(Pull {
            status: RefCell::new(PullStatus::new(origins[0].shown())),
            wanted_ns: Cell::new(now),
        });
        self.pulls.borrow_mut().insert(key.clone(), pull.clone());
        stats::inc(&self.stats.upstream_pulls);
        info!(action = "pull-start", shard = self.id, stream = %key, origins = origins.len(), "pull: started");
        let run = driver::run(self.clone(), key.clone(), origins, via, pull);
        glommio::spawn_local(run).detach();
    }

    /// Whether the pull of `key` is still wanted at `now`: the stream has viewers (this
    /// shard's, subscribed shards', its HLS being made, a forward), or a viewer asked for it
    /// within `edge.idle_timeout_ms`.
    pub fn pull_wanted(&self, key: &StreamKey, pull: &Pull, now: u64) -> bool {
        let watched = self.streams.borrow().get(key).is_some_and(|s| {
            s.feed
                .as_ref()
                .is_some_and(|f| f.borrow().total_viewers() > 0)
                || s.origin
                    .as_ref()
                    .is_some_and(|o| o.subscribers.any() || o.hls.is_some() || o.ll.is_some())
        });
        if watched {
            pull.wanted_ns.set(now);
            return true;
        }
        let idle = self.config().edge.idle_timeout_ms * 1_000_000;
        now.saturating_sub(pull.wanted_ns.get()) < idle
    }

    /// The pull of `key` ended (its task's last act): the stream ends now if the pull
    /// (publisher `conn_id`) still publishes it.
    pub fn pull_ended(&self, key: &StreamKey, conn_id: u64) {
        if self.pulls.borrow_mut().remove(key).is_some() {
            stats::dec(&self.stats.upstream_pulls);
        }
        let publishes = self
            .streams
            .borrow()
            .get(key)
            .and_then(|s| s.origin.as_ref())
            .is_some_and(|o| o.is_publisher(conn_id));
        if publishes {
            self.end_stream(key);
        }
        info!(action = "pull-stop", shard = self.id, stream = %key, "pull: stopped");
    }

    /// The API's view of the pull of `key`, if one runs.
    pub(super) fn pull_report(&self, key: &StreamKey, now: u64) -> Option<UpstreamReport> {
        let pulls = self.pulls.borrow();
        let pull = pulls.get(key)?;
        let report = pull.status.borrow().report(now);
        Some(report)
    }
}
