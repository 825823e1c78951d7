//! Debian's nginx in the foreground on a free loopback port, for the tests that put it in
//! front of corecast: as an HTTP cache configured by the shipped
//! `deploy/nginx/hls-cache.conf` (only its addresses and its cache directory changed), or
//! as a TLS proxy that makes a corecast HTTP listener an `https://` origin.

use crate::daemon::Daemon;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where Debian installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// nginx caching the HLS of the corecast HTTP listener at `corecast` with the shipped
/// configuration, its files in `dir`.
pub fn hls_cache(program: &Path, corecast: SocketAddr, dir: &Path) -> Daemon {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/hls-cache.conf"),
    )
    .expect("deploy/nginx/hls-cache.conf");
    let cache: PathBuf = dir.join("cache");
    start(program, dir, |port| {
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
        replace(
            conf,
            "/var/cache/nginx/corecast",
            &cache.display().to_string(),
        )
    })
}

/// nginx terminating TLS with the PEM certificate chain `cert` and its key `key` in front of
/// the HTTP server at `upstream`, streaming its responses as they come (HTTP-FLV). Each
/// request is logged to `dir/access.log` as `SNI HOST "REQUEST" STATUS PROTOCOL`.
pub fn tls_proxy(
    program: &Path,
    upstream: SocketAddr,
    dir: &Path,
    cert: &Path,
    key: &Path,
) -> Daemon {
    let log = dir.join("access.log");
    start(program, dir, |port| {
        format!(
            "log_format sni '$ssl_server_name $http_host \"$request\" $status $ssl_protocol';\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {cert};\n  \
             ssl_certificate_key {key};\n  access_log {log} sni;\n  location / {{\n    \
             proxy_pass http://{upstream};\n    proxy_http_version 1.1;\n    \
             proxy_buffering off;\n  }}\n}}\n",
            cert = cert.display(),
            key = key.display(),
            log = log.display(),
        )
    })
}

/// Starts `program` with the site `site(port)` (an `http` block's contents) on a free port,
/// its files in `dir`; panics when it does not listen within 5 s.
fn start(program: &Path, dir: &Path, site: impl FnOnce(u16) -> String) -> Daemon {
    let port = Daemon::free_port();
    std::fs::write(dir.join("site.conf"), site(port)).expect("write");
    let prefix = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n\
         error_log {prefix}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  \
         proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
         uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  \
         include {prefix}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write");
    let mut command = Command::new(program);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    let stderr = Stdio::inherit();
    Daemon::start(&mut command, "nginx", port, stderr, Duration::from_secs(5))
}
