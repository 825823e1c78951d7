//! Configuration: typed sections, defaults compiled in from `config/corecast.toml`, overlay of
//! an operator's file, and validation that names the offending key.
//!
//! There is one source of truth for defaults: the documented file `config/corecast.toml`,
//! embedded with `include_str!`. An operator's file is merged over it key by key, so a file
//! that sets one key leaves every other key at its documented default.

use crate::auth::{AppPolicy, Auth, Policy};
use crate::net;
use crate::rtmp::guard::CONTROL_MESSAGE_LIMIT;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The documented default configuration, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/corecast.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: String,
        /// The underlying IO error.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where the text came from (a path, or "defaults").
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("{origin}: key `{key}`: {message}")]
    Key {
        /// Where the text came from.
        origin: String,
        /// Dotted path of the key, e.g. `viewer.skip_after_ms`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `CORECAST_` environment variable is not a valid setting.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error in a value that came from the environment or the command line, named.
    #[error("{origin}: {error}")]
    Sourced {
        /// The variable or option the value came from.
        origin: String,
        /// The error.
        error: Box<ConfigError>,
    },
    /// A value is out of its allowed range or inconsistent with another key.
    #[error("key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration. Sections mirror the tables of `config/corecast.toml`, where every
/// key is documented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shards and listeners.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Admin endpoints (metrics, API).
    pub admin: AdminConfig,
    /// RTMP protocol limits.
    pub rtmp: RtmpConfig,
    /// HTTP protocol limits.
    pub http: HttpConfig,
    /// Per-stream buffering (ring, GOP cache, republish grace).
    pub stream: StreamConfig,
    /// HLS segmenting.
    pub hls: HlsConfig,
    /// Latency histogram export.
    pub metrics: MetricsConfig,
    /// Per-viewer delivery (merge window, slow-viewer policy).
    pub viewer: ViewerConfig,
    /// Who may publish and play.
    pub auth: AuthConfig,
    /// Connection, stream and viewer limits.
    pub limits: LimitsConfig,
    /// Restreaming rules.
    pub forward: Vec<ForwardRule>,
    /// Origins that streams of an application are pulled from (edge).
    pub upstream: Vec<UpstreamRule>,
    /// How pulls from origins behave.
    pub edge: EdgeConfig,
}

/// `[[upstream]]`: streams of `app` that are not published here are pulled from `origins`,
/// tried in order (see [`crate::upstream`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRule {
    /// The application whose streams are pulled.
    pub app: String,
    /// `rtmp://IP:PORT/APP/{stream}` or `http://IP:PORT/PATH/{stream}.flv`, in order of
    /// preference.
    pub origins: Vec<String>,
}

/// `[edge]`: pulls of streams from origins (`[[upstream]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// How long one origin may take to connect and start sending the stream.
    pub connect_timeout_ms: u64,
    /// How long the first viewer of a stream waits for its pull to deliver it.
    pub start_timeout_ms: u64,
    /// A pull stops this long after the stream's last viewer left.
    pub idle_timeout_ms: u64,
    /// PEM file of CA certificates trusted for `https://` origins besides the system's;
    /// empty = none.
    pub ca_file: String,
}

impl EdgeConfig {
    /// `ca_file`, when one is set.
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        (!self.ca_file.is_empty()).then(|| self.ca_file.clone().into())
    }
}

/// `[[forward]]`: streams of `app` are also pushed to `url` (see [`crate::forward`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRule {
    /// The application whose streams are pushed.
    pub app: String,
    /// `rtmp://IP:PORT/APP/STREAM`, `{app}` and `{stream}` replaced.
    pub url: String,
}

/// `[limits]`: what one server, shard, client address and stream may hold (0 = no limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections at once, all shards and public listeners; 0 = the open-file limit less
    /// a reserve.
    pub max_connections: usize,
    /// Connections at once on one shard.
    pub max_connections_per_shard: usize,
    /// Connections at once from one client address.
    pub max_connections_per_ip: usize,
    /// Loopback clients are not subject to `max_connections_per_ip`.
    pub exempt_loopback: bool,
    /// IPv6 clients count under `max_connections_per_ip` by this prefix (1..=128).
    pub ipv6_prefix_len: u8,
    /// Live streams at once.
    pub max_streams: usize,
    /// Viewers of one stream at once, all protocols and shards.
    pub max_viewers_per_stream: usize,
    /// Streams (live, and left in their grace period) held by one client address.
    pub max_streams_per_ip: usize,
    /// Publishes one client address may start per minute.
    pub max_publishes_per_ip_per_minute: u32,
    /// Publishes one RTMP connection may start over its life.
    pub max_publishes_per_connection: u32,
    /// Media memory (rings and HLS windows, all streams and shards); 0 = half the machine's.
    pub max_media_memory_bytes: usize,
}

