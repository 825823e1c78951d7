//! Delivery of a feed to one viewer socket: the per-viewer hot path, shared by HTTP-FLV and
//! RTMP play (the ring is the same; only the serialization read from each unit differs).
//!
//! Each wake-up gathers everything pending for the viewer (its cursor) and hands it to the
//! kernel in one vectored `sendmsg`. The bytes are the stream's shared serializations:
//! nothing is copied or serialized per viewer. The slow-viewer policy runs before every send
//! (see [`crate::hub::cursor`]).

use crate::flv;
use crate::hub::cursor::{Cursor, Verdict};
use crate::hub::feed::{Feed, FeedState};
use crate::media::{now_ns, Format, Tracks};
use crate::metrics::Stage;
use crate::net;
use crate::shard::Shard;
use crate::stats;
use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::task::{Poll, Waker};
use std::time::Duration;
use tracing::{debug, info};

/// Most slices in one sendmsg(2) (Linux accepts up to 1024).
pub const MAX_IOV: usize = 256;

/// How a delivery ended.
#[derive(Debug)]
pub enum Ending {
    /// The stream ended before anything was sent; the viewer got nothing, not even `head`.
    Unavailable,
    /// The stream ended and the viewer received all of it.
    StreamEnded,
    /// The viewer stopped playing or went away, or its [`Outbox`] overflowed.
    Stopped,
    /// The viewer stayed behind too long (slow-viewer policy).
    TooSlow,
    /// The socket failed (the viewer went away).
    Io(io::Error),
}

impl Ending {
    /// Counts and logs how a viewer's delivery ended. Called inside the connection's span
    /// ([`crate::logging::connection_span`]), which gives the line its context.
    pub fn record(&self, shard: &Shard) {
        const ACTION: &str = "play-stop";
        match self {
            Ending::Unavailable => {
                debug!(
                    action = ACTION,
                    reason = "unavailable",
                    "stream ended before start"
                )
            }
            Ending::StreamEnded => {
                stats::inc(&shard.stats.viewers_ended_with_stream);
                debug!(action = ACTION, reason = "stream-ended", "stream ended");
            }
            Ending::Stopped => {
                stats::inc(&shard.stats.viewers_left);
                debug!(action = ACTION, reason = "stopped", "viewer stopped");
            }
            Ending::TooSlow => {
                stats::inc(&shard.stats.viewers_disconnected_slow);
                info!(
                    action = ACTION,
                    reason = "too-slow",
                    "viewer too slow: disconnected"
                );
            }
            Ending::Io(err) => {
                stats::inc(&shard.stats.viewers_left);
                debug!(action = ACTION, reason = "gone", "viewer gone: {err}");
            }
        }
    }
}

/// Most bytes an [`Outbox`] holds. A viewer whose own requests produce more answers than this
/// while its socket is full is not reading them: the outbox closes and the viewer is
/// disconnected.
pub const MAX_OUTBOX_BYTES: usize = 256 * 1024;

/// Bytes a viewer's own protocol session must send (RTMP control messages), queued by the
/// task that reads the viewer's input. They go out between shared units, never inside one.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Bytes to send, in order.
    queue: Vec<Bytes>,
    /// Sum of the lengths in `queue` (bounded by [`MAX_OUTBOX_BYTES`]).
    bytes: usize,
    /// The delivery task, when it waits.
    waker: Option<Waker>,
    /// The viewer stopped playing: delivery ends.
    closed: bool,
}

