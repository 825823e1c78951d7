//! Starting and stopping the shards.
//!
//! [`Server::start`] binds every listener first (so a busy port fails before any thread
//! starts), then starts one pinned glommio executor per shard and waits until every shard has
//! reported ready. If any shard fails, the whole start fails with its reason: corecast never
//! runs half-started.

mod accept;
pub mod health;
pub mod reload;
pub mod systemd;

use crate::config::{Config, Sources};
use crate::hub::budget::MediaBudget;
use crate::limits::{Admission, Caps, PublishLimits};
use crate::metrics::log::{LogError, LogWriter};
use crate::metrics::Published;
use crate::net;
use crate::shard::{Bound, MeshMsg, Observed, Shard};
use crate::stats::ShardStats;
use accept::{accept_loop, Protocol};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use health::{Health, Readiness};
use reload::{Outcome, Reloads};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Locked memory glommio registers per shard for io_uring buffers. The relay does no file
/// IO, so the minimum glommio accepts is enough (it checks RLIMIT_MEMLOCK >= 512 KiB).
pub(crate) const IO_MEMORY: usize = 512 * 1024;

/// Entries of each io_uring ring of a shard (glommio's default is 128). glommio cancels and
/// re-arms its preemption timeouts on every reactor turn, and the kernel looks for each
/// cancelled operation first among the pending polls (one per idle connection) in a hash
/// table of `2^(log2(completion entries) - 5)` buckets: with 128 entries that is 8 buckets,
/// and 1,000 publishers made the walk 5% of a shard's time; 1024 entries give 64. Larger
/// rings gain little more and cost locked memory: without CAP_IPC_LOCK the kernel counts
/// ring memory against RLIMIT_MEMLOCK (per user), and a shard with 4096 entries did not
/// start within 1 MiB, nor two shards within 4 MiB, where 1024 entries start like 128.
const RING_DEPTH: usize = 1024;

/// Stack of each shard thread. Set here because the default (2 MiB for a spawned Rust
/// thread, or `RUST_MIN_STACK`) is not a choice; 8 MiB is Linux's usual main-thread stack.
/// It is address space: pages are committed only as the stack reaches them. Everything a
/// connection does runs on its shard's stack, so no input may be allowed to recurse without
/// a bound: rml_rtmp's recursive AMF0 reader needs about 0.7 KB per nesting level (it
/// overflowed 2 MiB at 3,109 levels and 8 MiB at 12,471, a 50 KB message), and the input
/// guard refuses messages nested past [`crate::rtmp::amf::MAX_AMF_DEPTH`] (32) first. The
/// fuzz targets that read RTMP input run on a thread of this size.
pub const SHARD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// How long shards may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a reload waits for every shard to take the new configuration (each takes it
/// with its next load sample).
const RELOAD_WAIT: Duration = Duration::from_secs(2);

/// How often a shard checks whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How often a stopping shard checks whether its connections have finished.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// io_uring cannot be used by this process.
    #[error(
        "io_uring is unavailable ({0}); corecast needs Linux >= 5.8 with io_uring enabled \
         (sysctl kernel.io_uring_disabled = 0)"
    )]
    IoUring(std::io::Error),
    /// Another listening socket, of another process (or another user), serves the address
    /// or one overlapping it; see [`bind_all`].
    #[error("cannot listen on {addr}: address already in use (another process serves it)")]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CPU list could not be read or is too short.
    #[error("cannot place shards on CPUs: {0}")]
    Cpus(String),
    /// A shard failed to start (io_uring unavailable, memlock too low, ...).
    #[error("shard {shard} failed to start: {reason}")]
    Shard {
        /// The shard.
        shard: usize,
        /// What it reported.
        reason: String,
    },
    /// The histogram log could not be created.
    #[error("histogram log: {0}")]
    HistogramLog(LogError),
    /// Shards did not report ready in time.
    #[error("shards did not start within {0:?}")]
    Timeout(Duration),
}

