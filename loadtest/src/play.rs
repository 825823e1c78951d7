//! The viewers of a run: groups of HTTP-FLV, RTMP, HLS or LL-HLS viewers of one stream each, whose
//! population follows ramp steps (join or leave at a rate), on one glommio executor.
//!
//! Most viewers are cheap: once playing, their socket goes to the drain thread
//! ([`crate::drain`]), which discards data in the kernel and counts it. The first `probes`
//! viewers of a group parse the stream instead ([`crate::probe`], [`crate::hls`],
//! [`crate::llhls`]); HLS and LL-HLS viewers are HTTP clients on the executor, the cheap
//! ones counting bytes only.
//!
//! Once a second the controller samples every group (viewers playing, throughput, the
//! interval's latency) for the progress line, the timeline and the histogram log; every
//! `window` it checks that each viewer playing through the whole window received what was
//! published in it.

use crate::drain::{Counters, DrainId, Drainer, Reads};
use crate::hls::{self, HlsOptions, HlsStart, HlsStats};
use crate::llhls::{self, LlOptions, LlStats};
use crate::probe::{self, FlvProbe, FrameClock, Percentiles, Probed, Thresholds};
use corecast_testkit::client::cheap;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdrhistogram::Histogram;
use rml_rtmp::sessions::{ClientSessionEvent, ClientSessionResult};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A viewer's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP-FLV: `GET /{app}/{stream}.flv` on the HTTP port.
    Flv,
    /// RTMP play on the RTMP port.
    Rtmp,
    /// HLS: the playlist `/{app}/{stream}.m3u8` and its segments on the HTTP port.
    Hls,
    /// Low-Latency HLS: the media playlist `/{app}/{stream}/ll.m3u8` (blocking reloads) and
    /// its parts on the HTTP port, as hls.js plays it in low-latency mode.
    Llhls,
}

/// From `at` into the run, the group holds `viewers` viewers, joining or leaving at `rate`
/// a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// When the step starts, from the start of the run.
    pub at: Duration,
    /// Viewers to hold.
    pub viewers: usize,
    /// Viewers opened (or closed) per second to get there.
    pub rate: f64,
}

/// Viewers of one stream over one protocol.
#[derive(Debug, Clone)]
pub struct Group {
    /// Label in reports.
    pub name: String,
    /// Server addresses (the HTTP port for FLV, HLS and LL-HLS, the RTMP port for RTMP): viewers
    /// are spread over them in turn, as over the edges of one origin. Not empty.
    pub targets: Vec<SocketAddr>,
    /// Protocol.
    pub protocol: Protocol,
    /// Application.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Population over time, sorted by `at`.
    pub steps: Vec<Step>,
    /// The first `probes` viewers parse the stream and measure it.
    pub probes: usize,
    /// HLS: where a new viewer starts in the playlist.
    pub hls_start: HlsStart,
    /// LL-HLS: the query string of the first playlist request, without `?` (a protected
    /// stream's `token=...`).
    pub query: Option<String>,
}

impl Group {
    /// The most viewers this group holds at once.
    pub fn peak(&self) -> usize {
        self.steps.iter().map(|s| s.viewers).max().unwrap_or(0)
    }

    fn step_at(&self, t: Duration) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.at <= t)
    }
}

/// A run of viewers.
#[derive(Debug, Clone)]
pub struct PlayPlan {
    /// The groups.
    pub groups: Vec<Group>,
    /// Length of the run.
    pub duration: Duration,
    /// Stall and gap thresholds of probes.
    pub thresholds: Thresholds,
    /// Length of a delivery window.
    pub window: Duration,
    /// Share of the published bytes every viewer must receive in every window.
    pub window_share: f64,
    /// How cheap viewers read.
    pub reads: Reads,
    /// CPU of the drain thread (the executor is placed by the caller).
    pub cpu: Option<usize>,
    /// Expected bitrate of every stream, for the window check when the run does not
    /// publish the stream itself; without it the median viewer is the reference.
    pub expect_kbps: Option<f64>,
}

