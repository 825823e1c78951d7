//! Low-Latency HLS requests the server holds until their part exists (blocking playlist
//! reloads, requests for the hinted part): clients that make it hold as many as it will and
//! never read the answers cannot take more than `hls.max_held_reloads` per shard, keep a
//! player from its parts, or keep anything after they are gone.

use super::*;
use corecast_testkit::hls_check::{self, MediaPlaylist};

/// Requests each shard may hold: small, so that the attack goes past it.
const LIMIT: u64 = 40;

/// Connections of the attack (under `limits.max_connections_per_ip`).
const ATTACKERS: usize = 300;

/// Requests each attacker sends at once, for successive parts from the hinted one.
const PIPELINED: u32 = 8;

/// How much the server's resident memory may grow: the harness's bound, and 32 KiB for
/// each attacker's connection (its request buffer, the answers being written, the
/// allocator's pages they took), which the allocator may keep after they are gone.
const RSS_KIB: u64 = RSS_BOUND_KIB + ATTACKERS as u64 * 32;

/// The witness's LL-HLS directory.
const DIR: &str = "/live/witness";

/// The witness's LL-HLS media playlist asked with `query`, checked; its status too.
fn playlist(server: &Corecast, query: &str) -> (u16, MediaPlaylist) {
    let response = common::http_get(server.http, &format!("{DIR}/ll.m3u8{query}"));
    let text = String::from_utf8_lossy(&response.body);
    assert_eq!(response.status, 200, "{text}");
    let checked = hls_check::check(&text)
        .unwrap_or_else(|violations| panic!("{}{text}", hls_check::report(&violations)));
    (response.status, checked)
}

/// The hinted part's URI and its `(msn, part)`.
fn hinted(p: &MediaPlaylist) -> (String, u64, u32) {
    let uri = p.preload_hints.first().expect("a preload hint").uri.clone();
    let (msn, part) = uri
        .strip_suffix(".m4s")
        .and_then(|u| u.rsplit('-').next())
        .and_then(|id| id.split_once('.'))
        .expect("a part URI");
    (uri.clone(), msn.parse().unwrap(), part.parse().unwrap())
}

/// Whether the playlist lists part `part` of segment `msn` (a part past the last of a
/// complete segment stands for the first of the next, RFC 8216bis 6.2.5.2).
fn lists(p: &MediaPlaylist, msn: u64, part: u32) -> bool {
    let reached = match &p.open {
        Some(open) => (open.msn, open.parts.len() as u32),
        None => (p.segments.last().map_or(0, |s| s.msn + 1), 0),
    };
    match p.segments.iter().find(|s| s.msn == msn) {
        Some(s) if part as usize >= s.parts.len() => (msn + 1, 0) < reached,
        Some(_) => true,
        None => (msn, part) < reached,
    }
}

/// Attackers open [`ATTACKERS`] connections with small windows; each sends
/// [`PIPELINED`] requests at once, for the hinted part and the ones after it (half of them
/// blocking playlist reloads, half the parts themselves), and never reads. The server holds
/// at most [`LIMIT`] per shard and answers the others at once (counted); a player's
/// blocking reloads meanwhile still reach each new part; the answers the attackers leave
/// unread are cut off by the write deadline; once they are gone nothing stays held.
#[test]
fn held_requests_that_are_never_read_are_bounded_and_let_go() {
    let config = format!(
        "[hls]\nmax_held_reloads = {LIMIT}\n[server]\nwrite_timeout_ms = 2000\n\
         [limits]\nmax_connections_per_ip = {}\n",
        ATTACKERS + 50
    );
    hostile_within(&config, RSS_KIB, |server| {
        // The witness's LL-HLS starts with the first request, and serves once a segment is
        // complete.
        let (_, first) = playlist(server, "");
        let (uri, msn, part) = hinted(&first);
        let instance_prefix = uri.rsplit_once('-').expect("a part URI").0.to_string();
        let full_before = server.counter("hls_held_full_total");
        let timeouts_before = server.counter("timeouts_total");
        let attackers: Vec<TcpStream> = (0..ATTACKERS)
            .map(|i| {
                let mut client = small_window(server.http);
                let mut requests = String::new();
                for k in 0..PIPELINED {
                    // Parts of the hinted one's segment from it on: those past its end
                    // stand for the next segment in a reload, and are no part (404).
                    let p = part + k;
                    let path = match i % 2 {
                        0 => format!("{DIR}/ll.m3u8?_HLS_msn={msn}&_HLS_part={p}"),
                        _ => format!("{DIR}/{instance_prefix}-{msn}.{p}.m4s"),
                    };
                    requests.push_str(&format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"));
                }
                client.write_all(requests.as_bytes()).unwrap();
                client
            })
            .collect();

        // A player goes on from part to part with blocking reloads while the attack holds.
        let (mut m, mut p) = (msn, part);
        let mut held_seen = 0;
        let mut reached = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let asked = Instant::now();
            let (status, answer) = playlist(server, &format!("?_HLS_msn={m}&_HLS_part={p}"));
            assert_eq!(status, 200);
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "a blocking reload took {:?}",
                asked.elapsed()
            );
            if lists(&answer, m, p) {
                reached += 1;
                (_, m, p) = hinted(&answer);
            } else {
                // Answered at once because the shard held its maximum: ask again soon.
                std::thread::sleep(Duration::from_millis(50));
            }
            held_seen = held_seen.max(server.counter("hls_held_reloads"));
        }
        // 250 ms parts: about 16 in 4 s.
        assert!(reached >= 10, "the player reached {reached} parts in 4 s");
        assert!(
            held_seen <= 2 * LIMIT,
            "{held_seen} requests held on two shards (limit {LIMIT} each)"
        );
        let full = server.counter("hls_held_full_total") - full_before;
        assert!(
            full > 0,
            "no request was answered for want of room: the limit was not reached"
        );

        // A part left unread fills the reader's window: the write deadline closes the
        // connection; where every answer was short (a 404 for a part that is not the next),
        // the connection goes as idle (http.header_timeout_ms). Then nothing stays held.
        let open = || {
            attackers
                .iter()
                .skip(1)
                .step_by(2)
                .filter(|c| !server_closed(server.http, c))
                .count()
        };
        assert!(
            wait_until(Duration::from_secs(10), || open() == 0),
            "{} of {} part readers still served",
            open(),
            ATTACKERS / 2
        );
        let timeouts = server.counter("timeouts_total") - timeouts_before;
        eprintln!(
            "held at most {held_seen} (sampled), {full} answered without holding, the player \
             reached {reached} parts; {timeouts} part readers closed by the write deadline"
        );
        drop(attackers);
        assert!(
            wait_until(Duration::from_secs(6), || server
                .counter("hls_held_reloads")
                == 0),
            "{} requests still held after the attackers left",
            server.counter("hls_held_reloads")
        );
    });
}
