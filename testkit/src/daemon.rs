//! A server program (nginx, Varnish) run in the foreground on a free loopback port for a
//! test; stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server program.
#[derive(Debug)]
pub struct Daemon {
    process: Child,
    /// Where clients reach it.
    pub addr: SocketAddr,
}

impl Drop for Daemon {
    /// SIGTERM, for a clean stop of the program's own children (Varnish's worker); SIGKILL
    /// when it has not exited after 5 s.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.process.id()) {
            // SAFETY: kill(2) on our own child's pid, which `wait` has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.process.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Daemon {
    /// A loopback port free at the moment.
    pub(crate) fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// Runs `command` (`what`, for messages), which is to listen on loopback `port`, its
    /// standard error to `stderr`; panics when it exits or does not listen within `limit`.
    pub(crate) fn start(
        command: &mut Command,
        what: &str,
        port: u16,
        stderr: Stdio,
        limit: Duration,
    ) -> Daemon {
        let process = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("start {what}: {err}"));
        let mut daemon = Daemon {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + limit;
        while TcpStream::connect(daemon.addr).is_err() {
            if let Ok(Some(status)) = daemon.process.try_wait() {
                panic!("{what} exited: {status}");
            }
            assert!(Instant::now() < deadline, "{what} does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}
