//! The Debian package: built by `deploy/debian/build-deb.sh` from the test binary, installed
//! with dpkg (files in place, the `corecast` system user without a login shell), the
//! installed server run as that user with the installed configuration until it answers
//! `/readyz` and stops cleanly on SIGTERM, then purged (files, user and state directory
//! gone).
//!
//! It installs and purges the package `corecast` on this machine, a leftover one included:
//! root only, for CI or a throwaway machine. Skipped with a notice when not root or when
//! dpkg-deb, dpkg, runuser, adduser or strip are missing, unless CORECAST_REQUIRE_TOOLS=1,
//! which makes that a failure.

mod common;

use common::wait_exit;
use corecast::http::probe::probe;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bound of a package operation (build, install, purge).
const DPKG_WAIT: Duration = Duration::from_secs(120);

/// The files the package installs that the test looks for.
const FILES: [&str; 6] = [
    "/usr/bin/corecast",
    "/etc/corecast/corecast.toml",
    "/etc/default/corecast",
    "/lib/systemd/system/corecast.service",
    "/usr/share/doc/corecast/copyright",
    "/usr/share/man/man1/corecast.1.gz",
];

/// Root, and the tools: `false` (with a notice) when something is missing, a panic instead
/// under CORECAST_REQUIRE_TOOLS=1.
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("the package test needs root (CORECAST_REQUIRE_TOOLS=1)");
        }
        eprintln!("NOTICE: not root; skipping the package test (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
        return false;
    }
    ["dpkg-deb", "dpkg", "runuser", "adduser", "strip"]
        .iter()
        .all(|tool| common::have_tool(tool))
}

