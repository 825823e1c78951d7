//! Tests of the shard's registry and operations: answering a subscription (pure), and
//! shards on real glommio executors joined by a real channel mesh (subscription, lagging
//! and resuming at a keyframe; takeover at passed-in times; the republish grace).

use super::*;
use crate::hub::feed::Slot;
use crate::hub::ring::tests::unit;

fn owned(units: impl IntoIterator<Item = crate::media::Unit>) -> LocalStream {
    let mut feed = Feed::new(FeedState::Live, Ring::new(1 << 20, u64::MAX));
    for u in units {
        feed.offer(u, 0);
    }
    LocalStream {
        feed: Some(Rc::new(RefCell::new(feed))),
        origin: Some(Origin::new(3, 4096, None)),
        ..LocalStream::default()
    }
}

#[test]
fn a_subscribing_shard_gets_headers_and_the_gop_cache() {
    let mut header = unit(0, false, 10);
    header.header = true;
    let units = [header, unit(1, true, 10), unit(2, false, 10)];
    let mut stream = owned(
        units
            .into_iter()
            .chain([unit(3, true, 10), unit(4, false, 10)]),
    );
    let key = StreamKey::from("live/a");
    let MeshMsg::Sync(k, headers, gop) = answer_subscribe(Some(&mut stream), key.clone(), 2) else {
        panic!("a stream the shard owns answers with a Sync");
    };
    assert_eq!(k, key);
    assert_eq!(headers.iter().map(|u| u.seq).collect::<Vec<_>>(), [0]);
    assert_eq!(gop.iter().map(|u| u.seq).collect::<Vec<_>>(), [3, 4]);
    let subscribers = &stream.origin.as_ref().map(|o| o.subscribers.clone());
    let subscribers = subscribers.as_ref().expect("owned");
    assert!(subscribers.is_subscribed(2) && !subscribers.is_subscribed(1));
}

#[test]
fn a_subscription_to_a_stream_not_owned_ends_it() {
    let key = StreamKey::from("live/a");
    assert!(matches!(
        answer_subscribe(None, key.clone(), 1),
        MeshMsg::StreamEnded(k) if k == key
    ));
    let mut replica = LocalStream::default();
    assert!(matches!(
        answer_subscribe(Some(&mut replica), key.clone(), 1),
        MeshMsg::StreamEnded(_)
    ));
}

/// Runs `shards` shards joined by a real channel mesh, each on its own executor with its
/// receivers feeding [`Shard::on_mesh`], and `body` on each; returns when every body has.
fn run_shards<F, Fut>(config: Config, shards: usize, body: F)
where
    F: Fn(Rc<Shard>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    use glommio::channels::channel_mesh::MeshBuilder;
    use glommio::{LocalExecutorBuilder, Placement};
    let config = Arc::new(config);
    let observed = Observed {
        all_stats: (0..shards).map(|_| Arc::default()).collect(),
        histograms: Arc::new(crate::metrics::Published::new(shards)),
        reports: Arc::new(crate::metrics::api::Reports::new(shards)),
        admission: Arc::new(crate::limits::Admission::new(shards, Default::default())),
        publish_limits: Arc::new(crate::limits::PublishLimits::new(0, 0, false, 64)),
        media_budget: crate::hub::budget::MediaBudget::new(1 << 30),
        health: Arc::new(crate::server::health::Health::new(shards)),
        reloads: Arc::new(crate::server::reload::Reloads::new(config.clone(), shards)),
        bound: super::Bound {
            rtmp: config.server.rtmp_listen,
            http: config.server.http_listen,
        },
        node_id: 1,
    };
    let mesh = MeshBuilder::<MeshMsg, _>::full(shards, 16);
    let executors: Vec<_> = (0..shards)
        .map(|_| {
            let observed = observed.clone();
            let (mesh, body) = (mesh.clone(), body.clone());
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(crate::server::IO_MEMORY)
                .spawn(move || async move {
                    let (senders, mut receivers) = mesh.join().await.expect("joined");
                    let id = senders.peer_id();
                    let shard = Rc::new(Shard::new(id, observed, senders));
                    shard.receive_mesh(&mut receivers);
                    body(shard).await;
                })
                .expect("an executor")
        })
        .collect();
    for executor in executors {
        executor.join().expect("the shard's body passed");
    }
}

