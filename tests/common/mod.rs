//! Shared helpers for the end-to-end tests: an in-process server on 127.0.0.1, an HTTP-FLV
//! reader, the fixture clip, and the external-tool gate.
#![allow(dead_code)]

pub mod browser;
pub mod conn;
pub mod fixture;
pub mod logged;
pub mod peers;
pub mod raw_publisher;
pub mod raw_rtmp;
pub mod slow;
pub mod tls;
pub mod ts_check;
pub mod watch;

// Not every test file uses these.
#[allow(unused_imports)]
pub use fixture::{fixture_path, fixture_tags};
#[allow(unused_imports)]
pub use raw_rtmp::rtmp_handshake;

use bytes::Bytes;
use corecast::flv::reader::{FlvReader, FlvTag, TagKind};
use corecast::{Config, Server};
use corecast_testkit::client::{Pace, Publisher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// ffmpeg encoder options for HEVC (x265, fast, B-frames) with AAC, a keyframe a second at
/// 25 fps: the modern ffmpeg's (see [`modern_ffmpeg`]).
pub const HEVC_AAC: &[&str] = &[
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=error:keyint=25:bframes=3",
    "-c:a",
    "aac",
];

/// ffmpeg encoder options for AV1 (SVT-AV1, fast) with Opus, a keyframe a second at 25 fps:
/// the modern ffmpeg's (see [`modern_ffmpeg`]).
pub const AV1_OPUS: &[&str] = &[
    "-c:v",
    "libsvtav1",
    "-preset",
    "12",
    "-g",
    "25",
    "-svtav1-params",
    "lp=1",
    "-c:a",
    "libopus",
];

/// A number in the object of a script tag's data (onMetaData's properties).
pub fn script_number(data: &[u8], key: &str) -> Option<f64> {
    use rml_rtmp::rml_amf0::{self, Amf0Value};
    let values = rml_amf0::deserialize(&mut &data[..]).ok()?;
    let properties = values
        .into_iter()
        .find_map(Amf0Value::get_object_properties)?;
    properties.get(key)?.clone().get_number()
}

/// Generous bound for functional waits (the machine may be busy).
pub const WAIT: Duration = Duration::from_secs(15);

/// A configuration for tests: two shards, ephemeral ports on 127.0.0.1, short timeouts.
pub fn test_config(extra: &str) -> Config {
    let base =
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ndrain_timeout_ms = 1000\n\
                [stream]\nrepublish_grace_ms = 1500\n[admin]\nlisten = \"\"\n";
    let mut table: toml::Table = base.parse().expect("base config");
    let extra: toml::Table = extra.parse().expect("extra config");
    for (section, values) in extra {
        match (table.get_mut(&section), values) {
            (Some(toml::Value::Table(t)), toml::Value::Table(v)) => t.extend(v),
            (_, v) => {
                table.insert(section, v);
            }
        }
    }
    Config::overlay(&toml::to_string(&table).expect("toml"), "test").expect("valid test config")
}

/// Starts a server with [`test_config`].
pub fn start(extra: &str) -> Server {
    Server::start(test_config(extra)).expect("server starts")
}

/// Sum of one counter over all shards.
pub fn total(server: &Server, field: impl Fn(&corecast::stats::ShardStats) -> &AtomicU64) -> u64 {
    server
        .stats()
        .iter()
        .map(|s| corecast::stats::get(field(s)))
        .sum()
}

/// Connects a publisher.
pub fn publisher(server: &Server, name: &str) -> Publisher {
    Publisher::connect(server.rtmp_addr(), "live", name, Duration::from_secs(5)).expect("publish")
}

/// Publishes the fixture `loops` times at `speed` x real time; returns the media payloads
/// sent (audio and video, headers excluded), in order.
pub fn replay(publisher: &mut Publisher, loops: usize, speed: f64) -> Vec<Bytes> {
    let tags = fixture_tags();
    let mut offset = 0;
    for _ in 0..loops {
        offset = publisher
            .replay(&tags, Pace::RealTime { speed }, offset)
            .expect("replay")
            + 40;
    }
    tags.iter()
        .filter(|t| is_media(t))
        .map(|t| t.data.clone())
        .cycle()
        .take(tags.iter().filter(|t| is_media(t)).count() * loops)
        .collect()
}

/// Publishes the fixture to `live/name` from a thread (see [`replay`]), then finishes the
/// publish.
pub fn publish_in_background(
    server: &Server,
    name: &str,
    loops: usize,
    speed: f64,
) -> std::thread::JoinHandle<Vec<Bytes>> {
    let p = Publisher::connect(server.rtmp_addr(), "live", name, Duration::from_secs(5)).unwrap();
    replay_in_background(p, loops, speed)
}

/// Replays the fixture on a connected publisher from a thread (see [`replay`]), then
/// finishes the publish.
pub fn replay_in_background(
    mut publisher: Publisher,
    loops: usize,
    speed: f64,
) -> std::thread::JoinHandle<Vec<Bytes>> {
    std::thread::spawn(move || {
        let sent = replay(&mut publisher, loops, speed);
        publisher.finish().unwrap();
        sent
    })
}

/// Waits until `path` answers 200 on the server's HTTP port and a viewer of it has received
/// a keyframe, so that the publisher's headers, which come before its first keyframe, are
/// all in: viewers opened afterwards get every header at their start. (A viewer that joins
/// between two headers gets the second inline, before its track's first frame.)
pub fn wait_live(server: &Server, path: &str) {
    wait_live_at(server.http_addr(), path);
}

/// [`wait_live`] for the server whose HTTP address is `http`.
pub fn wait_live_at(http: SocketAddr, path: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || FlvViewer::open(http, path)
            .status
            == 200),
        "{path} did not go live"
    );
    // A frame, not a sequence header (the AVC one is flagged as a keyframe too): the headers
    // before it have been ingested, so that a viewer opened now starts with them.
    let mut probe = FlvViewer::open(http, path);
    let keyframe = std::iter::from_fn(|| probe.next_tag())
        .take(10_000)
        .any(|tag| is_media(&tag) && (tag.is_video_keyframe() || tag.kind == TagKind::Audio));
    assert!(
        keyframe,
        "{path}: no keyframe (or audio frame) reached a viewer"
    );
}