/// One second of one group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Viewers playing.
    pub viewers: usize,
    /// Throughput over the second.
    pub gbit_per_s: f64,
    /// Probes' p99 latency over the second (0 without samples).
    pub p99_ms: f64,
    /// Viewers failed or ended early so far.
    pub errors: usize,
}

/// HLS figures of a group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HlsSummary {
    /// Request sent to response received (playlists and segments).
    pub request: Percentiles,
    /// Probes: publisher sent a segment's last frame to the viewer having the segment.
    pub segment_latency: Percentiles,
    /// Playlists fetched.
    pub playlists: u64,
    /// Segments fetched.
    pub segments: u64,
    /// 404 responses.
    pub not_found: u64,
    /// No new segment for longer than the stall threshold.
    pub stalls: u64,
    /// Other failed requests.
    pub errors: u64,
}

/// LL-HLS figures of a group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LlHlsSummary {
    /// Blocking reloads answered 200: request sent to response received, the server's hold
    /// until the part existed included.
    pub reload: Percentiles,
    /// Part requests answered 200: request sent to response received.
    pub part_request: Percentiles,
    /// Every viewer, parts fetched live: part received minus its end by the playlist's
    /// program dates.
    pub date_latency: Percentiles,
    /// Probes, parts fetched live: part received minus the send time of its last stamped
    /// frame.
    pub part_latency: Percentiles,
    /// Playlists fetched (the first ones and blocking reloads).
    pub playlists: u64,
    /// Parts fetched.
    pub parts: u64,
    /// Of `parts`, those fetched when joining at the live edge (left out of the latencies).
    pub joined_parts: u64,
    /// Initialization segments fetched.
    pub maps: u64,
    /// Body bytes of the parts and initialization segments.
    pub bytes: u64,
    /// 404 responses.
    pub not_found: u64,
    /// 503 responses (a blocking reload whose part did not come in time).
    pub unavailable: u64,
    /// Other failed requests.
    pub errors: u64,
    /// Playlists answered 200 that the test kit's checker refused.
    pub invalid_playlists: u64,
    /// Probes: initialization segments or parts whose boxes could not be read.
    pub unreadable: u64,
    /// No new part for longer than the stall threshold while live.
    pub stalls: u64,
    /// Viewers that fell out of the listed parts (or saw the stream restart) and joined
    /// again at the live edge.
    pub resyncs: u64,
    /// Viewers that saw `EXT-X-ENDLIST`.
    pub ended: u64,
}

impl LlHlsSummary {
    /// The summary of a group's measurements.
    pub fn of(s: &LlStats) -> Self {
        LlHlsSummary {
            reload: Percentiles::of(&s.reload),
            part_request: Percentiles::of(&s.part_request),
            date_latency: Percentiles::of(&s.date_latency),
            part_latency: Percentiles::of(&s.part_latency),
            playlists: s.playlists,
            parts: s.parts,
            joined_parts: s.joined_parts,
            maps: s.maps,
            bytes: s.bytes,
            not_found: s.not_found,
            unavailable: s.unavailable,
            errors: s.errors,
            invalid_playlists: s.invalid_playlists,
            unreadable: s.unreadable,
            stalls: s.stalls,
            resyncs: s.resyncs,
            ended: s.ended,
        }
    }
}