/// What a finished command did.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Both outputs, for a failure message.
    fn said(&self) -> String {
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `program` to its end, for at most `limit` (killed and a panic beyond).
fn run(program: &str, args: &[&str], limit: Duration) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // Read both all along, so that neither pipe fills.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let Some(status) = wait_exit(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} {args:?}: still running after {limit:?}");
    };
    Ran {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `program` and panics unless it succeeds.
fn run_ok(program: &str, args: &[&str]) -> Ran {
    let ran = run(program, args, DPKG_WAIT);
    assert!(ran.status.success(), "{program} {args:?}: {}", ran.said());
    ran
}

/// Whether dpkg has the package in any state but "not-installed" (installed, half
/// installed, or its conffiles left).
fn package_known() -> bool {
    let ran = run(
        "dpkg-query",
        &["--show", "--showformat=${db:Status-Status}", "corecast"],
        DPKG_WAIT,
    );
    let status = ran.stdout.trim();
    ran.status.success() && !status.is_empty() && status != "not-installed"
}

/// A user's passwd entry, split at ':'.
fn passwd(user: &str) -> Option<Vec<String>> {
    let ran = run("getent", &["passwd", user], Duration::from_secs(10));
    ran.status
        .success()
        .then(|| ran.stdout.trim().split(':').map(str::to_string).collect())
}

fn group_exists(group: &str) -> bool {
    run("getent", &["group", group], Duration::from_secs(10))
        .status
        .success()
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// The real, effective, saved and file-system user ids of a process.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("a Uid line");
    line.split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// Everything the test leaves behind, undone on every path: the server (runuser and the
/// corecast under it) killed, the package purged, the build directory removed.
struct Cleanup {
    dir: PathBuf,
    runuser: Option<Child>,
    server: Option<u32>,
}

impl Cleanup {
    /// Kills the server, if it runs, and runuser.
    fn kill_server(&mut self) {
        if let Some(mut runuser) = self.runuser.take() {
            for pid in self.server.take().into_iter().chain(children(runuser.id())) {
                kill("-KILL", pid);
            }
            let _ = runuser.kill();
            let _ = runuser.wait();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.kill_server();
        if package_known() {
            let _ = run("dpkg", &["--purge", "corecast"], DPKG_WAIT);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The installed server's first lines: the "corecast serving" one, or what it wrote before
/// it exited or the deadline passed.
fn wait_serving(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
) -> Result<serde_json::Value, Vec<String>> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            return Err(seen);
        };
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            if value["message"] == "corecast serving" {
                return Ok(value);
            }
        }
        seen.push(line);
    }
}

#[test]
fn the_debian_package_installs_runs_as_its_user_and_purges_clean() {
    if !can_run() {
        return;
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("corecast-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        runuser: None,
        server: None,
    };

    // A package left by an earlier run goes first.
    if package_known() {
        eprintln!("NOTICE: purging an installed corecast package before the test");
        run_ok("dpkg", &["--purge", "corecast"]);
    }
    assert!(
        passwd("corecast").is_none(),
        "a corecast user without the package"
    );

    // Build.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/debian/build-deb.sh");
    let out = dir.join("out");
    let built = run_ok(
        "bash",
        &[
            script,
            env!("CARGO_BIN_EXE_corecast"),
            out.to_str().unwrap(),
        ],
    );
    let deb = PathBuf::from(built.stdout.lines().last().expect("the package's path"));
    assert!(deb.is_file(), "{}: {}", deb.display(), built.said());
    let field = |name: &str| {
        run_ok("dpkg-deb", &["--field", deb.to_str().unwrap(), name])
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "corecast");
    assert_eq!(
        field("Version"),
        env!("CARGO_PKG_VERSION").replacen('-', "~", 1)
    );
    let depends = field("Depends");
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "Depends: {depends}"
    );

    // Install.
    run_ok("dpkg", &["--install", deb.to_str().unwrap()]);
    for file in FILES {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    let installed = |path: &str| std::fs::read(path).unwrap();
    let shipped =
        |path: &str| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    assert!(
        installed("/etc/corecast/corecast.toml") == shipped("config/corecast.toml"),
        "/etc/corecast/corecast.toml differs from config/corecast.toml"
    );
    assert!(
        installed("/lib/systemd/system/corecast.service")
            == shipped("deploy/systemd/corecast.service"),
        "the installed unit differs from deploy/systemd/corecast.service"
    );
    let conffiles = run_ok(
        "dpkg-query",
        &["--show", "--showformat=${Conffiles}", "corecast"],
    )
    .stdout;
    for conffile in ["/etc/corecast/corecast.toml", "/etc/default/corecast"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} not a conffile: {conffiles}"
        );
    }

    // The system user: no login shell, home in the state directory.
    let user = passwd("corecast").expect("the corecast user");
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {user:?}");
    assert_eq!(user[5], "/var/lib/corecast", "{user:?}");
    assert!(
        ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"].contains(&user[6].as_str()),
        "a login shell: {user:?}"
    );
    assert!(group_exists("corecast"));
    // The configuration (which may hold secrets) readable by the service's group only.
    let gid: u32 = user[3].parse().unwrap();
    let config = std::fs::metadata("/etc/corecast/corecast.toml").unwrap();
    assert_eq!((config.uid(), config.gid()), (0, gid));
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    let env_file = std::fs::metadata("/etc/default/corecast").unwrap();
    assert_eq!(env_file.permissions().mode() & 0o777, 0o600);
    let state = std::fs::metadata("/var/lib/corecast").unwrap();
    assert!(
        state.is_dir() && state.uid() == uid,
        "/var/lib/corecast not corecast's"
    );

    // The unit, as systemd reads it (systemd need not run for that).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let verify = run(
            "systemd-analyze",
            &["verify", "/lib/systemd/system/corecast.service"],
            Duration::from_secs(60),
        );
        assert!(
            verify.status.success(),
            "systemd-analyze verify: {}",
            verify.said()
        );
    }

    // The installed binary, as the corecast user, with the installed configuration; the
    // environment moves it to free ports on loopback and asks for JSON logs.
    let mut runuser = Command::new("runuser")
        .args(["-u", "corecast", "--"])
        .args([
            "/usr/bin/corecast",
            "--config",
            "/etc/corecast/corecast.toml",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CORECAST_SERVER_RTMP_LISTEN", "127.0.0.1:0")
        .env("CORECAST_SERVER_HTTP_LISTEN", "127.0.0.1:0")
        .env("CORECAST_ADMIN_LISTEN", "127.0.0.1:0")
        .env("CORECAST_LOG_FORMAT", "json")
        .env("CORECAST_SERVER_SHARDS", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runuser starts");
    let stdout = runuser.stdout.take().unwrap();
    let mut stderr = runuser.stderr.take().unwrap();
    cleanup.runuser = Some(runuser);
    let (tx, lines) = mpsc::channel();
    // Read all along, so that the pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let serving = match wait_serving(&lines, common::WAIT) {
        Ok(value) => value,
        Err(seen) => {
            // Its standard error ends once it is gone.
            cleanup.kill_server();
            panic!(
                "no \"corecast serving\" line (it exited, or not within {:?}); stdout: {seen:?}; stderr: {}",
                common::WAIT,
                errors.join().unwrap()
            );
        }
    };
    let admin = serving["admin"].as_str().expect("an admin address");
    assert!(admin.starts_with("127.0.0.1:"), "{serving}");
    assert_eq!(
        probe(&format!("http://{admin}/readyz"), Duration::from_secs(5)).expect("ready"),
        "ready"
    );

    // The server runs as corecast, under runuser.
    let runuser_pid = cleanup.runuser.as_ref().unwrap().id();
    let server = *children(runuser_pid)
        .first()
        .expect("corecast under runuser");
    cleanup.server = Some(server);
    assert_eq!(
        std::fs::read_link(format!("/proc/{server}/exe")).unwrap(),
        Path::new("/usr/bin/corecast")
    );
    assert_eq!(uids(server), [uid; 4], "corecast's user ids");

    // SIGTERM to the server itself (runuser would follow it with SIGKILL after 2 s): a
    // clean stop, whose status runuser passes on.
    kill("-TERM", server);
    let runuser = cleanup.runuser.as_mut().unwrap();
    let status = wait_exit(runuser, Duration::from_secs(20)).expect("the server stops");
    cleanup.server = None;
    assert!(
        status.success(),
        "{status}; stderr: {}",
        errors.join().unwrap()
    );

    // Purge: nothing left.
    run_ok("dpkg", &["--purge", "corecast"]);
    assert!(!package_known(), "dpkg still knows corecast");
    for path in FILES.iter().chain(&["/etc/corecast", "/var/lib/corecast"]) {
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
    assert!(
        passwd("corecast").is_none(),
        "the corecast user left after the purge"
    );
    assert!(
        !group_exists("corecast"),
        "the corecast group left after the purge"
    );
    eprintln!("package test took {:?}", started.elapsed());
}
