use super::*;
use glommio::{LocalExecutorBuilder, Placement};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const TICK: Duration = Duration::from_millis(1);

/// Runs `body` on a glommio executor of its own.
fn on_executor<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(crate::server::IO_MEMORY)
        .spawn(body)
        .expect("an executor")
        .join()
        .expect("the body passed");
}

/// A connected pair on loopback: (the end registered, the peer that writes).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
    let peer = TcpStream::connect(listener.local_addr().expect("an address")).expect("connected");
    let (ours, _) = listener.accept().expect("accepted");
    (ours, peer)
}

/// Registers a duplicate of `socket`, ticking every [`TICK`].
fn register(readiness: &Readiness, socket: &TcpStream) -> Registration {
    let fd = crate::net::dup(socket).expect("a duplicate");
    readiness.register(fd, TICK).expect("registered")
}

/// `read` when it completes within `within`, `None` when it is still waiting then.
async fn read_within(
    registration: &Registration,
    buf: &mut [u8],
    within: Duration,
) -> Option<io::Result<usize>> {
    future::or(async { Some(registration.read(buf).await) }, async {
        glommio::timer::sleep(within).await;
        None
    })
    .await
}

/// `bytes`, written by `peer`, are what the next read of `registration` gets.
async fn sent_is_read(registration: &Registration, peer: &mut TcpStream, bytes: &[u8]) {
    peer.write_all(bytes).expect("sent");
    let mut buf = [0u8; 64];
    let n = read_within(registration, &mut buf, Duration::from_secs(2))
        .await
        .expect("woken")
        .expect("read");
    assert_eq!(&buf[..n], bytes);
}

#[test]
fn a_read_waits_for_input_and_gets_it_at_the_next_tick() {
    on_executor(|| async {
        let readiness = Readiness::new();
        let (ours, mut peer) = pair();
        let registration = register(&readiness, &ours);
        let mut buf = [0u8; 64];
        let waited = read_within(&registration, &mut buf, Duration::from_millis(30)).await;
        assert!(
            waited.is_none(),
            "nothing was sent, yet the read returned {waited:?}"
        );
        peer.write_all(b"hello").expect("sent");
        let started = Instant::now();
        let n = registration.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello");
        // A tick, with room for a loaded machine; a read that never woke fails the test
        // by hanging, which this bound turns into a message.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn a_full_buffer_is_read_again_without_waiting() {
    on_executor(|| async {
        let readiness = Readiness::new();
        let (ours, mut peer) = pair();
        peer.write_all(b"0123456789").expect("sent");
        // The bytes are in the socket before it is registered: its first read finds them.
        std::thread::sleep(Duration::from_millis(20));
        let registration = register(&readiness, &ours);
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        for expected in [4, 4, 2] {
            let n = read_within(&registration, &mut buf, Duration::from_secs(2))
                .await
                .expect("no wait for bytes already there")
                .expect("read");
            assert_eq!(n, expected);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"0123456789");
        let waited = read_within(&registration, &mut buf, Duration::from_millis(30)).await;
        assert!(
            waited.is_none(),
            "drained, yet the read returned {waited:?}"
        );
    });
}

#[test]
fn a_closed_peer_reads_as_zero() {
    on_executor(|| async {
        let readiness = Readiness::new();
        let (ours, peer) = pair();
        let registration = register(&readiness, &ours);
        let mut buf = [0u8; 16];
        assert!(
            read_within(&registration, &mut buf, Duration::from_millis(20))
                .await
                .is_none()
        );
        drop(peer);
        let n = read_within(&registration, &mut buf, Duration::from_secs(2))
            .await
            .expect("the close was reported")
            .expect("read");
        assert_eq!(n, 0);
    });
}

#[test]
fn an_end_of_input_that_comes_with_the_last_data_is_not_lost() {
    for reset in [false, true] {
        on_executor(move || async move {
            let readiness = Readiness::new();
            let (ours, mut peer) = pair();
            let registration = register(&readiness, &ours);
            let mut buf = [0u8; 64];
            assert!(read_within(&registration, &mut buf, Duration::ZERO)
                .await
                .is_none());
            // The last bytes and the close (or reset) arrive before the next tick, which
            // reports them once, together.
            peer.write_all(b"last").expect("sent");
            if reset {
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .expect("SO_LINGER 0");
            }
            drop(peer);
            std::thread::sleep(TICK * 5);
            let mut seen = Vec::new();
            loop {
                match read_within(&registration, &mut buf, Duration::from_secs(2)).await {
                    Some(Ok(0)) | Some(Err(_)) => break,
                    Some(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                    None => panic!("the end was lost (reset: {reset}); read {seen:?}"),
                }
            }
            // A reset may discard what was not read yet; a close never does.
            assert!(reset || seen == b"last", "{seen:?}");
        });
    }
}

#[test]
fn more_sockets_than_one_batch_are_all_woken_and_dropping_unregisters() {
    on_executor(|| async {
        let readiness = Rc::new(Readiness::new());
        let count = BATCH * 2 + 7;
        let mut peers = Vec::with_capacity(count);
        let mut readers = Vec::with_capacity(count);
        for i in 0..count {
            let (ours, peer) = pair();
            let registration = register(&readiness, &ours);
            // The first read of a new registration finds nothing and waits: every socket
            // is then waiting on the set.
            let mut buf = [0u8; 8];
            assert!(read_within(&registration, &mut buf, Duration::ZERO)
                .await
                .is_none());
            readers.push(glommio::spawn_local(async move {
                let mut buf = [0u8; 8];
                let n = registration.read(&mut buf).await.expect("read");
                assert_eq!(&buf[..n], format!("{i:08}").as_bytes());
            }));
            peers.push(peer);
        }
        assert_eq!(readiness.registered(), count);
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.write_all(format!("{i:08}").as_bytes()).expect("sent");
        }
        for reader in readers {
            reader.await;
        }
        assert_eq!(readiness.registered(), 0);
        // The task ends with the last registration, and starts again with the next.
        glommio::timer::sleep(TICK * 5).await;
        assert!(!readiness.inner.running.get());
        let (ours, mut peer) = pair();
        let registration = register(&readiness, &ours);
        sent_is_read(&registration, &mut peer, b"again").await;
    });
}

#[test]
fn the_registration_keeps_its_own_descriptor() {
    on_executor(|| async {
        let readiness = Readiness::new();
        let (ours, mut peer) = pair();
        let registration = register(&readiness, &ours);
        // The caller's descriptor goes first (as a handed-off publisher's accepting shard
        // closes its own); the registration reads through its duplicate.
        drop(ours);
        sent_is_read(&registration, &mut peer, b"still").await;
    });
}
