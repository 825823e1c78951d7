//! The cheap viewers' reads: one thread, one epoll set, for every viewer. A viewer costs a
//! socket, an epoll entry and a few atomics. Two ways to read ([`Reads`]):
//! - like a player (the default): the socket wakes the thread on every arrival, and each
//!   wake-up reads what is queued into a buffer of [`PLAYER_READ_BYTES`], as ffmpeg's and
//!   browsers' players do, so the server sees the wake-ups and acknowledgements real
//!   audiences cause;
//! - kernel discard: `recv(MSG_TRUNC)` makes the kernel drop TCP data instead of copying it
//!   to user space (tcp(7)), and `SO_RCVLOWAT` wakes the thread only once that many bytes
//!   are queued, so the generator makes fewer, larger reads than the server makes sends.
//!   Cheaper for the generator; kinder to the server than real players are.
//!
//! Viewers are connected (and, for RTMP, taken through the handshake and play request) on
//! the glommio executor, then handed over here as a duplicated descriptor.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How cheap viewers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Like a player: woken on every arrival, one read of up to [`PLAYER_READ_BYTES`] into
    /// a buffer per wake-up.
    Player,
    /// Kernel discard: woken once `rcvlowat` bytes are queued, the data dropped by the
    /// kernel (`MSG_TRUNC`), nothing copied.
    KernelDiscard {
        /// `SO_RCVLOWAT`, bytes.
        rcvlowat: u32,
    },
}

impl Reads {
    /// Bytes a viewer may have received without being told yet (the kernel holds them until
    /// `SO_RCVLOWAT` is reached): slack for delivery checks.
    pub fn slack(self) -> u32 {
        match self {
            Reads::Player => 0,
            Reads::KernelDiscard { rcvlowat } => rcvlowat,
        }
    }

    /// The `SO_RCVLOWAT` of viewer sockets.
    fn rcvlowat(self) -> u32 {
        match self {
            Reads::Player => 1,
            Reads::KernelDiscard { rcvlowat } => rcvlowat.max(1),
        }
    }
}

/// How viewers read, as the command line and scenarios name it (with `rcvlowat`, it makes a
/// [`Reads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// Like a player (see [`Reads::Player`]).
    #[default]
    Player,
    /// Kernel discard (see [`Reads::KernelDiscard`]).
    KernelDiscard,
}

impl ReadMode {
    /// The reads of this mode; `rcvlowat` is used by kernel discard only.
    pub fn reads(self, rcvlowat: u32) -> Reads {
        match self {
            ReadMode::Player => Reads::Player,
            ReadMode::KernelDiscard => Reads::KernelDiscard { rcvlowat },
        }
    }
}

/// `SO_RCVLOWAT` of kernel-discard viewers unless told otherwise, bytes.
pub const DEFAULT_RCVLOWAT: u32 = 32 * 1024;

/// The read buffer of a player-like viewer: ffmpeg's I/O buffer (`IO_BUFFER_SIZE`).
pub const PLAYER_READ_BYTES: usize = 32 * 1024;

/// One viewer's counters, written by the drain thread and read by the run's controller.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes received.
    pub bytes: AtomicU64,
    /// The connection ended (end of stream, reset or error).
    pub ended: AtomicBool,
}

impl Counters {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts `n` more bytes.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the connection ended.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Whether the connection ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

enum Command {
    Add(u64, OwnedFd, Arc<Counters>),
    Remove(u64),
    Stop,
}

struct Shared {
    commands: Mutex<Vec<Command>>,
    wake: OwnedFd,
}

/// Handle of the drain thread; dropping it stops the thread and closes every connection.
pub struct Drainer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    next_id: u64,
    reads: Reads,
}

/// A viewer registered with the drain thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrainId(u64);

const WAKE: u64 = u64::MAX;