/// Waits (in glommio time) until `done`, at most 5 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..5000 {
        if done() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

fn publisher(shard: &Shard, since_ns: u64) -> crate::hub::origin::PublisherInfo {
    crate::hub::origin::PublisherInfo {
        conn_id: shard.conn_id(),
        peer: std::net::SocketAddr::from(([192, 0, 2, 1], 1935)),
        query: None,
        since_ns,
        pulled: false,
    }
}

const VIDEO_HEADER: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64];
const KEYFRAME: &[u8] = &[0x17, 1, 0, 0, 0, 0xaa];
const INTER: &[u8] = &[0x27, 1, 0, 0, 0, 0xbb];
/// Units the owner sends a stalled shard, more than its queue (16) holds.
const FLOOD: u32 = 60;

/// Shard 1's first viewer of a stream shard 0 owns subscribes it: the replica gets the
/// headers and GOP cache in a `Sync`, goes live, and then gets every new unit. Then
/// shard 1 stalls: its queue fills, the owner drops units for it (`mesh_units_dropped`)
/// and withholds the rest until a keyframe, where the replica resumes.
#[test]
fn a_subscribing_shard_syncs_then_follows_the_owner() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let key = (0..)
        .map(|i| crate::hub::stream_key("live", &format!("s{i}")))
        .find(|k| owner_of(k, 2) == 0)
        .expect("a key owned by shard 0");
    let stage = Arc::new(AtomicU8::new(0));
    run_shards(Config::default(), 2, move |shard| {
        let (key, stage) = (key.clone(), stage.clone());
        async move {
            let at = |n: u8| stage.load(Ordering::SeqCst) >= n;
            if shard.id == 0 {
                let conn = publisher(&shard, now_ns());
                let conn_id = conn.conn_id;
                shard.start_publishing(&key, conn).expect("published");
                for (ts, body) in [(0, VIDEO_HEADER), (0, KEYFRAME), (40, INTER)] {
                    let kind = UnitKind::Video;
                    assert!(shard.ingest_media(&key, conn_id, kind, ts, body, now_ns()));
                }
                stage.store(1, Ordering::SeqCst);
                wait_for("the replica's sync", || at(2)).await;
                assert!(shard.ingest_media(&key, conn_id, UnitKind::Video, 80, INTER, 0));
                wait_for("the replica's stall", || at(3)).await;
                for ts in 0..FLOOD {
                    let (kind, ts) = (UnitKind::Video, 120 + 40 * ts);
                    assert!(shard.ingest_media(&key, conn_id, kind, ts, INTER, 0));
                }
                assert!(stats::get(&shard.stats.mesh_units_dropped) > 0);
                stage.store(4, Ordering::SeqCst);
                wait_for("the replica to catch up", || at(5)).await;
                for body in [KEYFRAME, INTER] {
                    let (kind, ts) = (UnitKind::Video, 120 + 40 * FLOOD);
                    assert!(shard.ingest_media(&key, conn_id, kind, ts, body, 0));
                }
                wait_for("the replica's keyframe", || at(6)).await;
            } else {
                wait_for("the stream", || at(1) && shard.is_live(&key)).await;
                let feed = shard.attach_viewer(&key, Format::Flv).expect("attached");
                assert_eq!(feed.borrow().state, FeedState::Syncing);
                wait_for("the sync", || feed.borrow().state == FeedState::Live).await;
                {
                    let f = feed.borrow();
                    assert!(f.headers.get(Slot::Video).is_some_and(|u| u.seq == 0));
                    let gop: Vec<u64> = f
                        .ring
                        .iter_from(f.ring.front())
                        .map(|e| e.unit.seq)
                        .collect();
                    assert_eq!(gop, [1, 2], "the GOP cache, from its keyframe");
                }
                // A viewer that reads nothing yet: its GOP stays in the replica's ring.
                let reading = feed.borrow().ring.hold(1).cloned();
                assert!(reading.is_some());
                stage.store(2, Ordering::SeqCst);
                let has_next = || {
                    let f = feed.borrow();
                    let last = f.ring.end().checked_sub(1).and_then(|p| f.ring.get(p));
                    last.is_some_and(|e| e.unit.seq == 3)
                };
                wait_for("the next unit", has_next).await;
                stage.store(3, Ordering::SeqCst);
                // Stalled: this thread runs nothing, so the queue from shard 0 fills.
                while !at(4) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let queued = || {
                    let f = feed.borrow();
                    f.ring
                        .iter_from(f.ring.front())
                        .map(|e| e.unit.seq)
                        .collect()
                };
                let mut before: Vec<u64> = queued();
                loop {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                    let now: Vec<u64> = queued();
                    if now == before {
                        break;
                    }
                    before = now;
                }
                let dropped = stats::get(&shard.observed.all_stats[0].mesh_units_dropped);
                let last = before.last().copied().unwrap_or(0);
                // One unit met the full queue; the owner withheld the rest.
                assert_eq!(dropped, 1, "counted once, at the first drop");
                assert!(last < 3 + FLOOD as u64, "{last}: units were lost");
                stage.store(5, Ordering::SeqCst);
                let key_seq = 4 + FLOOD as u64;
                wait_for("the keyframe", || queued().last() == Some(&(key_seq + 1))).await;
                let after: Vec<u64> = queued();
                assert_eq!(&after[after.len() - 3..], [last, key_seq, key_seq + 1]);
                stage.store(6, Ordering::SeqCst);
                drop(reading);
                shard.detach_viewer(&key, &feed, Format::Flv);
            }
        }
    });
}

