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
use arc_swap::ArcSwap;
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
    /// The limits, replaced by a reload (counts stay).
    caps: ArcSwap<Caps>,
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

impl Caps {
    /// With the IPv6 prefix length in 1..=128 (0 means 128).
    fn normalized(self) -> Caps {
        Caps {
            ipv6_prefix_len: match self.ipv6_prefix_len {
                0 => 128,
                n => n.min(128),
            },
            ..self
        }
    }
}

impl Admission {
    /// Limits for `shards` shards.
    pub fn new(shards: usize, caps: Caps) -> Self {
        Admission {
            caps: ArcSwap::from_pointee(caps.normalized()),
            total: AtomicUsize::new(0),
            per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            per_ip: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
        }
    }

    /// New limits (a reload). Connections and viewers admitted stay, also over a lowered
    /// limit; the next ones are admitted against the new limits. Each connection gives back
    /// the place it took (its [`Ticket`] keeps the address it counted under).
    pub fn set_caps(&self, caps: Caps) {
        self.caps.store(Arc::new(caps.normalized()));
    }

    /// Admits a connection from `ip` accepted by `shard` on `listener`, or says which limit
    /// it hits.
    pub fn admit(
        self: &Arc<Self>,
        shard: usize,
        ip: IpAddr,
        listener: Listener,
    ) -> Result<Ticket, Refused> {
        let mut ticket = self.admit_unaddressed(shard, listener)?;
        ticket.count_address(ip)?;
        Ok(ticket)
    }

    /// Admits a connection under the total and per-shard limits only: its address is not
    /// known yet (it comes through a proxy, whose PROXY header names it). The per-address
    /// limit applies once [`Ticket::count_address`] is given it.
    pub fn admit_unaddressed(
        self: &Arc<Self>,
        shard: usize,
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
        let caps = self.caps.load();
        if !take(&self.total, with_headroom(caps.total)) {
            return Err(Refused::Total);
        }
        if !take(&self.per_shard[shard], with_headroom(caps.per_shard)) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Shard);
        }
        Ok(Ticket {
            admission: self.clone(),
            shard,
            key: None,
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
        let max = self.caps.load().viewers_per_stream;
        if max == 0 {
            return true;
        }
        let mut viewers = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        let n = viewers.entry(key.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives a viewer place back (nothing to give without a maximum, see
    /// [`Admission::add_viewer`]).
    pub fn remove_viewer(&self, key: &StreamKey) {
        if self.caps.load().viewers_per_stream == 0 {
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

impl Ticket {
    /// Counts the connection under the per-address limit of `ip` (once: a ticket that
    /// counts an address already keeps it). Refused: the caller drops the ticket, which
    /// gives back its other places.
    pub fn count_address(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.key.is_some() {
            return Ok(());
        }
        let caps = self.admission.caps.load();
        if caps.exempt_loopback && ip.to_canonical().is_loopback() {
            return Ok(());
        }
        let key = address_key(ip, caps.ipv6_prefix_len);
        let mut per_ip = self
            .admission
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(key).or_insert(0);
        if caps.per_ip > 0 && *n >= caps.per_ip {
            return Err(Refused::Address);
        }
        *n += 1;
        self.key = Some(key);
        Ok(())
    }
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

/// Tracked addresses above which full buckets are pruned. A prune reads every bucket, so
/// the next one waits until the map has doubled (each prune is paid for by as many new
/// addresses as it read), or, with the map full, for [`PRUNE_INTERVAL_NS`]: publishes from
/// many addresses cost O(1) each, amortized, under the lock every shard shares.
const PRUNE_ABOVE: usize = 1024;

/// With [`MAX_TRACKED_ADDRESSES`] tracked, a new address tries a prune at most this often.
const PRUNE_INTERVAL_NS: u64 = 1_000_000_000;

/// One minute, the period of the publish rate.
const MINUTE_NS: u64 = 60_000_000_000;

/// Per-address publish limits (0 = none), shared by every shard. Pure: time is passed in.
#[derive(Debug)]
pub struct PublishLimits {
    /// The limits, replaced by a reload (counts and rate buckets stay).
    caps: ArcSwap<PublishCaps>,
    state: Mutex<PublishState>,
}

/// The limits of [`PublishLimits`].
#[derive(Debug, Clone, Copy)]
struct PublishCaps {
    max_streams: usize,
    per_minute: u32,
    exempt_loopback: bool,
    ipv6_prefix_len: u8,
}

#[derive(Debug)]
struct PublishState {
    /// Streams held, by address.
    streams: HashMap<IpAddr, usize>,
    /// Publish rate buckets, by address.
    buckets: HashMap<IpAddr, Bucket>,
    /// Tracked addresses above which the next prune runs (see [`PRUNE_ABOVE`]).
    prune_above: usize,
    /// When the last prune ran.
    pruned_at_ns: u64,
}

impl Default for PublishState {
    fn default() -> Self {
        PublishState {
            streams: HashMap::new(),
            buckets: HashMap::new(),
            prune_above: PRUNE_ABOVE,
            pruned_at_ns: 0,
        }
    }
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
            caps: ArcSwap::from_pointee(PublishCaps {
                max_streams,
                per_minute,
                exempt_loopback,
                ipv6_prefix_len,
            }),
            state: Mutex::new(PublishState::default()),
        }
    }

    /// New limits (a reload), as [`PublishLimits::new`] takes them: streams held stay, also
    /// over a lowered limit; each gives back the slot it took ([`StreamSlot`] keeps the
    /// address it counted under).
    pub fn set_limits(
        &self,
        max_streams: usize,
        per_minute: u32,
        exempt_loopback: bool,
        ipv6_prefix_len: u8,
    ) {
        self.caps.store(Arc::new(PublishCaps {
            max_streams,
            per_minute,
            exempt_loopback,
            ipv6_prefix_len,
        }));
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
        let caps = **self.caps.load();
        let counted = !(caps.exempt_loopback && ip.to_canonical().is_loopback());
        let ip = address_key(ip, caps.ipv6_prefix_len);
        let same_address = current.is_some_and(|slot| slot.ip == counted.then_some(ip));
        if !counted {
            return Ok((!same_address).then(|| StreamSlot {
                limits: self.clone(),
                ip: None,
            }));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = state.streams.get(&ip).copied().unwrap_or(0);
        if !same_address && caps.max_streams > 0 && held >= caps.max_streams {
            return Err(PublishRefused::Streams);
        }
        if caps.per_minute > 0 {
            let per_minute = caps.per_minute;
            let tracked = state.buckets.len();
            let full_and_new = tracked >= MAX_TRACKED_ADDRESSES
                && !state.buckets.contains_key(&ip)
                && now_ns >= state.pruned_at_ns.saturating_add(PRUNE_INTERVAL_NS);
            if tracked > state.prune_above || full_and_new {
                state.buckets.retain(|_, b| {
                    b.credit_at(now_ns, per_minute) < u64::from(per_minute) * MINUTE_NS
                });
                state.prune_above = PRUNE_ABOVE.max(2 * state.buckets.len());
                state.pruned_at_ns = now_ns;
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
        let ip = address_key(ip, self.caps.load().ipv6_prefix_len);
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
mod tests;
