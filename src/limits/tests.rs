//! Unit tests of [`super`] (limits).

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

#[test]
fn a_proxied_connection_counts_under_the_address_its_header_names() {
    let a = Arc::new(Admission::new(
        1,
        Caps {
            total: 10,
            per_shard: 10,
            per_ip: 1,
            exempt_loopback: false,
            ipv6_prefix_len: 64,
            viewers_per_stream: 0,
        },
    ));
    // Two connections from one proxy: neither counts under the proxy's address.
    let mut first = a.admit_unaddressed(0, Listener::Public).unwrap();
    let mut second = a.admit_unaddressed(0, Listener::Public).unwrap();
    assert_eq!(a.connections(), 2);
    first.count_address(ip(7)).unwrap();
    // Counting again keeps the first address.
    first.count_address(ip(8)).unwrap();
    assert_eq!(second.count_address(ip(7)), Err(Refused::Address));
    drop(second);
    assert_eq!(a.connections(), 1);
    let mut third = a.admit_unaddressed(0, Listener::Public).unwrap();
    third.count_address(ip(8)).unwrap();
    drop(first);
    // The first address's place is free again; the second is held by `third`.
    assert!(a.admit(0, ip(7), Listener::Public).is_ok());
    assert_eq!(
        a.admit(0, ip(8), Listener::Public).unwrap_err(),
        Refused::Address
    );
}
