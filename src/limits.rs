//! Admission limits shared by every shard: connections (in total, per shard, per client
//! address) and viewers per stream. A connection over a limit is closed as soon as it is
//! accepted and counted; a viewer over its stream's limit is refused like a missing stream.
//!
//! A [`Ticket`] stands for one admitted connection and gives its place back when dropped, on
//! whichever shard the connection ends (publishers handed to another shard carry theirs).
//!
//! [`PublishLimits`] bounds what one client address can make the server keep as streams:
//! the streams it holds (live, or left waiting out their republish grace) and the publishes
//! it starts per minute. A [`StreamSlot`] stands for one held stream, like a ticket.
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
    /// Viewers by stream, counted only when `max_viewers_per_stream` is set; an entry goes
    /// when its count reaches 0.
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

    /// Takes a viewer place on `key`; false when the stream has its maximum. Without a
    /// maximum nothing is counted (the counts serve only the maximum), so no lock is taken.
    pub fn add_viewer(&self, key: &StreamKey) -> bool {
        if self.max_viewers_per_stream == 0 {
            return true;
        }
        let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let n = viewers.entry(key.clone()).or_insert(0);
        if self.max_viewers_per_stream > 0 && *n >= self.max_viewers_per_stream {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives a viewer place back (nothing to give without a maximum, see
    /// [`Admission::add_viewer`]).
    pub fn remove_viewer(&self, key: &StreamKey) {
        if self.max_viewers_per_stream == 0 {
            return;
        }
        let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        release(&mut viewers, key);
    }
}

/// Gives one place of `key` back in `counts`, forgetting the key at zero.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
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
            release(&mut per_ip, &key);
        }
    }
}

/// Why a publish was refused by [`PublishLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// `limits.max_streams_per_ip` streams are held by this address.
    #[error("this address holds its maximum number of streams")]
    Streams,
    /// `limits.max_publishes_per_ip_per_minute` publishes were started from this address.
    #[error("too many publishes from this address; try again later")]
    Rate,
}

/// Addresses whose publish rate is tracked at once. Buckets that have refilled are
/// forgotten first; past this many recently active addresses, publishes from new ones are
/// refused as over the rate (the map cannot grow without bound).
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Tracked addresses above which full buckets are pruned.
const PRUNE_ABOVE: usize = 1024;

/// One minute, the period of the publish rate.
const MINUTE_NS: u64 = 60_000_000_000;

/// Per-address publish limits (0 = none), shared by every shard. Pure: time is passed in.
#[derive(Debug)]
pub struct PublishLimits {
    max_streams: usize,
    per_minute: u32,
    exempt_loopback: bool,
    ipv6_prefix_len: u8,
    state: Mutex<PublishState>,
}

#[derive(Debug, Default)]
struct PublishState {
    /// Streams held, by address.
    streams: HashMap<IpAddr, usize>,
    /// Publish rate buckets, by address.
    buckets: HashMap<IpAddr, Bucket>,
}

/// A token bucket of publishes: `per_minute` at once, refilled evenly over a minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Publishes available, in units of 1/`MINUTE_NS` of a publish per minute of capacity
    /// (integer arithmetic: one publish costs `MINUTE_NS`).
    credit: u64,
    /// When `credit` was last brought up to date.
    at_ns: u64,
}

impl Bucket {
    /// The credit at `now_ns`, with `per_minute` publishes a minute.
    fn credit_at(&self, now_ns: u64, per_minute: u32) -> u64 {
        let cap = u64::from(per_minute) * MINUTE_NS;
        let refill = now_ns
            .saturating_sub(self.at_ns)
            .saturating_mul(u64::from(per_minute));
        self.credit.saturating_add(refill).min(cap)
    }
}

impl PublishLimits {
    /// Limits of `max_streams` streams held and `per_minute` publishes per address (0 =
    /// none), addresses grouped as [`address_key`] does; loopback addresses are exempt when
    /// `exempt_loopback`.
    pub fn new(
        max_streams: usize,
        per_minute: u32,
        exempt_loopback: bool,
        ipv6_prefix_len: u8,
    ) -> Self {
        PublishLimits {
            max_streams,
            per_minute,
            exempt_loopback,
            ipv6_prefix_len,
            state: Mutex::new(PublishState::default()),
        }
    }