/// Shown in place of each credential by [`Config::redacted`].
pub const REDACTED: &str = "<redacted>";

/// Longest `rtmp.input_poll_us`: 20 ms, already a frame's time at 50 fps.
const MAX_INPUT_POLL_US: u64 = 20_000;

/// `[auth]`: publish and play policies (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC-SHA256 key of signed tokens; empty = no token policies allowed.
    pub secret: String,
    /// Default publish policy.
    pub publish: Policy,
    /// Default play policy.
    pub play: Policy,
    /// Default static publish keys by stream name (`*`: any).
    pub publish_keys: BTreeMap<String, String>,
    /// Default static play keys by stream name (`*`: any).
    pub play_keys: BTreeMap<String, String>,
    /// Per-application policies, replacing the defaults for that application.
    pub apps: BTreeMap<String, AppPolicy>,
    /// A new publisher with valid credentials replaces one that sent no media for this
    /// long; 0 = a live stream's publisher is never replaced.
    pub takeover_after_ms: u64,
}

/// `[metrics]`: latency histogram export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// HdrHistogram V2 interval log file; empty = none.
    pub histogram_log: String,
    /// Interval of the log.
    pub histogram_log_interval_ms: u64,
}

/// `[hls]`: HLS segmenting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    /// Make and serve HLS.
    pub enabled: bool,
    /// Minimum segment duration; segments close at the next keyframe after it.
    pub target_duration_ms: u64,
    /// Segments kept per stream.
    pub window_segments: usize,
    /// Segment a stream only while its HLS is requested (false: every stream, from its
    /// publish to its end).
    pub on_demand: bool,
    /// On demand: this long after a stream's last playlist or segment request, its
    /// segmenter stops and its segments are freed.
    pub idle_timeout_ms: u64,
    /// Serve Low-Latency HLS (fMP4 parts) beside the MPEG-TS playlist, made on demand.
    pub low_latency: bool,
    /// Low-Latency HLS: the longest part (`EXT-X-PART-INF:PART-TARGET`).
    pub part_target_ms: u64,
    /// Low-Latency HLS: requests each shard holds until their part exists (blocking
    /// playlist reloads, preload-hinted parts); beyond, a playlist request is answered at
    /// once with the current playlist.
    pub max_held_reloads: usize,
}

/// `[server]`: shards and listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Number of shards; 0 = one per online CPU.
    pub shards: usize,
    /// RTMP listen address, bound once per shard with SO_REUSEPORT.
    pub rtmp_listen: SocketAddr,
    /// HTTP listen address, bound once per shard with SO_REUSEPORT.
    pub http_listen: SocketAddr,
    /// listen(2) backlog of every listening socket.
    pub listen_backlog: u32,
    /// Capacity in messages of each shard-to-shard queue (overflow: drop, resync at keyframe).
    pub mesh_queue_units: usize,
    /// On stop, how long connections may take to finish after their streams ended.
    pub drain_timeout_ms: u64,
    /// Deadline for writing a whole response that is not a live stream.
    pub write_timeout_ms: u64,
    /// Listeners whose connections from `proxy_trusted` start with a PROXY header.
    pub proxy_protocol: Vec<ProxyListener>,
    /// Networks of the proxies whose PROXY headers are believed.
    pub proxy_trusted: Vec<ipnet::IpNet>,
}

/// A listener that may take PROXY protocol headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyListener {
    /// `server.rtmp_listen`.
    Rtmp,
    /// `server.http_listen`.
    Http,
}

/// `[log]`: log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Level filter (tracing's `EnvFilter` syntax); `RUST_LOG` replaces it when set.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
    /// One JSON object per line, with Elastic Common Schema field names.
    Ecs,
}

/// `[admin]`: where the admin endpoints are served, and who may use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin listen address; empty = on the main HTTP listener.
    pub listen: String,
    /// Bearer token required on admin requests; empty = none (only allowed where the
    /// endpoints are reachable on loopback alone).
    pub token: String,
}

