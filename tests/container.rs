//! The container image: builds the Dockerfile's `prebuilt` target around this build's binary
//! with podman, on a Debian base image made with debootstrap (once, then cached as
//! `localhost/debian-minbase:<codename>`), runs it as `docs/OPERATIONS.md` says (the seccomp
//! profile of `deploy/container/`, raised limits), waits for its health check, publishes
//! into it with ffmpeg and checks what an HTTP-FLV and an RTMP player see with ffprobe, and
//! that the server runs as the image's non-root user.
//!
//! Needs root (rootful podman), podman, runc, ffmpeg, ffprobe and, while the base image is
//! missing, debootstrap and access to deb.debian.org. Skips with a notice when one is
//! missing, and fails instead under CORECAST_REQUIRE_TOOLS=1. Every podman and ffmpeg call
//! is bounded in time; the container, the image and the temporary build context are removed
//! when the test ends, also on failure.

mod common;

use common::{have_tool, wait_until};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The non-root user the image runs corecast as (Dockerfile: `USER 10001:10001`).
const IMAGE_UID: u32 = 10001;

/// Podman's global flags: runc and cgroupfs work on hosts where crun refuses the cgroup
/// layout and where no systemd manages cgroups.
const PODMAN_GLOBAL: [&str; 4] = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"];

/// Open files and processes in the container, capped by the host's hard limits (a runtime
/// without CAP_SYS_RESOURCE cannot exceed them; podman's defaults, 1048576 files and 32768
/// processes, may). Podman also runs the runtime with at most 32768 processes.
const NOFILE: u64 = 65_536;
const NPROC: u64 = 32_768;

/// The time bounds of the steps.
const DEBOOTSTRAP_TIME: Duration = Duration::from_secs(600);
const BUILD_TIME: Duration = Duration::from_secs(240);
const PODMAN_TIME: Duration = Duration::from_secs(60);
const READY_TIME: Duration = Duration::from_secs(30);
const PROBE_TIME: Duration = Duration::from_secs(20);
/// How long ffmpeg publishes (its `-t`), and how long it may take in all.
const PUBLISH_SECONDS: u32 = 8;
const PUBLISH_TIME: Duration = Duration::from_secs(40);

/// What both players must find: exactly one H.264 video and one AAC audio stream, as
/// ffprobe's "codec_name,codec_type" lines, sorted.
const EXPECTED_STREAMS: [&str; 2] = ["aac,audio", "h264,video"];

#[test]
fn image_builds_runs_and_relays() {
    if !is_root() || !have_tool("podman") || !have_tool("runc") {
        return;
    }
    if !have_tool("ffmpeg") || !have_tool("ffprobe") || !have_tool("timeout") {
        return;
    }
    let base = base_image_name();
    if !image_exists(&base) && !build_base_image(&base) {
        return;
    }

    let context = TempDir::new("context");
    prepare_context(&context.0);
    let image = Image(format!("localhost/corecast-test:{}", std::process::id()));
    build_image(&context.0, &base, &image.0);

    let limits = ContainerLimits::from_host();
    let ports = Ports::free();
    let container = Container::run(&image.0, &limits, &ports);
    container.wait_healthy();
    assert_eq!(
        container.process_uid(),
        IMAGE_UID,
        "corecast must run as the image's non-root user"
    );

    let publisher = ffmpeg_publish(ports.rtmp, "live", "test");
    container.wait_live(ports.http, "/live/test.flv", &publisher);
    let flv = ffprobe_streams(&format!("http://{}/live/test.flv", ports.http));
    assert_eq!(flv, EXPECTED_STREAMS, "streams over HTTP-FLV");
    let rtmp = ffprobe_streams(&format!("rtmp://{}/live/test", ports.rtmp));
    assert_eq!(rtmp, EXPECTED_STREAMS, "streams over RTMP");

    let published = publisher.finish(PUBLISH_TIME);
    assert!(
        published.status.success(),
        "ffmpeg publisher failed: {}\n{}",
        String::from_utf8_lossy(&published.stderr),
        container.logs()
    );
    container.stop_cleanly();
}

// ---- Environment ----