/// The live audience, all shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    /// Live streams.
    pub streams: u64,
    /// Publishers connected.
    pub publishers: u64,
    /// HTTP-FLV viewers connected.
    pub flv_viewers: u64,
    /// RTMP players connected.
    pub rtmp_players: u64,
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} streams, {} publishers, {} viewers ({} HTTP-FLV, {} RTMP)",
            self.streams,
            self.publishers,
            self.flv_viewers + self.rtmp_players,
            self.flv_viewers,
            self.rtmp_players
        )
    }
}

/// A running server.
pub struct Server {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    observed: Observed,
    histogram_log: Option<LogWriter>,
    admin_addr: Option<SocketAddr>,
    rtmp_addr: SocketAddr,
    http_addr: SocketAddr,
}

enum Report {
    Ready,
    Failed(String),
}

impl Server {
    /// Binds the listeners and starts every shard; returns once all are serving.
    pub fn start(config: Config) -> Result<Server, StartError> {
        raise_limits();
        net::probe_io_uring().map_err(StartError::IoUring)?;
        let shards = config.shard_count();
        // Shard i runs on the i-th CPU the process may use: deterministic, and `taskset`
        // chooses the CPUs.
        let cpus = net::allowed_cpus().map_err(|e| StartError::Cpus(e.to_string()))?;
        if cpus.len() < shards {
            return Err(StartError::Cpus(format!(
                "{shards} shards but only {} CPUs",
                cpus.len()
            )));
        }
        let backlog = config.server.listen_backlog;
        let (rtmp, rtmp_addr) = bind_all(config.server.rtmp_listen, shards, backlog)?;
        let (http, http_addr) = bind_all(config.server.http_listen, shards, backlog)?;
        let (admin, admin_addr) = match config.admin.address() {
            Some(addr) => {
                let (fds, addr) = bind_all(addr, shards, backlog)?;
                (fds.into_iter().map(Some).collect(), Some(addr))
            }
            None => ((0..shards).map(|_| None).collect::<Vec<_>>(), None),
        };

        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let mesh = MeshBuilder::<MeshMsg, _>::full(shards, config.server.mesh_queue_units);
        let (report_tx, report_rx) = mpsc::channel();
        let observed = Observed {
            all_stats: (0..shards)
                .map(|_| Arc::new(ShardStats::default()))
                .collect(),
            histograms: Arc::new(Published::new(shards)),
            reports: Arc::new(crate::metrics::api::Reports::new(shards)),
            admission: Arc::new(Admission::new(shards, caps(&config))),
            publish_limits: Arc::new(PublishLimits::new(
                config.limits.max_streams_per_ip,
                config.limits.max_publishes_per_ip_per_minute,
                config.limits.exempt_loopback,
                config.limits.ipv6_prefix_len,
            )),
            media_budget: MediaBudget::new(media_budget(&config)),
            health: Arc::new(Health::new(shards)),
            reloads: Arc::new(Reloads::new(config.clone(), shards)),
            bound: Bound {
                rtmp: rtmp_addr,
                http: http_addr,
            },
            node_id: crate::upstream::new_node_id(),
        };
        let mut threads = Vec::with_capacity(shards);
        let listeners = rtmp
            .into_iter()
            .zip(http)
            .zip(admin)
            .map(|((rtmp, http), admin)| Listeners { rtmp, http, admin });
        for (id, listeners) in listeners.enumerate() {
            let (stop, mesh, report, observed) = (
                stop.clone(),
                mesh.clone(),
                report_tx.clone(),
                observed.clone(),
            );
            let builder = LocalExecutorBuilder::new(Placement::Fixed(cpus[id]))
                .io_memory(IO_MEMORY)
                .ring_depth(RING_DEPTH);
            // glommio's `LocalExecutorBuilder::spawn` starts its thread with the default
            // stack and has no setting for it; `make` builds the same executor on a thread
            // of ours.
            let handle = spawn_shard_thread(id, move |made| {
                let executor = builder.make();
                made();
                executor?.run(async move {
                    let outcome = run_shard(id, observed, mesh, listeners, stop, &report).await;
                    if let Err(reason) = outcome {
                        let _ = report.send((id, Report::Failed(reason)));
                    }
                });
                Ok::<(), glommio::GlommioError<()>>(())
            })
            .map_err(|e| StartError::Shard {
                shard: id,
                reason: e.to_string(),
            })?;
            let report = report_tx.clone();
            threads.push(std::thread::spawn(move || {
                let err = match handle.join() {
                    Ok(Ok(())) => return,
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => "the shard thread panicked".to_string(),
                };
                warn!(shard = id, "shard executor failed: {err}");
                let _ = report.send((id, Report::Failed(explain(&err))));
            }));
        }
        drop(report_tx);

        let server = Server {
            threads,
            stop,
            observed: observed.clone(),
            histogram_log: None,
            admin_addr,
            rtmp_addr,
            http_addr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ready = 0;
        while ready < shards {
            let left = deadline.saturating_duration_since(Instant::now());
            match report_rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok((_, Report::Ready)) => ready += 1,
                Ok((shard, Report::Failed(reason))) => {
                    server.stop();
                    return Err(StartError::Shard { shard, reason });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    server.stop();
                    return Err(StartError::Timeout(START_TIMEOUT));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    server.stop();
                    return Err(StartError::Shard {
                        shard: ready,
                        reason: "executor exited during start".into(),
                    });
                }
            }
        }
        let mut server = server;
        if !config.metrics.histogram_log.is_empty() {
            let interval = Duration::from_millis(config.metrics.histogram_log_interval_ms);
            let path = std::path::Path::new(&config.metrics.histogram_log);
            match LogWriter::spawn(path, interval, observed.histograms.clone()) {
                Ok(writer) => server.histogram_log = Some(writer),
                Err(err) => {
                    server.stop();
                    return Err(StartError::HistogramLog(err));
                }
            }
        }
        info!(
            shards,
            rtmp = %server.rtmp_addr,
            http = %server.http_addr,
            admin = %server.admin_addr.map_or("none".to_string(), |a| a.to_string()),
            "corecast serving"
        );
        Ok(server)
    }

