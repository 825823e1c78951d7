//! HLS through Debian's nginx as a cache, configured by the shipped
//! `deploy/nginx/hls-cache.conf`: 500 players read a live stream through it without errors
//! while corecast receives about one request per segment and per playlist refresh; and a
//! protected application's responses are never served from the cache. Low-Latency HLS
//! through the same cache: 200 players keep the pace and latency they have without it (the
//! configuration leaves nginx's request collapsing out for LL-HLS: its waiters wake every
//! 500 ms). Through Varnish, configured by the shipped `deploy/varnish/hls-cache.vcl`, which
//! collapses them at once: the same players at the same pace, corecast receiving about one
//! request per part and blocking reload.

mod common;

use corecast::stats::{self, ShardStats};
use corecast_load::hls::{self, HlsOptions, HlsStart, HlsStats};
use corecast_load::llhls::{self, LlOptions, LlStats};
use corecast_load::publish;
use corecast_testkit::daemon::Daemon;
use corecast_testkit::nginx::{self, NGINX};
use corecast_testkit::varnish::{self, VARNISHD};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Players reading through the cache.
const PLAYERS: usize = 500;
/// How long they play.
const PLAY: Duration = Duration::from_secs(8);

/// The program at `path` (nginx, varnishd), or `None` after saying why (a failure under
/// CORECAST_REQUIRE_TOOLS=1).
fn tool(path: &str) -> Option<PathBuf> {
    let program = PathBuf::from(path);
    if program.exists() {
        return Some(program);
    }
    if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{path} is required (CORECAST_REQUIRE_TOOLS=1) but not installed");
    }
    eprintln!("NOTICE: {path} not installed; skipping this test");
    None
}

/// Status line and `Cache-Control` of a GET of `path` at `addr`.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let (head, _) = common::get(addr, path);
    let status = head.lines().next().unwrap_or_default().to_string();
    let cache_control = head
        .lines()
        .find_map(|l| l.strip_prefix("Cache-Control: "))
        .unwrap_or_default()
        .to_string();
    (status, cache_control)
}

fn hls_requests(all: &[Arc<ShardStats>]) -> u64 {
    stats::total(all, |s| &s.hls_requests)
}

/// `PLAYERS` players of `live/cached0` through `addr` for [`PLAY`].
fn play(addr: SocketAddr) -> HlsStats {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let deadline = Instant::now() + PLAY;
            let stats = Rc::new(RefCell::new(HlsStats::default()));
            let players: Vec<_> = (0..PLAYERS)
                .map(|i| {
                    let stats = stats.clone();
                    let options = HlsOptions {
                        start: match i % 2 {
                            0 => HlsStart::default(),
                            _ => HlsStart::LiveEdge,
                        },
                        stall: Duration::from_secs(4),
                        probe: false,
                    };
                    glommio::spawn_local(async move {
                        let count = |_: usize| {};
                        hls::view(addr, "live", "cached0", &options, deadline, &count, &stats)
                            .await
                            .expect("player starts");
                    })
                })
                .collect();
            for player in players {
                player.await;
            }
            let stats = stats.borrow().clone();
            stats
        })
        .expect("executor")
        .join()
        .expect("players")
}

