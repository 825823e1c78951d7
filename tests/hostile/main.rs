//! Hostile clients against the real binary.
//!
//! Every test here starts `corecast` as operators run it (its own process, JSON logs, two
//! shards), starts a witness (ffmpeg publishing a live stream, and an HTTP-FLV viewer of it),
//! attacks the server the way a client that wants to break it would, and then shows:
//!
//! - the process is alive;
//! - the witness received every media byte ffmpeg sent while it watched, with no gap;
//! - the attacker's connection was closed within its deadline, and the counter of that
//!   refusal went up (checked by each attack);
//! - the server's open descriptors returned to the baseline taken before the attack;
//! - its resident memory grew by less than the bound the attack states;
//! - no log line carries a credential.
//!
//! The attacks, by the class of problem they prove fixed, are in the modules below.

#[path = "../common/mod.rs"]
mod common;

mod budget;
mod held;
mod listeners;
mod names;
mod sessions;
mod slots;
mod writes;

/// The witness alone, with no attack: what the server's memory does by itself over an
/// attack's time. Seen here: 0 to 4.1 MiB (mimalloc commits memory in 4 MiB segments), the
/// noise floor under [`RSS_BOUND_KIB`].
#[test]
fn witness_alone_stays_within_the_bound() {
    hostile("", |server| {
        for _ in 0..10 {
            server.counter("timeouts_total");
            // An attack's time passing, with a scrape now and then, is the test.
            std::thread::sleep(Duration::from_millis(300));
        }
    });
}

pub use common::conn::{server_closed, tcp_from, wait_server_closed};
use common::raw_rtmp::RawClient;
use common::{have_tool, is_contiguous_run, is_media, read_until_closed, wait_until, FlvViewer};
use corecast::flv::reader::{FlvReader, FlvTag, TagKind};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A credential every attack may put in URLs: it must never appear in a log line.
pub const CREDENTIAL: &str = "s3cr3t-credential-0d9f";

/// The stream the witness publishes and watches.
const WITNESS: &str = "live/witness";

/// Frame interval of the witness's video (25 fps), in FLV milliseconds.
const FRAME_MS: u32 = 40;

/// A corecast process, killed when dropped.
pub struct Corecast {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    dir: std::path::PathBuf,
}

