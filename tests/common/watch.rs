//! Viewers read on their own threads ([`Watch`]), what they receive ([`Sent`]), and the
//! checks made of it.

use super::{FlvViewer, WAIT};
use bytes::Bytes;
use corecast::flv::reader::{FlvTag, TagKind};
use corecast_testkit::client::{PlayEvent, Player};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// One message as a publisher sent it (raw timestamp) or as a viewer received it, or must
/// (outgoing timestamp). A viewer's may also be a script tag (FLV metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub kind: TagKind,
    pub ts: u32,
    pub data: Bytes,
}

impl Sent {
    pub fn new(kind: TagKind, ts: u32, data: Bytes) -> Sent {
        Sent { kind, ts, data }
    }

    /// As an FLV tag (for the checks of `common` that take tags).
    pub fn to_tag(&self) -> FlvTag {
        FlvTag {
            kind: self.kind,
            timestamp: self.ts,
            data: self.data.clone(),
        }
    }
}

/// How a viewer's connection ended.
#[derive(Debug, Default)]
pub struct Ending {
    /// RTMP: the player reported the end of the stream (`NetStream.Play.Stop`/`Complete`,
    /// `UnpublishNotify` or `StreamEOF`).
    pub stream_ended: bool,
    /// The server closed the connection cleanly (FLV: at a tag boundary).
    pub closed: bool,
    /// The read error that ended it, if any.
    pub error: Option<String>,
}

/// A viewer read on its own thread; what it receives arrives over a channel, each message
/// stamped with the time its thread read it.
pub struct Watch {
    pub who: String,
    rx: mpsc::Receiver<(Sent, Instant)>,
    pub got: Vec<Sent>,
    /// When the viewer started, and when each message of `got` arrived.
    opened: Instant,
    arrivals: Vec<Instant>,
    handle: Option<thread::JoinHandle<Ending>>,
}

impl Watch {
    /// An HTTP-FLV viewer of `/live/{name}.flv`. Its thread panics on invalid FLV or on a
    /// response that ends mid-tag (see [`FlvViewer::next_tag`]).
    pub fn flv(server: &corecast::Server, name: &str) -> Watch {
        let mut viewer = FlvViewer::open(server.http_addr(), &format!("/live/{name}.flv"));
        assert_eq!(viewer.status, 200, "GET /live/{name}.flv");
        let opened = Instant::now();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            while let Some(tag) = viewer.next_tag() {
                let sent = Sent::new(tag.kind, tag.timestamp, tag.data);
                if tx.send((sent, Instant::now())).is_err() {
                    return Ending::default();
                }
            }
            Ending {
                closed: true,
                ..Ending::default()
            }
        });
        Watch::new(format!("FLV viewer of {name}"), rx, opened, handle)
    }

    /// An RTMP player of `name` (corecast's client). Metadata events are not forwarded.
    pub fn rtmp(server: &corecast::Server, name: &str) -> Watch {
        let player = Player::connect(server.rtmp_addr(), "live", name, WAIT).expect("play");
        Watch::player(format!("RTMP player of {name}"), player)
    }

    /// A connected RTMP player. Metadata events are not forwarded.
    pub fn player(who: String, mut player: Player) -> Watch {
        let opened = Instant::now();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut ending = Ending::default();
            loop {
                let sent = match player.next_event() {
                    Ok(Some(PlayEvent::Video { timestamp, data })) => {
                        Sent::new(TagKind::Video, timestamp, data)
                    }
                    Ok(Some(PlayEvent::Audio { timestamp, data })) => {
                        Sent::new(TagKind::Audio, timestamp, data)
                    }
                    Ok(Some(PlayEvent::Metadata(_))) => continue,
                    Ok(Some(PlayEvent::StreamEnded)) => {
                        ending.stream_ended = true;
                        continue;
                    }
                    Ok(None) => {
                        ending.closed = true;
                        return ending;
                    }
                    Err(e) => {
                        ending.error = Some(e.to_string());
                        return ending;
                    }
                };
                if tx.send((sent, Instant::now())).is_err() {
                    return ending;
                }
            }
        });
        Watch::new(who, rx, opened, handle)
    }

    fn new(
        who: String,
        rx: mpsc::Receiver<(Sent, Instant)>,
        opened: Instant,
        handle: thread::JoinHandle<Ending>,
    ) -> Watch {
        Watch {
            who,
            rx,
            got: Vec::new(),
            opened,
            arrivals: Vec::new(),
            handle: Some(handle),
        }
    }

    fn push(&mut self, (sent, at): (Sent, Instant)) {
        self.got.push(sent);
        self.arrivals.push(at);
    }

    /// Waits up to `limit` for `cond` on everything received so far; panics with `what`
    /// (and the reader thread's own panic, if it died) when it does not hold in time.
    pub fn expect(&mut self, limit: Duration, what: &str, cond: impl Fn(&[Sent]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if cond(&self.got) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(received) => self.push(received),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(cond(&self.got), "{}: {what} (timed out)", self.who);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if cond(&self.got) {
                        return;
                    }
                    let ending = self.join();
                    panic!("{}: {what}, but the viewer ended: {ending:?}", self.who);
                }
            }
        }
    }

    /// Waits until the viewer has received `data` (a payload sent earlier).
    pub fn expect_payload(&mut self, data: &Bytes) {
        let data = data.clone();
        self.expect(WAIT, "a payload that was sent never arrived", move |got| {
            got.iter().any(|s| s.data == data)
        });
    }

    /// Waits for the viewer's connection to end; returns everything it received.
    pub fn finish(self, limit: Duration) -> (Vec<Sent>, Ending) {
        let (got, ending, _) = self.finish_timed(limit);
        (got, ending)
    }

    /// [`Watch::finish`], also returning the longest wait for a message: between the
    /// viewer's start and its first message, or between two messages.
    pub fn finish_timed(mut self, limit: Duration) -> (Vec<Sent>, Ending, Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(received) => self.push(received),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: the connection did not end within {limit:?}", self.who)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let ending = self.join();
        let mut last = self.opened;
        let mut gap = Duration::ZERO;
        for &at in &self.arrivals {
            gap = gap.max(at.saturating_duration_since(last));
            last = at;
        }
        (std::mem::take(&mut self.got), ending, gap)
    }

    fn join(&mut self) -> Ending {
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(ending)) => ending,
            Some(Err(panic)) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{}: the reader thread panicked: {reason}", self.who)
            }
            None => Ending::default(),
        }
    }
}