impl AdminConfig {
    /// The admin listen address, if a separate listener is configured.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `[rtmp]`: RTMP protocol settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Deadline, from accept, for completing the handshake and starting to publish or play.
    pub handshake_timeout_ms: u64,
    /// A publisher that sends no audio or video for this long is closed.
    pub idle_timeout_ms: u64,
    /// Per-connection read buffer size.
    pub read_buffer_bytes: usize,
    /// How often a shard takes its publishers' input, read from one epoll set (0: each
    /// waits on an io_uring poll of its own).
    pub input_poll_us: u64,
    /// Longest message a publisher may send (before publishing: 64 KiB).
    pub max_message_bytes: u32,
    /// Largest chunk size a client may announce (Set Chunk Size).
    pub max_chunk_size: u32,
}

/// `[http]`: HTTP protocol limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request head.
    pub max_header_bytes: usize,
    /// Deadline for receiving a complete request head.
    pub header_timeout_ms: u64,
    /// Slowest rate, in bytes per second, at which an HLS segment response may be taken.
    pub segment_min_rate_bytes: u64,
}

/// `[stream]`: per-stream buffering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// How long viewers wait for a publisher that left to come back.
    pub republish_grace_ms: u64,
    /// Byte bound of each stream's ring on each shard (also bounds the GOP cache).
    pub ring_max_bytes: usize,
    /// Age bound of ring units outside the current GOP.
    pub ring_max_duration_ms: u64,
}

/// How a shard chooses its merge window (see [`crate::shard::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendSchedule {
    /// Pictures go out at once while the shard can afford it (audio rides with them), two
    /// or three pictures a send when it cannot, no unit held longer than one or two
    /// `merge_window_ms`.
    Adaptive,
    /// `merge_window_ms` whatever the load.
    Fixed,
}

/// `[viewer]`: per-viewer delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerConfig {
    /// How the merge window is chosen.
    pub send_schedule: SendSchedule,
    /// Merge window; 0 = send each unit at once.
    pub merge_window_ms: u64,
    /// A video frame ends the merge window at once.
    pub flush_on_video: bool,
    /// Lag after which a viewer jumps to the newest keyframe.
    pub skip_after_ms: u64,
    /// Time behind after which a viewer is disconnected.
    pub disconnect_after_ms: u64,
    /// TCP_NOTSENT_LOWAT of viewer sockets.
    pub notsent_lowat_bytes: u32,
    /// Most bytes gathered into one sendmsg(2).
    pub max_send_bytes: usize,
}

impl ViewerConfig {
    /// The send schedule these settings describe.
    pub fn schedule(&self) -> crate::shard::schedule::Schedule {
        use crate::shard::schedule::Schedule;
        let window = std::time::Duration::from_millis(self.merge_window_ms);
        match self.send_schedule {
            SendSchedule::Adaptive => Schedule::Adaptive { window },
            SendSchedule::Fixed => Schedule::Fixed(window),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        // The embedded defaults are parsed and validated by a unit test, so this cannot fail
        // in a released binary.
        Self::from_toml_str(DEFAULT_TOML, "defaults").expect("embedded defaults are valid")
    }
}

impl Config {
    /// Parses a complete configuration from TOML text (no overlay).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let value = parse_table(text, origin)?;
        Self::from_value(value, origin)
    }