/// Outcome of one group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupSummary {
    /// Label.
    pub name: String,
    /// Protocol.
    pub protocol: String,
    /// Most viewers asked for at once.
    pub viewers: usize,
    /// Viewers that started playing.
    pub connected: usize,
    /// Viewers that could not start.
    pub failed: usize,
    /// Viewers whose connection ended before they left or the run did.
    pub ended_early: usize,
    /// Viewers closed by a ramp step (churn).
    pub left: usize,
    /// Bytes received by all viewers.
    pub bytes: u64,
    /// Mean throughput over the run, Gbit/s.
    pub gbit_per_s: f64,
    /// Bytes of the viewer that received least, as a fraction of the median viewer's,
    /// among viewers that played until the end.
    pub slowest_fraction: f64,
    /// Delivery windows checked.
    pub windows: u32,
    /// Smallest share of the reference bytes that any viewer received in a window (1.0
    /// when no window was checked).
    pub worst_window_share: f64,
    /// Windows in which some viewer received less than the required share.
    pub windows_behind: u32,
    /// Probes: send time (SEI stamp) to frame received.
    pub latency: Percentiles,
    /// Probes: request sent to first keyframe (HLS: to first segment) received.
    pub startup: Percentiles,
    /// Probes: no video frame for longer than the stall threshold.
    pub stalls: u64,
    /// Probes: video timestamp jumps larger than the gap threshold (skipped frames).
    pub gaps: u64,
    /// Probes: stamped frames that came from the GOP cache (sent before the probe asked),
    /// left out of `latency`.
    pub cached_frames: u64,
    /// Viewers still connecting when the run ended.
    pub connecting_at_end: usize,
    /// Payload bytes published to the group's stream during the run, when this run
    /// publishes it.
    pub published_bytes: Option<u64>,
    /// HLS viewers' figures.
    pub hls: Option<HlsSummary>,
    /// LL-HLS viewers' figures.
    pub llhls: Option<LlHlsSummary>,
    /// One sample a second.
    pub timeline: Vec<Sample>,
}

/// Outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlaySummary {
    /// Seconds the run lasted.
    pub seconds: f64,
    /// Viewers the open-file limit allows.
    pub fd_cap: u64,
    /// When the viewers' run started, Unix time in ms.
    pub started_unix_ms: u64,
    /// The generator's own CPU use, mean over the run, in cores.
    pub generator_cpu: f64,
    /// The generator's busiest second, in cores.
    pub generator_cpu_peak: f64,
    /// Per group.
    pub groups: Vec<GroupSummary>,
    /// Per group, the probes' latency over the whole run (ns).
    #[serde(skip)]
    pub latency_histograms: Vec<Histogram<u64>>,
}

/// Interval histograms of one group, handed to a sink once a second.
pub struct Interval<'a> {
    /// The group's label.
    pub group: &'a str,
    /// Probes' latency in the interval.
    pub latency: &'a Histogram<u64>,
    /// Probes' startup times in the interval.
    pub startup: &'a Histogram<u64>,
}

