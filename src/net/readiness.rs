//! Input readiness of many sockets through one epoll set per shard, taken once a tick.
//!
//! glommio reads a socket with a non-blocking `recv` and, when that does not fill the
//! buffer, arms an `IORING_OP_POLL_ADD` for the next read: one io_uring operation, its
//! completion and a wake of the reactor for every message. A publisher sends a message
//! every few milliseconds, so a shard with a thousand publishers paid that tens of
//! thousands of times a second, and the reactor slept and woke as often
//! (docs/BENCHMARKS.md, "Many channels on one box").
//!
//! Here a socket joins the shard's epoll set once, edge-triggered, for as long as its
//! [`Registration`] lives. One task per shard takes the ready list with a non-blocking
//! `epoll_wait` once every tick (`rtmp.input_poll_us`) and wakes the connections whose
//! sockets received something; each reads what arrived with one `recv`. A tick costs one
//! system call and one reactor wake whatever the number of messages in it; the price is
//! latency, up to one tick per message. The task runs only while some socket is registered.
//!
//! Edge-triggered readiness is kept as a flag per registration: the task sets it for every
//! reported socket, and a read clears it before its `recv`. A `recv` that fills less than
//! the buffer drained the socket (TCP hands over all it holds, up to the buffer), so the
//! read waits for the flag; anything that arrives afterwards is a new edge, reported at the
//! next tick. A stale flag costs one `recv` that finds nothing. The end of the input is the
//! exception: a FIN or a reset that came with the last data is reported with it, once, so
//! from then on the flag stays set and every read asks the socket.

use futures_lite::future;
use rustix::event::epoll;
use rustix::event::Timespec;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tracing::warn;

/// Most events taken by one `epoll_wait`; a full batch is followed by another at once.
const BATCH: usize = 256;

/// A shard's epoll set and its ticking task.
pub struct Readiness {
    inner: Rc<Inner>,
}

struct Inner {
    /// The set (none if it could not be made: registrations then fail, and their sockets
    /// are read through glommio).
    epoll: Option<OwnedFd>,
    /// One slot per registered socket; its key is the event's data.
    slots: RefCell<Slab<Slot>>,
    /// Time between two looks at the ready list.
    tick: Cell<Duration>,
    /// The ticking task runs (it ends when the last registration is dropped).
    running: Cell<bool>,
}

#[derive(Default)]
struct Slot {
    /// Input may be waiting: reported by epoll since the last read, or never read yet.
    ready: bool,
    /// The peer closed or reset: reported once, with the data before it, so every read
    /// from now on goes to the socket (which answers 0 or the error at once).
    hung_up: bool,
    /// The read waiting for input.
    waker: Option<Waker>,
}

impl Readiness {
    /// An empty set; its task starts with the first registration. The epoll descriptor is
    /// made now, so that the shard's descriptors do not change with its first publisher.
    pub fn new() -> Self {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .inspect_err(|err| {
                warn!("cannot make an epoll set: {err}; publishers are read through io_uring polls")
            })
            .ok();
        Readiness {
            inner: Rc::new(Inner {
                epoll,
                slots: RefCell::default(),
                tick: Cell::default(),
                running: Cell::default(),
            }),
        }
    }

    /// Registers the socket `fd` (the registration owns this descriptor: pass a duplicate,
    /// [`super::dup`], to keep using the socket through another) and starts the ticking
    /// task if it is not running; `tick` applies to every registration from now on. Must
    /// be called on the shard's executor.
    pub fn register(&self, fd: OwnedFd, tick: Duration) -> io::Result<Registration> {
        let inner = &self.inner;
        let epoll = inner
            .epoll
            .as_ref()
            .ok_or_else(|| io::Error::other("no epoll set"))?;
        let key = inner.slots.borrow_mut().insert(Slot {
            ready: true,
            ..Slot::default()
        });
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        if let Err(err) = epoll::add(epoll, &fd, epoll::EventData::new_u64(key as u64), flags) {
            inner.slots.borrow_mut().remove(key);
            return Err(err.into());
        }
        inner.tick.set(tick);
        if !inner.running.replace(true) {
            glommio::spawn_local(run(inner.clone())).detach();
        }
        Ok(Registration {
            inner: inner.clone(),
            key,
            fd,
        })
    }

