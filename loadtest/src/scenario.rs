//! Scenarios: publishers and viewer groups with ramp steps, in a TOML file
//! (`loadtest/scenarios/*.toml`); loadtest/README.md explains every key.

use crate::drain::{ReadMode, DEFAULT_RCVLOWAT};
use crate::hls::HlsStart;
use crate::play::{self, Group, Observer, PlayPlan, PlaySummary, Protocol, Step};
use crate::probe::Thresholds;
use crate::publish::{PublishReport, Publishers};
use crate::{parse_duration, publish, RunError};
use corecast::flv::reader::FlvTag;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Length of the viewers' run (publishers start `generator.warmup` earlier).
    pub duration: String,
    /// Where the server listens.
    #[serde(default)]
    pub target: Targets,
    /// Generator settings.
    #[serde(default)]
    pub generator: Generator,
    /// Publishers.
    #[serde(default)]
    pub publish: Vec<PublishSpec>,
    /// Viewer groups.
    #[serde(default)]
    pub viewers: Vec<ViewerSpec>,
}

/// Server addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// RTMP (publishers and RTMP viewers).
    #[serde(default = "default_rtmp")]
    pub rtmp: SocketAddr,
    /// HTTP (HTTP-FLV, HLS and LL-HLS viewers).
    #[serde(default = "default_http")]
    pub http: SocketAddr,
}

fn default_rtmp() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1935))
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            rtmp: default_rtmp(),
            http: default_http(),
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Generator {
    /// CPU for the viewers (executor and drain thread); none: any CPU.
    pub cpu: Option<usize>,
    /// How cheap viewers read (`player` or `kernel-discard`).
    pub reads: ReadMode,
    /// SO_RCVLOWAT of kernel-discard viewers, bytes.
    pub rcvlowat: u32,
    /// Delivery window.
    pub window: String,
    /// Share of the published bytes every viewer must get in every window.
    pub window_share: f64,
    /// A probe stalls when no video frame arrives for this long.
    pub stall: String,
    /// A video timestamp jump above this (ms) is a skipped-frame gap.
    pub gap_ms: u32,
    /// Publishers start this long before the viewers.
    pub warmup: String,
    /// Expected bitrate of streams this scenario does not publish (kbit/s).
    pub expect_kbps: Option<f64>,
}

impl Default for Generator {
    fn default() -> Self {
        Generator {
            cpu: None,
            reads: ReadMode::Player,
            rcvlowat: DEFAULT_RCVLOWAT,
            window: "10s".into(),
            window_share: 0.98,
            stall: "1s".into(),
            gap_ms: 250,
            warmup: "2s".into(),
            expect_kbps: None,
        }
    }
}

/// Publishers of `app/{prefix}{i}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// Application.
    #[serde(default = "default_app")]
    pub app: String,
    /// Stream names are `{prefix}0`, `{prefix}1`, ...
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Number of streams.
    #[serde(default = "one")]
    pub streams: usize,
    /// FLV file replayed in real time (relative to the current directory).
    pub file: Option<PathBuf>,
    /// Instead of a file: a synthetic stream of this bitrate, kbit/s.
    pub synthetic_kbps: Option<u64>,
    /// Synthetic stream: frames a second.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Synthetic stream: seconds between keyframes.
    #[serde(default = "default_gop")]
    pub gop_seconds: f64,
}

/// One group of viewers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerSpec {
    /// Label (default: protocol and stream).
    pub name: Option<String>,
    /// `flv`, `rtmp`, `hls` or `llhls`.
    pub protocol: Protocol,
    /// `app/name`.
    pub stream: String,
    /// Probe viewers among them.
    #[serde(default)]
    pub probes: usize,
    /// HLS: start this many segments back from the live edge (0: at the live edge).
    #[serde(default = "three")]
    pub hls_start: usize,
    /// LL-HLS: the query string of the first playlist request, without `?` (a protected
    /// stream's `token=...`).
    pub query: Option<String>,
    /// Addresses to spread this group's viewers over, in turn (the edges of one origin);
    /// empty: the scenario's target for the protocol.
    #[serde(default)]
    pub targets: Vec<SocketAddr>,
    /// Population steps.
    pub steps: Vec<StepSpec>,
}

/// A step of a group's population.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// From this time into the run.
    pub at: String,
    /// Hold this many viewers.
    pub viewers: usize,
    /// Joining or leaving this many a second.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

