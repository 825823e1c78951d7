//! HLS benchmark: segment GETs per second and Gbit/s from one shard, next to nginx serving
//! the same segment file from disk (same client, wrk, same machine), and the cost of
//! remuxing 2.5 Mbit/s of video to MPEG-TS.
//!
//! Run: `cargo bench --bench hls` (needs `wrk`, and `nginx` for the comparison; both from
//! Debian's packages). The servers run on CPU 0, wrk on CPU 1. Environment:
//! `HLS_BENCH_SECONDS=5`, `HLS_BENCH_CONNECTIONS=64`, `HLS_BENCH_ROUNDS=3` (the two servers
//! alternate, so that the machine's load drifts over both alike).

use bytes::Bytes;
use corecast::hls::segmenter::Segmenter;
use corecast::media::{Tracks, Unit, UnitKind};
use corecast::{Config, Server};
use std::process::Command;
use std::time::{Duration, Instant};

const KBPS: u64 = 2500;
const FPS: u32 = 30;
const GOP: u32 = 60;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    remux_cost();
    let seconds = env("HLS_BENCH_SECONDS", 5);
    let connections = env("HLS_BENCH_CONNECTIONS", 64);
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("wrk not installed: skipping the serving comparison");
        return;
    }
    let rounds = env("HLS_BENCH_ROUNDS", 3);
    let (server, url, segment) = corecast_with_segment();
    println!(
        "segment size: {} bytes; {rounds} alternating rounds",
        segment.len()
    );
    let nginx = nginx_with_file(&segment);
    if nginx.is_none() {
        println!("nginx not installed: no comparison");
    }
    let mut results: Vec<(&str, u32, Vec<Run>)> =
        vec![("corecast (memory)", std::process::id(), Vec::new())];
    if let Some((child, _, _)) = &nginx {
        results.push(("nginx (file, sendfile)", child.id(), Vec::new()));
    }
    for _ in 0..rounds {
        let run = wrk(&url, seconds, connections, results[0].1);
        results[0].2.push(run);
        if let Some((_, nginx_url, _)) = &nginx {
            let run = wrk(nginx_url, seconds, connections, results[1].1);
            results[1].2.push(run);
        }
    }
    println!(
        "{:<24} {:>24} {:>10} {:>8} {:>10} {:>12} {:>10} {:>10}",
        "server (CPU 0)",
        "requests/s per round",
        "median",
        "Gbit/s",
        "server CPU",
        "CPU us/req",
        "CPU-s/GB",
        "wrk's CPU"
    );
    for (name, _, runs) in &results {
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let median = sorted[sorted.len() / 2];
        let each: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        println!(
            "{:<24} {:>24} {:>10.0} {:>8.2} {:>9.0}% {:>12.1} {:>10.3} {:>9.0}%",
            name,
            each.join(" "),
            median.rps,
            median.bytes_per_s * 8.0 / 1e9,
            median.server_cpu * 100.0,
            median.server_cpu * 1e6 / median.rps,
            median.server_cpu / (median.bytes_per_s / 1e9),
            median.client_busy * 100.0
        );
    }
    server.stop();
    if let Some((mut child, _, dir)) = nginx {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Synthetic 2.5 Mbit/s H.264-shaped units (one AVC sequence header, then frames).
fn units(seconds: u32) -> Vec<Unit> {
    let frame_bytes = (KBPS * 1000 / 8 / u64::from(FPS)) as usize;
    let mut out = Vec::new();
    let config = [
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68,
        0xee,
    ];
    out.push(unit(UnitKind::Video, 0, false, true, &config));
    for i in 0..seconds * FPS {
        let key = i % GOP == 0;
        let len = frame_bytes - 9;
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend_from_slice(&(len as u32).to_be_bytes());
        body.push(if key { 0x65 } else { 0x41 });
        body.resize(9 + len, 0x5a);
        out.push(unit(UnitKind::Video, i * 1000 / FPS, key, false, &body));
    }
    out
}

fn unit(kind: UnitKind, dts: u32, key: bool, header: bool, body: &[u8]) -> Unit {
    Unit::serialize(kind, dts, key, header, body, 4096, None)
}

/// CPU time to remux one second of 2.5 Mbit/s video (single thread, in process).
fn remux_cost() {
    let media_seconds = 120;
    let units = units(media_seconds);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut segmenter = Segmenter::new("bench", 1, 2000, 6);
        let started = Instant::now();
        for u in &units {
            segmenter.push(u, 0).expect("mux");
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "remux: {} s of {KBPS} kbit/s video in {:.1} ms (best of 5): {:.0} us per second of video, {:.3}% of a core",
        media_seconds,
        best * 1e3,
        best * 1e6 / f64::from(media_seconds),
        best * 100.0 / f64::from(media_seconds)
    );
}

/// One shard on CPU 0 with a live stream's segments; returns a segment URL and its bytes.
fn corecast_with_segment() -> (Server, String, Vec<u8>) {
    let config = Config::overlay(
        "[server]\nshards = 1\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
        "bench",
    )
    .expect("config");
    let server = Server::start(config).expect("server");
    let mut p = corecast_testkit::client::Publisher::connect(
        server.rtmp_addr(),
        "live",
        "bench",
        Duration::from_secs(5),
    )
    .expect("publish");
    for u in units(10) {
        let body = Bytes::copy_from_slice(u.body(Tracks::All));
        p.send_video(u.dts, body).expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));
    let http = server.http_addr();
    let playlist = get(&format!("http://{http}/live/bench.m3u8"));
    let name = String::from_utf8_lossy(&playlist)
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment")
        .to_string();
    let url = format!("http://{http}/live/{name}");
    let segment = get(&url);
    // Keep the publisher connected so that the stream stays live during the run.
    std::mem::forget(p);
    (server, url, segment)
}