/// Whether the test runs as root (rootful podman: the runtime flags above, no user
/// namespace setup); otherwise skips like a missing tool.
fn is_root() -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let root = uid.as_deref() == Some("0");
    if !root {
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("the container test needs root (rootful podman) under CORECAST_REQUIRE_TOOLS=1");
        }
        eprintln!("NOTICE: not root; skipping the container test (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    }
    root
}

/// The Debian release of the base image: the host's when the host runs Debian (the binary
/// under test links against the host's glibc, which the image must not predate), else
/// bookworm.
fn debian_codename() -> String {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim_matches('"').to_string())
        })
    };
    match (field("ID").as_deref(), field("VERSION_CODENAME")) {
        (Some("debian"), Some(codename)) if !codename.is_empty() => codename,
        _ => "bookworm".to_string(),
    }
}

fn base_image_name() -> String {
    format!("localhost/debian-minbase:{}", debian_codename())
}

/// The repository's files the build context needs.
fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ---- Commands ----

/// Runs `program args` under `timeout`, so that it cannot outlive `limit`; its output.
/// Panics, with what it printed, when it cannot start, times out or fails.
fn run(program: &str, args: &[&str], limit: Duration) -> Output {
    let output = run_status(program, args, limit);
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Like [`run`], without the success check (a timeout is still a failure).
fn run_status(program: &str, args: &[&str], limit: Duration) -> Output {
    let output = Command::new("timeout")
        .args([
            "--kill-after=10",
            &limit.as_secs().max(1).to_string(),
            program,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // timeout(1) exits 124 when the limit passed (137 when it had to kill).
    if matches!(output.status.code(), Some(124 | 137)) {
        panic!(
            "{program} {} did not finish within {limit:?}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// `podman` with [`PODMAN_GLOBAL`] before `args`.
fn podman(args: &[&str], limit: Duration) -> Output {
    run("podman", &podman_args(args), limit)
}

fn podman_status(args: &[&str], limit: Duration) -> Output {
    run_status("podman", &podman_args(args), limit)
}

fn podman_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    PODMAN_GLOBAL.iter().chain(args).copied().collect()
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

// ---- Images ----

fn image_exists(name: &str) -> bool {
    podman_status(&["image", "exists", name], PODMAN_TIME)
        .status
        .success()
}

/// Makes the base image with debootstrap (minbase, with CA certificates, so that the image
/// build needs no package download); false (a skip) when debootstrap is missing.
fn build_base_image(name: &str) -> bool {
    if !have_tool("debootstrap") {
        return false;
    }
    let codename = debian_codename();
    let dir = TempDir::new("rootfs");
    let rootfs = dir.0.join("rootfs");
    let tarball = dir.0.join("rootfs.tar");
    let (rootfs_arg, tarball_arg) = (path_str(&rootfs), path_str(&tarball));
    let started = Instant::now();
    run(
        "debootstrap",
        &[
            "--variant=minbase",
            "--include=ca-certificates",
            &codename,
            rootfs_arg,
            "http://deb.debian.org/debian",
        ],
        DEBOOTSTRAP_TIME,
    );
    run(
        "tar",
        &["-C", rootfs_arg, "-cf", tarball_arg, "."],
        PODMAN_TIME,
    );
    podman(&["import", tarball_arg, name], BUILD_TIME);
    eprintln!("built the base image {name} in {:?}", started.elapsed());
    true
}

/// A build context with what the Dockerfile's `prebuilt` target reads: the Dockerfile, the
/// .dockerignore, config/corecast.toml, and this build's binary as target/release/corecast.
fn prepare_context(dir: &Path) {
    for file in ["Dockerfile", ".dockerignore", "config/corecast.toml"] {
        copy_into(&repo_file(file), &dir.join(file));
    }
    copy_into(
        Path::new(env!("CARGO_BIN_EXE_corecast")),
        &dir.join("target/release/corecast"),
    );
}

/// Links `from` to `to` (the binary can be large), or copies it across file systems.
fn copy_into(from: &Path, to: &Path) {
    let parent = to.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

/// `podman build --target prebuilt` of the context on `base`, tagged `tag`. The docker
/// image format keeps the HEALTHCHECK (the OCI format has none); no intermediate layers are
/// kept, so that runs leave no images behind.
fn build_image(context: &Path, base: &str, tag: &str) {
    let base_arg = format!("BASE_IMAGE={base}");
    let started = Instant::now();
    podman(
        &[
            "build",
            "--format",
            "docker",
            "--pull=never",
            "--layers=false",
            "--target",
            "prebuilt",
            "--build-arg",
            &base_arg,
            "--tag",
            tag,
            path_str(context),
        ],
        BUILD_TIME,
    );
    eprintln!("built {tag} in {:?}", started.elapsed());
}

/// An image, removed on drop.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman_status(&["rmi", "--force", &self.0], PODMAN_TIME);
    }
}

// ---- The container ----

/// The `--ulimit` values: what docs/OPERATIONS.md asks for, within the host's hard limits
/// (a runtime without CAP_SYS_RESOURCE cannot raise them).
struct ContainerLimits {
    memlock: String,
    nofile: String,
    nproc: String,
    /// Shards to run: io_uring locks memory for each one (against the memlock limit of the
    /// unprivileged user), so a bounded limit gets one shard.
    shards: u32,
}

impl ContainerLimits {
    fn from_host() -> ContainerLimits {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let memlock = hard_limit(&limits, "Max locked memory");
        let nofile = hard_limit(&limits, "Max open files").map_or(NOFILE, |n| n.min(NOFILE));
        let nproc = hard_limit(&limits, "Max processes").map_or(NPROC, |n| n.min(NPROC));
        let pair = |value: Option<u64>| match value {
            None => "-1:-1".to_string(),
            Some(n) => format!("{n}:{n}"),
        };
        if memlock.is_some() {
            eprintln!(
                "the locked-memory limit is bounded here ({}): one shard",
                pair(memlock)
            );
        }
        ContainerLimits {
            memlock: pair(memlock),
            nofile: pair(Some(nofile)),
            nproc: pair(Some(nproc)),
            shards: if memlock.is_some() { 1 } else { 2 },
        }
    }
}

/// The hard limit of a /proc/self/limits line; `None` for "unlimited" (or an unreadable
/// file: then the runtime is asked for unlimited and says so if it cannot).
fn hard_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let _soft = fields.next()?;
    fields.next()?.parse().ok()
}

/// The host ports the container's RTMP and HTTP ports are published on (127.0.0.1 only).
struct Ports {
    rtmp: SocketAddr,
    http: SocketAddr,
}

impl Ports {
    fn free() -> Ports {
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port on 127.0.0.1")
        };
        Ports {
            rtmp: free(),
            http: free(),
        }
    }
}

/// A running container, removed (`podman rm --force`) on drop.
struct Container {
    name: String,
}

impl Container {
    /// `podman run --detach` of `image` as docs/OPERATIONS.md says: the io_uring seccomp
    /// profile, the limits, the ports on 127.0.0.1.
    fn run(image: &str, limits: &ContainerLimits, ports: &Ports) -> Container {
        let container = Container {
            name: format!("corecast-test-{}", std::process::id()),
        };
        let _ = podman_status(&["rm", "--force", &container.name], PODMAN_TIME);
        let seccomp = format!(
            "seccomp={}",
            repo_file("deploy/container/seccomp-io_uring.json").display()
        );
        let memlock = format!("memlock={}", limits.memlock);
        let nofile = format!("nofile={}", limits.nofile);
        let nproc = format!("nproc={}", limits.nproc);
        let rtmp = format!("127.0.0.1:{}:1935", ports.rtmp.port());
        let http = format!("127.0.0.1:{}:8080", ports.http.port());
        let shards = limits.shards.to_string();
        let mut args = vec!["run", "--detach", "--name", &container.name];
        args.extend(["--security-opt", &seccomp]);
        args.extend([
            "--ulimit", &memlock, "--ulimit", &nofile, "--ulimit", &nproc,
        ]);
        args.extend(["--publish", &rtmp, "--publish", &http, image]);
        // The image's CMD, and the shards.
        args.extend([
            "--config",
            "/etc/corecast/corecast.toml",
            "--shards",
            &shards,
        ]);
        podman(&args, PODMAN_TIME);
        container
    }

    /// Runs the image's HEALTHCHECK (`corecast probe http://127.0.0.1:8081/readyz`) until
    /// it passes; fails with the server's log if it does not within [`READY_TIME`].
    fn wait_healthy(&self) {
        let deadline = Instant::now() + READY_TIME;
        loop {
            let check = podman_status(&["healthcheck", "run", &self.name], PODMAN_TIME);
            if check.status.success() {
                return;
            }
            if !self.is_running() || Instant::now() >= deadline {
                panic!(
                    "the container did not become healthy within {READY_TIME:?} ({}):\n{}",
                    String::from_utf8_lossy(&check.stderr).trim(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn is_running(&self) -> bool {
        let state = podman_status(
            &["inspect", "--format", "{{.State.Running}}", &self.name],
            PODMAN_TIME,
        );
        stdout_text(&state) == "true"
    }

    /// The real uid of the container's main process (corecast), from /proc/1/status.
    fn process_uid(&self) -> u32 {
        let status = podman(&["exec", &self.name, "cat", "/proc/1/status"], PODMAN_TIME);
        let text = stdout_text(&status);
        text.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            .and_then(|uid| uid.parse().ok())
            .unwrap_or_else(|| panic!("no Uid line in /proc/1/status:\n{text}"))
    }

    /// Waits until `path` answers 200 through the published HTTP port (the stream is
    /// live); fails with the publisher's and the server's output otherwise.
    fn wait_live(&self, http: SocketAddr, path: &str, publisher: &Publisher) {
        let live = wait_until(Duration::from_secs(15), || {
            http_status(http, path) == Some(200)
        });
        assert!(
            live,
            "{path} did not go live; ffmpeg: {}\n{}",
            publisher.stderr(),
            self.logs()
        );
    }

    /// The server's log, for failure messages.
    fn logs(&self) -> String {
        let logs = podman_status(&["logs", &self.name], PODMAN_TIME);
        format!(
            "container log:\n{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        )
    }

    /// `podman stop` (SIGTERM: corecast drains and exits 0) within its drain timeout.
    fn stop_cleanly(&self) {
        podman(&["stop", "--time", "15", &self.name], PODMAN_TIME);
        let exit = podman(
            &["inspect", "--format", "{{.State.ExitCode}}", &self.name],
            PODMAN_TIME,
        );
        assert_eq!(
            stdout_text(&exit),
            "0",
            "corecast's exit code after SIGTERM\n{}",
            self.logs()
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_status(&["rm", "--force", &self.name], PODMAN_TIME);
    }
}

/// The status code of `GET path` (`None` when there is no HTTP answer): reads the status
/// line only, so that a live stream's endless body does not matter.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---- ffmpeg and ffprobe ----

/// ffmpeg publishing a generated test picture (H.264, 2 s GOP) and tone (AAC) in real time
/// for [`PUBLISH_SECONDS`]; killed on drop.
struct Publisher {
    child: Option<std::process::Child>,
    stderr: PathBuf,
    _dir: TempDir,
}

fn ffmpeg_publish(rtmp: SocketAddr, app: &str, stream: &str) -> Publisher {
    let dir = TempDir::new("ffmpeg");
    let stderr = dir.0.join("ffmpeg.err");
    let log = std::fs::File::create(&stderr).expect("ffmpeg log file");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine"])
        .args(["-c:v", "libx264", "-g", "50", "-c:a", "aac"])
        .args(["-t", &PUBLISH_SECONDS.to_string(), "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/{app}/{stream}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ffmpeg: {e}"));
    Publisher {
        child: Some(child),
        stderr,
        _dir: dir,
    }
}

/// How the publisher ended.
struct Published {
    status: std::process::ExitStatus,
    stderr: Vec<u8>,
}

impl Publisher {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Waits for ffmpeg to finish its publish; fails (and kills it) after `limit`.
    fn finish(mut self, limit: Duration) -> Published {
        let mut child = self.child.take().expect("a running publisher");
        match common::wait_exit(&mut child, limit) {
            Some(status) => Published {
                status,
                stderr: std::fs::read(&self.stderr).unwrap_or_default(),
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ffmpeg did not finish within {limit:?}: {}", self.stderr());
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The streams ffprobe finds at `url`, as sorted "codec_name,codec_type" lines.
fn ffprobe_streams(url: &str) -> Vec<String> {
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,codec_type",
            "-of",
            "csv=p=0",
            url,
        ],
        PROBE_TIME,
    );
    let mut streams: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    streams.sort();
    streams
}

// ---- Files ----

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("corecast-container-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("not a UTF-8 path: {}", path.display()))
}