impl Corecast {
    /// Starts the binary with two shards on ephemeral loopback ports, debug-level JSON logs
    /// and `extra` configuration (TOML tables, merged over the defaults).
    pub fn start(extra: &str) -> Corecast {
        let dir = std::env::temp_dir().join(format!(
            "corecast-hostile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("corecast.toml");
        std::fs::write(&file, configuration(extra)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_corecast"))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start corecast");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("\"corecast serving\"") {
                        let _ = serving_tx.send(line.clone());
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let mut server = Corecast {
            child,
            rtmp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            logs,
            dir,
        };
        let line = serving_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("corecast did not start");
        let serving: Value = serde_json::from_str(&line).unwrap();
        // A wildcard listener (an attack's configuration) is reached over IPv4 loopback,
        // which a dual-stack `[::]` listener takes too.
        let addr = |key: &str| -> SocketAddr {
            let addr: SocketAddr = serving[key].as_str().unwrap().parse().unwrap();
            match addr.ip().is_unspecified() {
                true => SocketAddr::from(([127, 0, 0, 1], addr.port())),
                false => addr,
            }
        };
        (server.rtmp, server.http, server.admin) = (addr("rtmp"), addr("http"), addr("admin"));
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics unless the process is still running.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("corecast exited: {status}");
        }
    }

    /// Sum over shards of the counter `corecast_{name}` (from /metrics).
    pub fn counter(&self, name: &str) -> u64 {
        let text = admin_get(self.admin, "/metrics");
        let prefix = format!("corecast_{name}");
        text.lines()
            .filter(|l| {
                l.strip_prefix(&prefix)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap() as u64)
            .sum()
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Every log line so far, parsed.
    pub fn logs(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }

    /// Log lines whose message contains `text`.
    pub fn logged(&self, text: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
            .collect()
    }

    /// Whether a log line whose message contains `text` arrives within 5 s: the server
    /// counts before it logs, and its lines reach the test through a pipe and a thread.
    pub fn logs_soon(&self, text: &str) -> bool {
        wait_until(Duration::from_secs(5), || !self.logged(text).is_empty())
    }

    /// Waits until the server holds at most `fds` descriptors; false after `limit`.
    pub fn fds_back_to(&self, fds: usize, limit: Duration) -> bool {
        wait_until(limit, || self.fds() <= fds)
    }
}

impl Drop for Corecast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the server said last, for the failure's report.
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let start = logs.len().saturating_sub(40);
            eprintln!("corecast's last log lines:\n{}", logs[start..].join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The harness's configuration with `extra` merged over it, table by table: two shards on
/// ephemeral loopback ports, JSON logs, and short retention (3 s rings, three 1 s HLS
/// segments) so that the witness stream's memory is steady before the attack starts.
fn configuration(extra: &str) -> String {
    let mut config: toml::Table = toml::from_str(
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
         [stream]\nring_max_duration_ms = 3000\n\
         [hls]\ntarget_duration_ms = 1000\nwindow_segments = 3\n",
    )
    .unwrap();
    let extra: toml::Table = toml::from_str(extra).expect("attack configuration");
    for (name, table) in extra {
        let (Some(toml::Value::Table(into)), toml::Value::Table(table)) =
            (config.get_mut(&name), &table)
        else {
            config.insert(name, table);
            continue;
        };
        into.extend(table.clone());
    }
    toml::to_string(&config).unwrap()
}

/// A TCP connection to `addr` whose buffers are 4 KiB, so that what the server sends
/// stays on the server's side, and what the client sends waits on the client's.
pub fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .unwrap();
    socket.into()
}

/// The answer to a publish request that was accepted.
pub const START: &str = "NetStream.Publish.Start";
/// The answer to a publish request refused by a limit.
pub const FAILED: &str = "NetStream.Publish.Failed";

/// GET on the admin listener, which must answer 200; the body.
pub fn admin_get(admin: SocketAddr, path: &str) -> String {
    let response = common::http_get(admin, path);
    let body = String::from_utf8_lossy(&response.body).to_string();
    assert_eq!(response.status, 200, "{}{body}", response.head);
    body
}

/// A live stream published by ffmpeg and watched over HTTP-FLV for the whole attack.
pub struct Witness {
    ffmpeg: Child,
    stop: Arc<AtomicBool>,
    /// Tags the viewer has received so far.
    received: Arc<AtomicUsize>,
    viewer: Option<JoinHandle<(Vec<FlvTag>, bool)>>,
    record: std::path::PathBuf,
}

impl Witness {
    /// Starts ffmpeg (a 25 fps test picture and a tone, real time, H.264 and AAC), which
    /// publishes to `server` and records exactly what it sends to a file, and a viewer that
    /// plays the stream from its start.
    pub fn start(server: &Corecast) -> Witness {
        let record = server.dir.join("witness.flv");
        let url = format!("rtmp://{}/{WITNESS}", server.rtmp);
        let ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-map", "0:v", "-map", "1:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
            ])
            .args(["-f", "tee", "-flags", "+global_header"])
            .arg(format!("[f=flv]{url}|[f=flv]{}", record.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        let path = format!("/{WITNESS}.flv");
        assert!(
            wait_until(Duration::from_secs(15), || {
                common::http_get(server.http, &path).status != 404
            }),
            "the witness stream did not start"
        );
        let mut viewer = FlvViewer::open(server.http, &path);
        assert_eq!(viewer.status, 200);
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let viewer = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                let mut tags = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match viewer.next_tag() {
                        Some(tag) => tags.push(tag),
                        None => return (tags, false),
                    }
                    received.store(tags.len(), Ordering::Relaxed);
                }
                (tags, true)
            })
        };
        let witness = Witness {
            ffmpeg,
            stop,
            received,
            viewer: Some(viewer),
            record,
        };
        // Playing, and its rings (3 s) and HLS window (three 1 s segments, see
        // `configuration`) full before the attack starts: the window has slid, so four
        // segments, more than 3 s, were made.
        let playlist = format!("/{WITNESS}.m3u8");
        let mut text = String::new();
        let full = wait_until(Duration::from_secs(20), || {
            text =
                String::from_utf8_lossy(&common::http_get(server.http, &playlist).body).to_string();
            text.lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                .is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n >= 1))
        });
        assert!(full, "the witness's HLS window did not fill:\n{text}");
        witness
    }

    /// Waits until the viewer has received `count` more tags; false after `limit`.
    pub fn plays_on(&self, count: usize, limit: Duration) -> bool {
        let from = self.received.load(Ordering::Relaxed);
        wait_until(limit, || {
            self.received.load(Ordering::Relaxed) >= from + count
        })
    }

    /// Stops watching, then publishing, and checks that the viewer got every media tag
    /// ffmpeg sent over the time it watched: the same bytes, in order, none missing, and
    /// video frames one frame interval apart.
    pub fn finish(mut self, server: &Corecast) {
        self.stop.store(true, Ordering::Relaxed);
        let viewer = self.viewer.take().expect("finished once");
        let (tags, still_open) = viewer.join().expect("witness viewer");
        assert!(still_open, "the witness's response ended during the attack");
        // `q` is not available (stdin is closed): SIGINT makes ffmpeg finish its file.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.ffmpeg.id() as i32, libc::SIGINT) };
        let _ = self.ffmpeg.wait();
        let mut reader = FlvReader::new();
        reader.push(&std::fs::read(&self.record).expect("ffmpeg's record"));
        let mut sent = Vec::new();
        while let Ok(Some(tag)) = reader.next_tag() {
            if is_media(&tag) {
                sent.push(tag.data);
            }
        }
        let seen: Vec<_> = tags
            .iter()
            .filter(|t| is_media(t))
            .map(|t| t.data.clone())
            .collect();
        assert!(
            seen.len() > 50,
            "the witness saw only {} media tags",
            seen.len()
        );
        // The viewer starts at the GOP cache's keyframe, then must see everything after it.
        if !is_contiguous_run(&sent, &seen) {
            let start = sent.iter().position(|tag| *tag == seen[0]);
            let first_difference = start.and_then(|start| {
                seen.iter()
                    .zip(&sent[start..])
                    .position(|(seen, sent)| seen != sent)
            });
            panic!(
                "the witness missed or altered media: {} tags seen, {} sent, the first seen is \
                 sent tag {start:?}, the first difference is at seen tag {first_difference:?}; \
                 frames skipped by the server: {}, slow viewers disconnected: {}",
                seen.len(),
                sent.len(),
                server.counter("frames_skipped_total"),
                server.counter("viewers_disconnected_slow_total"),
            );
        }
        let video: Vec<u32> = tags
            .iter()
            .filter(|t| t.kind == TagKind::Video && is_media(t))
            .map(|t| t.timestamp)
            .collect();
        for pair in video.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                FRAME_MS,
                "gap in the witness's video: {pair:?}"
            );
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// How much an attack may grow the server's resident memory: two allocator segments over the
/// witness alone (see [`witness_alone_stays_within_the_bound`]). Before the fixes, 100 MB of
/// publish requests from one player grew it by 108 MB.
pub const RSS_BOUND_KIB: u64 = 8 * 1024;