    /// The RTMP address (with the actual port when port 0 was configured).
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp_addr
    }

    /// The HTTP address (with the actual port when port 0 was configured).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Every shard's counters, by shard index.
    pub fn stats(&self) -> &[Arc<ShardStats>] {
        &self.observed.all_stats
    }

    /// Every shard's latency histograms as last published (once per
    /// [`crate::metrics::PUBLISH_INTERVAL`]).
    pub fn histograms(&self) -> Arc<Published> {
        self.observed.histograms.clone()
    }

    /// Whether every shard serves and has beaten within `silence` (see [`health`]).
    pub fn readiness(&self, silence: Duration) -> Readiness {
        self.observed.health.check(crate::media::now_ns(), silence)
    }

    /// Every shard's counters summed: what `STATUS=` and the logs say of the audience.
    pub fn audience(&self) -> Audience {
        let sum = |field| crate::stats::total(self.stats(), field);
        Audience {
            streams: sum(|s| &s.streams),
            publishers: sum(|s| &s.publishers),
            flv_viewers: sum(|s| &s.flv_viewers),
            rtmp_players: sum(|s| &s.rtmp_players),
        }
    }

    /// Reloads the configuration from `sources` (see [`reload`]): applied when valid and no
    /// key that needs a restart changed, else nothing changes. Logged and counted. Returns
    /// the outcome and, when applied, the configuration now running.
    pub fn reload(&self, sources: &Sources) -> (Outcome, Option<Arc<Config>>) {
        let reloads = &self.observed.reloads;
        let (outcome, applied) = match sources.load() {
            Err(err) => (Outcome::Invalid(err.to_string()), None),
            Ok(loaded) => {
                let (_, running) = reloads.current();
                let keys = reload::restart_needed(&running, &loaded.config);
                if keys.is_empty() {
                    let config = Arc::new(loaded.config);
                    self.apply(config.clone());
                    (Outcome::Applied, Some(config))
                } else {
                    (Outcome::Refused(keys), None)
                }
            }
        };
        reloads.count(&outcome);
        match &outcome {
            Outcome::Applied => info!(action = "config-reload", "configuration reload: {outcome}"),
            _ => warn!(action = "config-reload", "configuration reload: {outcome}"),
        }
        (outcome, applied)
    }

    /// The reload the admin API asks for, if one waits (see [`Reloads::ask`]).
    pub fn reload_asked(&self) -> Option<u64> {
        self.observed.reloads.pending()
    }

    /// Answers the API's reload requests up to `asked` (none: a SIGHUP's reload).
    pub fn answer_reload(&self, asked: Option<u64>, outcome: Outcome) {
        if let Some(ticket) = asked {
            self.observed.reloads.answer(ticket, outcome);
        }
    }

    /// Hands `config` to the shared limits and to every shard, and waits (at most
    /// [`RELOAD_WAIT`]) until every shard runs it.
    fn apply(&self, config: Arc<Config>) {
        let observed = &self.observed;
        observed.admission.set_caps(caps(&config));
        let l = &config.limits;
        observed.publish_limits.set_limits(
            l.max_streams_per_ip,
            l.max_publishes_per_ip_per_minute,
            l.exempt_loopback,
            l.ipv6_prefix_len,
        );
        observed.media_budget.set_limit(media_budget(&config));
        let version = observed.reloads.publish(config);
        let deadline = Instant::now() + RELOAD_WAIT;
        while !observed.reloads.taken_by_all(version) {
            if Instant::now() >= deadline {
                warn!(version, "a shard has not taken the new configuration yet");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops every shard and waits for their threads; the histogram log gets its last
    /// interval.
    pub fn stop(self) {
        self.observed.health.set_stopping();
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        if let Some(log) = self.histogram_log {
            log.finish();
        }
    }

    /// True when a shard's thread has ended although the server was not stopped.
    pub fn has_failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Blocks until every shard has stopped.
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Starts shard `id`'s thread (named `corecast-{id}`, with [`SHARD_STACK_BYTES`] of stack)
/// running `body`, and returns once `body` has called the function it is given (once its
/// executor is made), or has ended without calling it. glommio numbers executors in the
/// order they are made, and the shard mesh orders its peers by that number: made one at a
/// time, in shard order, shard `id` is mesh peer `id`. (Made concurrently, as the threads
/// happen to run, they came out of order on a busy machine, and the start failed.)
fn spawn_shard_thread<T: Send + 'static>(
    id: usize,
    body: impl FnOnce(&dyn Fn()) -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    let (made_tx, made) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("corecast-{id}"))
        .stack_size(SHARD_STACK_BYTES)
        .spawn(move || {
            body(&|| {
                let _ = made_tx.send(());
            })
        })?;
    // An error: `body` ended (or panicked) without calling it; the thread's result says why.
    let _ = made.recv();
    Ok(handle)
}

/// Binds one SO_REUSEPORT listener per shard on `addr`, unless another process already
/// serves it. Port 0 picks a free port once; the other shards bind the same one.
///
/// SO_REUSEPORT would let a second corecast of the same user join the listening group
/// silently, and the kernel would then split connections between the two processes. So:
/// 1. [`net::probe_unserved`] binds `addr` without SO_REUSEPORT and closes it: the kernel
///    refuses that next to any listener on the address, or on one overlapping it (so a
///    second process fails here, without ever taking a connection). Port 0 needs no probe:
///    the kernel picks a port no socket uses.
/// 2. The shards' sockets bind and listen.
/// 3. [`net::foreign_listener`] checks that no other process listens there now. This
///    closes the race of step 1: two processes starting together may both pass their
///    probe before either listens; whichever checks last sees the other, so they never both
///    serve. (Both may fail, and connections that reached the loser's sockets in the
///    moment between its `listen` and its close are reset.) The table of the address's own
///    family is read: a racing process on `[::]:P` against one on `0.0.0.0:P` is left to
///    the probe. Should the table be unreadable (no /proc), the probe alone stands, with a
///    warning.
fn bind_all(
    addr: SocketAddr,
    shards: usize,
    backlog: u32,
) -> Result<(Vec<OwnedFd>, SocketAddr), StartError> {
    let failed = |addr: SocketAddr, source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => StartError::InUse { addr },
        _ => StartError::Bind { addr, source },
    };
    if addr.port() != 0 {
        net::probe_unserved(addr).map_err(|source| failed(addr, source))?;
    }
    let mut bound = addr;
    let mut fds = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket =
            net::reuseport_listener(bound, backlog).map_err(|source| failed(bound, source))?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .ok_or_else(|| StartError::Bind {
                    addr,
                    source: std::io::Error::other("no local address"),
                })?;
        }
        fds.push(OwnedFd::from(socket));
    }
    match net::foreign_listener(bound, &fds) {
        Ok(None) => {}
        Ok(Some(other)) => {
            warn!(%other, "another process started listening on {bound} while corecast was starting");
            return Err(StartError::InUse { addr: bound });
        }
        Err(err) => warn!(
            "cannot read the socket table to check that no other process listens on {bound}: {err}"
        ),
    }
    Ok((fds, bound))
}