#[test]
fn players_behind_nginx_cost_corecast_one_request_per_segment_and_refresh() {
    let Some(program) = tool(NGINX) else {
        return;
    };
    let config = corecast::Config::overlay(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"\"\n[hls]\ntarget_duration_ms = 1000\n\
         [auth.apps.secure]\npublish = \"open\"\nplay = \"key\"\npublish_keys = {}\n\
         play_keys = { \"*\" = \"viewer-key\" }\n",
        "hls-cache",
    )
    .expect("config");
    let server = corecast::Server::start(config).expect("server");
    let dir = std::env::temp_dir().join(format!("corecast-hls-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cache = nginx::hls_cache(&program, server.http_addr(), &dir);

    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/clip.flv");
    let (_, tags) = corecast::flv::reader::read_file(clip).expect("fixture");
    let tags = Arc::new(tags);
    let _open = publish::spawn(
        server.rtmp_addr(),
        "live",
        "cached",
        1,
        tags.clone(),
        Duration::from_secs(20),
    );
    let _protected = publish::spawn(
        server.rtmp_addr(),
        "secure",
        "cam",
        1,
        tags,
        Duration::from_secs(20),
    );
    // Three segments in the window, so that every player starts where it asks to.
    let waited = Instant::now();
    while get(server.http_addr(), "/live/cached0.m3u8").0 != "HTTP/1.1 200 OK" {
        assert!(waited.elapsed() < Duration::from_secs(8), "no playlist");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));

    let before = hls_requests(server.stats());
    let stats = play(cache.addr);
    let reached = hls_requests(server.stats()) - before;
    let asked = stats.playlists + stats.segments;
    eprintln!(
        "{PLAYERS} players through nginx for {PLAY:?}: {} playlists and {} segments asked, \
         {reached} requests reached corecast",
        stats.playlists, stats.segments
    );
    assert_eq!(
        (stats.errors, stats.not_found, stats.stalls, stats.skipped),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.segments >= PLAYERS as u64 * 5, "{stats:?}");
    // One request per segment (about 8 new ones and the 3 players start with) and per
    // playlist refresh (at most one a second, `max-age=1`) per cache; a few more where a
    // refresh and a lock time out together. Without the cache: every one of `asked`.
    assert!(
        reached <= 50,
        "{reached} requests reached corecast for {asked} asked"
    );

    // A protected application: private responses, never stored. Each request goes through
    // with its credentials and is checked, so one without a key is refused after keyed
    // ones.
    let before = hls_requests(server.stats());
    let refused = stats::total(server.stats(), |s| &s.auth_rejected_play);
    let mut keyed = (String::new(), String::new());
    assert!(common::wait_until(Duration::from_secs(8), || {
        keyed = get(cache.addr, "/secure/cam0.m3u8?key=viewer-key");
        keyed.0 == "HTTP/1.1 200 OK"
    }));
    assert!(keyed.1.starts_with("private"), "{keyed:?}");
    assert_eq!(
        get(cache.addr, "/secure/cam0.m3u8?key=viewer-key").0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        get(cache.addr, "/secure/cam0.m3u8").0,
        "HTTP/1.1 401 Unauthorized"
    );
    // Both keyed requests reached corecast (a 401 is counted as a refusal below).
    assert!(hls_requests(server.stats()) - before >= 2);
    assert_eq!(
        stats::total(server.stats(), |s| &s.auth_rejected_play) - refused,
        1
    );
    drop(cache);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// LL-HLS players reading through the cache.
const LL_PLAYERS: usize = 200;

/// `LL_PLAYERS` LL-HLS players of `live/{stream}` through `addr` for [`PLAY`], their stats
/// merged.
fn play_ll(addr: SocketAddr, stream: &'static str) -> LlStats {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let deadline = Instant::now() + PLAY;
            let stats = Rc::new(RefCell::new(LlStats::default()));
            let players: Vec<_> = (0..LL_PLAYERS)
                .map(|_| {
                    let stats = stats.clone();
                    glommio::spawn_local(async move {
                        let options = LlOptions::default();
                        let result =
                            llhls::view(addr, "live", stream, &options, deadline, &|_| {}, &stats)
                                .await;
                        result.is_ok()
                    })
                })
                .collect();
            let mut started = 0;
            for player in players {
                started += usize::from(player.await);
            }
            assert_eq!(started, LL_PLAYERS, "players that could not start");
            Rc::try_unwrap(stats).map_or_else(|s| s.borrow().clone(), RefCell::into_inner)
        })
        .expect("executor")
        .join()
        .expect("players")
}

/// What LL-HLS players did through a cache, and what reached corecast.
struct LlThrough {
    stats: LlStats,
    /// Requests the players made.
    asked: u64,
    /// HLS requests corecast answered meanwhile.
    reached: u64,
    /// The distinct blocking reloads, parts and initialization segments there were to ask
    /// for: the parts the stream made while they played, each with its reload, and the map.
    distinct: u64,
}

