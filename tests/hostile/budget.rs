//! The media memory budget: publishers of large frames cannot make the server hold more
//! media than `limits.max_media_memory_bytes`, beyond one ring's GOP cache.

use super::*;
use rml_rtmp::messages::RtmpMessage;

/// The budget: above what the witness holds alone (its units, counted once however many
/// shards' rings hold them, and its HLS window while one is requested).
const BUDGET: u64 = 2304 << 10;

/// The attacker's frames.
const FRAME: usize = 32 << 10;

/// `stream.ring_max_bytes`: what one ring may hold, its GOP cache included. Larger than the
/// budget by two frames, so that one attacking stream's GOP spends the budget by itself for
/// as long as it lasts.
const RING: u64 = BUDGET + 2 * FRAME as u64;

/// Frames of the attacking stream's GOP: a keyframe and inter frames, more bytes than its
/// ring holds.
const FRAMES: u32 = 96;

/// What the witness's own memory may grow by between two samples: its open HLS segment and
/// the GOP its rings keep (well above the 100 KB a second of its video and audio).
const WITNESS_SLACK: u64 = 256 << 10;

/// How far above the budget the held media may go: a stream is admitted only while the
/// budget holds, and the ring of the one admitted last keeps its whole GOP, whatever the
/// budget (it is the GOP cache that starts new viewers, bounded by `stream.ring_max_bytes`);
/// while the budget is spent, every other ring holds at most its own GOP, and no new stream
/// starts.
const OVERSHOOT: u64 = RING + WITNESS_SLACK;

/// How much the server's resident memory may grow, over the witness's own bound: the
/// attacker's GOP (up to `RING`, 2.3 MiB) takes up to two more 4 MiB allocator segments
/// (it may straddle them), which the allocator may keep once the GOP is freed.
const RSS_KIB: u64 = RSS_BOUND_KIB + 8 * 1024;

/// The attack's configuration: the budget, the ring bound, and a short republish grace so
/// that the attacker's stream ends soon after it leaves.
fn config() -> String {
    format!(
        "[limits]\nmax_media_memory_bytes = {BUDGET}\n\
         [stream]\nring_max_bytes = {RING}\nrepublish_grace_ms = 500\n"
    )
}

/// The media memory held now.
fn held(server: &Corecast) -> u64 {
    server.counter("media_memory_bytes")
}

/// A video frame of `FRAME` bytes (an FLV video body: a keyframe or an inter frame) at
/// `timestamp`, on message stream 1.
fn frame(client: &mut RawClient, key: bool, timestamp: u32) -> Vec<u8> {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.resize(FRAME, 0x65);
    let video = RtmpMessage::VideoData { data: body.into() };
    client.message(video, 1, timestamp)
}

/// An attacking publisher: its connection and the timestamp of its next frame.
struct Attacker {
    client: RawClient,
    timestamp: u32,
}

impl Attacker {
    /// Publishes `name` on a new connection with a large chunk size; the attacker, or the
    /// status of the refusal.
    fn publish(server: &Corecast, name: &str) -> Result<Attacker, String> {
        let mut client = RawClient::connect(server.rtmp);
        let mut commands = client.publish_commands(name);
        commands.extend(client.set_chunk_size(65536));
        client.send(&commands);
        match client.publish_status() {
            status if status == START => Ok(Attacker {
                client,
                timestamp: 0,
            }),
            status => Err(status),
        }
    }

    /// Sends `count` frames, the first a keyframe if `key`, the others inter frames, eight
    /// at a time (256 KiB) every 20 ms: a burst of megabytes would keep the shard busy for
    /// long enough (in a debug build, on a loaded machine) that the witness's viewer falls
    /// behind, and a spent budget then trims what it has yet to send.
    fn send(&mut self, key: bool, count: u32) {
        for i in 0..count {
            let bytes = frame(&mut self.client, key && i == 0, self.timestamp);
            self.client.send(&bytes);
            self.timestamp += 40;
            if i % 8 == 7 {
                // The publisher's pace is the test (see above).
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A stream of 32 KiB frames in one GOP larger than the budget, admitted while the budget holds, spends it:
/// its ring keeps the GOP whole, the held media never exceeds the budget by more than
/// [`OVERSHOOT`], and new streams are refused with NetStream.Publish.Failed and counted. A
/// keyframe trims the ring to it at once, while the budget is spent. Once the attacker leaves
/// and its stream ends, the held media is back to the witness's and a new stream is
/// admitted.
#[test]
fn large_frames_cannot_hold_more_than_the_budget() {
    hostile_within(&config(), RSS_KIB, |server| {
        assert_eq!(server.counter("media_memory_limit_bytes"), BUDGET);
        let alone = held(server);
        assert!(
            alone + WITNESS_SLACK < BUDGET,
            "the witness alone holds {alone} bytes"
        );
        let rejections = server.counter("publish_rejections_total");
        let sample = |server: &Corecast| {
            let now = held(server);
            assert!(
                now <= BUDGET + OVERSHOOT,
                "{now} bytes held (budget {BUDGET}, overshoot {OVERSHOOT})"
            );
            now
        };
        let mut attacker = Attacker::publish(server, "big").expect("admitted within the budget");
        attacker.send(true, FRAMES);
        assert!(
            wait_until(Duration::from_secs(5), || sample(server) > BUDGET),
            "the budget was not spent ({} bytes held)",
            held(server)
        );
        // While spent, the attacker sends on (its ring is at its bound), and new streams are
        // refused.
        for n in 0..3 {
            attacker.send(false, 2);
            assert!(sample(server) > BUDGET, "no longer spent");
            let refused = Attacker::publish(server, &format!("more{n}")).err();
            assert_eq!(refused.as_deref(), Some(FAILED));
        }
        assert_eq!(
            server.counter("publish_rejections_total"),
            rejections + 3,
            "one refusal counted per refused publish"
        );
        // A keyframe trims its ring to it: the GOP before it goes, well before its age would
        // (stream.ring_max_duration_ms, 3 s).
        let before = sample(server);
        attacker.send(true, 1);
        assert!(
            wait_until(Duration::from_secs(2), || sample(server)
                <= before - RING / 2),
            "a keyframe did not trim its ring ({} bytes held, {before} before)",
            held(server)
        );
        // The attacker leaves; its stream ends after the republish grace.
        drop(attacker);
        assert!(
            wait_until(Duration::from_secs(5), || held(server)
                <= alone + WITNESS_SLACK),
            "{} bytes held after the attack, {alone} before",
            held(server)
        );
        assert!(
            wait_until(Duration::from_secs(2), || server.counter("streams") == 1),
            "only the witness's stream is left"
        );
        let admitted = Attacker::publish(server, "after");
        assert!(admitted.is_ok(), "{:?}", admitted.err());
        drop(admitted);
        assert_eq!(server.counter("publish_rejections_total"), rejections + 3);
    });
}
