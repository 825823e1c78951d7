//! Debian's nginx as an HTTP cache in front of corecast, configured by the shipped
//! `deploy/nginx/hls-cache.conf` (only its addresses and its cache directory changed), in
//! the foreground, for the tests that put HLS players behind a cache.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// nginx running the shipped cache configuration; killed when dropped.
#[derive(Debug)]
pub struct HlsCache {
    process: Child,
    /// Where players reach it.
    pub addr: SocketAddr,
}

impl Drop for HlsCache {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl HlsCache {
    /// Starts `program` in front of the corecast HTTP listener at `corecast`, its files in
    /// `dir`; panics when it does not listen within 5 s.
    pub fn start(program: &Path, corecast: SocketAddr, dir: &Path) -> HlsCache {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/hls-cache.conf"),
        )
        .expect("deploy/nginx/hls-cache.conf");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Only the addresses and the cache's place change.
        let replace = |text: String, from: &str, to: &str| {
            assert!(text.contains(from), "{from} is not in hls-cache.conf");
            text.replace(from, to)
        };
        let conf = replace(shipped, "listen 80;", &format!("listen 127.0.0.1:{port};"));
        let conf = replace(
            conf,
            "server 127.0.0.1:8080;",
            &format!("server {corecast};"),
        );
        let cache: PathBuf = dir.join("cache");
        let conf = replace(
            conf,
            "/var/cache/nginx/corecast",
            &cache.display().to_string(),
        );
        std::fs::write(dir.join("hls-cache.conf"), conf).expect("write");
        let prefix = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n\
             error_log {prefix}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  \
             proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
             uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  \
             include {prefix}/hls-cache.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write");
        let process = Command::new(program)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let cache = HlsCache {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(cache.addr).is_err() {
            assert!(Instant::now() < deadline, "nginx does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        cache
    }
}
