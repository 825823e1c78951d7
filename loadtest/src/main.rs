use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use corecast::client::cheap::Protocol;
use corecast_load::play::{self, PlayPlan};
use corecast_load::{check_target, parse_duration, publish, viewer_capacity};
use glommio::LocalExecutorBuilder;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// corecast-load: RTMP publishers and cheap viewers, for sizing a corecast box. Every run is
/// bounded by --duration; targets outside loopback need --allow-remote.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Allow a target outside 127.0.0.0/8 and ::1.
    #[arg(long, global = true)]
    allow_remote: bool,
    /// Print the summary as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish an FLV file (looped, real time) to N streams.
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
    /// Open N viewers of one stream at a join rate and count what they receive.
    Play {
        /// Server address: the HTTP port for flv, the RTMP port for rtmp.
        #[arg(long)]
        target: SocketAddr,
        /// Protocol of the viewers.
        #[arg(long, value_enum, default_value_t = Proto::Flv)]
        protocol: Proto,
        /// The stream, as app/name.
        #[arg(long, default_value = "live/load0")]
        stream: String,
        /// Number of viewers.
        #[arg(long, default_value_t = 100)]
        viewers: usize,
        /// Viewers opened per second.
        #[arg(long, default_value_t = 500.0)]
        join_rate: f64,
        /// Length of the run (e.g. 30s, 2m).
        #[arg(long)]
        duration: String,
        /// CPU to run the viewers on (default: any).
        #[arg(long)]
        cpu: Option<usize>,
        /// How many viewers are probes (flv only): they parse the stream and measure latency
        /// from the publishers' SEI stamps, startup time and stalls.
        #[arg(long, default_value_t = 10)]
        probes: usize,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Proto {
    Flv,
    Rtmp,
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
                    publish::synthetic(kbps, fps, gop, 10)
                }
                None => {
                    corecast::flv::reader::read_file(&file)
                        .with_context(|| format!("reading {}", file.display()))?
                        .1
                }
            };
            let handles = publish::spawn(target, &app, &prefix, streams, Arc::new(tags), duration);
            let reports: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect();
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
            duration,
            cpu,
            probes,
        } => {
            check_target(target, cli.allow_remote)?;
            let duration = parse_duration(&duration)?;
            let capacity = viewer_capacity();
            if viewers as u64 > capacity {
                bail!("{viewers} viewers need as many descriptors; the open-file limit allows {capacity}");
            }
            let (app, name) = stream
                .split_once('/')
                .context("--stream must be app/name")?;
            let plan = PlayPlan {
                target,
                protocol: match protocol {
                    Proto::Flv => Protocol::Flv,
                    Proto::Rtmp => Protocol::Rtmp,
                },
                app: app.to_string(),
                stream: name.to_string(),
                viewers,
                join_rate,
                duration,
                probes,
            };
            let placement = match cpu {
                Some(cpu) => glommio::Placement::Fixed(cpu),
                None => glommio::Placement::Unbound,
            };
            let quiet = cli.json;
            let summary = LocalExecutorBuilder::new(placement)
                .name("corecast-load")
                .spawn(move || {
                    play::run(plan, move |line| {
                        if !quiet {
                            eprintln!("{line}");
                        }
                    })
                })
                .map_err(|e| anyhow::anyhow!("cannot start the viewers' executor: {e}"))?
                .join()
                .map_err(|e| anyhow::anyhow!("viewers' executor failed: {e}"))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "viewers {} connected {} failed {} ended early {} | {:.3} Gbit/s over {:.1} s | slowest viewer got {:.0}% of the median",
                    summary.viewers,
                    summary.connected,
                    summary.failed,
                    summary.ended_early,
                    summary.gbit_per_s,
                    summary.seconds,
                    summary.slowest_fraction * 100.0
                );
                let (l, s) = (&summary.latency, &summary.startup);
                println!(
                    "probes: latency ms p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} ({} frames) | startup ms p50 {:.1} p99 {:.1} | stalls {}",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count, s.p50_ms, s.p99_ms, summary.stalls
                );
            }
            Ok(())
        }
    }
}
