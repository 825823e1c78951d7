use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use corecast_load::drain::{ReadMode, DEFAULT_RCVLOWAT};
use corecast_load::hls::HlsStart;
use corecast_load::play::{self, Group, PlayPlan, PlaySummary, Protocol, Step};
use corecast_load::probe::Thresholds;
use corecast_load::publish;
use corecast_load::report::{self, Console, HistogramLog};
use corecast_load::scenario::Scenario;
use corecast_load::{check_target, parse_duration, viewer_capacity};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// corecast-load: RTMP publishers and HTTP-FLV, RTMP, HLS and LL-HLS viewers, for sizing a
/// relay.
/// Every run is bounded by a duration; targets outside loopback need --allow-remote.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Allow a target outside 127.0.0.0/8 and ::1.
    #[arg(long, global = true)]
    allow_remote: bool,
    /// Print the summary as JSON on stdout (no progress lines).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish an FLV file (looped, real time) or a synthetic stream to N streams.
    Publish {
        /// RTMP address of the server.
        #[arg(long, default_value = "127.0.0.1:1935")]
        target: SocketAddr,
        /// Application.
        #[arg(long, default_value = "live")]
        app: String,
        /// Stream names are PREFIX0, PREFIX1, ...
        #[arg(long, default_value = "load")]
        prefix: String,
        /// Number of publishers.
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// The file to publish.
        #[arg(long, default_value = "tests/fixtures/clip.flv")]
        file: PathBuf,
        /// Publish a synthetic stream of this bitrate (kbit/s) instead of the file.
        #[arg(long, value_name = "KBPS")]
        synthetic: Option<u64>,
        /// Synthetic stream: frames per second.
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// Synthetic stream: seconds between keyframes.
        #[arg(long, default_value_t = 2.0)]
        gop_seconds: f64,
        /// Length of the run (e.g. 30s, 2m).
        #[arg(long)]
        duration: String,
    },
    /// Open N viewers of one stream at a join rate and measure what they receive.
    Play {
        /// Server address: the HTTP port for flv, hls and llhls, the RTMP port for rtmp. Several
        /// (comma-separated, or the option repeated): viewers are spread over them in turn.
        #[arg(long, required = true, value_delimiter = ',')]
        target: Vec<SocketAddr>,
        /// Protocol of the viewers.
        #[arg(long, value_enum, default_value_t = Protocol::Flv)]
        protocol: Protocol,
        /// The stream, as app/name.
        #[arg(long, default_value = "live/load0")]
        stream: String,
        /// Number of viewers.
        #[arg(long, default_value_t = 100)]
        viewers: usize,
        /// Viewers opened per second.
        #[arg(long, default_value_t = 500.0)]
        join_rate: f64,
        /// How many viewers are probes: they parse the stream and measure latency from the
        /// publishers' SEI stamps, startup time, stalls and skipped-frame gaps.
        #[arg(long, default_value_t = 10)]
        probes: usize,
        /// HLS: start this many segments back from the live edge (0: at the live edge).
        #[arg(long, default_value_t = 3)]
        hls_start: usize,
        /// LL-HLS: query string of the first playlist request, without `?` (a protected
        /// stream's token=...); the playlist's URIs carry it on.
        #[arg(long)]
        query: Option<String>,
        /// Expected bitrate of the stream (kbit/s), the reference of the delivery windows;
        /// without it, the median viewer is.
        #[arg(long)]
        expect_kbps: Option<f64>,
        /// Length of the run (e.g. 30s, 2m).
        #[arg(long)]
        duration: String,
        #[command(flatten)]
        common: RunOptions,
    },
    /// Run a scenario file: publishers and viewer groups with ramp steps.
    Run {
        /// The scenario (see loadtest/scenarios/).
        scenario: PathBuf,
        /// Override the scenario's RTMP target.
        #[arg(long)]
        rtmp: Option<SocketAddr>,
        /// Override the scenario's HTTP target.
        #[arg(long)]
        http: Option<SocketAddr>,
        #[command(flatten)]
        common: RunOptions,
    },
}