/// Adds the likely remedy to an executor's start error.
fn explain(err: &str) -> String {
    // glommio checks the limit against its buffers (MemLockLimit); the kernel then counts
    // the rings too, per user, and refuses with ENOMEM past the limit.
    if err.contains("MemLockLimit") || err.contains("Cannot allocate memory") {
        format!(
            "{err}: the locked-memory limit is too low; raise RLIMIT_MEMLOCK to at least \
             1 MiB per shard (ulimit -l, systemd LimitMEMLOCK=, podman/docker \
             --ulimit memlock=-1:-1)"
        )
    } else if err.contains("Operation not permitted") || err.contains("Function not implemented") {
        format!("{err}: io_uring is unavailable (Linux >= 5.8 with kernel.io_uring_disabled = 0 is required)")
    } else {
        err.to_string()
    }
}

/// Descriptors kept out of `limits.max_connections = 0` (listeners, mesh, logs, files).
const DESCRIPTOR_RESERVE: usize = 256;

/// The connection limits of a configuration.
fn caps(config: &Config) -> Caps {
    let l = &config.limits;
    let total = match l.max_connections {
        0 => net::raise_soft_limit(libc::RLIMIT_NOFILE)
            .map_or(1024, |n| n as usize)
            .saturating_sub(DESCRIPTOR_RESERVE)
            .max(1),
        n => n,
    };
    Caps {
        total,
        per_shard: l.max_connections_per_shard,
        per_ip: l.max_connections_per_ip,
        exempt_loopback: l.exempt_loopback,
        ipv6_prefix_len: l.ipv6_prefix_len,
        viewers_per_stream: l.max_viewers_per_stream,
    }
}

