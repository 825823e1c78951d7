//! The `corecast` binary: command-line arguments, logging, the configuration (file,
//! environment, options), then [`corecast::Server`] until a signal stops it, with reloads
//! (SIGHUP, the admin API) and the systemd notifications made from its main thread; and the
//! `hist`, `token` and `probe` tools.

use clap::{Parser, Subcommand};
use corecast::config::{LogFormat, Override, Sources};
use corecast::logging::Ecs;
use corecast::metrics::log_events::LogEvents;
use corecast::server::systemd::Notifier;
use corecast::{Config, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

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
    /// Overrides log.format: "text", "json" or "ecs".
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json", "ecs"])]
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
    /// Asks a health endpoint (e.g. http://127.0.0.1:8081/readyz) and exits 0 when it
    /// answers 200: the health check of container images, which carry no HTTP client.
    Probe {
        /// The URL, http:// only.
        url: String,
        /// How long the whole exchange may take, in milliseconds.
        #[arg(long, default_value_t = 3_000)]
        timeout_ms: u64,
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
    if let Some(Command::Probe { url, timeout_ms }) = &cli.command {
        return match corecast::http::probe::probe(url, Duration::from_millis(*timeout_ms)) {
            Ok(body) => {
                println!("{body}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("corecast probe: {url}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let sources = Sources::from_process(cli.config.clone(), overrides(&cli));
    let loaded = match sources.load() {
        Ok(loaded) => loaded,
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
        return mint(&loaded.config, action, stream, *ttl);
    }
    if cli.print_config {
        // Credentials are never printed.
        print!("{}", loaded.annotated());
        return ExitCode::SUCCESS;
    }
    let config = loaded.config;
    let log_level = LogLevel::init(config.log.format, &config.log.level);
    // SIGINT/SIGTERM stop the server (the histogram log gets its last interval); a second
    // one exits at once. SIGHUP reloads the configuration.
    let stop = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    if let Err(err) = signal_hook::flag::register(SIGHUP, hangup.clone()) {
        eprintln!("corecast: cannot handle signal {SIGHUP}: {err}");
        return ExitCode::FAILURE;
    }
    for signal in [SIGINT, SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(err) = registered {
            eprintln!("corecast: cannot handle signal {signal}: {err}");
            return ExitCode::FAILURE;
        }
    }
    // Fail points exist only in test builds (see `corecast::server`); tests configure them
    // with the FAILPOINTS environment variable.
    let _fail_points = fail::has_failpoints().then(fail::FailScenario::setup);
    let mut notifier = Notifier::from_env();
    match Server::start(config) {
        Ok(server) => {
            notifier.ready(&server);
            while !stop.load(Ordering::Relaxed) {
                if server.has_failed() {
                    eprintln!("corecast: a shard stopped unexpectedly");
                    notifier.stopping();
                    server.stop();
                    return ExitCode::FAILURE;
                }
                let asked = server.reload_asked();
                if hangup.swap(false, Ordering::Relaxed) || asked.is_some() {
                    notifier.reloading();
                    let (outcome, applied) = server.reload(&sources);
                    if let Some(config) = applied {
                        log_level.set(&config.log.level);
                    }
                    server.answer_reload(asked, outcome);
                    notifier.ready(&server);
                }
                notifier.tick(&server, Instant::now());
                std::thread::sleep(Duration::from_millis(100));
            }
            tracing::info!("signal received: stopping");
            notifier.stopping();
            server.stop();
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("corecast: cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The log level filter: `RUST_LOG` when set, else `log.level`, which a reload replaces.
struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG is set: it stays, whatever the configuration says.
    from_env: bool,
}

impl LogLevel {
    /// Installs the process's logger: `format` lines, filtered by RUST_LOG or `level`.
    fn init(format: LogFormat, level: &str) -> LogLevel {
        let (filter, from_env) = match EnvFilter::try_from_default_env() {
            Ok(filter) => (filter, true),
            Err(_) => (EnvFilter::new(level), false),
        };
        let (filter, handle) = reload::Layer::new(filter);
        let logs = tracing_subscriber::registry().with(filter).with(LogEvents);
        let lines = tracing_subscriber::fmt::layer();
        match format {
            LogFormat::Text => logs.with(lines).init(),
            // A connection's fields (its span) come under `span`.
            LogFormat::Json => logs
                .with(
                    lines
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false),
                )
                .init(),
            LogFormat::Ecs => logs
                .with(lines.fmt_fields(JsonFields::new()).event_format(Ecs))
                .init(),
        }
        LogLevel { handle, from_env }
    }

    /// The level of a reloaded configuration (unless RUST_LOG rules).
    fn set(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let Err(err) = self.handle.reload(EnvFilter::new(level)) {
            tracing::warn!("cannot change the log level: {err}");
        }
    }
}

/// What the command line sets, applied over the file and the environment.
fn overrides(cli: &Cli) -> Vec<Override> {
    let text = |value: String| toml::Value::String(value);
    let mut set = Vec::new();
    let mut add = |key, flag, value| set.push(Override { key, value, flag });
    if let Some(addr) = cli.rtmp_listen {
        add(
            "server.rtmp_listen",
            "--rtmp-listen",
            text(addr.to_string()),
        );
    }
    if let Some(addr) = cli.http_listen {
        add(
            "server.http_listen",
            "--http-listen",
            text(addr.to_string()),
        );
    }
    if let Some(n) = cli.shards {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        add("server.shards", "--shards", toml::Value::Integer(n));
    }
    if let Some(format) = &cli.log_format {
        add("log.format", "--log-format", text(format.clone()));
    }
    if let Some(path) = &cli.histogram_log {
        add(
            "metrics.histogram_log",
            "--histogram-log",
            text(path.clone()),
        );
    }
    set
}
