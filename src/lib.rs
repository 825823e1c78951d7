//! corecast: a live-stream relay. Publishers push RTMP; viewers pull HTTP-FLV, RTMP and HLS;
//! every core serves viewers, and the latency each stage adds is measured.
//!
//! # Module map
//!
//! Pure modules take bytes and time as arguments and do no IO; drivers own the sockets.
//!
//! | module | what it does |
//! |---|---|
//! | [`config`] | configuration: embedded documented defaults, overlay, validation; sources (file, `CORECAST_` environment, `_FILE` secrets, options) and where each key came from |
//! | [`server`] | binds listeners, starts one pinned glommio executor per shard, graceful stop; shard heartbeats and readiness (`health`: pure), configuration reloads (`reload`), the systemd notify protocol (`systemd`) |
//! | [`shard`] | one shard: stream registry and view operations (`mod`), publish policies (takeover, republish grace: pure) and ingest (`publish`), edge pulls' registry and the viewers' wait for them (`pull`), cross-shard messages with ordered, bounded per-peer outboxes (`mesh`: outbox pure), HLS snapshot stores and HLS on demand (`hls_store`), Low-Latency HLS on the owner and the requests every shard holds for it (`llhls`, `held`: pure), reports (`report`) |
//! | [`auth`] | publish and play policies: static keys, signed tokens (pure) |
//! | [`limits`] | admission: connections in total, per shard and per address; viewers per stream |
//! | [`hub`] | stream naming and ownership; ring, feed, cursor, origin, subscriber fan-out (pure parts) |
//! | [`media`] | media units, FLV body inspection, timestamp rebasing, aggregates (pure) |
//! | [`flv`] | FLV tag serialization and demuxing (pure) |
//! | [`forward`] | restreaming to other RTMP servers (`[[forward]]`): target URLs (pure), and a target's driver, a publishing client fed as an RTMP player |
//! | [`upstream`] | edge pulls (`[[upstream]]`): origin URLs, the failover policy and the loop marker (pure), HTTP-FLV and RTMP pull clients (sans-IO), the task that pulls one stream on its owner shard |
//! | [`rtmp`] | RTMP connection (pure state machine: handshake, session, requests per state, timeouts; fuzzed and unit-tested as the server runs it) and its driver (socket, timers, shard calls, handoff); chunk layer (pure: one reassembly per chunk stream, bounded) and input guard (pure: the connection's limits, checks of complete messages, acknowledgements); AMF0 nesting scanner (pure, iterative: the depth bound for rml_amf0's recursive reader); shared chunking (pure) |
//! | [`hls`] | MPEG-TS muxer and segmenter (pure), snapshots served by every shard; the Low-Latency HLS window of segments and parts, its playlists and blocking-reload answers (`llhls`: pure); the fragmented MP4 (CMAF) writer of its init segments and parts, with `CODECS` strings (`fmp4`: pure); the LL-HLS segmenter that cuts the writer's output into parts for the window (`llsegmenter`: pure) |
//! | [`http`] | HTTP/1.1 driver: HTTP-FLV, HLS, admin endpoints, health checks, the console (an embedded web page); request parsing (pure); the `corecast probe` client |
//! | [`viewer`] | delivery of a feed to one viewer: policy, gather, vectored send |
//! | [`logging`] | log lines in the Elastic Common Schema (`log.format = "ecs"`; the line itself is pure) |
//! | [`metrics`] | latency histograms, Prometheus text, JSON API, interval logs, profiles, the allocator's figures |
//! | [`net`] | sockets: SO_REUSEPORT listeners, sendmsg, socket options, rlimits; the shard's epoll set that publishers are read from once a tick (`readiness`) |
//! | [`proxy`] | the PROXY protocol header of a load balancer in front (pure parsing, on `ppp`; reading it from a connection) |
//! | [`stats`] | per-shard counters |
//! | [`util`] | small async helpers |
//!
//! The clients that tests, benchmarks and the load generator drive the server with (a
//! blocking RTMP publisher and player, cheap viewers, an MPEG-TS reader, an HLS playlist
//! checker) are not part of this library: they are the workspace crate `corecast-testkit`
//! (`testkit/`).
//!
//! # Data path
//!
//! ```text
//! publisher -RTMP-> any shard -(handoff if not the owner)-> owner shard
//! owner:   rtmp::Connection -> rtmp driver -> shard.ingest -> Origin (rebase, classify,
//!          serialize FLV and RTMP once) -> owner Feed (ring = GOP cache + backlog) + one
//!          mesh message per subscribed shard; HLS segmenter -> snapshot to every shard
//! viewer:  http::serve / rtmp play -> shard.attach_viewer -> viewer::deliver (cursor into
//!          the local feed, one vectored sendmsg per wake-up)
//! ```

pub mod auth;
pub mod config;
pub mod flv;
pub mod forward;
pub mod hls;
pub mod http;
pub mod hub;
pub mod limits;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod rtmp;
pub mod server;
pub mod shard;
pub mod stats;
pub mod upstream;
pub mod util;
pub mod viewer;

pub use config::Config;
pub use server::Server;