fn default_app() -> String {
    "live".into()
}
fn default_prefix() -> String {
    "load".into()
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn default_fps() -> u32 {
    30
}
fn default_gop() -> f64 {
    2.0
}
fn default_rate() -> f64 {
    500.0
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A duration or target is refused.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Everything a scenario runs: the viewers' plan and the publishers to start.
pub struct Prepared {
    /// Viewers.
    pub plan: PlayPlan,
    /// Publishers: target, app, prefix, count and tags.
    pub publishers: Vec<(SocketAddr, String, String, usize, Vec<FlvTag>)>,
    /// Publishers start this long before viewers.
    pub warmup: Duration,
}

/// How long publishers keep going after the viewers' run, so that no stream ends under a
/// viewer that is still counted.
const PUBLISH_TAIL: Duration = Duration::from_secs(2);

impl Prepared {
    /// Starts the publishers and waits the warmup; returns their handles.
    pub fn start_publishers(&self) -> Vec<Publishers> {
        let duration = self.warmup + self.plan.duration + PUBLISH_TAIL;
        let started = self
            .publishers
            .iter()
            .map(|(target, app, prefix, count, tags)| {
                publish::spawn(
                    *target,
                    app,
                    prefix,
                    *count,
                    Arc::new(tags.clone()),
                    duration,
                )
            })
            .collect();
        std::thread::sleep(self.warmup);
        started
    }

    /// Runs the scenario: publishers, then the viewers on their executor; waits for both.
    pub fn run<O: Observer + Send + 'static>(
        self,
        observer: O,
    ) -> std::io::Result<(PlaySummary, O, Vec<PublishReport>)> {
        let publishers = self.start_publishers();
        let sent = publishers.iter().flat_map(Publishers::counters).collect();
        let (summary, observer) = play::run_blocking(self.plan, sent, observer)?;
        let reports = publishers.into_iter().flat_map(Publishers::join).collect();
        Ok((summary, observer, reports))
    }
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text).map_err(|message| ScenarioError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a scenario; the error names the offending key.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, v) in scenario.viewers.iter().enumerate() {
            if v.steps.is_empty() {
                return Err(format!("viewers[{i}]: needs at least one step"));
            }
            if !v.stream.contains('/') {
                return Err(format!("viewers[{i}].stream: must be app/name"));
            }
            if v.steps.iter().any(|s| s.rate.is_nan() || s.rate <= 0.0) {
                return Err(format!("viewers[{i}].steps: rate must be positive"));
            }
        }
        for (i, p) in scenario.publish.iter().enumerate() {
            if p.file.is_some() && p.synthetic_kbps.is_some() {
                return Err(format!(
                    "publish[{i}]: file and synthetic_kbps exclude each other"
                ));
            }
        }
        Ok(scenario)
    }

    /// Prefixes every stream name (publishers and viewers) with `prefix`, so that a
    /// scenario can run again against the same server on fresh streams.
    pub fn prefix_streams(&mut self, prefix: &str) {
        for p in &mut self.publish {
            p.prefix = format!("{prefix}{}", p.prefix);
        }
        for v in &mut self.viewers {
            if let Some((app, name)) = v.stream.split_once('/') {
                v.stream = format!("{app}/{prefix}{name}");
            }
        }
    }

    /// Resolves durations, sources and targets. `allow_remote` lifts the loopback rule.
    pub fn prepare(&self, allow_remote: bool) -> Result<Prepared, ScenarioError> {
        let g = &self.generator;
        crate::check_target(self.target.rtmp, allow_remote)?;
        crate::check_target(self.target.http, allow_remote)?;
        for v in &self.viewers {
            for &target in &v.targets {
                crate::check_target(target, allow_remote)?;
            }
        }
        let mut groups = Vec::new();
        for v in &self.viewers {
            let (app, stream) = v.stream.split_once('/').unwrap_or((&v.stream, ""));
            let mut steps = Vec::new();
            for s in &v.steps {
                steps.push(Step {
                    at: parse_step_time(&s.at)?,
                    viewers: s.viewers,
                    rate: s.rate,
                });
            }
            steps.sort_by_key(|s| s.at);
            groups.push(Group {
                name: v
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{:?} {}", v.protocol, v.stream).to_lowercase()),
                targets: match (v.targets.is_empty(), v.protocol) {
                    (false, _) => v.targets.clone(),
                    (true, Protocol::Rtmp) => vec![self.target.rtmp],
                    (true, Protocol::Flv | Protocol::Hls | Protocol::Llhls) => {
                        vec![self.target.http]
                    }
                },
                protocol: v.protocol,
                app: app.to_string(),
                stream: stream.to_string(),
                steps,
                probes: v.probes,
                hls_start: match v.hls_start {
                    0 => HlsStart::LiveEdge,
                    n => HlsStart::SegmentsBack(n),
                },
                query: v.query.clone(),
            });
        }
        let mut publishers = Vec::new();
        for p in &self.publish {
            let tags = match p.synthetic_kbps {
                Some(kbps) => {
                    let gop = (p.gop_seconds * f64::from(p.fps)).round().max(1.0) as u32;
                    corecast_testkit::source::synthetic(kbps, p.fps, gop, 10)
                }
                None => {
                    let file = p
                        .file
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("tests/fixtures/clip.flv"));
                    corecast::flv::reader::read_file(&file)
                        .map_err(|source| ScenarioError::Read { path: file, source })?
                        .1
                }
            };
            publishers.push((
                self.target.rtmp,
                p.app.clone(),
                p.prefix.clone(),
                p.streams,
                tags,
            ));
        }
        Ok(Prepared {
            plan: PlayPlan {
                groups,
                duration: parse_duration(&self.duration)?,
                thresholds: Thresholds {
                    stall: parse_duration(&g.stall)?,
                    gap_ms: g.gap_ms,
                },
                window: parse_duration(&g.window)?,
                window_share: g.window_share,
                reads: g.reads.reads(g.rcvlowat),
                cpu: g.cpu,
                expect_kbps: g.expect_kbps,
            },
            publishers,
            warmup: parse_step_time(&g.warmup)?,
        })
    }
}