/// `limits.max_media_memory_bytes`, or half of the machine's memory when it is 0.
fn media_budget(config: &Config) -> usize {
    match config.limits.max_media_memory_bytes {
        0 => net::physical_memory().map_or(1 << 30, |bytes| bytes / 2),
        n => n,
    }
}

/// Raises the open-file and locked-memory soft limits to their hard limits.
fn raise_limits() {
    match net::raise_soft_limit(libc::RLIMIT_NOFILE) {
        Ok(n) => info!(limit = n, "open files limit"),
        Err(err) => warn!("cannot raise the open files limit: {err}"),
    }
    if let Err(err) = net::raise_soft_limit(libc::RLIMIT_MEMLOCK) {
        warn!("cannot raise the locked memory limit: {err}");
    }
}

async fn run_shard(
    id: usize,
    observed: Observed,
    mesh: MeshBuilder<MeshMsg, glommio::channels::channel_mesh::Full>,
    listeners: Listeners,
    stop: Arc<AtomicBool>,
    report: &mpsc::Sender<(usize, Report)>,
) -> Result<(), String> {
    // SAFETY: the descriptors are listening TCP sockets whose ownership moves here.
    let listener = |fd: OwnedFd| unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
    let rtmp = listener(listeners.rtmp);
    let http = listener(listeners.http);
    let admin = listeners.admin.map(listener);
    // If another shard fails to start, the mesh never fills: give up when told to stop.
    let joined = futures_lite::future::or(async { Some(mesh.join().await) }, async {
        wait_for_stop(&stop).await;
        None
    })
    .await;
    let (senders, receivers) = match joined {
        Some(result) => result.map_err(|e| format!("cannot join the shard mesh: {e}"))?,
        None => return Ok(()),
    };
    // Mesh peers are ordered by executor id, and executors are created in shard order.
    if senders.peer_id() != id {
        return Err(format!(
            "mesh position {} is not shard {id}",
            senders.peer_id()
        ));
    }
    let shard = Rc::new(Shard::new(id, observed, senders));
    let publisher = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            // glommio's executor statistics restart at every read: each reading is the
            // time spent running tasks since the previous one. Read every LOAD_SAMPLE for
            // the send schedule, summed for the report every PUBLISH_INTERVAL.
            let _ = glommio::executor().executor_stats();
            let (mut sampled, mut published) = (Instant::now(), Instant::now());
            let mut ran_since_report = Duration::ZERO;
            loop {
                glommio::timer::sleep(crate::shard::schedule::LOAD_SAMPLE).await;
                stall_point(shard.id);
                shard.health().beat(shard.id, crate::media::now_ns());
                shard.take_config();
                let ran = glommio::executor().executor_stats().executor_runtime();
                let now = Instant::now();
                shard.observe_load(ran, now.duration_since(sampled));
                sampled = now;
                ran_since_report += ran;
                let wall = now.duration_since(published);
                if wall >= crate::metrics::PUBLISH_INTERVAL {
                    shard.publish_histograms();
                    let busy = ran_since_report.as_secs_f64() / wall.as_secs_f64();
                    shard.publish_report(wall.as_secs_f64(), busy.min(1.0));
                    ran_since_report = Duration::ZERO;
                    published = now;
                }
            }
        })
    };

    let mut receivers = receivers;
    shard.receive_mesh(&mut receivers);
    let rtmp_loop = glommio::spawn_local(accept_loop(shard.clone(), rtmp, Protocol::Rtmp));
    let http_loop = glommio::spawn_local(accept_loop(shard.clone(), http, Protocol::Http));
    let admin_loop =
        admin.map(|admin| glommio::spawn_local(accept_loop(shard.clone(), admin, Protocol::Admin)));
    shard.health().beat(id, crate::media::now_ns());
    let _ = report.send((id, Report::Ready));
    wait_for_stop(&stop).await;
    // Graceful stop: every listener closes at once, so that no connection reaches a stopping
    // process and a new instance can bind the ports right away; streams end; connections
    // get the drain time.
    drop((rtmp_loop, http_loop, admin_loop));
    let started = Instant::now();
    shard.begin_stop();
    let drain = Duration::from_millis(shard.config().server.drain_timeout_ms);
    while Instant::now() < started + drain && shard.admission().shard_connections(id) > 0 {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    let left = shard.admission().shard_connections(id);
    if left > 0 {
        warn!(
            shard = id,
            connections = left,
            "drain deadline reached; closing the rest"
        );
    }
    drop(publisher);
    // The last samples reach the export (and the histogram log's final interval).
    shard.publish_histograms();
    Ok(())
}