    /// Admits a publish from `ip` at `now_ns` onto a stream whose slot is `current` (`None`
    /// for a new stream, or one whose slot was given back). Takes one publish from the
    /// address's rate; unless `current` is held by the same address, also takes a stream
    /// slot, returned for the caller to keep with the stream (replacing `current`).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now_ns: u64,
        current: Option<&StreamSlot>,
    ) -> Result<Option<StreamSlot>, PublishRefused> {
        let counted = !(self.exempt_loopback && ip.to_canonical().is_loopback());
        let ip = address_key(ip, self.ipv6_prefix_len);
        let same_address = current.is_some_and(|slot| slot.ip == counted.then_some(ip));
        if !counted {
            return Ok((!same_address).then(|| StreamSlot {
                limits: self.clone(),
                ip: None,
            }));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = state.streams.get(&ip).copied().unwrap_or(0);
        if !same_address && self.max_streams > 0 && held >= self.max_streams {
            return Err(PublishRefused::Streams);
        }
        if self.per_minute > 0 {
            let per_minute = self.per_minute;
            if state.buckets.len() > PRUNE_ABOVE {
                state.buckets.retain(|_, b| {
                    b.credit_at(now_ns, per_minute) < u64::from(per_minute) * MINUTE_NS
                });
            }
            let full = Bucket {
                credit: u64::from(per_minute) * MINUTE_NS,
                at_ns: now_ns,
            };
            let tracked = state.buckets.len();
            let bucket = match state.buckets.get(&ip) {
                Some(bucket) => *bucket,
                None if tracked >= MAX_TRACKED_ADDRESSES => return Err(PublishRefused::Rate),
                None => full,
            };
            let credit = bucket.credit_at(now_ns, per_minute);
            if credit < MINUTE_NS {
                return Err(PublishRefused::Rate);
            }
            state.buckets.insert(
                ip,
                Bucket {
                    credit: credit - MINUTE_NS,
                    at_ns: now_ns,
                },
            );
        }
        if same_address {
            return Ok(None);
        }
        *state.streams.entry(ip).or_insert(0) += 1;
        Ok(Some(StreamSlot {
            limits: self.clone(),
            ip: Some(ip),
        }))
    }

    /// Streams held by `ip` (with its prefix) now.
    pub fn streams_of(&self, ip: IpAddr) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ip = address_key(ip, self.ipv6_prefix_len);
        state.streams.get(&ip).copied().unwrap_or(0)
    }
}

/// One stream held by a client address (see [`PublishLimits`]); dropping it gives the slot
/// back. It stays with the stream through the republish grace period.
#[derive(Debug)]
pub struct StreamSlot {
    limits: Arc<PublishLimits>,
    /// The counted address; `None` when exempt.
    ip: Option<IpAddr>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut state = self.limits.state.lock().unwrap_or_else(|e| e.into_inner());
        release(&mut state.streams, &ip);
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

