//! The `corecast` binary: command-line arguments, logging, the configuration, then
//! [`corecast::Server`] until a signal stops it; and the `hist` tool for histogram logs.

use clap::{Parser, Subcommand};
use corecast::config::LogFormat;
use corecast::{Config, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// corecast: a live-stream relay (RTMP in; HTTP-FLV, RTMP and HLS out), one shard per core.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file, read over the compiled-in defaults (config/corecast.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides server.rtmp_listen.
    #[arg(long, value_name = "ADDR")]
    rtmp_listen: Option<SocketAddr>,
    /// Overrides server.http_listen.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Overrides server.shards (0 = one per online CPU).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Overrides metrics.histogram_log: write latency histograms to FILE (HdrHistogram V2
    /// interval log).
    #[arg(long, value_name = "FILE")]
    histogram_log: Option<String>,
    /// Overrides log.format: "text" or "json".
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Prints the effective configuration as TOML and exits.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints latency percentiles per histogram from a histogram log.
    Hist {
        /// The log (written with --histogram-log or metrics.histogram_log).
        file: std::path::PathBuf,
        /// Only intervals starting at or after this many seconds into the log.
        #[arg(long, default_value_t = 0.0)]
        from: f64,
        /// Only intervals starting at or before this many seconds into the log.
        #[arg(long)]
        to: Option<f64>,
    },
    /// Mints a signed token (auth.secret from --config) allowing one action on one stream,
    /// and prints it with example URLs.
    Token {
        /// publish or play.
        #[arg(long, value_parser = ["publish", "play"])]
        action: String,
        /// The stream, as app/name.
        #[arg(long)]
        stream: String,
        /// How long the token stays valid, in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

/// `corecast token`: prints a token and where it goes.
fn mint(config: &Config, action: &str, stream: &str, ttl: u64) -> ExitCode {
    use corecast::auth::{self, Action};
    let Some((app, name)) = stream.split_once('/') else {
        eprintln!("corecast token: --stream must be app/name");
        return ExitCode::from(2);
    };
    // Tokens exist for valid names only: the signed message relies on them.
    if let Err(err) = corecast::hub::validate_names(app, name) {
        let shown = corecast::util::Escaped(stream);
        eprintln!("corecast token: invalid name in --stream \"{shown}\": {err}");
        return ExitCode::from(2);
    }
    if config.auth.secret.len() < 16 {
        eprintln!("corecast token: auth.secret (at least 16 bytes) must be set in --config");
        return ExitCode::from(2);
    }
    let action = if action == "publish" {
        Action::Publish
    } else {
        Action::Play
    };
    let expiry = auth::unix_now().saturating_add(ttl);
    let token = auth::mint(&config.auth.secret, action, app, name, expiry);
    println!("{token}");
    let (rtmp, http) = (config.server.rtmp_listen, config.server.http_listen);
    eprintln!("valid until Unix time {expiry}; for example:");
    eprintln!("  rtmp://{rtmp}/{app}/{name}?token={token}");
    if action == Action::Play {
        eprintln!("  http://{http}/{app}/{name}.flv?token={token}");
        eprintln!("  http://{http}/{app}/{name}.m3u8?token={token}");
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Hist { file, from, to }) = &cli.command {
        return match corecast::metrics::log::summarize(file, *from, to.unwrap_or(f64::INFINITY)) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("corecast hist: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("corecast: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Token {
        action,
        stream,
        ttl,
    }) = &cli.command
    {
        return mint(&config, action, stream, *ttl);
    }
    if cli.print_config {
        // Credentials are never printed.
        print!("{}", config.redacted().to_toml());
        return ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    // SIGINT/SIGTERM stop the server (the histogram log gets its last interval); a second
    // one exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(err) = registered {
            eprintln!("corecast: cannot handle signal {signal}: {err}");
            return ExitCode::FAILURE;
        }
    }
    match Server::start(config) {
        Ok(server) => {
            while !stop.load(Ordering::Relaxed) {
                if server.has_failed() {
                    eprintln!("corecast: a shard stopped unexpectedly");
                    server.stop();
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            tracing::info!("signal received: stopping");
            server.stop();
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("corecast: cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Config, corecast::config::ConfigError> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::overlay("", "defaults")?,
    };
    if let Some(addr) = cli.rtmp_listen {
        config.server.rtmp_listen = addr;
    }
    if let Some(addr) = cli.http_listen {
        config.server.http_listen = addr;
    }
    if let Some(n) = cli.shards {
        config.server.shards = n;
    }
    if let Some(format) = &cli.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    if let Some(path) = &cli.histogram_log {
        config.metrics.histogram_log = path.clone();
    }
    config.validate()?;
    Ok(config)
}
