//! Out of file descriptors: the binary, run under a low open-file limit, keeps running while
//! its accepts fail with EMFILE, counts them (`corecast_accept_errors_total`), logs them at
//! most once a second, and serves again as soon as connections close.

mod common;

use common::{wait_until, Killed};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The server's hard open-file limit (it raises its soft limit to the hard one). At start it
/// holds about a dozen descriptors (io_uring rings, eventfd, listeners, stdio).
const NOFILE: libc::rlim_t = 64;

/// Connections opened at the server: twice what its limit leaves room for. The kernel
/// completes the handshakes of those it cannot accept (listen backlog 1024).
const CONNECTIONS: usize = 2 * NOFILE as usize;

/// How long the server is kept out of descriptors.
const HELD: Duration = Duration::from_millis(2500);

/// The next JSON log line, if one comes before `deadline`.
fn next_line(lines: &Receiver<String>, deadline: Instant) -> Option<Value> {
    let left = deadline.saturating_duration_since(Instant::now());
    let line = lines.recv_timeout(left).ok()?;
    Some(serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}")))
}

/// The "accept failed" warning's count of failures, if `line` is one.
fn accept_failed(line: &Value) -> Option<u64> {
    let message = line["message"].as_str()?;
    if !message.starts_with("accept failed") {
        return None;
    }
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(
        line["listener"], "http",
        "only the HTTP listener is flooded: {line}"
    );
    assert!(message.contains("Too many open files"), "{line}");
    Some(line["failed"].as_u64().expect("failed count"))
}

/// Response head of a request, or None if the server does not answer in time.
fn request(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    (!text.is_empty()).then_some(text)
}

/// Sum over shards of `corecast_accept_errors_total`, from the admin endpoint.
fn accept_errors(admin: SocketAddr) -> Option<u64> {
    let text = request(admin, "/metrics")?;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let samples: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("corecast_accept_errors_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(samples.len(), 1, "one sample per shard: {text}");
    Some(samples.iter().sum())
}

#[test]
fn accept_errors_back_off_are_counted_and_the_server_recovers() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("corecast-emfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emfile.toml");
    // Port 0 everywhere: the actual addresses come from the "corecast serving" line.
    // max_connections is set (0 would mean the open-file limit less 256) and far above what
    // the descriptors allow, so that only EMFILE refuses connections.
    let config = "[server]\nshards = 1\nrtmp_listen = \"127.0.0.1:0\"\n\
                  http_listen = \"127.0.0.1:0\"\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n\
                  [log]\nformat = \"json\"\n\
                  [http]\nheader_timeout_ms = 60000\n\
                  [limits]\nmax_connections = 1000\nmax_connections_per_ip = 0\n";
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_corecast"));
    command
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let limit = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: NOFILE,
    };
    // SAFETY: setrlimit is async-signal-safe and only reads the struct, which is copied in.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    let mut server = Killed(command.spawn().unwrap());
    // Log lines, read all along so that the pipe never fills.
    let stdout = server.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let serving = loop {
        let line = next_line(&lines, deadline).expect("the server starts");
        if line["message"] == "open files limit" {
            assert_eq!(line["limit"], NOFILE, "{line}");
        }
        if line["message"] == "corecast serving" {
            break line;
        }
    };
    std::fs::remove_dir_all(&dir).unwrap();
    let addr = |key: &str| -> SocketAddr { serving[key].as_str().unwrap().parse().unwrap() };
    let (http, admin) = (addr("http"), addr("admin"));
    assert_eq!(accept_errors(admin), Some(0));

    // Out of descriptors: connections the server accepts hold theirs (it waits for their
    // request heads), and the rest wait in the backlog.
    let flooding = Instant::now();
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        open.push(TcpStream::connect_timeout(&http, Duration::from_secs(2)).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let line = next_line(&lines, deadline).expect("an accept failure is logged");
        if let Some(failed) = accept_failed(&line) {
            break failed;
        }
    };
    assert_eq!(first, 1, "the first failure is logged at once");
    let flooded = Instant::now();
    // Accepts keep failing; the log gets at most a line a second.
    let mut logged = vec![first];
    while let Some(line) = next_line(&lines, flooded + HELD) {
        logged.extend(accept_failed(&line));
    }
    assert!(server.is_running(), "the server survives EMFILE");
    assert!(
        (2..=1 + HELD.as_secs() as usize + 1).contains(&logged.len()),
        "{logged:?} in {HELD:?}"
    );
    assert!(
        logged[1..].iter().all(|&n| n > 1),
        "later lines count the failures since the previous one: {logged:?}"
    );
    let reported: u64 = logged.iter().sum();

    // Connections close: the server accepts and serves again.
    drop(open);
    let mut answer = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            answer = request(http, "/live/missing.flv");
            answer.is_some()
        }),
        "no answer after the connections closed"
    );
    let answer = answer.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let out_of_descriptors = flooding.elapsed();
    let counted = accept_errors(admin).expect("the admin endpoint answers");
    // Every failure is counted, also those after the last line; and the listener paused
    // 50 ms after each one (ACCEPT_BACKOFF) rather than spinning (40 ms: timer slack).
    assert!(counted >= reported, "counted {counted}, logged {reported}");
    let most = out_of_descriptors.as_millis() as u64 / 40 + 1;
    assert!(
        counted <= most,
        "counted {counted} in {out_of_descriptors:?}"
    );
    // Recovered: accepts no longer fail. A quiet 300 ms in which the count must not move is
    // the test.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accept_errors(admin), Some(counted));
    assert!(server.is_running());
    eprintln!(
        "EMFILE: lines logged {logged:?}, {counted} failed accepts counted in \
         {out_of_descriptors:?}, {:?} in all",
        started.elapsed()
    );
}
