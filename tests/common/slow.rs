//! A reader slower than the stream it reads: what the slow-viewer policy and the write
//! deadlines are tested with.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// Reads up to `chunk` bytes every `every`.
pub struct SlowReader {
    pub chunk: usize,
    pub every: Duration,
}

impl SlowReader {
    /// Reads at this pace until the connection ends (a read returns 0 bytes or fails) or
    /// `limit` passes; how long it took to end, `None` if it was still open.
    pub fn until_closed(&self, stream: impl Read, limit: Duration) -> Option<Duration> {
        self.until(stream, limit, |read| matches!(read, Ok(0) | Err(_)))
    }

    /// Reads at this pace until `ended` (which sees each read's result; EINTR is retried
    /// unseen) says the connection ended, or `limit` passes; how long it took to end, `None`
    /// if it had not.
    pub fn until(
        &self,
        mut stream: impl Read,
        limit: Duration,
        mut ended: impl FnMut(&std::io::Result<usize>) -> bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        let mut buf = vec![0u8; self.chunk];
        while started.elapsed() < limit {
            // The pace under test: slower than the server sends.
            std::thread::sleep(self.every);
            let read = stream.read(&mut buf);
            if matches!(&read, Err(e) if e.kind() == ErrorKind::Interrupted) {
                continue;
            }
            if ended(&read) {
                return Some(started.elapsed());
            }
        }
        None
    }
}