/// A step time: a duration, or `0`/`0s` for the start.
fn parse_step_time(text: &str) -> Result<Duration, RunError> {
    match text.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        t => parse_duration(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAMP: &str = r#"
        duration = "30s"
        [target]
        rtmp = "127.0.0.1:1935"
        http = "127.0.0.1:8080"
        [generator]
        cpu = 1
        [[publish]]
        synthetic_kbps = 2600
        [[viewers]]
        protocol = "rtmp"
        stream = "live/load0"
        probes = 5
        steps = [ { at = "10s", viewers = 200 }, { at = "0s", viewers = 100, rate = 50 } ]
        [[viewers]]
        protocol = "hls"
        stream = "live/load0"
        hls_start = 0
        targets = [ "127.0.0.1:8081", "127.0.0.2:8080" ]
        steps = [ { at = "0", viewers = 10 } ]
        [[viewers]]
        protocol = "llhls"
        stream = "live/load0"
        probes = 2
        query = "token=abc"
        steps = [ { at = "0", viewers = 20 } ]
    "#;

    #[test]
    fn scenarios_parse_and_prepare() {
        let s = Scenario::parse(RAMP).unwrap();
        let p = s.prepare(false).unwrap();
        assert_eq!(p.plan.duration, Duration::from_secs(30));
        assert_eq!(p.plan.groups.len(), 3);
        let rtmp = &p.plan.groups[0];
        assert_eq!(rtmp.targets, ["127.0.0.1:1935".parse().unwrap()]);
        assert_eq!(rtmp.steps[0].at, Duration::ZERO, "steps sorted by time");
        assert_eq!((rtmp.steps[0].viewers, rtmp.steps[0].rate), (100, 50.0));
        assert_eq!(rtmp.steps[1].rate, 500.0, "default rate");
        assert_eq!(p.plan.groups[1].hls_start, HlsStart::LiveEdge);
        // A group's own targets: the edges its viewers are spread over.
        let edges: Vec<SocketAddr> = vec![
            "127.0.0.1:8081".parse().unwrap(),
            "127.0.0.2:8080".parse().unwrap(),
        ];
        assert_eq!(p.plan.groups[1].targets, edges);
        let ll = &p.plan.groups[2];
        assert_eq!(
            (ll.protocol, ll.name.as_str()),
            (Protocol::Llhls, "llhls live/load0")
        );
        assert_eq!(
            ll.targets,
            ["127.0.0.1:8080".parse().unwrap()],
            "the HTTP target"
        );
        assert_eq!(ll.query.as_deref(), Some("token=abc"));
        assert_eq!(p.plan.groups[0].query, None);
        assert_eq!(p.publishers.len(), 1);
        assert_eq!(p.plan.cpu, Some(1));
    }

    #[test]
    fn bundled_scenarios_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join("scenarios")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let mut s = Scenario::load(&path).unwrap();
            // Files are relative to the repository root, where the generator runs.
            for p in &mut s.publish {
                p.file = p.file.take().map(|f| root.join("..").join(f));
            }
            let p = s
                .prepare(false)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!p.plan.groups.is_empty(), "{}", path.display());
            assert!(!p.publishers.is_empty(), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 4, "{seen} scenarios");
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = Scenario::parse("duration = \"5s\"\nviewrs = []").unwrap_err();
        assert!(unknown.contains("viewrs"), "{unknown}");
        let no_steps = Scenario::parse(
            "duration = \"5s\"\n[[viewers]]\nprotocol = \"flv\"\nstream = \"live/a\"\nsteps = []",
        )
        .unwrap_err();
        assert!(no_steps.contains("viewers[0]"), "{no_steps}");
        let remote = Scenario::parse("duration = \"5s\"\n[target]\nrtmp = \"192.0.2.1:1935\"")
            .unwrap()
            .prepare(false);
        assert!(matches!(
            remote,
            Err(ScenarioError::Run(RunError::Remote(_)))
        ));
    }
}