/// Where the per-second output goes.
pub trait Observer {
    /// One progress line a second.
    fn progress(&mut self, line: &str);
    /// Every group's interval histograms, once a second.
    fn interval(&mut self, start: Instant, end: Instant, intervals: &[Interval<'_>]) {
        let _ = (start, end, intervals);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Playing,
    Failed,
    Ended,
    Left,
}

struct Member {
    /// The server it views from (one of its group's targets).
    target: SocketAddr,
    counters: Arc<Counters>,
    state: Cell<State>,
    drain: Cell<Option<DrainId>>,
    task: RefCell<Option<glommio::task::JoinHandle<()>>>,
    window_start: Cell<Option<u64>>,
}

impl Member {
    /// An HLS or LL-HLS viewer received `n` media bytes: counted, and it plays from its
    /// first ones on.
    fn received(&self, n: usize) {
        self.counters.add(n as u64);
        if self.state.get() == State::Connecting {
            self.state.set(State::Playing);
        }
    }

    fn refresh(&self) -> State {
        if self.state.get() == State::Playing && self.counters.ended() {
            self.state.set(State::Ended);
        }
        self.state.get()
    }
}

struct GroupRun {
    group: Group,
    members: RefCell<Vec<Rc<Member>>>,
    probed: RefCell<Probed>,
    total: RefCell<Probed>,
    hls: RefCell<HlsStats>,
    llhls: RefCell<LlStats>,
    summary: RefCell<GroupSummary>,
    last_bytes: Cell<u64>,
    window_reference: Cell<u64>,
    published_at_start: Option<u64>,
}

/// Runs the plan on the current glommio executor until its duration has passed.
/// `published(path)` gives the payload bytes published so far to `app/name` when this run
/// publishes it, for the delivery windows.
pub async fn run(
    plan: PlayPlan,
    published: &dyn Fn(&str) -> Option<u64>,
    observer: &mut dyn Observer,
) -> std::io::Result<PlaySummary> {
    let drainer = Rc::new(RefCell::new(Drainer::start(plan.cpu, plan.reads)?));
    let started = Instant::now();
    let started_unix_ms = crate::sei::now_unix_ns() / 1_000_000;
    let deadline = started + plan.duration;
    let groups: Vec<Rc<GroupRun>> = plan
        .groups
        .iter()
        .map(|g| {
            Rc::new(GroupRun {
                group: g.clone(),
                members: RefCell::default(),
                probed: RefCell::default(),
                total: RefCell::default(),
                hls: RefCell::default(),
                llhls: RefCell::default(),
                summary: RefCell::new(GroupSummary {
                    name: g.name.clone(),
                    protocol: format!("{:?}", g.protocol).to_lowercase(),
                    viewers: g.peak(),
                    worst_window_share: 1.0,
                    ..GroupSummary::default()
                }),
                last_bytes: Cell::new(0),
                window_reference: Cell::new(0),
                published_at_start: published(&format!("{}/{}", g.app, g.stream)),
            })
        })
        .collect();
    let controllers: Vec<_> = groups
        .iter()
        .map(|g| {
            let (g, drainer, plan) = (g.clone(), drainer.clone(), plan.clone());
            glommio::spawn_local(control(g, drainer, plan, started, deadline)).detach()
        })
        .collect();

    let mut cpu = CpuClock::new();
    let (mut cpu_total, mut cpu_peak) = (0.0, 0.0f64);
    let mut tick = started;
    let mut next_window = started + plan.window;
    while Instant::now() < deadline {
        let next = (tick + Duration::from_secs(1)).min(deadline);
        glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        let now = Instant::now();
        let seconds = now.duration_since(tick).as_secs_f64().max(1e-3);
        let busy = cpu.sample();
        cpu_total += busy * seconds;
        cpu_peak = cpu_peak.max(busy);
        let mut line = format!("t={:>4.0}s", now.duration_since(started).as_secs_f64());
        let mut intervals = Vec::new();
        for g in &groups {
            let sample = g.sample(now.duration_since(started), seconds);
            line += &format!(
                " | {} viewers={}/{} Gbit/s={:.3} p99={:.1}ms errors={}",
                g.group.name,
                sample.viewers,
                g.group.peak(),
                sample.gbit_per_s,
                sample.p99_ms,
                sample.errors
            );
            g.summary.borrow_mut().timeline.push(sample);
            if now >= next_window {
                g.check_window(&plan, published);
            }
            intervals.push(g.take_interval());
        }
        line += &format!(" | generator cpu={:.0}%", busy * 100.0);
        if now >= next_window {
            next_window += plan.window;
        }
        observer.progress(&line);
        let views: Vec<Interval<'_>> = intervals
            .iter()
            .zip(&groups)
            .map(|(p, g)| Interval {
                group: &g.group.name,
                latency: &p.latency,
                startup: &p.startup,
            })
            .collect();
        observer.interval(tick, now, &views);
        for (p, g) in intervals.iter().zip(&groups) {
            g.absorb(p);
        }
        tick = now;
    }
    for c in controllers {
        c.cancel();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (summaries, latency_histograms) =
        groups.iter().map(|g| g.finish(elapsed, published)).unzip();
    for g in &groups {
        for m in g.members.borrow().iter() {
            let task = m.task.borrow_mut().take();
            if let Some(task) = task {
                task.cancel();
            }
        }
    }
    drop(drainer);
    Ok(PlaySummary {
        seconds: elapsed,
        fd_cap: crate::viewer_capacity(),
        started_unix_ms,
        generator_cpu: cpu_total / elapsed.max(1e-3),
        generator_cpu_peak: cpu_peak,
        groups: summaries,
        latency_histograms,
    })
}

/// Runs the plan on a glommio executor of its own (on `plan.cpu` if set) and waits for it.
/// `sent` lists the payload-byte counters of the streams this run publishes
/// ([`crate::publish::Publishers`]), the reference of the delivery windows.
pub fn run_blocking<O: Observer + Send + 'static>(
    plan: PlayPlan,
    sent: Vec<(String, Arc<AtomicU64>)>,
    mut observer: O,
) -> std::io::Result<(PlaySummary, O)> {
    let placement = match plan.cpu {
        Some(cpu) => glommio::Placement::Fixed(cpu),
        None => glommio::Placement::Unbound,
    };
    let executor = glommio::LocalExecutorBuilder::new(placement)
        .name("corecast-load")
        .spawn(move || async move {
            let published = |path: &str| {
                sent.iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, n)| n.load(Ordering::Relaxed))
            };
            let summary = run(plan, &published, &mut observer).await;
            summary.map(|s| (s, observer))
        })
        .map_err(|e| std::io::Error::other(format!("cannot start the viewers' executor: {e}")))?;
    executor
        .join()
        .map_err(|e| std::io::Error::other(format!("viewers' executor failed: {e}")))?
}

