//! Socket plumbing: listeners, socket options, the vectored send, process limits, the
//! shard's epoll set for sockets read in batches ([`readiness`]), and the client side of
//! connections corecast makes: servers named in URLs ([`host`]) and TLS to them ([`tls`]).

pub mod host;
pub mod readiness;
pub mod tls;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Fails with `AddrInUse` when a listening socket, of this process or any other, serves
/// `addr` or an address overlapping it on the same port (a wildcard and a specific address,
/// a dual-stack `[::]` and IPv4): it binds a socket *without* SO_REUSEPORT, which the kernel
/// refuses next to any listener there, SO_REUSEPORT or not, and closes it at once.
/// SO_REUSEADDR lets the previous instance's connections (in TIME_WAIT, or draining) pass.
///
/// SO_REUSEPORT alone cannot tell: the kernel lets any socket of the same user with
/// SO_REUSEPORT join a listening group, so a second corecast would silently share the port.
pub fn probe_unserved(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())
}

/// Whether listeners on `a` and `b` take connections for the same destinations: the same
/// port (not 0, which picks a free one), and addresses that are equal or of which one is a
/// wildcard covering the other. `[::]` covers IPv4 too (Linux listens dual-stack unless
/// `net.ipv6.bindv6only` is set), and an IPv4-mapped address (`::ffff:a.b.c.d`) is its
/// IPv4 address.
pub fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    fn covers(wildcard: IpAddr, other: IpAddr) -> bool {
        match wildcard {
            IpAddr::V4(w) => w.is_unspecified() && other.is_ipv4(),
            IpAddr::V6(w) => w.is_unspecified(),
        }
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() == b.port() && a.port() != 0 && (x == y || covers(x, y) || covers(y, x))
}

/// The first listening TCP socket of another process (one whose inode is not in `ours`) on
/// `addr` or an address of its family overlapping it, read from this network namespace's
/// socket table (`/proc/net/tcp`, `/proc/net/tcp6`).
pub fn foreign_listener(addr: SocketAddr, ours: &[impl AsFd]) -> io::Result<Option<SocketAddr>> {
    let table = match addr {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let listeners = tcp_listeners(&std::fs::read_to_string(table)?);
    let ours = ours
        .iter()
        .map(|fd| inode(fd.as_fd()))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(listeners
        .into_iter()
        .find(|(other, ino)| overlaps(addr, *other) && !ours.contains(ino))
        .map(|(other, _)| other))
}

/// The listening sockets (state `0A`) of a `/proc/net/tcp` or `/proc/net/tcp6` table, with
/// their inodes. Lines that cannot be read are skipped.
fn tcp_listeners(table: &str) -> Vec<(SocketAddr, libc::ino_t)> {
    /// Address words are printed as the native integers of network-order bytes.
    fn word(hex: &str) -> Option<[u8; 4]> {
        u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
    }
    let row = |line: &str| {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" {
            return None;
        }
        let (ip, port) = local.split_once(':')?;
        let ip = match ip.len() {
            8 => IpAddr::from(word(ip)?),
            32 => {
                let mut bytes = [0u8; 16];
                for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                    chunk.copy_from_slice(&word(ip.get(8 * i..8 * i + 8)?)?);
                }
                IpAddr::from(bytes)
            }
            _ => return None,
        };
        let port = u16::from_str_radix(port, 16).ok()?;
        Some((SocketAddr::new(ip, port), inode.parse().ok()?))
    };
    table.lines().skip(1).filter_map(row).collect()
}