    /// Sockets registered now.
    pub fn registered(&self) -> usize {
        self.inner.slots.borrow().len()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

/// A socket in its shard's epoll set: reads wait for the shard's tick instead of an
/// io_uring poll of their own. Dropping it takes the socket out of the set.
pub struct Registration {
    inner: Rc<Inner>,
    key: usize,
    fd: OwnedFd,
}

impl Registration {
    /// Reads what the socket holds, up to `buf.len()` bytes (0: the peer closed), waiting
    /// for a tick that reports input when it holds nothing.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            {
                let mut slots = self.inner.slots.borrow_mut();
                let slot = &mut slots[self.key];
                if !slot.ready {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                slot.ready = slot.hung_up;
            }
            match rustix::net::recv(&self.fd, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    if n == buf.len() && n > 0 {
                        // Perhaps more behind it: the next read tries without waiting.
                        self.inner.slots.borrow_mut()[self.key].ready = true;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(rustix::io::Errno::AGAIN) => {}
                Err(rustix::io::Errno::INTR) => {
                    self.inner.slots.borrow_mut()[self.key].ready = true;
                }
                Err(err) => return Poll::Ready(Err(err.into())),
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(epoll) = &self.inner.epoll {
            // Closing the duplicate below would also take it out of the set; deleting it
            // first keeps the set exact even if another descriptor of the socket lives on.
            let _ = epoll::delete(epoll, &self.fd);
        }
        self.inner.slots.borrow_mut().remove(self.key);
    }
}

/// The ticking task: takes the ready list and wakes its readers, then sleeps a tick (or
/// goes on at once after a full batch), until no socket is registered.
async fn run(inner: Rc<Inner>) {
    let mut events = Vec::with_capacity(BATCH);
    // Registrations (which start this task) need the set.
    let epoll = inner.epoll.as_ref();
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    while let Some(epoll) = epoll.filter(|_| !inner.slots.borrow().is_empty()) {
        events.clear();
        match epoll::wait(
            epoll.as_fd(),
            rustix::buffer::spare_capacity(&mut events),
            Some(&now),
        ) {
            Ok(_) => wake(
                &inner,
                events
                    .iter()
                    .map(|event| (event.data.u64() as usize, hangs_up(event.flags))),
            ),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                // Not expected of a valid epoll descriptor; readers then look for themselves
                // at every tick rather than stall.
                warn!("epoll_wait failed: {err}; reading every registered socket");
                let keys: Vec<_> = inner
                    .slots
                    .borrow()
                    .iter()
                    .map(|(key, _)| (key, true))
                    .collect();
                wake(&inner, keys.into_iter());
            }
        }
        if events.len() == BATCH {
            future::yield_now().await;
        } else {
            glommio::timer::sleep(inner.tick.get()).await;
        }
    }
    inner.running.set(false);
}

/// Whether an event reports the end of the input (a FIN, a reset, an error): edge-triggered,
/// it is reported once, perhaps with the last data, so it must not be forgotten when a read
/// takes that data.
fn hangs_up(flags: epoll::EventFlags) -> bool {
    flags.intersects(epoll::EventFlags::RDHUP | epoll::EventFlags::HUP | epoll::EventFlags::ERR)
}

/// Marks the sockets of `events` (key, hung up) ready and wakes their readers.
fn wake(inner: &Inner, events: impl Iterator<Item = (usize, bool)>) {
    let mut slots = inner.slots.borrow_mut();
    for (key, hung_up) in events {
        // Events are handled before any registration can go (no await in between), so a
        // key always names the socket it was registered for.
        if let Some(slot) = slots.get_mut(key) {
            slot.ready = true;
            slot.hung_up |= hung_up;
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests;