/// Opens and closes the group's viewers to follow its steps.
async fn control(
    g: Rc<GroupRun>,
    drainer: Rc<RefCell<Drainer>>,
    plan: PlayPlan,
    started: Instant,
    deadline: Instant,
) {
    let mut opened = 0usize;
    let mut probes = 0usize;
    // Probes are spread over the population (every `stride`-th viewer), so that they see
    // the whole join, not only its first moments.
    let stride = (g.group.peak() / g.group.probes.max(1)).max(1);
    let mut last = Instant::now();
    let mut credit = 0.0f64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let Some(step) = g.group.step_at(now.duration_since(started)).copied() else {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            last = Instant::now();
            continue;
        };
        credit = (credit + now.duration_since(last).as_secs_f64() * step.rate).min(step.rate);
        last = now;
        let mut active = g.active();
        if active < step.viewers {
            while credit >= 1.0 && active < step.viewers {
                credit -= 1.0;
                let probe = probes < g.group.probes && opened.is_multiple_of(stride);
                probes += usize::from(probe);
                g.open(probe, &drainer, &plan, deadline);
                opened += 1;
                active += 1;
            }
        } else if active > step.viewers {
            while credit >= 1.0 && active > step.viewers {
                credit -= 1.0;
                g.leave_newest(&drainer);
                active -= 1;
            }
        } else {
            credit = 0.0;
        }
        // Joins and leaves go in batches every 10 ms: at 1,000 a second, 10 at a time.
        let pause = Duration::from_millis(if active == step.viewers { 50 } else { 10 });
        glommio::timer::sleep(pause).await;
    }
}

impl GroupRun {
    fn active(&self) -> usize {
        self.members
            .borrow()
            .iter()
            .filter(|m| matches!(m.refresh(), State::Connecting | State::Playing))
            .count()
    }

    fn open(
        self: &Rc<Self>,
        probe: bool,
        drainer: &Rc<RefCell<Drainer>>,
        plan: &PlayPlan,
        deadline: Instant,
    ) {
        let targets = &self.group.targets;
        let target = targets[self.members.borrow().len() % targets.len().max(1)];
        let member = Rc::new(Member {
            target,
            counters: Arc::default(),
            state: Cell::new(State::Connecting),
            drain: Cell::new(None),
            task: RefCell::new(None),
            window_start: Cell::new(None),
        });
        self.members.borrow_mut().push(member.clone());
        let (g, drainer, thresholds) = (self.clone(), drainer.clone(), plan.thresholds);
        let m = member.clone();
        let task = glommio::spawn_local(async move {
            let result = match (g.group.protocol, probe) {
                (Protocol::Hls, _) => g.view_hls(&m, probe, thresholds, deadline).await,
                (Protocol::Llhls, _) => g.view_llhls(&m, probe, thresholds, deadline).await,
                (Protocol::Flv, true) => g.probe_flv(&m, thresholds).await,
                (Protocol::Rtmp, true) => g.probe_rtmp(&m, thresholds).await,
                (_, false) => g.cheap(&m, &drainer).await,
            };
            match result {
                Err(_) if m.state.get() == State::Connecting => m.state.set(State::Failed),
                // Cheap viewers end in the drain thread; the others end here (HLS and LL-HLS
                // viewers stop by themselves at the deadline: that is no end).
                _ if m.drain.get().is_none() && Instant::now() < deadline => m.counters.end(),
                _ => {}
            }
        })
        .detach();
        *member.task.borrow_mut() = Some(task);
    }