/// [`LL_PLAYERS`] LL-HLS players of a live stream through the cache `start` puts in front
/// of a corecast (`which`, for messages), for [`PLAY`].
fn ll_through(
    which: &str,
    start: impl FnOnce(SocketAddr, &std::path::Path) -> Daemon,
) -> LlThrough {
    let config = corecast::Config::overlay(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"\"\n[hls]\ntarget_duration_ms = 1000\npart_target_ms = 250\n",
        "ll-hls-cache",
    )
    .expect("config");
    let server = corecast::Server::start(config).expect("server");
    let dir = std::env::temp_dir().join(format!("corecast-ll-{which}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cache = start(server.http_addr(), &dir);
    let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/clip.flv");
    let (_, tags) = corecast::flv::reader::read_file(clip).expect("fixture");
    let _publisher = publish::spawn(
        server.rtmp_addr(),
        "live",
        "llc",
        1,
        Arc::new(tags),
        Duration::from_secs(20),
    );
    let waited = Instant::now();
    while get(cache.addr, "/live/llc0/ll.m3u8").0 != "HTTP/1.1 200 OK" {
        assert!(
            waited.elapsed() < Duration::from_secs(8),
            "no LL-HLS playlist"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = hls_requests(server.stats());
    let started = Instant::now();
    let stats = play_ll(cache.addr, "llc0");
    let played = started.elapsed();
    let reached = hls_requests(server.stats()) - before;
    let asked = stats.playlists + stats.parts + stats.maps;
    // Four parts a second (250 ms parts), each with its blocking reload, and the map.
    let distinct = 2 * (played.as_millis() as u64).div_ceil(250) + 1;
    eprintln!(
        "{LL_PLAYERS} LL-HLS players through {which} for {PLAY:?}: {} playlists, {} parts and \
         {} maps asked, {reached} requests reached corecast ({distinct} distinct reloads, \
         parts and maps made meanwhile); blocking reload p50 {:.0} ms, p99 {:.0} ms",
        stats.playlists,
        stats.parts,
        stats.maps,
        stats.reload.value_at_quantile(0.5) as f64 / 1e6,
        stats.reload.value_at_quantile(0.99) as f64 / 1e6,
    );
    assert_eq!(
        (
            stats.errors,
            stats.not_found,
            stats.unavailable,
            stats.invalid_playlists
        ),
        (0, 0, 0, 0),
        "{which}: {stats:?}"
    );
    // Four parts a second for 8 s, less the join: players at the live edge's pace (with
    // nginx's cache lock, they managed two a second, each 500 ms late).
    assert!(
        stats.parts >= LL_PLAYERS as u64 * 25,
        "{which}: {} parts",
        stats.parts
    );
    assert!(
        stats.reload.value_at_quantile(0.99) < 1_000_000_000,
        "{which}: blocking reload p99 {} ms",
        stats.reload.value_at_quantile(0.99) / 1_000_000
    );
    drop(cache);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
    LlThrough {
        stats,
        asked,
        reached,
        distinct,
    }
}

#[test]
fn ll_hls_players_behind_nginx_keep_their_pace_and_latency() {
    let Some(program) = tool(NGINX) else {
        return;
    };
    let run = ll_through("nginx", |corecast, dir| {
        nginx::hls_cache(&program, corecast, dir)
    });
    // Concurrent misses are not collapsed: most requests reach corecast (which holds each
    // blocking reload until its part exists); the cache answers those that come later.
    assert!(
        run.reached < run.asked,
        "{} requests reached corecast for {} asked",
        run.reached,
        run.asked
    );
}

#[test]
fn ll_hls_players_behind_varnish_cost_corecast_one_request_per_part_and_reload() {
    let Some(program) = tool(VARNISHD) else {
        return;
    };
    let run = ll_through("Varnish", |corecast, dir| {
        varnish::hls_cache(&program, corecast, dir)
    });
    // Varnish coalesces: each of the blocking reloads and parts there were reaches
    // corecast about once (at most twice: a request that comes as its cached answer
    // expires); each player's first playlist (the live edge, "no-cache") reaches it too.
    let bound = 2 * run.distinct + LL_PLAYERS as u64;
    assert!(
        run.reached <= bound,
        "{} requests reached corecast (bound {bound}) for {} asked: {:?}",
        run.reached,
        run.asked,
        run.stats
    );
}