/// Audio and video only (FLV viewers also get script tags).
pub fn media_of(got: &[Sent]) -> Vec<&Sent> {
    got.iter()
        .filter(|s| matches!(s.kind, TagKind::Audio | TagKind::Video))
        .collect()
}

/// Over everything the viewer received: audio and video timestamps never decrease, and
/// script data (onMetaData) is stamped 0 wherever it comes, as players expect it.
pub fn assert_never_back(who: &str, got: &[Sent]) {
    for (i, sent) in got.iter().enumerate() {
        if sent.kind == TagKind::Script {
            assert_eq!(
                sent.ts, 0,
                "{who}: script data at {} (message {i})",
                sent.ts
            );
        }
    }
    let media = media_of(got);
    for (i, pair) in media.windows(2).enumerate() {
        assert!(
            pair[1].ts >= pair[0].ts,
            "{who}: timestamp went back at media message {}: {} -> {} ({:?} then {:?})",
            i + 1,
            pair[0].ts,
            pair[1].ts,
            pair[0].kind,
            pair[1].kind
        );
    }
}

/// The viewer's media end with exactly `expected`: same messages, same order, same
/// timestamps. `expected` is everything published after the viewer had caught up, so a
/// viewer that lost, duplicated, reordered or restamped anything fails here.
pub fn assert_tail(who: &str, got: &[Sent], expected: &[Sent]) {
    let media = media_of(got);
    assert!(
        media.len() >= expected.len(),
        "{who}: received {} media messages, expected at least {}",
        media.len(),
        expected.len()
    );
    let tail = &media[media.len() - expected.len()..];
    for (i, (g, e)) in tail.iter().zip(expected).enumerate() {
        assert!(
            g.kind == e.kind && g.data == e.data,
            "{who}: message {i} of {}: got {:?} at {} ms ({} bytes), expected {:?} at {} ms ({} bytes)",
            expected.len(),
            g.kind,
            g.ts,
            g.data.len(),
            e.kind,
            e.ts,
            e.data.len()
        );
        assert_eq!(
            g.ts,
            e.ts,
            "{who}: message {i} of {} ({:?}, {} bytes): timestamp",
            expected.len(),
            e.kind,
            e.data.len()
        );
    }
}

/// Position in `got` (media only) of the last message whose payload is `data`.
pub fn last_position(got: &[&Sent], data: &Bytes) -> usize {
    got.iter()
        .rposition(|s| s.data == *data)
        .expect("payload received")
}
