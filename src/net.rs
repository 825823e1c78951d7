//! Socket plumbing: listeners, socket options, the vectored send, process limits.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

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