    fn leave_newest(&self, drainer: &Rc<RefCell<Drainer>>) {
        let newest = self
            .members
            .borrow()
            .iter()
            .rev()
            .find(|m| matches!(m.refresh(), State::Connecting | State::Playing))
            .cloned();
        let Some(m) = newest else {
            return;
        };
        m.state.set(State::Left);
        if let Some(id) = m.drain.take() {
            drainer.borrow().remove(id);
        }
        let task = m.task.borrow_mut().take();
        if let Some(task) = task {
            task.cancel();
        }
    }

    async fn cheap(&self, m: &Member, drainer: &Rc<RefCell<Drainer>>) -> std::io::Result<()> {
        let g = &self.group;
        let protocol = match g.protocol {
            Protocol::Rtmp => cheap::Protocol::Rtmp,
            _ => cheap::Protocol::Flv,
        };
        let s = cheap::start(m.target, protocol, &g.app, &g.stream).await?;
        let id = drainer.borrow_mut().add(&s, m.counters.clone())?;
        m.drain.set(Some(id));
        m.state.set(State::Playing);
        Ok(())
    }

    async fn probe_flv(&self, m: &Member, thresholds: Thresholds) -> std::io::Result<()> {
        let g = &self.group;
        let asked = Instant::now();
        let mut s = cheap::start(m.target, cheap::Protocol::Flv, &g.app, &g.stream).await?;
        m.state.set(State::Playing);
        let mut parser = FlvProbe::new(asked, thresholds);
        let mut result = Ok(());
        cheap::drain_bytes(&mut s, |chunk| {
            m.counters.add(chunk.len() as u64);
            if result.is_ok() {
                result = parser.feed(chunk, &mut self.probed.borrow_mut());
            }
        })
        .await?;
        result.map_err(std::io::Error::other)
    }

    async fn probe_rtmp(&self, m: &Member, thresholds: Thresholds) -> std::io::Result<()> {
        let g = &self.group;
        let asked = Instant::now();
        let mut s = cheap::connect(m.target).await?;
        let playback = cheap::start_rtmp_session(&mut s, &g.app, &g.stream).await?;
        m.state.set(State::Playing);
        let mut session = playback.session;
        let mut clock = FrameClock::new(asked, thresholds);
        let mut results = playback.pending;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            for result in results.drain(..) {
                match result {
                    ClientSessionResult::OutboundResponse(p) => s.write_all(&p.bytes).await?,
                    ClientSessionResult::RaisedEvent(ClientSessionEvent::VideoDataReceived {
                        timestamp,
                        data,
                    }) => probe::flv_video(
                        &mut clock,
                        timestamp.value,
                        &data,
                        &mut self.probed.borrow_mut(),
                    ),
                    _ => {}
                }
            }
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            m.counters.add(n as u64);
            results = session
                .handle_input(&buf[..n])
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }

    async fn view_hls(
        &self,
        m: &Member,
        probe: bool,
        thresholds: Thresholds,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let g = &self.group;
        let options = HlsOptions {
            start: g.hls_start,
            // A player starting three segments back has that much buffer.
            stall: HlsOptions::default().stall.max(thresholds.stall),
            probe,
        };
        // An HLS viewer plays from its first segment bytes on.
        let count = |n: usize| m.received(n);
        hls::view(
            m.target, &g.app, &g.stream, &options, deadline, &count, &self.hls,
        )
        .await
    }

    async fn view_llhls(
        &self,
        m: &Member,
        probe: bool,
        thresholds: Thresholds,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let g = &self.group;
        let options = LlOptions {
            stall: thresholds.stall,
            probe,
            query: g.query.clone(),
        };
        // An LL-HLS viewer plays from its first part bytes on.
        let count = |n: usize| m.received(n);
        llhls::view(
            m.target,
            &g.app,
            &g.stream,
            &options,
            deadline,
            &count,
            &self.llhls,
        )
        .await
    }

