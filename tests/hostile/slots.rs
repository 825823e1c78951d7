//! Stream slots: one client cannot take every stream slot, and a publisher that sends
//! nothing but empty media is not alive.

use super::*;
use crate::common::raw_rtmp::RawClient;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;

/// Loopback counts like any address here; each attacker has an address of its own in
/// 127.0.0.0/8. `max_streams` is small, so that slots are scarce.
const SLOTS: &str = "[limits]\nexempt_loopback = false\nmax_connections_per_ip = 0\n\
                     max_streams = 8\nmax_streams_per_ip = 3\n\
                     max_publishes_per_ip_per_minute = 6\nmax_publishes_per_connection = 2\n";

/// An RTMP connection from `source` (an address of 127.0.0.0/8).
fn connect_from(server: &Corecast, source: [u8; 4]) -> RawClient {
    RawClient::over(tcp_from(server.rtmp, source))
}

/// `connect`, `createStream` and `publish(name)` on a new connection from `source`.
fn publish_from(server: &Corecast, source: [u8; 4], name: &str) -> (RawClient, String) {
    let mut client = connect_from(server, source);
    let commands = client.publish_commands(name);
    client.send(&commands);
    let status = client.publish_status();
    (client, status)
}

/// `deleteStream(stream_id)`, `createStream`, then `publish(name)` on the new stream id.
fn publish_again(client: &mut RawClient, stream_id: u32, name: &str) -> String {
    let mut out = client.command(
        "deleteStream",
        4.0,
        0,
        vec![Amf0Value::Number(f64::from(stream_id))],
    );
    out.extend(client.command("createStream", 5.0, 0, Vec::new()));
    out.extend(client.command(
        "publish",
        6.0,
        stream_id + 1,
        vec![
            Amf0Value::Utf8String(name.into()),
            Amf0Value::Utf8String("live".into()),
        ],
    ));
    client.send(&out);
    client.publish_status()
}

/// One connection publishing, deleting and publishing again; one address holding streams
/// that wait out their grace; one address churning publishes. Each is stopped by its limit,
/// and a publisher from another address still gets a slot.
#[test]
fn one_client_cannot_take_every_stream_slot() {
    hostile(SLOTS, |server| {
        let refused = server.counter("publish_rejections_total");
        // Per connection: two publishes over its life, the third refused and closed.
        let (mut churn, status) = publish_from(server, [127, 0, 0, 2], "a1");
        assert_eq!(status, START);
        assert_eq!(publish_again(&mut churn, 1, "a2"), START);
        assert_eq!(publish_again(&mut churn, 2, "a3"), FAILED);
        read_until_closed(&mut churn.stream, Duration::from_secs(2));
        // a1 and a2 wait out their grace, counted for 127.0.0.2: one more stream, then no
        // more from that address.
        let (_a4, status) = publish_from(server, [127, 0, 0, 2], "a4");
        assert_eq!(status, START);
        let (mut a5, status) = publish_from(server, [127, 0, 0, 2], "a5");
        assert_eq!(status, FAILED);
        read_until_closed(&mut a5.stream, Duration::from_secs(2));
        // Publish and leave, again and again, on one name from another address: the
        // republished stream keeps its one slot, and the rate stops the churn.
        let mut churned = 0;
        loop {
            // Refused as a duplicate (BadName) while the previous connection's close has not
            // reached the server yet: tried again until it has.
            let mut status = String::new();
            let previous_gone = wait_until(Duration::from_secs(5), || {
                let (client, answer) = publish_from(server, [127, 0, 0, 3], "b");
                drop(client);
                status = answer;
                status != "NetStream.Publish.BadName"
            });
            assert!(previous_gone, "the previous publisher of b never left");
            if status != START {
                assert_eq!(status, FAILED);
                break;
            }
            churned += 1;
            assert!(churned <= 6, "publish rate not enforced");
        }
        assert_eq!(churned, 6);
        // Another address still publishes.
        let (_real, status) = publish_from(server, [127, 0, 0, 4], "real");
        assert_eq!(status, START);
        assert_eq!(server.counter("publish_rejections_total"), refused + 3);
    });
}

/// A publisher that sends only empty and header-only audio is idle: closed by the idle
/// timeout, and replaced by a new publisher after `auth.takeover_after_ms`.
#[test]
fn empty_media_does_not_keep_a_publisher_alive() {
    let config = "[rtmp]\nidle_timeout_ms = 1500\n[auth]\ntakeover_after_ms = 1000\n";
    hostile(config, |server| {
        let timeouts = server.counter("timeouts_total");
        let taken_over = server.counter("publishers_taken_over_total");
        let (mut silent, status) = publish_from(server, [127, 0, 0, 5], "silent");
        assert_eq!(status, START);
        let started = Instant::now();
        let mut timestamp = 0;
        // Silent for longer than takeover_after_ms, though sending empty and header-only
        // audio every 100 ms: a new publisher replaces it.
        while started.elapsed() < Duration::from_millis(1200) {
            for body in [&[][..], &[0xaf, 0x01][..], &[0x2f][..]] {
                let audio = RtmpMessage::AudioData {
                    data: bytes::Bytes::copy_from_slice(body),
                };
                let bytes = silent.message(audio, 1, timestamp);
                silent.send(&bytes);
                timestamp += 20;
            }
            // The publisher's pace (empty media every 100 ms) is the test.
            std::thread::sleep(Duration::from_millis(100));
        }
        let (new, status) = publish_from(server, [127, 0, 0, 6], "silent");
        assert_eq!(status, START);
        drop(new);
        assert_eq!(
            server.counter("publishers_taken_over_total"),
            taken_over + 1
        );
        // The replaced publisher is closed on its next message.
        let audio = silent.message(
            RtmpMessage::AudioData {
                data: bytes::Bytes::from_static(&[0xaf, 0x01]),
            },
            1,
            timestamp,
        );
        silent.send(&audio);
        read_until_closed(&mut silent.stream, Duration::from_secs(3));
        // Alone, the same publisher is closed by the idle timeout.
        let (mut idle, status) = publish_from(server, [127, 0, 0, 7], "idle");
        assert_eq!(status, START);
        let started = Instant::now();
        while idle.stays_open(Duration::from_millis(100)) {
            let audio = RtmpMessage::AudioData {
                data: bytes::Bytes::from_static(&[0xaf, 0x01]),
            };
            let bytes = idle.message(audio, 1, 0);
            idle.send(&bytes);
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "not closed as idle"
            );
        }
        let closed_after = started.elapsed();
        assert!(
            closed_after >= Duration::from_millis(1300),
            "{closed_after:?}"
        );
        assert_eq!(server.counter("timeouts_total"), timeouts + 1);
    });
}