/// The inode of an open descriptor (for a socket, the one `/proc/net/tcp` lists).
fn inode(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<libc::ino_t> {
    // SAFETY: an all-zero stat is valid; fstat fills it for the open descriptor `fd`.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a struct we own, of the size fstat writes.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.st_ino)
}

/// Binds a listening TCP socket with SO_REUSEPORT, so that every shard can bind its own
/// socket on the same address and the kernel spreads connections over them.
pub fn reuseport_listener(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

/// Sends as much of `iov` as the kernel takes now, in one sendmsg(2), without blocking and
/// without SIGPIPE. `WouldBlock` means the socket buffer is full.
pub fn send_vectored(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid; the iovec pointer and length describe `iov`, whose
    // `IoSlice` elements are ABI-compatible with `struct iovec` on Unix, and which outlives
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` is initialized above and `fd` is an open socket owned by the caller.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sets TCP_NOTSENT_LOWAT: the kernel keeps at most this many unsent bytes queued, so a
/// slow receiver becomes visible to the relay early.
pub fn set_notsent_lowat(fd: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    set_int_opt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        bytes as i32,
    )
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is a plain int whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft limit of `resource` to its hard limit. Returns the new soft limit.
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t) -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit write/read a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

/// Checks that this process may create an io_uring instance (the kernel has io_uring and
/// `kernel.io_uring_disabled` allows it). glommio cannot run without one.
pub fn probe_io_uring() -> io::Result<()> {
    // struct io_uring_params is 120 bytes; zeroed means no flags and no features asked.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which is large enough.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the descriptor io_uring_setup just returned to us.
    unsafe { libc::close(fd as RawFd) };
    Ok(())
}

/// The CPUs this process may run on (its affinity mask, e.g. set by `taskset`), ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it and we pass its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Bytes written to a TCP socket that the kernel has not sent yet (SIOCOUTQNSD).
pub fn unsent_bytes(fd: RawFd) -> io::Result<usize> {
    /// SIOCOUTQNSD from linux/sockios.h: unsent bytes in the send queue.
    const SIOCOUTQNSD: libc::c_ulong = 0x894B;
    let mut unsent: libc::c_int = 0;
    // SAFETY: the ioctl writes one int through a valid pointer; `fd` is an open socket.
    if unsafe { libc::ioctl(fd, SIOCOUTQNSD, &mut unsent) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(unsent).unwrap_or(0))
}

/// The soft limit of `resource`.
pub fn soft_limit(resource: libc::__rlimit_resource_t) -> io::Result<u64> {
    // SAFETY: getrlimit writes a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(lim.rlim_cur)
    }
}

/// The process's resident memory, from `/proc/self/statm`.
pub fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable statm"))?;
    // SAFETY: sysconf only reads a system parameter.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages.saturating_mul(u64::try_from(page).unwrap_or(4096)))
}

/// The machine's physical memory, in bytes.
pub fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf only reads system parameters.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = usize::try_from(pages).ok()?;
    pages.checked_mul(usize::try_from(page).ok()?)
}

/// Duplicates a socket descriptor (close-on-exec), so that the socket can outlive the
/// glommio stream that owns `fd`: to hand the connection to another shard.
pub fn dup(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new descriptor we own.
    let fd = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Most bytes [`read_with`] reads at once.
pub const READ_WITH_BYTES: usize = 4096;

thread_local! {
    /// The buffer [`read_with`] reads into: one per thread (per shard), borrowed only within
    /// a poll, zeroed once.
    static READ_BUFFER: RefCell<Box<[u8; READ_WITH_BYTES]>> =
        RefCell::new(Box::new([0; READ_WITH_BYTES]));
}

/// Reads once from `stream`, into the thread's buffer, and hands what came (empty at the
/// end of the stream) to `take` within the poll that read it. A connection waiting for
/// input then holds no read buffer: a buffer in its future would be paid for the whole
/// wait (and rustc copies a future's buffers at each level of nesting), and one on the
/// stack would be zeroed at every poll (an RTMP player's input is polled at every wake-up
/// of its delivery). `take` must not read with `read_with` itself.
pub async fn read_with(
    stream: &mut (impl AsyncRead + Unpin),
    mut take: impl FnMut(&[u8]),
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_BUFFER.with(|buf| {
            let buf = &mut buf.borrow_mut()[..];
            let n = futures_lite::ready!(Pin::new(&mut *stream).poll_read(cx, buf))?;
            take(&buf[..n]);
            Poll::Ready(Ok(n))
        })
    })
    .await
}

/// One TCP stream read and written at once by two futures of one task (an RTMP player's
/// input and its delivery), on one descriptor. glommio keeps a readiness source per
/// direction, and each poll borrows the stream only while it runs (a shard is one thread,
/// so polls never overlap): reading and writing through `&Duplex` never conflict.
pub struct Duplex(RefCell<TcpStream>);

impl Duplex {
    /// Shares `stream` between a reader and a writer.
    pub fn new(stream: TcpStream) -> Self {
        Duplex(RefCell::new(stream))
    }
}

impl AsRawFd for &Duplex {
    fn as_raw_fd(&self) -> RawFd {
        self.0.borrow().as_raw_fd()
    }
}

impl AsyncRead for &Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for &Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn overlapping_listen_addresses() {
        let overlap = |a: &str, b: &str| overlaps(addr(a), addr(b)) && overlaps(addr(b), addr(a));
        assert!(overlap("127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(overlap("0.0.0.0:8080", "127.0.0.1:8080"));
        assert!(overlap("0.0.0.0:8080", "0.0.0.0:8080"));
        assert!(overlap("[::]:8080", "0.0.0.0:8080"), "dual-stack");
        assert!(overlap("[::]:8080", "192.0.2.1:8080"));
        assert!(overlap("[::]:8080", "[::1]:8080"));
        assert!(overlap("[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"));
        assert!(!overlap("127.0.0.1:8080", "127.0.0.1:8081"));
        assert!(!overlap("127.0.0.1:8080", "127.0.0.2:8080"));
        assert!(!overlap("0.0.0.0:8080", "[::1]:8080"));
        assert!(
            !overlap("127.0.0.1:0", "127.0.0.1:0"),
            "port 0 picks distinct ports"
        );
    }

    /// A table line as the kernel prints it on this machine.
    fn line(ip: IpAddr, port: u16, state: &str, inode: u64) -> String {
        let hex: String = match ip {
            IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => v6
                .octets()
                .chunks_exact(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect(),
        };
        format!(
            "   0: {hex}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 \
             00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0"
        )
    }

    #[test]
    fn reads_listeners_of_the_socket_tables() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                      retrnsmt   uid  timeout inode";
        let table = [
            header.to_string(),
            line("127.0.0.1".parse().unwrap(), 1935, "0A", 11),
            line("192.0.2.1".parse().unwrap(), 8080, "01", 12),
            line("2001:db8::1".parse().unwrap(), 8080, "0A", 13),
            "garbage".to_string(),
        ]
        .join("\n");
        assert_eq!(
            tcp_listeners(&table),
            vec![
                (addr("127.0.0.1:1935"), 11),
                (addr("[2001:db8::1]:8080"), 13)
            ]
        );
    }

    #[test]
    fn another_listener_on_the_address_is_found_and_ours_are_not() {
        let ours = reuseport_listener(addr("127.0.0.1:0"), 8).unwrap();
        let bound = ours.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(foreign_listener(bound, &[&ours]).unwrap(), None);
        // A second process would be another socket in the same SO_REUSEPORT group.
        let other = reuseport_listener(bound, 8).unwrap();
        assert_eq!(foreign_listener(bound, &[&ours]).unwrap(), Some(bound));
        assert_eq!(foreign_listener(bound, &[&ours, &other]).unwrap(), None);
        let wildcard = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), bound.port());
        assert_eq!(foreign_listener(wildcard, &[&ours]).unwrap(), Some(bound));
        // The probe sees both kinds: a listener of any process on the address.
        assert_eq!(
            probe_unserved(bound).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        drop((ours, other));
        probe_unserved(bound).unwrap();
    }

    #[test]
    fn the_probe_sees_listeners_on_overlapping_addresses() {
        let in_use = |addr: SocketAddr| {
            probe_unserved(addr).is_err_and(|e| e.kind() == io::ErrorKind::AddrInUse)
        };
        let on = |ip: [u8; 4], port| SocketAddr::from((ip, port));
        let specific = reuseport_listener(addr("127.0.0.1:0"), 8).unwrap();
        let port = specific.local_addr().unwrap().as_socket().unwrap().port();
        assert!(
            in_use(on([0, 0, 0, 0], port)),
            "a wildcard over a specific address"
        );
        let wildcard = reuseport_listener(addr("0.0.0.0:0"), 8).unwrap();
        let port = wildcard.local_addr().unwrap().as_socket().unwrap().port();
        assert!(
            in_use(on([127, 0, 0, 1], port)),
            "a specific address under a wildcard"
        );
        let dual_stack =
            std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0");
        match reuseport_listener(addr("[::]:0"), 8) {
            Ok(any) if dual_stack => {
                let port = any.local_addr().unwrap().as_socket().unwrap().port();
                assert!(
                    in_use(on([127, 0, 0, 1], port)),
                    "IPv4 under a dual-stack [::]"
                );
                assert!(in_use(on([0, 0, 0, 0], port)));
            }
            _ => eprintln!("skipped the [::] case: no dual-stack IPv6 on this host"),
        }
    }
}