/// Audio or video, not a sequence header.
pub fn is_media(tag: &FlvTag) -> bool {
    matches!(tag.kind, TagKind::Audio | TagKind::Video) && !tag.is_sequence_header()
}

/// An HTTP-FLV viewer over a blocking socket.
pub struct FlvViewer {
    pub stream: TcpStream,
    reader: FlvReader,
    pub status: u16,
}

impl FlvViewer {
    /// Sends the request and reads the response head.
    pub fn open(addr: SocketAddr, path: &str) -> FlvViewer {
        Self::open_with(addr, path, None)
    }

    /// Like [`FlvViewer::open`], with a receive buffer size set before connecting.
    pub fn open_with(addr: SocketAddr, path: &str, rcvbuf: Option<usize>) -> FlvViewer {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket
            .connect_timeout(&addr.into(), Duration::from_secs(5))
            .expect("connect");
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("response head");
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let status = text[9..12].parse().expect("status code");
        if status == 200 {
            assert!(text.contains("Content-Type: video/x-flv"), "{text}");
            assert!(text.contains("Access-Control-Allow-Origin: *"), "{text}");
        }
        FlvViewer {
            stream,
            reader: FlvReader::new(),
            status,
        }
    }

    /// Next tag; `None` at a clean end of the response.
    pub fn next_tag(&mut self) -> Option<FlvTag> {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(tag) = self.reader.next_tag().expect("valid FLV") {
                return Some(tag);
            }
            let n = match self.stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other.expect("read FLV"),
            };
            if n == 0 {
                assert_eq!(self.reader.buffered_len(), 0, "response ended mid-tag");
                return None;
            }
            self.reader.push(&buf[..n]);
        }
    }

    /// Reads tags until the response ends or `limit` passes.
    pub fn read_all(&mut self, limit: Duration) -> Vec<FlvTag> {
        let deadline = Instant::now() + limit;
        let mut tags = Vec::new();
        while Instant::now() < deadline {
            match self.next_tag() {
                Some(tag) => tags.push(tag),
                None => break,
            }
        }
        tags
    }
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent and how
/// long it took. Panics if it is still open after `limit`.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        assert!(!left.is_zero(), "connection not closed within {limit:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("connection not closed within {limit:?}: {e}"),
        }
    }
    (out, started.elapsed())
}

/// One HTTP response, as the tests' client reads it.
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends one raw request on a new connection and reads one response (Content-Length framed;
/// no body after a HEAD request).
pub fn http_request(addr: SocketAddr, raw: &str) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.write_all(raw.as_bytes()).expect("send request");
    read_response(&mut s, raw.starts_with("HEAD"))
}

/// Reads one response from `s` (Content-Length framed).
pub fn read_response(s: &mut TcpStream, head_only: bool) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        // read_exact retries EINTR itself.
        s.read_exact(&mut byte).expect("response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head[9..12].parse().expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().expect("Content-Length"));
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    s.read_exact(&mut body).expect("response body");
    Response { status, head, body }
}

