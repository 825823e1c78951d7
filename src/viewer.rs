//! Delivery of a feed to one viewer socket: the per-viewer hot path.
//!
//! Each wake-up gathers everything pending for the viewer (its cursor) and hands it to the
//! kernel in one vectored `sendmsg`. The bytes are the stream's shared tags: nothing is copied
//! or serialized per viewer. The slow-viewer policy runs before every send (see
//! [`crate::hub::cursor`]).

use crate::flv;
use crate::hub::cursor::{Cursor, Verdict};
use crate::hub::feed::{Feed, FeedState};
use crate::media::now_ns;
use crate::net;
use crate::shard::Shard;
use crate::stats;
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// Most slices in one sendmsg(2) (Linux accepts up to 1024).
pub const MAX_IOV: usize = 256;

/// How a delivery ended.
#[derive(Debug)]
pub enum Ending {
    /// The stream ended before anything was sent; the viewer got nothing, not even `head`.
    Unavailable,
    /// The stream ended and the viewer received all of it.
    StreamEnded,
    /// The viewer stayed behind too long (slow-viewer policy).
    TooSlow,
    /// The socket failed (the viewer went away).
    Io(io::Error),
}

/// Sends `head` (the response head), the FLV file header, the stream's headers, then the
/// stream from its newest keyframe, then live units, until the stream ends or the viewer
/// fails.
pub async fn deliver(
    shard: &Shard,
    feed: &Rc<RefCell<Feed>>,
    stream: &mut TcpStream,
    mut head: Vec<Bytes>,
) -> Ending {
    if let Err(err) = net::set_notsent_lowat(stream, shard.config.viewer.notsent_lowat_bytes) {
        return Ending::Io(err);
    }
    let policy = shard.policy();
    let max_bytes = shard.config.viewer.max_send_bytes;
    let stall_limit = Duration::from_millis(shard.config.viewer.disconnect_after_ms);
    let fd = stream.as_raw_fd();
    let mut cursor: Option<Cursor> = None;
    loop {
        // Wait for the replica's snapshot before picking a start point.
        let Some(cur) = cursor.as_mut() else {
            wait_ready(feed).await;
            let f = feed.borrow();
            if f.state == FeedState::Ended && f.ring.is_empty() {
                return Ending::Unavailable;
            }
            let mut start = std::mem::take(&mut head);
            start.push(Bytes::from_static(flv::file_header(
                f.has_audio,
                f.has_video,
            )));
            let mut c = Cursor::at_gop_start(start, &f.ring);
            for tag in f.headers.tags_at(f.dts_at(c.position())) {
                c.push_pending(tag);
            }
            cursor = Some(c);
            continue;
        };
        let step = {
            let f = feed.borrow();
            let skipped = cur.skipped();
            if cur.check(&f.ring, &policy, now_ns()) == Verdict::Disconnect {
                stats::add(&shard.stats.frames_skipped, cur.skipped() - skipped);
                return Ending::TooSlow;
            }
            if cur.skipped() != skipped {
                stats::add(&shard.stats.frames_skipped, cur.skipped() - skipped);
                // Whatever headers were jumped over, the decoder gets the current ones.
                for tag in f.headers.tags_at(f.dts_at(cur.position())) {
                    cur.push_pending(tag);
                }
            }
            if cur.caught_up(&f.ring) {
                if f.state == FeedState::Ended {
                    return Ending::StreamEnded;
                }
                Step::Wait
            } else {
                let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(32);
                cur.gather(&f.ring, &mut iov, max_bytes, MAX_IOV);
                match net::send_vectored(fd, &iov) {
                    Ok(n) => {
                        drop(iov);
                        cur.advance(&f.ring, n);
                        stats::add(&shard.stats.flv_bytes_out, n as u64);
                        stats::inc(&shard.stats.flv_sends);
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
                wait_for_data(feed, pos).await;
            }
            Step::Full(piece) => {
                // The socket is full. Wait until it takes bytes again, sending the first
                // pending piece through glommio (which parks until writable).
                let Some(piece) = piece else { continue };
                match crate::util::timeout(stall_limit, stream.write(&piece)).await {
                    Some(Ok(n)) => {
                        let f = feed.borrow();
                        cur.advance(&f.ring, n);
                        stats::add(&shard.stats.flv_bytes_out, n as u64);
                        stats::inc(&shard.stats.flv_sends);
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

/// Resolves once a replica feed has its snapshot (or ended).
async fn wait_ready(feed: &Rc<RefCell<Feed>>) {
    poll_fn(|cx| {
        let mut f = feed.borrow_mut();
        if f.state == FeedState::Syncing {
            f.register(cx.waker());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

/// Resolves once the feed holds data past `pos`, or changed state.
async fn wait_for_data(feed: &Rc<RefCell<Feed>>, pos: u64) {
    poll_fn(|cx| {
        let mut f = feed.borrow_mut();
        if f.ring.end() > pos || f.state == FeedState::Ended {
            Poll::Ready(())
        } else {
            f.register(cx.waker());
            Poll::Pending
        }
    })
    .await
}