/// Options of runs with viewers.
#[derive(Args, Debug, Clone)]
struct RunOptions {
    /// CPU to run the generator on (default: any; a scenario may set it).
    #[arg(long)]
    cpu: Option<usize>,
    /// A probe stalls when no video frame arrives for this long (LL-HLS: any viewer, no new
    /// part) [default: 1s; `run`: the scenario's, which this overrides].
    #[arg(long)]
    stall: Option<String>,
    /// A video timestamp jump above this many ms is a skipped-frame gap [default: 250].
    #[arg(long)]
    gap_ms: Option<u32>,
    /// Delivery window length [default: 10s].
    #[arg(long)]
    window: Option<String>,
    /// How cheap viewers read: `player` (woken on every arrival, reads of 32 KiB into a
    /// buffer, as real players) or `kernel-discard` (woken per --rcvlowat bytes, data
    /// dropped by the kernel: cheaper for the generator, kinder to the server) [default:
    /// player].
    #[arg(long, value_enum)]
    reads: Option<ReadMode>,
    /// SO_RCVLOWAT of kernel-discard viewers (bytes) [default: 32768].
    #[arg(long)]
    rcvlowat: Option<u32>,
    /// Write the probes' histograms as an HdrHistogram V2 interval log.
    #[arg(long, value_name = "FILE")]
    histogram_log: Option<PathBuf>,
    /// Write an HTML report with SVG charts.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Publish {
            target,
            app,
            prefix,
            streams,
            file,
            synthetic,
            fps,
            gop_seconds,
            duration,
        } => {
            check_target(target, cli.allow_remote)?;
            let duration = parse_duration(&duration)?;
            let tags = match synthetic {
                Some(kbps) => {
                    let gop = (gop_seconds * f64::from(fps)).round().max(1.0) as u32;
                    corecast_testkit::source::synthetic(kbps, fps, gop, 10)
                }
                None => {
                    corecast::flv::reader::read_file(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                        .1
                }
            };
            let reports =
                publish::spawn(target, &app, &prefix, streams, Arc::new(tags), duration).join();
            let failed = reports.iter().filter(|r| r.error.is_some()).count();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    let status = r.error.as_deref().unwrap_or("ok");
                    println!("{app}/{}: {} loops, {status}", r.stream, r.loops);
                }
            }
            if failed > 0 {
                bail!("{failed} of {streams} publishers failed");
            }
            Ok(())
        }
        Command::Play {
            target,
            protocol,
            stream,
            viewers,
            join_rate,
            probes,
            hls_start,
            query,
            expect_kbps,
            duration,
            common,
        } => {
            for &target in &target {
                check_target(target, cli.allow_remote)?;
            }
            let (app, name) = stream
                .split_once('/')
                .context("--stream must be app/name")?;
            let plan = PlayPlan {
                groups: vec![Group {
                    name: format!("{protocol:?} {stream}").to_lowercase(),
                    targets: target,
                    protocol,
                    app: app.to_string(),
                    stream: name.to_string(),
                    steps: vec![Step {
                        at: Duration::ZERO,
                        viewers,
                        rate: join_rate,
                    }],
                    probes,
                    hls_start: match hls_start {
                        0 => HlsStart::LiveEdge,
                        n => HlsStart::SegmentsBack(n),
                    },
                    query,
                }],
                duration: parse_duration(&duration)?,
                thresholds: Thresholds {
                    stall: parse_duration(common.stall.as_deref().unwrap_or("1s"))?,
                    gap_ms: common.gap_ms.unwrap_or(250),
                },
                window: parse_duration(common.window.as_deref().unwrap_or("10s"))?,
                window_share: 0.98,
                reads: common
                    .reads
                    .unwrap_or_default()
                    .reads(common.rcvlowat.unwrap_or(DEFAULT_RCVLOWAT)),
                cpu: common.cpu,
                expect_kbps,
            };
            check_capacity(&plan)?;
            let console = Console::new(cli.json, histogram_log(&common)?);
            let (summary, console) = play::run_blocking(plan, Vec::new(), console)?;
            console.finish()?;
            output(&summary, &common, "corecast-load play", cli.json)
        }
        Command::Run {
            scenario,
            rtmp,
            http,
            common,
        } => {
            let mut s = Scenario::load(&scenario)?;
            if let Some(rtmp) = rtmp {
                s.target.rtmp = rtmp;
            }
            if let Some(http) = http {
                s.target.http = http;
            }
            // Options given on the command line override the scenario's.
            let g = &mut s.generator;
            g.cpu = common.cpu.or(g.cpu);
            g.stall = common.stall.clone().unwrap_or(g.stall.clone());
            g.gap_ms = common.gap_ms.unwrap_or(g.gap_ms);
            g.window = common.window.clone().unwrap_or(g.window.clone());
            g.reads = common.reads.unwrap_or(g.reads);
            g.rcvlowat = common.rcvlowat.unwrap_or(g.rcvlowat);
            let mut prepared = s.prepare(cli.allow_remote)?;
            check_capacity(&prepared.plan)?;
            // Publishers and viewers alike run on the generator's CPU.
            if let Some(cpu) = prepared.plan.cpu.take() {
                corecast_load::drain::pin(cpu);
            }
            let console = Console::new(cli.json, histogram_log(&common)?);
            let (summary, console, reports) = prepared.run(console)?;
            console.finish()?;
            let title = format!("corecast-load run {}", scenario.display());
            for r in &reports {
                if let Some(e) = &r.error {
                    eprintln!("publisher {}: {e}", r.stream);
                }
            }
            output(&summary, &common, &title, cli.json)
        }
    }
}

fn check_capacity(plan: &PlayPlan) -> anyhow::Result<()> {
    let capacity = viewer_capacity();
    let peak: usize = plan.groups.iter().map(Group::peak).sum();
    if peak as u64 > capacity {
        bail!("{peak} viewers at once need as many descriptors; the open-file limit allows {capacity}");
    }
    Ok(())
}

fn histogram_log(common: &RunOptions) -> anyhow::Result<Option<HistogramLog>> {
    Ok(match &common.histogram_log {
        Some(path) => Some(HistogramLog::create(path)?),
        None => None,
    })
}

fn output(
    summary: &PlaySummary,
    common: &RunOptions,
    title: &str,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(path) = &common.html {
        report::html(path, title, summary)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        println!("{}", report::table(summary));
    }
    Ok(())
}