    #[test]
    fn unlimited_viewers_take_no_lock_and_count_nothing() {
        let a = Arc::new(Admission::new(1, Caps::default()));
        // Held here: an attach or detach that took the lock would wait until the end.
        let held = a.viewers.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let attaching = a.clone();
        std::thread::spawn(move || {
            let key = crate::hub::stream_key("live", "a");
            let added = (0..1000).all(|_| attaching.add_viewer(&key));
            attaching.remove_viewer(&key);
            attaching.remove_viewer(&crate::hub::stream_key("live", "b"));
            let _ = done.send(added);
        });
        let added = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(added, Ok(true), "attach and detach without the lock");
        assert!(held.is_empty(), "nothing counted");
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn streams_per_address_count_until_the_slot_is_dropped() {
        let limits = Arc::new(PublishLimits::new(2, 0, true, 64));
        let a = limits.admit(ip(1), 0, None).unwrap().unwrap();
        let b = limits.admit(ip(1), 0, None).unwrap().unwrap();
        assert_eq!(
            limits.admit(ip(1), 0, None).unwrap_err(),
            PublishRefused::Streams
        );
        // Another address is not affected.
        let _c = limits.admit(ip(2), 0, None).unwrap().unwrap();
        // Republishing a stream the address holds needs no new slot.
        assert!(limits.admit(ip(1), 0, Some(&a)).unwrap().is_none());
        // Another address taking over a stream of ip(1) takes its own slot.
        let d = limits.admit(ip(3), 0, Some(&b)).unwrap().unwrap();
        drop(b);
        assert_eq!(limits.streams_of(ip(1)), 1);
        let _e = limits.admit(ip(1), 0, None).unwrap().unwrap();
        drop((a, d));
        assert_eq!(limits.streams_of(ip(3)), 0);
        assert_eq!(limits.streams_of(ip(1)), 1);
    }

    #[test]
    fn publish_rate_is_a_token_bucket_per_address() {
        let limits = Arc::new(PublishLimits::new(0, 3, true, 64));
        let mut slots = Vec::new();
        for _ in 0..3 {
            slots.push(limits.admit(ip(1), 0, None).unwrap());
        }
        assert_eq!(
            limits.admit(ip(1), 0, None).unwrap_err(),
            PublishRefused::Rate
        );
        assert!(limits.admit(ip(2), 0, None).is_ok());
        // One publish comes back every 20 s.
        assert_eq!(
            limits.admit(ip(1), 19 * SECOND, None).unwrap_err(),
            PublishRefused::Rate
        );
        assert!(limits.admit(ip(1), 20 * SECOND, None).is_ok());
        assert!(limits.admit(ip(1), 20 * SECOND, None).is_err());
        // A long pause refills to the burst, not beyond.
        for _ in 0..3 {
            assert!(limits.admit(ip(1), 3600 * SECOND, None).is_ok());
        }
        assert!(limits.admit(ip(1), 3600 * SECOND, None).is_err());
    }

    #[test]
    fn loopback_is_exempt_from_publish_limits_when_asked() {
        let local = IpAddr::from([127, 0, 0, 1]);
        let exempt = Arc::new(PublishLimits::new(1, 1, true, 64));
        let slots: Vec<_> = (0..10)
            .map(|_| exempt.admit(local, 0, None).unwrap())
            .collect();
        assert_eq!(exempt.streams_of(local), 0);
        drop(slots);
        let strict = Arc::new(PublishLimits::new(1, 1, false, 64));
        let _one = strict.admit(local, 0, None).unwrap();
        assert!(strict.admit(local, 0, None).is_err());
    }

    #[test]
    fn publish_limits_count_ipv6_by_prefix() {
        let limits = Arc::new(PublishLimits::new(1, 0, true, 64));
        let _one = limits.admit(v6("2001:db8::1"), 0, None).unwrap();
        assert_eq!(
            limits.admit(v6("2001:db8::2"), 0, None).unwrap_err(),
            PublishRefused::Streams
        );
        assert!(limits.admit(v6("2001:db8:0:1::1"), 0, None).is_ok());
        let mapped = v6("::ffff:127.0.0.1");
        let exempt: Vec<_> = (0..3)
            .map(|_| limits.admit(mapped, 0, None).unwrap())
            .collect();
        assert_eq!(exempt.len(), 3);
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let limits = Arc::new(PublishLimits::new(0, 1, false, 64));
        for n in 0..MAX_TRACKED_ADDRESSES as u32 {
            let _ = limits
                .admit(IpAddr::from(n.to_be_bytes()), 0, None)
                .unwrap();
        }
        // Every bucket is empty: nothing can be pruned, a new address is refused.
        let new = IpAddr::from([203, 0, 113, 1]);
        assert_eq!(
            limits.admit(new, 0, None).unwrap_err(),
            PublishRefused::Rate
        );
        // A minute later every bucket is full again and is forgotten.
        assert!(limits.admit(new, 60 * SECOND, None).is_ok());
        assert!(limits.state.lock().unwrap().buckets.len() <= PRUNE_ABOVE + 1);
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
