//! corecast's test kit: the clients that tests, benchmarks and the load generator
//! (`loadtest/`) use to drive a corecast server. None of it is part of the server.
//!
//! | module | what it does |
//! |---|---|
//! | [`client`] | blocking RTMP clients (publisher and player); cheap glommio viewers that only count bytes |
//! | [`daemon`] | a server program run in the foreground on a free loopback port, stopped when dropped |
//! | [`nginx`] | Debian's nginx in front of corecast: as an HLS cache with the shipped `deploy/nginx/hls-cache.conf`, as a TLS proxy (an `https://` origin) |
//! | [`varnish`] | Debian's Varnish as an HLS cache in front of corecast, with the shipped `deploy/varnish/hls-cache.vcl` |
//! | [`hls_check`] | the HLS media playlist checker: parses a playlist and checks the Low-Latency HLS rules of RFC 8216bis, with the line of each violation (pure) |
//! | [`procfs`] | CPU seconds of a process or thread, busy time of a CPU, from `/proc` (benchmarks) |
//! | [`source`] | synthetic H.264/AAC-shaped FLV tags of any bitrate (load without media files) |
//! | [`ts`] | the MPEG-TS reader of the HLS checks and of the load generator's probes (on `mpeg2ts`) |
//!
//! The crate depends on `corecast` for what the server and its clients share (the FLV
//! reader of [`corecast::flv::reader`]); the server does not depend on it.

pub mod client;
pub mod daemon;
pub mod hls_check;
pub mod nginx;
pub mod procfs;
pub mod source;
pub mod ts;
pub mod varnish;