/// GET `path` on a new connection.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

/// Checks what every viewer must see: metadata and sequence headers first, then a keyframe
/// as the first video frame, and timestamps that never decrease.
pub fn assert_decodable_start(tags: &[FlvTag]) {
    assert!(tags.len() > 3, "too few tags: {}", tags.len());
    assert_eq!(tags[0].kind, TagKind::Script, "metadata first");
    let headers: Vec<_> = tags[1..3]
        .iter()
        .map(|t| (t.kind, t.is_sequence_header()))
        .collect();
    assert!(
        headers.contains(&(TagKind::Video, true)),
        "AVC sequence header: {headers:?}"
    );
    assert!(
        headers.contains(&(TagKind::Audio, true)),
        "AAC sequence header: {headers:?}"
    );
    let first_video = tags[3..]
        .iter()
        .find(|t| t.kind == TagKind::Video)
        .expect("some video");
    assert!(
        first_video.is_video_keyframe(),
        "first video frame is a keyframe"
    );
    assert_monotonic(tags);
}

/// Audio and video timestamps never decrease; script data (onMetaData) is stamped 0
/// wherever it comes, as players expect it.
pub fn assert_monotonic(tags: &[FlvTag]) {
    for tag in tags.iter().filter(|t| t.kind == TagKind::Script) {
        assert_eq!(tag.timestamp, 0, "script data stamped {}", tag.timestamp);
    }
    let media: Vec<&FlvTag> = tags
        .iter()
        .filter(|t| matches!(t.kind, TagKind::Audio | TagKind::Video))
        .collect();
    for pair in media.windows(2) {
        assert!(
            pair[1].timestamp >= pair[0].timestamp,
            "timestamp went back: {} -> {}",
            pair[0].timestamp,
            pair[1].timestamp
        );
    }
}

/// True when `needle` appears as a contiguous run inside `haystack`.
pub fn is_contiguous_run(haystack: &[Bytes], needle: &[Bytes]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The samples of the admin listener's `/metrics` whose series starts with `prefix`, with
/// their values; asked with the admin `token`, if any.
pub fn samples(admin: SocketAddr, token: Option<&str>, prefix: &str) -> Vec<(String, f64)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let response = http_request(
        admin,
        &format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"),
    );
    assert_eq!(response.status, 200, "GET /metrics");
    String::from_utf8_lossy(&response.body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A port of 127.0.0.1 that no socket uses now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Gate for tests that need an external program: `false` (with a notice) when it is
/// missing, unless CORECAST_REQUIRE_TOOLS=1 makes that a failure.
pub fn have_tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required (CORECAST_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("NOTICE: {name} not installed; skipping this test (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    }
    found
}

/// A recent ffmpeg (Enhanced RTMP: HEVC, AV1, VP9 and Opus over RTMP and FLV): the static
/// build of the PyPI wheel `imageio-ffmpeg`, which `.ci/run` installs (Debian's ffmpeg 5.1
/// predates Enhanced RTMP). `None`, with a notice, when it is not installed; a panic under
/// CORECAST_REQUIRE_TOOLS=1.
pub fn modern_ffmpeg() -> Option<PathBuf> {
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if found.is_none() {
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!(
                "the imageio-ffmpeg wheel is required (CORECAST_REQUIRE_TOOLS=1) but not installed"
            );
        }
        eprintln!("NOTICE: imageio-ffmpeg (pip) not installed; skipping this test (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    }
    found
}

/// Polls `cond` every 20 ms for up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        // The poll interval: this is the one wait that every other is built on.
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Waits up to `limit` for `child` to exit; its status, `None` if it still runs.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// Writes `config` (with JSON logs) to a file of its own, named after `name` (unique among a
/// test binary's tests), which the caller removes once the server has read it.
pub fn config_file(name: &str, config: &str) -> PathBuf {
    let file =
        std::env::temp_dir().join(format!("corecast-test-{}-{name}.toml", std::process::id()));
    let text = format!("[log]\nformat = \"json\"\n{config}");
    std::fs::write(&file, text).unwrap();
    file
}

/// A `[server]` and `[admin]` configuration listening on the given addresses.
pub fn listening(rtmp: &str, http: &str, admin: &str, extra: &str) -> String {
    format!(
        "[server]\nshards = 1\nrtmp_listen = \"{rtmp}\"\nhttp_listen = \"{http}\"\n\
         drain_timeout_ms = 10000\n[admin]\nlisten = \"{admin}\"\n{extra}"
    )
}

/// Runs the binary with `config` (see [`config_file`]), which must exit within 10 s.
pub fn run_to_exit(name: &str, config: &str) -> std::process::Output {
    let file = config_file(name, config);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
        .arg("--config")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        panic!("{name}: still running after 10 s");
    }
    std::fs::remove_file(&file).unwrap();
    child.wait_with_output().unwrap()
}

/// Whether this host has IPv6 loopback and dual-stack listeners; if not, says why.
pub fn dual_stack() -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (::1) on this host");
        return false;
    }
    match std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only") {
        Ok(v) if v.trim() == "0" => true,
        _ => {
            eprintln!("skipped: [::] listeners are not dual-stack here (net.ipv6.bindv6only)");
            false
        }
    }
}