impl Outbox {
    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues bytes and wakes the delivery. Past [`MAX_OUTBOX_BYTES`] the outbox closes
    /// instead (the delivery ends) and false is returned.
    pub fn push(&mut self, bytes: Bytes) -> bool {
        if self.bytes + bytes.len() > MAX_OUTBOX_BYTES {
            self.closed = true;
        } else {
            self.bytes += bytes.len();
            self.queue.push(bytes);
        }
        self.wake();
        !self.closed
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn ready(&mut self, waker: &Waker) -> bool {
        if self.closed || !self.queue.is_empty() {
            return true;
        }
        self.waker = Some(waker.clone());
        false
    }
}

/// What to send to a viewer, and how.
pub struct Delivery<'a> {
    /// Serialization of the units.
    pub format: Format,
    /// Which tracks of a multitrack stream the viewer reads.
    pub tracks: Tracks,
    /// The RTMP message stream the viewer plays on
    /// ([`MEDIA_STREAM_ID`](crate::rtmp::chunk::MEDIA_STREAM_ID) for HTTP-FLV).
    pub stream_id: u32,
    /// Sent first (the HTTP response head; empty for RTMP, whose session answered already).
    pub head: Vec<Bytes>,
    /// The viewer's own control bytes, if its protocol has any.
    pub outbox: Option<&'a RefCell<Outbox>>,
}