/// Where tests stall a shard's thread: the fail point `shard-stall-{id}` (configured with
/// the `FAILPOINTS` environment variable, e.g. `shard-stall-1=sleep(5000)`) exists only in
/// builds with the `failpoints` feature of the `fail` crate, which the test builds turn on;
/// in other builds this is empty.
fn stall_point(id: usize) {
    // Without the feature the macro expands to nothing and `id` goes unused.
    let _ = id;
    fail::fail_point!(&format!("shard-stall-{id}"));
}

async fn wait_for_stop(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// One shard's listening sockets.
struct Listeners {
    rtmp: OwnedFd,
    http: OwnedFd,
    admin: Option<OwnedFd>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn shard_threads_make_their_executors_in_shard_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3)
            .map(|id| {
                let order = order.clone();
                spawn_shard_thread(id, move |made| {
                    // Later shards are quicker: started together, they would come first.
                    std::thread::sleep(Duration::from_millis(40 * (3 - id as u64)));
                    order.lock().unwrap().push(id);
                    made();
                    std::thread::current().name().map(str::to_string)
                })
                .unwrap()
            })
            .collect();
        let names: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(names[2].as_deref(), Some("corecast-2"));
        // A body that ends without calling `made` (its executor could not be made) does not
        // hold up the start.
        let failed = spawn_shard_thread(0, |_| "no executor").unwrap();
        assert_eq!(failed.join().unwrap(), "no executor");
    }
}
