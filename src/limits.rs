//! Admission limits shared by every shard: connections (in total, per shard, per client
//! address) and viewers per stream. A connection over a limit is closed as soon as it is
//! accepted and counted; a viewer over its stream's limit is refused like a missing stream.
//!
//! A [`Ticket`] stands for one admitted connection and gives its place back when dropped, on
//! whichever shard the connection ends (publishers handed to another shard carry theirs).
//!
//! Connections count under their client's address as [`address_key`] groups it: an IPv4
//! address alone (also when a dual-stack listener sees it mapped into IPv6), an IPv6 address
//! by its prefix (one host usually holds a whole /64). Admin connections count like the
//! others, with a small headroom ([`ADMIN_HEADROOM`]) over the total and per-shard limits.

use crate::hub::StreamKey;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
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

/// How many admin connections may be open beyond `limits.max_connections` and
/// `limits.max_connections_per_shard`, so that operators can still scrape metrics and query
/// the API when the public listeners have filled the server. Admin connections count toward
/// those limits like any other; only past limit + this headroom are they refused (closed at
/// accept and counted, like public connections over their limit). The per-address limit
/// applies to them without headroom.
pub const ADMIN_HEADROOM: usize = 8;

/// The listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// RTMP or HTTP media: subject to the limits as they are.
    Public,
    /// The admin listener: the total and per-shard limits get [`ADMIN_HEADROOM`] more.
    Admin,
}

/// The limits (0 = none) and the counts they apply to.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_shard: usize,
    max_per_ip: usize,
    exempt_loopback: bool,
    /// IPv6 addresses count by this many leading bits (1..=128).
    ipv6_prefix_len: u8,
    max_viewers_per_stream: usize,
    total: AtomicUsize,
    per_shard: Box<[AtomicUsize]>,
    /// Open connections by [`address_key`]; an entry goes when its count reaches 0, so the
    /// map holds at most one entry per open connection.
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
    /// Loopback addresses (127.0.0.0/8, ::1, and 127.x mapped into IPv6) are not subject to
    /// `per_ip`.
    pub exempt_loopback: bool,
    /// IPv6 clients count under `per_ip` by their first this many bits; 0 (or more than 128)
    /// = each address alone, like 128.
    pub ipv6_prefix_len: u8,
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
            ipv6_prefix_len: match caps.ipv6_prefix_len {
                0 => 128,
                n => n.min(128),
            },
            max_viewers_per_stream: caps.viewers_per_stream,
            total: AtomicUsize::new(0),
            per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            per_ip: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a connection from `ip` accepted by `shard` on `listener`, or says which limit
    /// it hits.
    pub fn admit(
        self: &Arc<Self>,
        shard: usize,
        ip: IpAddr,
        listener: Listener,
    ) -> Result<Ticket, Refused> {
        let shard = shard.min(self.per_shard.len() - 1);
        let headroom = match listener {
            Listener::Public => 0,
            Listener::Admin => ADMIN_HEADROOM,
        };
        // 0 = no limit stays no limit.
        let with_headroom = |max: usize| match max {
            0 => 0,
            max => max.saturating_add(headroom),
        };
        if !take(&self.total, with_headroom(self.max_total)) {
            return Err(Refused::Total);
        }
        if !take(&self.per_shard[shard], with_headroom(self.max_per_shard)) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Shard);
        }
        let key = address_key(ip, self.ipv6_prefix_len);
        let counted_ip = !(self.exempt_loopback && ip.to_canonical().is_loopback());
        if counted_ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(key).or_insert(0);
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
            key: counted_ip.then_some(key),
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