impl Drainer {
    /// Starts the drain thread, pinned to `cpu` if given, reading every viewer as `reads`
    /// says.
    pub fn start(cpu: Option<usize>, reads: Reads) -> io::Result<Drainer> {
        // SAFETY: eventfd and epoll_create1 take no pointers; results are checked.
        let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `wake` is a new descriptor owned by nobody else.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        // SAFETY: as above.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            wake.as_raw_fd(),
            WAKE,
        )?;
        let shared = Arc::new(Shared {
            commands: Mutex::new(Vec::new()),
            wake,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("corecast-load-drain".into())
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin(cpu);
                    }
                    run(&epoll, &shared, reads);
                })?
        };
        Ok(Drainer {
            shared,
            thread: Some(thread),
            next_id: 0,
            reads,
        })
    }

    /// Hands a connected, playing socket to the drain thread (it takes a duplicate; the
    /// caller may drop its own handle). Bytes and the end go to `counters`.
    pub fn add(&mut self, socket: &impl AsRawFd, counters: Arc<Counters>) -> io::Result<DrainId> {
        let fd = socket.as_raw_fd();
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller keeps open for the call.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is a new descriptor owned by nobody else.
        let dup = unsafe { OwnedFd::from_raw_fd(dup) };
        set_int(
            dup.as_raw_fd(),
            libc::SO_RCVLOWAT,
            self.reads.rcvlowat() as libc::c_int,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        self.send(Command::Add(id, dup, counters));
        Ok(DrainId(id))
    }

    /// Closes a viewer's connection (a viewer leaving).
    pub fn remove(&self, id: DrainId) {
        self.send(Command::Remove(id.0));
    }

    fn send(&self, command: Command) {
        if let Ok(mut commands) = self.shared.commands.lock() {
            commands.push(command);
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd. A full counter (EAGAIN)
        // still leaves the thread woken, so the result needs no handling.
        unsafe { libc::write(self.shared.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(epoll: &OwnedFd, shared: &Shared, reads: Reads) {
    let mut viewers: HashMap<u64, (OwnedFd, Arc<Counters>)> = HashMap::new();
    // One buffer for every player-like read: what is read is counted, not kept.
    let mut buffer = vec![0u8; PLAYER_READ_BYTES];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        // SAFETY: `events` is a live buffer of `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                1000,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for event in &events[..n as usize] {
            let id = event.u64;
            if id == WAKE {
                let mut counter = [0u8; 8];
                // SAFETY: reads 8 bytes into a live buffer.
                unsafe { libc::read(shared.wake.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
                let commands = match shared.commands.lock() {
                    Ok(mut c) => std::mem::take(&mut *c),
                    Err(_) => return,
                };
                for command in commands {
                    match command {
                        Command::Add(id, fd, counters) => {
                            if ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), id)
                                .is_err()
                            {
                                counters.end();
                                continue;
                            }
                            viewers.insert(id, (fd, counters));
                        }
                        // Closing the descriptor takes it out of the epoll set.
                        Command::Remove(id) => drop(viewers.remove(&id)),
                        Command::Stop => return,
                    }
                }
                continue;
            }
            let Some((fd, counters)) = viewers.get(&id) else {
                continue;
            };
            let got = match reads {
                // One read per wake-up, as a player's event loop makes; what is left wakes
                // the thread again (epoll is level-triggered).
                // SAFETY: `buffer` is a live buffer of `buffer.len()` bytes.
                Reads::Player => unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        libc::MSG_DONTWAIT,
                    )
                },
                // Discard everything queued, without copying it (MSG_TRUNC on TCP).
                // SAFETY: with MSG_TRUNC the kernel writes nothing to the (null) buffer.
                Reads::KernelDiscard { .. } => unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        std::ptr::null_mut(),
                        1 << 30,
                        libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    )
                },
            };
            let ended = match got {
                0 => true,
                n if n > 0 => {
                    counters.add(n as u64);
                    false
                }
                _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
            };
            if ended {
                counters.end();
                viewers.remove(&id);
            }
        }
    }
}

fn ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: data,
    };
    // SAFETY: `event` is a live epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_int(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn wait_for(mut what: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn counts_bytes_and_ends() {
        for reads in [Reads::Player, Reads::KernelDiscard { rcvlowat: 1 }] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let mut drainer = Drainer::start(None, reads).unwrap();
            let counters = Arc::new(Counters::default());
            drainer.add(&client, counters.clone()).unwrap();
            drop(client);
            server.write_all(&[7u8; 100_000]).unwrap();
            wait_for(|| counters.bytes() == 100_000);
            assert!(!counters.ended(), "{reads:?}");
            drop(server);
            wait_for(|| counters.ended());
        }
    }

    #[test]
    fn players_are_woken_by_every_arrival() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut drainer = Drainer::start(None, Reads::Player).unwrap();
        let counters = Arc::new(Counters::default());
        drainer.add(&client, counters.clone()).unwrap();
        // One small write is read at once; a kernel-discard viewer would wait for 32 KiB.
        server.write_all(&[1u8; 10]).unwrap();
        wait_for(|| counters.bytes() == 10);
    }

    #[test]
    fn removed_viewers_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut drainer = Drainer::start(None, Reads::Player).unwrap();
        let counters = Arc::new(Counters::default());
        let id = drainer.add(&client, counters.clone()).unwrap();
        drop(client);
        drainer.remove(id);
        // The peer sees the close: writes eventually fail.
        wait_for(|| server.write_all(&[0u8; 65536]).is_err());
    }
}