    fn sample(&self, t: Duration, seconds: f64) -> Sample {
        let members = self.members.borrow();
        let bytes: u64 = members.iter().map(|m| m.counters.bytes()).sum();
        let mut viewers = 0;
        let mut errors = 0;
        for m in members.iter() {
            match m.refresh() {
                State::Playing => viewers += 1,
                State::Failed | State::Ended => errors += 1,
                _ => {}
            }
        }
        let p99 = {
            let p = self.probed.borrow();
            if p.latency.is_empty() {
                0.0
            } else {
                p.latency.value_at_quantile(0.99) as f64 / 1e6
            }
        };
        let gbit = (bytes - self.last_bytes.get().min(bytes)) as f64 * 8.0 / 1e9 / seconds;
        self.last_bytes.set(bytes);
        Sample {
            t: t.as_secs_f64(),
            viewers,
            gbit_per_s: gbit,
            p99_ms: p99,
            errors,
        }
    }

    fn take_interval(&self) -> Probed {
        std::mem::take(&mut *self.probed.borrow_mut())
    }

    fn absorb(&self, interval: &Probed) {
        let mut total = self.total.borrow_mut();
        let _ = total.latency.add(&interval.latency);
        let _ = total.startup.add(&interval.startup);
        total.stalls += interval.stalls;
        total.gaps += interval.gaps;
        total.frames += interval.frames;
        total.cached += interval.cached;
    }

    /// Closes a delivery window: every viewer playing through it must have received
    /// `window_share` of what was published in it (less, for kernel-discard viewers, one
    /// SO_RCVLOWAT of slack: bytes the kernel holds until the threshold is reached are not
    /// counted yet).
    fn check_window(&self, plan: &PlayPlan, published: &dyn Fn(&str) -> Option<u64>) {
        if matches!(self.group.protocol, Protocol::Hls | Protocol::Llhls) {
            return;
        }
        let path = format!("{}/{}", self.group.app, self.group.stream);
        let members = self.members.borrow();
        let mut deltas = Vec::new();
        for m in members.iter() {
            let playing = m.refresh() == State::Playing;
            let now = m.counters.bytes();
            if let (true, Some(start)) = (playing, m.window_start.get()) {
                deltas.push(now - start.min(now));
            }
            m.window_start.set(playing.then_some(now));
        }
        let reference_now = published(&path);
        let reference = match (reference_now, plan.expect_kbps) {
            (Some(now), _) => Some(now - self.window_reference.replace(now).min(now)),
            (None, Some(kbps)) => Some((kbps * 1000.0 / 8.0 * plan.window.as_secs_f64()) as u64),
            (None, None) => None,
        };
        if deltas.is_empty() {
            return;
        }
        deltas.sort_unstable();
        let reference = reference.unwrap_or(deltas[deltas.len() / 2]).max(1);
        let worst = (deltas[0] + u64::from(plan.reads.slack())) as f64 / reference as f64;
        let mut s = self.summary.borrow_mut();
        s.windows += 1;
        s.worst_window_share = s.worst_window_share.min(worst);
        if worst < plan.window_share {
            s.windows_behind += 1;
        }
    }