/// The address a connection from `ip` counts under for the per-address limit: an IPv4
/// address alone (/32), also when it arrives mapped into IPv6 (`::ffff:a.b.c.d`, as a
/// dual-stack `[::]` listener sees IPv4 clients); an IPv6 address by its first
/// `ipv6_prefix_len` bits (the rest zeroed; 128 = the address alone), since one host or
/// subscriber commonly holds a whole /64 and can pick a fresh address per connection.
pub fn address_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            // A shift by 128 (prefix 0) would overflow: that prefix keeps no bits.
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
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
    /// The [`address_key`] counted, unless the address is exempt.
    key: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.admission;
        a.total.fetch_sub(1, Ordering::Relaxed);
        a.per_shard[self.shard].fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = self.key {
            let mut per_ip = a.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&key);
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
                ipv6_prefix_len: 64,
                viewers_per_stream: 0,
            },
        ));
        let t1 = a.admit(0, ip(1), Listener::Public).unwrap();
        let _t2 = a.admit(0, ip(1), Listener::Public).unwrap();
        assert_eq!(
            a.admit(1, ip(1), Listener::Public).unwrap_err(),
            Refused::Address
        );
        let _t3 = a.admit(0, ip(2), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, ip(3), Listener::Public).unwrap_err(),
            Refused::Shard
        );
        let _t4 = a.admit(1, ip(3), Listener::Public).unwrap();
        assert_eq!(
            a.admit(1, ip(4), Listener::Public).unwrap_err(),
            Refused::Total
        );
        assert_eq!(a.connections(), 4);
        drop(t1);
        assert_eq!(a.connections(), 3);
        // The freed place is usable again, by the same address too.
        let _t5 = a.admit(1, ip(1), Listener::Public).unwrap();
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
        let held: Vec<_> = (0..10)
            .map(|_| a.admit(0, local, Listener::Public).unwrap())
            .collect();
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
        let _one = strict.admit(0, local, Listener::Public).unwrap();
        assert_eq!(
            strict.admit(0, local, Listener::Public).unwrap_err(),
            Refused::Address
        );
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

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// An admission with only a per-address limit of 1 and loopback exempt.
    fn one_per_address(ipv6_prefix_len: u8) -> Arc<Admission> {
        Arc::new(Admission::new(
            1,
            Caps {
                per_ip: 1,
                exempt_loopback: true,
                ipv6_prefix_len,
                ..Caps::default()
            },
        ))
    }

    #[test]
    fn address_keys() {
        assert_eq!(address_key(ip(7), 64), ip(7), "IPv4 counts per address");
        assert_eq!(
            address_key(v6("::ffff:192.0.2.7"), 64),
            ip(7),
            "mapped = IPv4"
        );
        assert_eq!(
            address_key(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64),
            v6("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 48),
            v6("2001:db8:1::")
        );
        assert_eq!(address_key(v6("2001:db8:1:ff::1"), 56), v6("2001:db8:1::"));
        assert_eq!(address_key(v6("2001:db8::1"), 128), v6("2001:db8::1"));
        assert_eq!(address_key(v6("2001:db8::1"), 1), v6("::"));
        assert_eq!(address_key(v6("8001:db8::1"), 1), v6("8000::"));
        assert_eq!(address_key(v6("2001:db8::1"), 0), v6("::"), "no overflow");
        assert!(address_key(v6("::ffff:127.0.0.1"), 64).is_loopback());
        assert!(address_key(v6("::ffff:127.9.9.9"), 64).is_loopback());
    }

    #[test]
    fn ipv6_addresses_in_one_prefix_share_their_count() {
        let a = one_per_address(64);
        let _first = a.admit(0, v6("2001:db8:0:1::1"), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, v6("2001:db8:0:1:ffff:1:2:3"), Listener::Public)
                .unwrap_err(),
            Refused::Address,
            "same /64"
        );
        let other = a.admit(0, v6("2001:db8:0:2::1"), Listener::Public).unwrap();
        assert_eq!(a.connections(), 2, "another /64 counts alone");
        drop(other);
        assert_eq!(a.per_ip.lock().unwrap().len(), 1, "its entry is gone");
    }

    #[test]
    fn prefix_128_counts_each_ipv6_address_alone() {
        let a = one_per_address(128);
        let _first = a.admit(0, v6("2001:db8:0:1::1"), Listener::Public).unwrap();
        let _second = a.admit(0, v6("2001:db8:0:1::2"), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, v6("2001:db8:0:1::2"), Listener::Public)
                .unwrap_err(),
            Refused::Address
        );
        // 0 is taken as 128 (a Caps default), never as "one count for all of IPv6".
        let zero = one_per_address(0);
        let _one = zero.admit(0, v6("2001:db8::1"), Listener::Public).unwrap();
        assert!(zero.admit(0, v6("2001:db8::2"), Listener::Public).is_ok());
    }

    #[test]
    fn mapped_ipv4_counts_with_ipv4_and_mapped_loopback_is_exempt() {
        let a = one_per_address(64);
        let _v4 = a.admit(0, ip(9), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, v6("::ffff:192.0.2.9"), Listener::Public)
                .unwrap_err(),
            Refused::Address,
            "a dual-stack listener's view of the same client"
        );
        let held: Vec<_> = [
            "::ffff:127.0.0.1",
            "127.0.0.1",
            "::1",
            "::1",
            "::ffff:127.0.0.1",
        ]
        .iter()
        .map(|text| a.admit(0, v6(text), Listener::Public).unwrap())
        .collect();
        assert_eq!(a.connections(), 6, "loopback in every form is exempt");
        drop(held);
        let strict = Arc::new(Admission::new(
            1,
            Caps {
                per_ip: 1,
                exempt_loopback: false,
                ipv6_prefix_len: 64,
                ..Caps::default()
            },
        ));
        let _local = strict.admit(0, v6("127.0.0.1"), Listener::Public).unwrap();
        assert_eq!(
            strict
                .admit(0, v6("::ffff:127.0.0.1"), Listener::Public)
                .unwrap_err(),
            Refused::Address,
            "counted with 127.0.0.1 when not exempt"
        );
    }

    #[test]
    fn admin_connections_count_with_a_headroom() {
        let a = Arc::new(Admission::new(
            2,
            Caps {
                total: 2,
                per_shard: 1,
                ..Caps::default()
            },
        ));
        let _public = a.admit(0, ip(1), Listener::Public).unwrap();
        let admin = a.admit(1, ip(2), Listener::Admin).unwrap();
        assert_eq!(a.connections(), 2, "admin connections are counted");
        assert_eq!(
            a.admit(1, ip(3), Listener::Public).unwrap_err(),
            Refused::Total,
            "and take places from the public side"
        );
        drop(admin);
        // The public side fills the server: the admin listener still gets its headroom.
        let _public = a.admit(1, ip(3), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, ip(4), Listener::Public).unwrap_err(),
            Refused::Total
        );
        let admins: Vec<_> = (0..ADMIN_HEADROOM)
            .map(|i| a.admit(i % 2, ip(5), Listener::Admin).unwrap())
            .collect();
        assert_eq!(a.connections(), 2 + ADMIN_HEADROOM);
        assert_eq!(
            a.admit(0, ip(5), Listener::Admin).unwrap_err(),
            Refused::Total,
            "beyond the headroom admin connections are refused too"
        );
        drop(admins);
        // Per shard, the same headroom.
        let per_shard = Arc::new(Admission::new(
            1,
            Caps {
                per_shard: 1,
                ..Caps::default()
            },
        ));
        let _public = per_shard.admit(0, ip(1), Listener::Public).unwrap();
        let _admins: Vec<_> = (0..ADMIN_HEADROOM)
            .map(|_| per_shard.admit(0, ip(2), Listener::Admin).unwrap())
            .collect();
        assert_eq!(
            per_shard.admit(0, ip(2), Listener::Admin).unwrap_err(),
            Refused::Shard
        );
        // The per-address limit has no headroom.
        let a = one_per_address(64);
        let _one = a.admit(0, ip(1), Listener::Public).unwrap();
        assert_eq!(
            a.admit(0, ip(1), Listener::Admin).unwrap_err(),
            Refused::Address
        );
    }
}