/// Takeover decided at the times the caller passes (no sleeping), and the republish
/// grace: a stream whose publisher left ends only if nobody published since.
#[test]
fn takeover_and_grace_on_the_owner() {
    const MS: u64 = 1_000_000;
    let mut config = Config::default();
    config.auth.takeover_after_ms = 800;
    config.stream.republish_grace_ms = 30;
    run_shards(config, 1, |shard| async move {
        let key = crate::hub::stream_key("live", "a");
        let t0 = now_ns();
        let first = publisher(&shard, t0);
        let first_id = first.conn_id;
        shard.start_publishing(&key, first).expect("published");
        assert!(shard.ingest_media(&key, first_id, UnitKind::Video, 0, KEYFRAME, t0));
        let early = shard.start_publishing(&key, publisher(&shard, t0 + 799 * MS));
        assert_eq!(early, Err(PublishRefusal::AlreadyPublishing));
        let second = publisher(&shard, t0 + 800 * MS);
        let second_id = second.conn_id;
        assert_eq!(shard.start_publishing(&key, second), Ok(()));
        assert_eq!(stats::get(&shard.stats.publishers_taken_over), 1);
        assert_eq!(stats::get(&shard.stats.publishers), 1);
        assert!(!shard.ingest_media(&key, first_id, UnitKind::Video, 40, INTER, t0));
        // Left, and back within the grace: the first grace period ends nothing.
        shard.stop_publishing(&key, second_id);
        let third = publisher(&shard, now_ns());
        let third_id = third.conn_id;
        shard.start_publishing(&key, third).expect("republished");
        glommio::timer::sleep(Duration::from_millis(90)).await;
        assert!(shard.is_live(&key), "republished within the grace");
        shard.stop_publishing(&key, third_id);
        assert!(shard.is_live(&key), "the grace runs");
        wait_for("the end of the stream", || !shard.is_live(&key)).await;
        assert_eq!(stats::get(&shard.stats.streams), 0);
        assert_eq!(stats::get(&shard.stats.publishers), 0);
    });
}

/// Connections that wait for the stop and go away leave nothing behind (a list of their
/// wakers once grew with every connection served, and was scanned at every wait), and
/// those still waiting when the stop comes all see it.
#[test]
fn waiting_for_the_stop_leaves_nothing_behind() {
    run_shards(Config::default(), 1, |shard| async move {
        for _ in 0..1000 {
            let mut wait = Box::pin(shard.stopped());
            assert!(futures_lite::future::poll_once(&mut wait).await.is_none());
            assert_eq!(shard.stop_listeners(), 1);
            drop(wait);
        }
        assert_eq!(shard.stop_listeners(), 0);
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.stopped().await })
            })
            .collect();
        wait_for("three listeners", || shard.stop_listeners() == 3).await;
        shard.begin_stop();
        for task in waiting {
            task.await;
        }
        shard.stopped().await;
    });
}