    fn finish(
        &self,
        seconds: f64,
        published: &dyn Fn(&str) -> Option<u64>,
    ) -> (GroupSummary, Histogram<u64>) {
        let members = self.members.borrow();
        let mut s = self.summary.borrow().clone();
        let mut to_end = Vec::new();
        for m in members.iter() {
            let state = m.refresh();
            match state {
                State::Failed => s.failed += 1,
                State::Ended => s.ended_early += 1,
                State::Left => s.left += 1,
                _ => {}
            }
            if state != State::Failed && state != State::Connecting {
                s.connected += 1;
            }
            if state == State::Playing {
                to_end.push(m.counters.bytes());
            }
            s.bytes += m.counters.bytes();
        }
        to_end.sort_unstable();
        let median = to_end.get(to_end.len() / 2).copied().unwrap_or(0);
        s.slowest_fraction = match to_end.first() {
            Some(&least) if median > 0 => least as f64 / median as f64,
            _ => 0.0,
        };
        s.gbit_per_s = s.bytes as f64 * 8.0 / 1e9 / seconds.max(1e-3);
        let total = self.total.borrow();
        s.latency = Percentiles::of(&total.latency);
        s.startup = Percentiles::of(&total.startup);
        s.stalls = total.stalls;
        s.gaps = total.gaps;
        s.cached_frames = total.cached;
        s.connecting_at_end = members
            .iter()
            .filter(|m| m.state.get() == State::Connecting)
            .count();
        let path = format!("{}/{}", self.group.app, self.group.stream);
        s.published_bytes = match (published(&path), self.published_at_start) {
            (Some(end), Some(start)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        let mut latency = total.latency.clone();
        if self.group.protocol == Protocol::Hls {
            let h = self.hls.borrow();
            s.latency = Percentiles::of(&h.frame_latency);
            s.startup = Percentiles::of(&h.startup);
            s.stalls = h.stalls;
            s.hls = Some(HlsSummary {
                request: Percentiles::of(&h.request),
                segment_latency: Percentiles::of(&h.segment_latency),
                playlists: h.playlists,
                segments: h.segments,
                not_found: h.not_found,
                stalls: h.stalls,
                errors: h.errors,
            });
            latency = h.frame_latency.clone();
        }
        if self.group.protocol == Protocol::Llhls {
            let l = self.llhls.borrow();
            s.latency = Percentiles::of(&l.frame_latency);
            s.startup = Percentiles::of(&l.startup);
            s.stalls = l.stalls;
            s.llhls = Some(LlHlsSummary::of(&l));
            latency = l.frame_latency.clone();
        }
        (s, latency)
    }
}

/// The process's CPU time between samples, in cores.
struct CpuClock {
    last_cpu: Duration,
    last_wall: Instant,
}

impl CpuClock {
    fn new() -> Self {
        CpuClock {
            last_cpu: process_cpu(),
            last_wall: Instant::now(),
        }
    }

    fn sample(&mut self) -> f64 {
        let (cpu, wall) = (process_cpu(), Instant::now());
        let busy = (cpu.saturating_sub(self.last_cpu)).as_secs_f64()
            / wall.duration_since(self.last_wall).as_secs_f64().max(1e-3);
        (self.last_cpu, self.last_wall) = (cpu, wall);
        busy
    }
}

/// User and system CPU time of this process, all threads.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage fills a plain struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(steps: &[(u64, usize, f64)]) -> Group {
        Group {
            name: "g".into(),
            targets: vec!["127.0.0.1:1".parse().unwrap()],
            protocol: Protocol::Flv,
            app: "live".into(),
            stream: "s".into(),
            steps: steps
                .iter()
                .map(|&(at, viewers, rate)| Step {
                    at: Duration::from_secs(at),
                    viewers,
                    rate,
                })
                .collect(),
            probes: 0,
            hls_start: HlsStart::SegmentsBack(3),
            query: None,
        }
    }

    #[test]
    fn steps_are_found_by_time() {
        let g = group(&[(0, 100, 50.0), (10, 300, 100.0), (20, 0, 100.0)]);
        assert_eq!(g.peak(), 300);
        assert_eq!(
            g.step_at(Duration::from_secs(5)).map(|s| s.viewers),
            Some(100)
        );
        assert_eq!(
            g.step_at(Duration::from_secs(10)).map(|s| s.viewers),
            Some(300)
        );
        assert_eq!(
            g.step_at(Duration::from_secs(25)).map(|s| s.viewers),
            Some(0)
        );
        let late = group(&[(5, 10, 1.0)]);
        assert!(late.step_at(Duration::from_secs(1)).is_none());
    }

    #[test]
    fn cpu_clock_sees_work() {
        let mut clock = CpuClock::new();
        let until = Instant::now() + Duration::from_millis(50);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = clock.sample();
        assert!(busy > 0.3, "{busy}");
    }
}