    /// Reads `path` and overlays it on the compiled-in defaults, then validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::overlay(&text, &path.display().to_string())
    }

    /// Overlays the TOML `text` on the compiled-in defaults, then validates.
    pub fn overlay(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut base = parse_table(DEFAULT_TOML, "defaults")?;
        let user = parse_table(text, origin)?;
        merge(&mut base, user);
        let config = Self::from_value(base, origin)?;
        config.validate()?;
        Ok(config)
    }

    fn from_value(value: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|err| {
            ConfigError::Key {
                origin: origin.to_string(),
                key: err.path().to_string(),
                // toml appends "in `table`" on a second line; the path already says it.
                message: err
                    .into_inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })
    }

    /// The configuration as TOML. `--print-config` shows [`Config::redacted`]'s.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|err| format!("# cannot render: {err}\n"))
    }

    /// Application names of `auth.apps` and stream names of the key tables (`*` aside)
    /// must pass [`crate::hub::validate_name`]: a policy for a name no client can use
    /// (`premium/a`) would never apply.
    fn validate_auth_names(&self) -> Result<(), ConfigError> {
        use crate::hub::validate_name;
        let bad = |key: &'static str, kind: &str, name: &str, err| ConfigError::Invalid {
            key,
            message: format!("{kind} \"{}\": {err}", crate::util::Escaped(name)),
        };
        let streams = |key: &'static str, keys: &BTreeMap<String, String>| {
            keys.keys()
                .filter(|name| name.as_str() != "*")
                .try_for_each(|name| {
                    validate_name(name).map_err(|err| bad(key, "stream", name, err))
                })
        };
        streams("auth.publish_keys", &self.auth.publish_keys)?;
        streams("auth.play_keys", &self.auth.play_keys)?;
        for (app, policy) in &self.auth.apps {
            validate_name(app).map_err(|err| bad("auth.apps", "application", app, err))?;
            streams("auth.apps.publish_keys", &policy.publish_keys)?;
            streams("auth.apps.play_keys", &policy.play_keys)?;
        }
        Ok(())
    }

    /// A copy fit to show (`--print-config`): every credential that is set, `auth.secret`,
    /// `admin.token` and the values of all `publish_keys` and `play_keys` tables (defaults
    /// and per application), becomes [`REDACTED`]. Empty ones stay empty, so the copy still
    /// tells which are set; stream names (the keys of those tables) are kept.
    pub fn redacted(&self) -> Config {
        fn hide(value: &mut String) {
            if !value.is_empty() {
                *value = REDACTED.to_string();
            }
        }
        let mut config = self.clone();
        hide(&mut config.auth.secret);
        hide(&mut config.admin.token);
        let auth = &mut config.auth;
        let per_app = auth
            .apps
            .values_mut()
            .flat_map(|p| [&mut p.publish_keys, &mut p.play_keys]);
        for keys in [&mut auth.publish_keys, &mut auth.play_keys]
            .into_iter()
            .chain(per_app)
        {
            keys.values_mut().for_each(hide);
        }
        // A forward target's or an origin's query may hold a key.
        let urls = config.forward.iter_mut().map(|rule| &mut rule.url);
        let origins = config
            .upstream
            .iter_mut()
            .flat_map(|rule| &mut rule.origins);
        for url in urls.chain(origins) {
            if let Some((start, _)) = url.split_once('?') {
                *url = format!("{start}?{REDACTED}");
            }
        }
        config
    }

    /// Number of shards to run: `server.shards`, or the online CPU count when it is 0.
    pub fn shard_count(&self) -> usize {
        match self.server.shards {
            0 => online_cpus(),
            n => n,
        }
    }

    /// Checks ranges and relations between keys; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        let cpus = online_cpus();
        if self.server.shards > cpus {
            return Err(invalid(
                "server.shards",
                format!(
                    "{} shards but only {cpus} online CPUs (each shard is pinned to its own CPU)",
                    self.server.shards
                ),
            ));
        }
        if !self.admin.listen.is_empty() && self.admin.address().is_none() {
            return Err(invalid(
                "admin.listen",
                format!(
                    "`{}` is not an address (host:port), nor empty",
                    self.admin.listen
                ),
            ));
        }
        self.validate_listeners()?;
        if self.server.listen_backlog == 0 {
            return Err(invalid("server.listen_backlog", "must be at least 1"));
        }
        if self.server.mesh_queue_units < 16 {
            return Err(invalid("server.mesh_queue_units", "must be at least 16"));
        }
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            return Err(invalid("rtmp.chunk_size", "must be within 128 ..= 65536"));
        }
        if self.rtmp.handshake_timeout_ms == 0 {
            return Err(invalid("rtmp.handshake_timeout_ms", "must be positive"));
        }
        if self.rtmp.idle_timeout_ms == 0 {
            return Err(invalid("rtmp.idle_timeout_ms", "must be positive"));
        }
        if self.rtmp.read_buffer_bytes < 4096 {
            return Err(invalid("rtmp.read_buffer_bytes", "must be at least 4096"));
        }
        if self.rtmp.input_poll_us > MAX_INPUT_POLL_US {
            return Err(invalid("rtmp.input_poll_us", "must be within 0 ..= 20000"));
        }
        if !(CONTROL_MESSAGE_LIMIT..=0x00ff_ffff).contains(&self.rtmp.max_message_bytes) {
            return Err(invalid(
                "rtmp.max_message_bytes",
                "must be within 65536 ..= 16777215",
            ));
        }
        if !(128..=0x7fff_ffff).contains(&self.rtmp.max_chunk_size) {
            return Err(invalid(
                "rtmp.max_chunk_size",
                "must be within 128 ..= 2147483647",
            ));
        }
        if self.http.max_header_bytes < 512 {
            return Err(invalid("http.max_header_bytes", "must be at least 512"));
        }
        if self.server.write_timeout_ms == 0 {
            return Err(invalid("server.write_timeout_ms", "must be positive"));
        }
        for rule in &self.forward {
            if crate::hub::validate_name(&rule.app).is_err() {
                return Err(invalid("forward.app", "must follow the name rule"));
            }
            if let Err(err) = crate::forward::Target::parse(&rule.url, &rule.app, "stream") {
                return Err(invalid("forward.url", err.to_string()));
            }
        }
        let mut pulled = std::collections::HashSet::new();
        for rule in &self.upstream {
            if crate::hub::validate_name(&rule.app).is_err() {
                return Err(invalid("upstream.app", "must follow the name rule"));
            }
            if !pulled.insert(&rule.app) {
                return Err(invalid(
                    "upstream.app",
                    format!("{} has two rules", rule.app),
                ));
            }
            if rule.origins.is_empty() || rule.origins.len() > crate::upstream::MAX_ORIGINS {
                return Err(invalid(
                    "upstream.origins",
                    format!("must list 1 ..= {} origins", crate::upstream::MAX_ORIGINS),
                ));
            }
            for url in &rule.origins {
                if let Err(err) = crate::upstream::OriginUrl::parse(url, &rule.app, "stream") {
                    return Err(invalid("upstream.origins", err.to_string()));
                }
            }
        }
        let edge = &self.edge;
        if edge.connect_timeout_ms == 0 || edge.start_timeout_ms == 0 {
            return Err(invalid(
                "edge.connect_timeout_ms",
                "edge.connect_timeout_ms and edge.start_timeout_ms must be positive",
            ));
        }
        if let Some(path) = edge.ca_file() {
            let mut roots = rustls::RootCertStore::empty();
            if let Err(err) = crate::net::tls::add_ca_file(&mut roots, &path) {
                return Err(invalid("edge.ca_file", err.to_string()));
            }
        }
        if !self.server.proxy_protocol.is_empty() && self.server.proxy_trusted.is_empty() {
            return Err(invalid(
                "server.proxy_trusted",
                "must list the load balancers' networks when server.proxy_protocol names a \
                 listener",
            ));
        }
        if self.http.segment_min_rate_bytes == 0 {
            return Err(invalid("http.segment_min_rate_bytes", "must be at least 1"));
        }
        if self.http.header_timeout_ms == 0 {
            return Err(invalid("http.header_timeout_ms", "must be positive"));
        }
        if self.stream.ring_max_bytes < 65536 {
            return Err(invalid("stream.ring_max_bytes", "must be at least 65536"));
        }
        if self.hls.target_duration_ms < 500 {
            return Err(invalid("hls.target_duration_ms", "must be at least 500"));
        }
        if !(2..=100).contains(&self.hls.window_segments) {
            return Err(invalid("hls.window_segments", "must be within 2 ..= 100"));
        }
        if !(100..=2000).contains(&self.hls.part_target_ms)
            || self.hls.part_target_ms > self.hls.target_duration_ms / 2
        {
            return Err(invalid(
                "hls.part_target_ms",
                "must be within 100 ..= 2000 and at most half of hls.target_duration_ms",
            ));
        }
        if !(1..=1_000_000).contains(&self.hls.max_held_reloads) {
            return Err(invalid(
                "hls.max_held_reloads",
                "must be within 1 ..= 1000000",
            ));
        }
        if self.hls.idle_timeout_ms < 3 * self.hls.target_duration_ms {
            return Err(invalid(
                "hls.idle_timeout_ms",
                "must be at least 3 x hls.target_duration_ms (players reload the playlist \
                 about once a target duration)",
            ));
        }
        if !(1..=128).contains(&self.limits.ipv6_prefix_len) {
            return Err(invalid(
                "limits.ipv6_prefix_len",
                "must be within 1 ..= 128",
            ));
        }
        if self.limits.max_streams == 0 {
            return Err(invalid("limits.max_streams", "must be positive"));
        }
        let auth = Auth::from_config(&self.auth);
        if auth.uses_tokens() && self.auth.secret.len() < 16 {
            return Err(invalid(
                "auth.secret",
                "token policies need a secret of at least 16 bytes (32 random ones recommended)",
            ));
        }
        self.validate_auth_names()?;
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("not a level filter: {err}")));
        }
        if self.metrics.histogram_log_interval_ms < 1000 {
            return Err(invalid(
                "metrics.histogram_log_interval_ms",
                "must be at least 1000 (shards publish their histograms once a second)",
            ));
        }
        if self.viewer.skip_after_ms == 0 {
            return Err(invalid("viewer.skip_after_ms", "must be positive"));
        }
        if self.viewer.disconnect_after_ms <= self.viewer.skip_after_ms {
            return Err(invalid(
                "viewer.disconnect_after_ms",
                "must be greater than viewer.skip_after_ms",
            ));
        }
        if self.stream.ring_max_duration_ms < self.viewer.skip_after_ms {
            return Err(invalid(
                "stream.ring_max_duration_ms",
                "must be at least viewer.skip_after_ms (a viewer may lag that much)",
            ));
        }
        if self.viewer.merge_window_ms >= self.viewer.skip_after_ms {
            return Err(invalid(
                "viewer.merge_window_ms",
                "must be smaller than viewer.skip_after_ms",
            ));
        }
        if self.viewer.max_send_bytes < 4096 {
            return Err(invalid("viewer.max_send_bytes", "must be at least 4096"));
        }
        Ok(())
    }

    /// The listeners must not share a port (the kernel would split connections between them),
    /// and the admin endpoints must not be reachable beyond loopback without a token.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let (rtmp, http) = (self.server.rtmp_listen, self.server.http_listen);
        if net::overlaps(rtmp, http) {
            return Err(ConfigError::Invalid {
                key: "server.http_listen",
                message: format!("{http} shares its port with server.rtmp_listen ({rtmp})"),
            });
        }
        let admin = self.admin.address();
        for (other, key) in [(rtmp, "server.rtmp_listen"), (http, "server.http_listen")] {
            if let Some(admin) = admin.filter(|&admin| net::overlaps(admin, other)) {
                return Err(ConfigError::Invalid {
                    key: "admin.listen",
                    message: format!(
                        "{admin} shares its port with {key} ({other}): the kernel would split \
                         connections between the admin and media listeners; give it a port \
                         of its own, or \"\" to serve the admin endpoints on \
                         server.http_listen"
                    ),
                });
            }
        }
        // Where the endpoints are reachable: their own listener, or the public HTTP one.
        let (exposed, on) = match admin {
            Some(admin) => (admin, "admin.listen"),
            None => (http, "server.http_listen, as admin.listen is empty"),
        };
        if self.admin.token.is_empty() && !exposed.ip().to_canonical().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "admin.token",
                message: format!(
                    "must be set: the admin endpoints (metrics, API, profiles) would be served \
                     without a token on {exposed} ({on}), which is not a loopback address; \
                     set a token, or bind admin.listen to a loopback address such as \
                     127.0.0.1:8081"
                ),
            });
        }
        Ok(())
    }

    /// `rtmp.handshake_timeout_ms` as a Duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.rtmp.handshake_timeout_ms)
    }

    /// `rtmp.idle_timeout_ms` as a Duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.rtmp.idle_timeout_ms)
    }

    /// `http.header_timeout_ms` as a Duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.http.header_timeout_ms)
    }

    /// `server.write_timeout_ms` as a Duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.server.write_timeout_ms)
    }

    /// How long `bytes` take at `http.segment_min_rate_bytes` per second.
    pub fn min_rate_time(&self, bytes: usize) -> Duration {
        let rate = self.http.segment_min_rate_bytes.max(1);
        Duration::from_millis((bytes as u64).saturating_mul(1000) / rate)
    }
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Syntax {
            origin: origin.to_string(),
            message: err.to_string().trim_end().to_string(),
        })
}

/// Deep-merges `over` into `base`: tables merge key by key, any other value replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

mod sources;
pub use sources::{Loaded, Override, Source, Sources, ENV_PREFIX};

#[cfg(test)]
mod tests;
