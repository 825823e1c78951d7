//! Real peers as child processes for the end-to-end tests: a temporary directory kept on
//! failure, a child whose output goes to files and that is killed on drop, and nginx with
//! its RTMP module.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// Where Debian's libnginx-mod-rtmp (and other distributions) install the RTMP module.
pub const NGINX_RTMP_MODULES: [&str; 3] = [
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
];

/// A temporary directory, removed on drop unless the test is failing (then it is kept,
/// and its path printed, for the children's logs).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "corecast-peers-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How a child ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A child process whose stdout and stderr go to files (no pipe can fill up and stall it);
/// killed and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `command`; its output goes to `NAME.out` and `NAME.err` in `dir`.
    pub fn spawn(name: &str, command: &mut Command, dir: &TempDir) -> Proc {
        let stdout = dir.join(&format!("{name}.out"));
        let stderr = dir.join(&format!("{name}.err"));
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    /// Exit status if the child has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    /// Sends a signal (SIGINT, SIGTERM: ask the program to finish its output and exit).
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.exited().is_none() {
            let pid = libc::pid_t::try_from(self.child().id()).expect("pid");
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Polls for the exit until `limit` passes.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(self.child(), limit)
    }

    pub fn output(&self) -> (String, String) {
        let read = |path: &Path| {
            String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
        };
        (read(&self.stdout), read(&self.stderr))
    }

    pub fn finished(mut self, status: ExitStatus) -> Finished {
        self.child = None;
        let (stdout, stderr) = self.output();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits for the child to end by itself; fails (and kills it) after `limit`.
    pub fn finish(mut self, limit: Duration) -> Finished {
        match self.wait_for(limit) {
            Some(status) => self.finished(status),
            None => {
                let (_, stderr) = self.output();
                panic!(
                    "{} did not finish within {limit:?}; stderr: {stderr}",
                    self.name
                );
            }
        }
    }

    /// Asks the child to stop with `signal`, then waits up to `limit` for it to exit
    /// (killing it after that).
    pub fn stop(mut self, signal: libc::c_int, limit: Duration) -> Finished {
        self.signal(signal);
        match self.wait_for(limit) {
            Some(status) => self.finished(status),
            None => {
                let _ = self.child().kill();
                let status = self.child().wait().expect("wait");
                eprintln!("{} ignored signal {signal}; killed", self.name);
                self.finished(status)
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Gate for a requirement other than a program on PATH (a plugin, a module), with the
/// same policy as [`have_tool`].
pub fn have(what: &str, present: bool) -> bool {
    if !present {
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{what} is required (CORECAST_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("NOTICE: {what} not installed; skipping this test (set CORECAST_REQUIRE_TOOLS=1 to fail instead)");
    }
    present
}

/// nginx with the RTMP module, in the foreground, on a free loopback port, with two
/// applications: `pull` plays from corecast's `live` application, `push` republishes into
/// corecast's `relayed` application.
pub struct Nginx {
    pub port: u16,
    pub proc: Proc,
}

/// nginx and its RTMP module: (program, module path). `None` (after the [`have_tool`]
/// notice, or a failure under CORECAST_REQUIRE_TOOLS=1) when either is missing. nginx
/// lives in /usr/sbin, which is not on every user's PATH.
pub fn nginx_rtmp() -> Option<(PathBuf, PathBuf)> {
    let sbin = Path::new("/usr/sbin/nginx");
    let program = if sbin.exists() {
        sbin.to_path_buf()
    } else if have_tool("nginx") {
        PathBuf::from("nginx")
    } else {
        return None;
    };
    let module = NGINX_RTMP_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if !have(
        "the nginx RTMP module (libnginx-mod-rtmp)",
        module.is_some(),
    ) {
        return None;
    }
    Some((program, module?))
}

pub fn start_nginx(nginx: &(PathBuf, PathBuf), corecast: SocketAddr, dir: &TempDir) -> Nginx {
    let (program, module) = nginx;
    let mut last_error = String::new();
    // The port is free when picked, but another process could take it before nginx binds
    // it: try a few.
    for attempt in 0..3 {
        let port = free_port();
        let prefix = dir.0.display();
        let config = format!(
            "load_module {module};\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {prefix}/nginx.pid;\n\
             error_log {prefix}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{\n\
             \x20   access_log {prefix}/access.log;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       application pull {{ live on; pull rtmp://{corecast}/live; }}\n\
             \x20       application push {{ live on; push rtmp://{corecast}/relayed; }}\n\
             \x20       application forwarded {{ live on; }}\n\
             \x20   }}\n\
             }}\n",
            module = module.display(),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).expect("write nginx.conf");
        let mut proc = Proc::spawn(
            &format!("nginx-{attempt}"),
            Command::new(program)
                .arg("-p")
                .arg(&dir.0)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf),
            dir,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = wait_until(Duration::from_secs(10), || {
            proc.exited().is_none()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if up {
            return Nginx { port, proc };
        }
        let (out, err) = proc.output();
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        last_error = format!("{out}{err}{log}");
    }
    panic!("nginx did not start: {last_error}");
}

impl Nginx {
    pub fn log(&self, dir: &TempDir) -> String {
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    }

    /// Fails the test (with its log) when nginx has exited.
    pub fn assert_running(&mut self, dir: &TempDir) {
        if let Some(status) = self.proc.exited() {
            panic!("nginx exited ({status}): {}", self.log(dir));
        }
    }
}