fn get(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-s", url])
        .output()
        .expect("curl");
    out.stdout
}

/// nginx with one worker on CPU 0 serving `segment` from a temp dir.
fn nginx_with_file(segment: &[u8]) -> Option<(std::process::Child, String, std::path::PathBuf)> {
    Command::new("nginx").arg("-v").output().ok()?;
    let dir = std::env::temp_dir().join(format!("corecast-hls-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("www")).ok()?;
    std::fs::write(dir.join("www/seg.ts"), segment).ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1;\n\
         pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n\
           client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
           types {{ video/mp2t ts; }}\n\
           server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).ok()?;
    // nginx applies worker_cpu_affinity only to worker processes, not with
    // `master_process off`: pin it from outside.
    let child = Command::new("taskset")
        .args(["-c", "0", "nginx", "-c"])
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    Some((child, format!("http://127.0.0.1:{port}/seg.ts"), dir))
}

/// One wrk run against one server.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    bytes_per_s: f64,
    /// The server process's CPU (user + system) over the run, in cores.
    server_cpu: f64,
    /// wrk's CPU (CPU 1) busy over the run, kernel work included (0 to 1).
    client_busy: f64,
}

/// Runs wrk on CPU 1 against the server process `pid`.
fn wrk(url: &str, seconds: u64, connections: u64, pid: u32) -> Run {
    let (cpu0, busy0, at) = (
        process_cpu(pid),
        corecast_testkit::procfs::cpu_busy(1),
        Instant::now(),
    );
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(url)
        .output()
        .expect("wrk");
    let wall = at.elapsed().as_secs_f64();
    let (cpu1, busy1) = (process_cpu(pid), corecast_testkit::procfs::cpu_busy(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let bytes_per_s = text
        .lines()
        .find_map(|l| l.strip_prefix("Transfer/sec:"))
        .map(|v| parse_size(v.trim()))
        .unwrap_or(0.0);
    Run {
        rps,
        bytes_per_s,
        server_cpu: (cpu1 - cpu0) / wall,
        client_busy: (busy1.0 - busy0.0) / (busy1.1 - busy0.1).max(1.0),
    }
}

/// CPU seconds (user + system) of process `pid` so far.
fn process_cpu(pid: u32) -> f64 {
    let (user, system) =
        corecast_testkit::procfs::cpu_seconds(std::path::Path::new(&format!("/proc/{pid}/stat")));
    user + system
}

fn parse_size(v: &str) -> f64 {
    let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = number.parse().unwrap_or(0.0);
    n * match unit {
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    }
}
