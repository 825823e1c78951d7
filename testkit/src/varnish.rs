//! Debian's Varnish as an HTTP cache in front of corecast, configured by the shipped
//! `deploy/varnish/hls-cache.vcl` (only its backend's address changed), in the foreground,
//! for the tests that put LL-HLS players behind a coalescing cache.

use crate::daemon::Daemon;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Where Debian installs Varnish.
pub const VARNISHD: &str = "/usr/sbin/varnishd";

/// Varnish caching the HLS of the corecast HTTP listener at `corecast` with the shipped
/// VCL, its working directory and log in `dir`. Without privilege separation (`-j none`): the
/// test's user runs it all. Up to 30 s to start (the VCL is compiled by the C compiler).
pub fn hls_cache(program: &Path, corecast: SocketAddr, dir: &Path) -> Daemon {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/varnish/hls-cache.vcl"),
    )
    .expect("deploy/varnish/hls-cache.vcl");
    let backend = "    .host = \"127.0.0.1\";\n    .port = \"8080\";";
    assert!(
        shipped.contains(backend),
        "the backend is not in hls-cache.vcl"
    );
    let vcl = shipped.replace(
        backend,
        &format!(
            "    .host = \"{}\";\n    .port = \"{}\";",
            corecast.ip(),
            corecast.port()
        ),
    );
    let file = dir.join("hls-cache.vcl");
    std::fs::write(&file, vcl).expect("write");
    let port = Daemon::free_port();
    let mut command = Command::new(program);
    command
        .args(["-F", "-j", "none", "-s", "malloc,256m"])
        .arg("-n")
        .arg(dir.join("instance"))
        .arg("-a")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-f")
        .arg(&file);
    // Its messages (startup, child events) go to `dir/varnishd.log`.
    let log = std::fs::File::create(dir.join("varnishd.log")).expect("varnishd.log");
    Daemon::start(
        &mut command,
        "varnishd",
        port,
        log.into(),
        Duration::from_secs(30),
    )
}
