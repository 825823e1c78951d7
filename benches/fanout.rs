//! One-shard fan-out benchmark: the CPU the shard spends per delivered byte and per tag per
//! viewer, over loopback, for HTTP-FLV viewers and RTMP players.
//!
//! The server runs one shard pinned to CPU 0. A synthetic stream (default 2.6 Mbit/s, 30 fps,
//! 2 s GOP, plus 43 audio frames/s) is published in real time with the project's RTMP client,
//! and N viewers (cheap readers on a glommio executor pinned to CPU 1: HTTP-FLV requests, or
//! RTMP players that do the handshake, connect and play, then only count bytes) drain it.
//! The shard thread's CPU time (utime + stime from /proc) is sampled over the window.
//!
//! Run: `cargo bench --bench fanout` (defaults: flv and rtmp, viewers 100 and 1000, merge
//! windows 0, 20 and 50 ms). Environment: `FANOUT_PROTOCOLS=flv,rtmp`,
//! `FANOUT_VIEWERS=100,1000`, `FANOUT_MERGE_MS=0,20,50`, `FANOUT_SECONDS=8`,
//! `FANOUT_KBPS=2600`.
//! Compare ratios between rows of one run; absolute times vary with the machine's load.

use bytes::Bytes;
use corecast::{Config, Server};
use corecast_testkit::client::{cheap, Publisher};
use glommio::{LocalExecutorBuilder, Placement};
use rml_rtmp::sessions::StreamMetadata;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FPS: u32 = 30;
const GOP_FRAMES: u32 = 60;
const AUDIO_FPS: f64 = 44_100.0 / 1024.0;
const AUDIO_BYTES: usize = 256;
const WARMUP: Duration = Duration::from_secs(2);

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with no time to spare.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let viewers = env_list("FANOUT_VIEWERS", "100,1000");
    let merges = env_list("FANOUT_MERGE_MS", "0,20,50");
    let seconds = env_list("FANOUT_SECONDS", "8")[0];
    let protocols: Vec<Protocol> = std::env::var("FANOUT_PROTOCOLS")
        .unwrap_or_else(|_| "flv,rtmp".into())
        .split(',')
        .filter_map(|p| match p.trim() {
            "flv" => Some(Protocol::Flv),
            "rtmp" => Some(Protocol::Rtmp),
            _ => None,
        })
        .collect();
    let kbps = env_list("FANOUT_KBPS", "2600")[0];
    println!(
        "fan-out, one shard on CPU 0, viewers on CPU 1, {kbps} kbit/s stream, {seconds} s window"
    );
    println!(
        "{:>5} {:>7} {:>6} {:>7} {:>7} {:>9} {:>10} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "proto",
        "viewers",
        "merge",
        "Gbit/s",
        "cpu %",
        "cpu-s/GB",
        "user-s/GB",
        "ns/tag/view",
        "user ns/tag",
        "KB/send",
        "skipped",
        "slow-dc"
    );
    for &n in &viewers {
        for &merge in &merges {
            for &protocol in &protocols {
                run(protocol, n as usize, merge, seconds, kbps);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Flv,
    Rtmp,
}

fn run(protocol: Protocol, viewers: usize, merge_ms: u64, seconds: u64, kbps: u64) {
    let config = Config::overlay(
        &format!(
            "[server]\nshards = 1\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [viewer]\nsend_schedule = \"fixed\"\nmerge_window_ms = {merge_ms}\n"
        ),
        "bench",
    )
    .expect("config");
    let server = Server::start(config).expect("server");
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (addr, stop, frames) = (server.rtmp_addr(), stop.clone(), frames.clone());
        std::thread::spawn(move || publish(addr, kbps, &stop, &frames))
    };
    std::thread::sleep(Duration::from_millis(300));
    let received = Arc::new(AtomicU64::new(0));
    let readers = {
        let addr = match protocol {
            Protocol::Flv => server.http_addr(),
            Protocol::Rtmp => server.rtmp_addr(),
        };
        let (stop, received) = (stop.clone(), received.clone());
        LocalExecutorBuilder::new(Placement::Fixed(1))
            .name("bench-viewers")
            .spawn(move || read_all(protocol, addr, viewers, stop, received))
            .expect("viewer executor")
    };
    std::thread::sleep(WARMUP);
    let shard = &server.stats()[0];
    let (cpu0, bytes0, sends0, frames0) = (
        shard_cpu(),
        bytes_of(shard),
        sends_of(shard),
        frames.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = shard_cpu();
    let bytes = bytes_of(shard) - bytes0;
    let sends = sends_of(shard) - sends0;
    let tags = (frames.load(Ordering::Relaxed) - frames0) * viewers as u64;
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    let _ = readers.join();
    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let gb = bytes as f64 / 1e9;
    println!(
        "{:>5} {:>7} {:>4}ms {:>7.2} {:>6.1}% {:>9.3} {:>10.3} {:>12.0} {:>12.0} {:>8.1} {:>8} {:>8}",
        format!("{protocol:?}").to_lowercase(),
        viewers,
        merge_ms,
        bytes as f64 * 8.0 / wall / 1e9,
        (user + sys) / wall * 100.0,
        (user + sys) / gb,
        user / gb,
        (user + sys) * 1e9 / tags.max(1) as f64,
        user * 1e9 / tags.max(1) as f64,
        bytes as f64 / 1024.0 / sends.max(1) as f64,
        corecast::stats::get(&shard.frames_skipped),
        corecast::stats::get(&shard.viewers_disconnected_slow),
    );
    server.stop();
}

fn bytes_of(shard: &corecast::stats::ShardStats) -> u64 {
    corecast::stats::get(&shard.flv_bytes_out) + corecast::stats::get(&shard.rtmp_bytes_out)
}

fn sends_of(shard: &corecast::stats::ShardStats) -> u64 {
    corecast::stats::get(&shard.flv_sends) + corecast::stats::get(&shard.rtmp_sends)
}

/// User and system CPU seconds of the shard thread (named `corecast-0` by
/// `server::spawn_shard_thread`).
fn shard_cpu() -> (f64, f64) {
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("proc")
        .flatten()
    {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "corecast-0" {
            return corecast_testkit::procfs::cpu_seconds(&entry.path().join("stat"));
        }
    }
    panic!("shard thread not found");
}

/// Publishes a synthetic H.264/AAC-shaped stream in real time until `stop`.
fn publish(addr: SocketAddr, kbps: u64, stop: &AtomicBool, frames: &AtomicU64) {
    let mut p = Publisher::connect(addr, "live", "bench", Duration::from_secs(5)).expect("publish");
    let mut meta = StreamMetadata::new();
    meta.video_width = Some(1280);
    meta.video_height = Some(720);
    p.send_metadata(&meta).expect("metadata");
    p.send_video(
        0,
        Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]),
    )
    .expect("avc header");
    p.send_audio(0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10]))
        .expect("aac header");
    let audio_kbps = AUDIO_FPS * AUDIO_BYTES as f64 * 8.0 / 1000.0;
    let frame_bytes = ((kbps as f64 - audio_kbps) * 1000.0 / 8.0 / f64::from(FPS)) as usize;
    let start = Instant::now();
    let (mut video_n, mut audio_n) = (0u32, 0u32);
    while !stop.load(Ordering::Relaxed) {
        let video_at = f64::from(video_n) / f64::from(FPS);
        let audio_at = f64::from(audio_n) / AUDIO_FPS;
        let (at, is_video) = if video_at <= audio_at {
            (video_at, true)
        } else {
            (audio_at, false)
        };
        let wait = Duration::from_secs_f64(at).saturating_sub(start.elapsed());
        std::thread::sleep(wait);
        let ts = (at * 1000.0) as u32;
        let sent = if is_video {
            video_n += 1;
            let key = video_n % GOP_FRAMES == 1;
            // Keyframes are larger, as in real encodes.
            let len = if key {
                frame_bytes * 4
            } else {
                frame_bytes * 53 / 59
            };
            let mut body = vec![0u8; len.max(8)];
            body[..5].copy_from_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
            p.send_video(ts, Bytes::from(body))
        } else {
            audio_n += 1;
            let mut body = vec![0u8; AUDIO_BYTES];
            body[..2].copy_from_slice(&[0xaf, 1]);
            p.send_audio(ts, Bytes::from(body))
        };
        if sent.is_err() {
            return;
        }
        frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens `n` cheap viewers and drains them until `stop`.
async fn read_all(
    protocol: Protocol,
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) {
    let local = Rc::new(Cell::new(0u64));
    let protocol = match protocol {
        Protocol::Flv => cheap::Protocol::Flv,
        Protocol::Rtmp => cheap::Protocol::Rtmp,
    };
    for _ in 0..n {
        let local = local.clone();
        glommio::spawn_local(async move {
            if let Ok(mut s) = cheap::start(addr, protocol, "live", "bench").await {
                let _ = cheap::drain(&mut s, |k| local.set(local.get() + k as u64)).await;
            }
        })
        .detach();
    }
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    received.store(local.get(), Ordering::Relaxed);
}
