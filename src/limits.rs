//! Admission limits shared by every shard: connections (in total, per shard, per client
//! address) and viewers per stream. A connection over a limit is closed as soon as it is
//! accepted and counted; a viewer over its stream's limit is refused like a missing stream.
//!
//! A [`Ticket`] stands for one admitted connection and gives its place back when dropped, on
//! whichever shard the connection ends (publishers handed to another shard carry theirs).

use crate::hub::StreamKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `limits.max_connections` connections are open.
    #[error("too many connections")]
    Total,
    /// `limits.max_connections_per_shard` connections are open on this shard.
    #[error("too many connections on this shard")]
    Shard,
    /// `limits.max_connections_per_ip` connections are open from this address.
    #[error("too many connections from this address")]
    Address,
}

/// The limits (0 = none) and the counts they apply to.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_shard: usize,
    max_per_ip: usize,
    exempt_loopback: bool,
    max_viewers_per_stream: usize,
    total: AtomicUsize,
    per_shard: Box<[AtomicUsize]>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    viewers: Mutex<HashMap<StreamKey, usize>>,
}

/// Limits of [`Admission::new`]; 0 means none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Connections at once, all shards.
    pub total: usize,
    /// Connections at once on one shard.
    pub per_shard: usize,
    /// Connections at once from one address.
    pub per_ip: usize,
    /// Loopback addresses are not subject to `per_ip`.
    pub exempt_loopback: bool,
    /// Viewers of one stream at once, all shards and protocols.
    pub viewers_per_stream: usize,
}

impl Admission {
    /// Limits for `shards` shards.
    pub fn new(shards: usize, caps: Caps) -> Self {
        Admission {
            max_total: caps.total,
            max_per_shard: caps.per_shard,
            max_per_ip: caps.per_ip,
            exempt_loopback: caps.exempt_loopback,
            max_viewers_per_stream: caps.viewers_per_stream,
            total: AtomicUsize::new(0),
            per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            per_ip: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a connection from `ip` accepted by `shard`, or says which limit it hits.
    pub fn admit(self: &Arc<Self>, shard: usize, ip: IpAddr) -> Result<Ticket, Refused> {
        let shard = shard.min(self.per_shard.len() - 1);
        if !take(&self.total, self.max_total) {
            return Err(Refused::Total);
        }
        if !take(&self.per_shard[shard], self.max_per_shard) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Shard);
        }
        let counted_ip = !(self.exempt_loopback && ip.is_loopback());
        if counted_ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if self.max_per_ip > 0 && *n >= self.max_per_ip {
                drop(per_ip);
                self.per_shard[shard].fetch_sub(1, Ordering::Relaxed);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refused::Address);
            }
            *n += 1;
        }
        Ok(Ticket {
            admission: self.clone(),
            shard,
            ip: counted_ip.then_some(ip),
        })
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections open now on `shard`.
    pub fn shard_connections(&self, shard: usize) -> usize {
        self.per_shard
            .get(shard)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Takes a viewer place on `key`; false when the stream has its maximum.
    pub fn add_viewer(&self, key: &StreamKey) -> bool {
        let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let n = viewers.entry(key.clone()).or_insert(0);
        if self.max_viewers_per_stream > 0 && *n >= self.max_viewers_per_stream {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives a viewer place back.
    pub fn remove_viewer(&self, key: &StreamKey) {
        let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = viewers.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                viewers.remove(key);
            }
        }
    }
}

/// Increments `count` unless it reached `max` (0 = no maximum).
fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (max == 0 || n < max).then_some(n + 1)
        })
        .is_ok()
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    shard: usize,
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.admission;
        a.total.fetch_sub(1, Ordering::Relaxed);
        a.per_shard[self.shard].fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut per_ip = a.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn each_limit_refuses_and_dropping_frees() {
        let a = Arc::new(Admission::new(
            2,
            Caps {
                total: 4,
                per_shard: 3,
                per_ip: 2,
                exempt_loopback: true,
                viewers_per_stream: 0,
            },
        ));
        let t1 = a.admit(0, ip(1)).unwrap();
        let _t2 = a.admit(0, ip(1)).unwrap();
        assert_eq!(a.admit(1, ip(1)).unwrap_err(), Refused::Address);
        let _t3 = a.admit(0, ip(2)).unwrap();
        assert_eq!(a.admit(0, ip(3)).unwrap_err(), Refused::Shard);
        let _t4 = a.admit(1, ip(3)).unwrap();
        assert_eq!(a.admit(1, ip(4)).unwrap_err(), Refused::Total);
        assert_eq!(a.connections(), 4);
        drop(t1);
        assert_eq!(a.connections(), 3);
        // The freed place is usable again, by the same address too.
        let _t5 = a.admit(1, ip(1)).unwrap();
        assert_eq!(a.per_ip.lock().unwrap().get(&ip(1)), Some(&2));
    }

    #[test]
    fn loopback_is_exempt_from_the_address_limit_when_asked() {
        let caps = Caps {
            per_ip: 1,
            exempt_loopback: true,
            ..Caps::default()
        };
        let a = Arc::new(Admission::new(1, caps));
        let local = IpAddr::from([127, 0, 0, 1]);
        let held: Vec<_> = (0..10).map(|_| a.admit(0, local).unwrap()).collect();
        assert_eq!(a.connections(), 10);
        drop(held);
        assert_eq!(a.connections(), 0);
        let strict = Arc::new(Admission::new(
            1,
            Caps {
                exempt_loopback: false,
                ..caps
            },
        ));
        let _one = strict.admit(0, local).unwrap();
        assert_eq!(strict.admit(0, local).unwrap_err(), Refused::Address);
    }

    #[test]
    fn viewers_per_stream() {
        let a = Admission::new(
            1,
            Caps {
                viewers_per_stream: 2,
                ..Caps::default()
            },
        );
        let key = crate::hub::stream_key("live", "a");
        let other = crate::hub::stream_key("live", "b");
        assert!(a.add_viewer(&key) && a.add_viewer(&key));
        assert!(!a.add_viewer(&key));
        assert!(a.add_viewer(&other));
        a.remove_viewer(&key);
        assert!(a.add_viewer(&key));
        a.remove_viewer(&other);
        assert!(!a.viewers.lock().unwrap().contains_key(&other));
    }
}