/// Runs `attack` against a corecast started with `extra` configuration while a witness
/// plays, and checks what every attack must leave behind (see the module's documentation),
/// its memory within [`RSS_BOUND_KIB`].
pub fn hostile(extra: &str, attack: impl FnOnce(&Corecast)) {
    hostile_within(extra, RSS_BOUND_KIB, attack);
}

/// [`hostile`] for an attack that the server lets hold memory by design (media within its
/// budget), which states how much its resident memory may grow: what it may hold, in
/// allocator segments, over [`RSS_BOUND_KIB`].
pub fn hostile_within(extra: &str, rss_bound_kib: u64, attack: impl FnOnce(&Corecast)) {
    // One attack at a time: each measures deadlines and a live stream's continuity, which a
    // second server and encoder competing for the same two cores would blur.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The witness's encoder: without it, skipped with a notice (a failure in CI).
    if !have_tool("ffmpeg") {
        return;
    }
    let mut server = Corecast::start(extra);
    let witness = Witness::start(&server);
    // The first /metrics render allocates what later ones reuse: not the attack's doing.
    server.counter("timeouts_total");
    let fds = server.fds();
    let rss = server.rss_kib();
    attack(&server);
    server.assert_alive();
    assert!(
        server.fds_back_to(fds, Duration::from_secs(5)),
        "descriptors: {} after the attack, {fds} before",
        server.fds()
    );
    // What the attack's connections freed goes back to the system after the allocator's
    // purge delay, in batches: measured right after the attack, the same run showed 6.0 MiB
    // and, 2 s later, 3.3 to 5.8 MiB, with an odd extra 2 MiB not yet purged. What is held
    // is what stays.
    let mut grown = 0;
    let settled = wait_until(Duration::from_secs(3), || {
        grown = server.rss_kib().saturating_sub(rss);
        grown <= rss_bound_kib
    });
    assert!(
        settled,
        "RSS grew by {grown} KiB (bound {rss_bound_kib} KiB)"
    );
    // A third of a second of the witness (25 video and 43 audio frames a second), after the
    // attack.
    assert!(
        witness.plays_on(25, Duration::from_secs(5)),
        "the witness plays on after the attack"
    );
    witness.finish(&server);
    server.assert_alive();
    let leaked: Vec<_> = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(CREDENTIAL))
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "credentials in the log: {leaked:?}");
}

/// Sends `bytes` until the server stops taking them; returns how many it took. A server
/// that closes the connection makes the write fail (EPIPE, ECONNRESET).
pub fn send_until_refused(stream: &mut TcpStream, bytes: &[u8], max_total: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sent = 0;
    while sent < max_total {
        match stream.write(bytes) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}