/// The status code of a refused publish or play (panics on anything else).
pub fn rejected_code<T>(result: Result<T, corecast_testkit::client::ClientError>) -> String {
    match result {
        Err(corecast_testkit::client::ClientError::Rejected { code, .. }) => code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got acceptance"),
    }
}

/// The addresses a server announced in its "corecast serving" line.
pub struct Serving {
    /// RTMP.
    pub rtmp: SocketAddr,
    /// HTTP.
    pub http: SocketAddr,
    /// Where the admin endpoints are served: the HTTP address when `admin.listen` is empty.
    pub admin: SocketAddr,
}

/// Starts the binary and waits for its "corecast serving" line: the process and the
/// addresses it serves, or what it wrote to standard error if it exits first.
pub fn serve(name: &str, config: &str) -> Result<(Killed, Serving), String> {
    serve_with(name, config, &[])
}

/// [`serve`] with these environment variables.
pub fn serve_with(
    name: &str,
    config: &str,
    env: &[(&str, &str)],
) -> Result<(Killed, Serving), String> {
    let file = config_file(name, config);
    let served = serve_file(&file, env);
    std::fs::remove_file(&file).unwrap();
    served
}

/// [`serve`] with the configuration file `file` (kept: a reload reads it again) and these
/// environment variables.
pub fn serve_file(file: &Path, env: &[(&str, &str)]) -> Result<(Killed, Serving), String> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
            .arg("--config")
            .arg(file)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    // Read all along, so that the pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let _ = child.0.kill();
            let mut err = String::new();
            let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
            return Err(err);
        };
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["message"] == "corecast serving" {
            let addr = |key: &str| value[key].as_str().unwrap().parse().ok();
            let http = addr("http").unwrap();
            let serving = Serving {
                rtmp: addr("rtmp").unwrap(),
                http,
                admin: addr("admin").unwrap_or(http),
            };
            return Ok((child, serving));
        }
    }
}

/// A child process (a server binary), killed when the test ends, also on failure.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

/// Plays `url` with Debian's ffmpeg for `seconds` (decoding every frame) and returns the
/// video and audio frames decoded; panics when ffmpeg fails or reports any error.
pub fn ffmpeg_play(url: &str, seconds: u32) -> (usize, usize) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i", url])
        .args(["-t", &seconds.to_string(), "-f", "framecrc", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg {url}: {errors}"
    );
    let frames = String::from_utf8_lossy(&out.stdout);
    let video = frames.lines().filter(|l| l.starts_with("0,")).count();
    let audio = frames.lines().filter(|l| l.starts_with("1,")).count();
    (video, audio)
}

/// ffmpeg publishing a test picture (H.264 without B-frames, as low-latency encoders are
/// set, 1 s GOP) and tone (AAC) in real time to `live/{name}` for up to 90 s; killed when
/// dropped.
pub fn ffmpeg_publish(rtmp: SocketAddr, name: &str) -> Killed {
    ffmpeg_publish_with_b_frames(rtmp, name, 0)
}

/// [`ffmpeg_publish`] with `b_frames` B-frames between reference frames (x264's defaults
/// otherwise: its look-ahead delays the stream by a few frames); none is x264's
/// `zerolatency` tuning.
pub fn ffmpeg_publish_with_b_frames(rtmp: SocketAddr, name: &str, b_frames: u32) -> Killed {
    let mut ffmpeg = std::process::Command::new("ffmpeg");
    ffmpeg
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-c:v", "libx264", "-preset", "veryfast"]);
    match b_frames {
        0 => ffmpeg.args(["-tune", "zerolatency"]),
        n => ffmpeg.args(["-bf", &n.to_string()]),
    };
    Killed(
        ffmpeg
            .args(["-pix_fmt", "yuv420p", "-g", "25"])
            .args(["-c:a", "aac", "-t", "90", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/{name}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // Errors only (`-loglevel error`): shown as they come.
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn ffmpeg"),
    )
}