/// Sends the head, the stream's headers, the stream from its newest keyframe, then live
/// units, until the stream ends, the viewer stops, or the viewer fails. `stream` is the
/// viewer's socket (sends go to its descriptor directly; a full socket is waited on through
/// its `AsyncWrite`).
pub async fn deliver<S: AsyncWrite + AsRawFd + Unpin>(
    shard: &Shard,
    feed: &Rc<RefCell<Feed>>,
    stream: &mut S,
    delivery: Delivery<'_>,
) -> Ending {
    // The settings this viewer keeps: a reload applies to the viewers that start after it.
    let config = shard.config();
    if let Err(err) = net::set_notsent_lowat(&*stream, config.viewer.notsent_lowat_bytes) {
        return Ending::Io(err);
    }
    let Delivery {
        format,
        tracks,
        stream_id,
        mut head,
        outbox,
    } = delivery;
    let (bytes_out, sends, relay) = accounting(shard, format);
    let chunk_size = config.rtmp.chunk_size as usize;
    let policy = shard.policy();
    let max_bytes = config.viewer.max_send_bytes;
    let stall_limit = Duration::from_millis(config.viewer.disconnect_after_ms);
    // Kept: the values, not a whole configuration a later reload replaces.
    drop(config);
    let fd = stream.as_raw_fd();
    let mut cursor: Option<Cursor> = None;
    // The wake-up of the feed this viewer is listed for (see `Feed::register`).
    let mut listed = None;
    loop {
        if let Some(outbox) = outbox {
            let mut o = outbox.borrow_mut();
            if o.closed {
                return Ending::Stopped;
            }
            if let Some(cur) = cursor.as_mut() {
                o.bytes = 0;
                for bytes in o.queue.drain(..) {
                    cur.push_pending(bytes);
                }
            }
        }
        // Wait for a replica's snapshot before picking a start point.
        let Some(cur) = cursor.as_mut() else {
            wait(feed, outbox, &mut listed, |f| f.state != FeedState::Syncing).await;
            let f = feed.borrow();
            if f.state == FeedState::Syncing {
                continue;
            }
            if f.state == FeedState::Ended && f.ring.is_empty() {
                return Ending::Unavailable;
            }
            let mut start = std::mem::take(&mut head);
            if format == Format::Flv {
                start.push(Bytes::from_static(flv::file_header(
                    f.has_audio,
                    f.has_video,
                )));
            }
            let mut c = Cursor::at_gop_start(format, start, &f.ring)
                .with_tracks(tracks)
                .with_stream_id(stream_id);
            // A viewer that waits for its first keyframe gets the headers current at that
            // keyframe (below), not those of now: the publisher's may still be arriving,
            // and sending both would repeat them.
            if !c.joining() {
                let dts = f.dts_at(c.position());
                for header in f.headers.at(dts, format, tracks, stream_id, chunk_size) {
                    c.push_pending(header);
                }
            }
            cursor = Some(c);
            continue;
        };
        let step = {
            let f = feed.borrow();
            let (skipped, passed, joining) = (cur.skipped(), cur.passed(), cur.joining());
            let verdict = cur.check(&f.ring, &policy, now_ns());
            stats::add(&shard.stats.frames_skipped, cur.skipped() - skipped);
            if verdict == Verdict::Disconnect {
                return Ending::TooSlow;
            }
            let joined = joining && !cur.joining();
            if joined || (!cur.joining() && cur.passed() != passed) {
                // Whatever headers were passed over (jumped over by a slow viewer), and
                // before a new viewer's first keyframe (once: whatever it waited through),
                // the decoder gets the current ones.
                let dts = f.dts_at(cur.position());
                for header in f.headers.at(dts, format, tracks, stream_id, chunk_size) {
                    cur.push_pending(header);
                }
            }
            if cur.caught_up(&f.ring) {
                if f.state == FeedState::Ended {
                    return Ending::StreamEnded;
                }
                Step::Wait
            } else {
                cur.stage_rewritten(&f.ring, max_bytes);
                let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(32);
                cur.gather(&f.ring, &mut iov, max_bytes, MAX_IOV);
                let lag_from = cur.oldest_pending_arrival(&f.ring);
                let sent = net::send_vectored(fd, &iov);
                let now = now_ns();
                // Sampled at every attempt, full sockets included, so stuck viewers count.
                if let Some(arrived) = lag_from {
                    shard.record(Stage::ViewerLag, now.saturating_sub(arrived));
                }
                match sent {
                    Ok(n) => {
                        drop(iov);
                        f.bytes_out.set(f.bytes_out.get() + n as u64);
                        cur.advance(&f.ring, n, |ingest| {
                            shard.record(relay, now.saturating_sub(ingest))
                        });
                        stats::add(bytes_out, n as u64);
                        stats::inc(sends);
                        Step::Sent
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        drop(iov);
                        Step::Full(cur.pin_first(&f.ring))
                    }
                    Err(err) => return Ending::Io(err),
                }
            }
        };
        match step {
            Step::Sent => {
                // Let the other viewers and the publisher run between large catch-ups.
                if glommio::executor().need_preempt() {
                    glommio::executor().yield_task_queue_now().await;
                }
            }
            Step::Wait => {
                let pos = cur.position();
                wait(feed, outbox, &mut listed, |f| {
                    f.ring.end() > pos || f.state == FeedState::Ended
                })
                .await;
            }
            Step::Full(piece) => {
                // The socket is full. Wait until it takes bytes again, sending the first
                // pending piece through glommio (which parks until writable).
                let Some(piece) = piece else { continue };
                match crate::util::timeout(stall_limit, stream.write(&piece)).await {
                    Some(Ok(n)) => {
                        let f = feed.borrow();
                        f.bytes_out.set(f.bytes_out.get() + n as u64);
                        let now = now_ns();
                        cur.advance(&f.ring, n, |ingest| {
                            shard.record(relay, now.saturating_sub(ingest))
                        });
                        stats::add(bytes_out, n as u64);
                        stats::inc(sends);
                    }
                    Some(Err(err)) => return Ending::Io(err),
                    None => return Ending::TooSlow,
                }
            }
        }
    }
}

enum Step {
    Sent,
    Wait,
    Full(Option<Bytes>),
}

/// Byte and send counters and the relay-latency stage of a format.
fn accounting(shard: &Shard, format: Format) -> (&AtomicU64, &AtomicU64, Stage) {
    let s = &shard.stats;
    match format {
        Format::Flv => (&s.flv_bytes_out, &s.flv_sends, Stage::RelayFlv),
        Format::Rtmp => (&s.rtmp_bytes_out, &s.rtmp_sends, Stage::RelayRtmp),
    }
}

/// Resolves once `ready(feed)` holds or the outbox has something to say.
async fn wait(
    feed: &Rc<RefCell<Feed>>,
    outbox: Option<&RefCell<Outbox>>,
    listed: &mut Option<u64>,
    ready: impl Fn(&Feed) -> bool,
) {
    poll_fn(|cx| {
        if outbox.is_some_and(|o| o.borrow_mut().ready(cx.waker())) {
            return Poll::Ready(());
        }
        let mut f = feed.borrow_mut();
        if ready(&f) {
            Poll::Ready(())
        } else {
            f.register(cx.waker(), listed);
            Poll::Pending
        }
    })
    .await
}
