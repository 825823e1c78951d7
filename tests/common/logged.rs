//! The binary with its log collected: started with `--log-format FORMAT`, debug lines, and
//! extra configuration; every line it writes (standard output) is kept for the test.

use super::{config_file, listening, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server started with `--log-format format` and debug lines, whose standard output
/// (its log) is collected line by line.
pub struct Logged {
    /// The process (killed when dropped).
    pub child: super::Killed,
    lines: Arc<Mutex<Vec<String>>>,
    /// The RTMP listener.
    pub rtmp: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// Where the admin endpoints are served.
    pub admin: SocketAddr,
}

impl Logged {
    pub fn start(name: &str, format: &str, extra: &str) -> Logged {
        Logged::start_with(name, format, extra, &[])
    }

    /// [`Logged::start`] with these environment variables too.
    pub fn start_with(name: &str, format: &str, extra: &str, env: &[(&str, &str)]) -> Logged {
        let config = listening("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", extra);
        // Two shards: a publisher may be handed to its stream's owner, and keeps its id.
        let config = config.replace("shards = 1", "shards = 2");
        let file = config_file(name, &config);
        let mut child = super::Killed(
            Command::new(env!("CARGO_BIN_EXE_corecast"))
                .arg("--config")
                .arg(&file)
                .args(["--log-format", format])
                .env("RUST_LOG", "debug")
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start corecast"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let mut logged = Logged {
            child,
            lines,
            rtmp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
        };
        let mut serving = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                serving = logged
                    .parsed()
                    .into_iter()
                    .find(|l| l["message"] == "corecast serving");
                serving.is_some()
            }),
            "corecast did not start"
        );
        std::fs::remove_file(&file).unwrap();
        let serving = serving.unwrap();
        let field = if format == "ecs" { "corecast." } else { "" };
        let addr = |key: &str| {
            serving[format!("{field}{key}")]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        };
        (logged.rtmp, logged.http, logged.admin) = (addr("rtmp"), addr("http"), addr("admin"));
        logged
    }

    /// Every line so far, parsed.
    pub fn parsed(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }
}
