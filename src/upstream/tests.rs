//! Unit tests of [`super`] (upstream): origin URLs, the loop marker, the failover policy.

use super::*;

#[test]
fn origin_urls_are_rtmp_or_http_flv_plain_or_over_tls() {
    let rtmp = OriginUrl::parse("rtmp://192.0.2.7:1935/{app}/{stream}", "live", "cam").unwrap();
    assert_eq!(rtmp.host(), &Host::Addr("192.0.2.7:1935".parse().unwrap()));
    assert_eq!(rtmp.shown(), "rtmp://192.0.2.7:1935/live/cam");
    let OriginUrl::Rtmp(target) = &rtmp else {
        panic!("{rtmp:?}")
    };
    assert_eq!(
        (target.app.as_str(), target.stream.as_str()),
        ("live", "cam")
    );

    let flv = OriginUrl::parse(
        "http://192.0.2.8:8080/{app}/{stream}.flv?token=secret",
        "live",
        "cam",
    )
    .unwrap();
    assert_eq!(
        flv,
        OriginUrl::Flv {
            host: Host::Addr("192.0.2.8:8080".parse().unwrap()),
            tls: false,
            path: "/live/cam.flv?token=secret".into(),
            shown: "http://192.0.2.8:8080/live/cam.flv".into(),
        }
    );
    // Names, and the scheme's port when the URL has none.
    let named = |url| OriginUrl::parse(url, "live", "cam").map(|o| (o.host().clone(), o));
    let (host, https) = named("https://Origin.Example.net/live/{stream}.flv").unwrap();
    assert_eq!(
        host,
        Host::Name {
            name: "origin.example.net".into(),
            port: 443
        }
    );
    assert!(matches!(https, OriginUrl::Flv { tls: true, .. }));
    assert_eq!(https.shown(), "https://origin.example.net:443/live/cam.flv");
    assert_eq!(
        named("http://192.0.2.8/live/{stream}.flv")
            .unwrap()
            .0
            .port(),
        80
    );
    assert_eq!(
        named("rtmp://origin.example.net/live/{stream}")
            .unwrap()
            .1
            .shown(),
        "rtmp://origin.example.net:1935/live/cam"
    );
    for bad in [
        "ftp://192.0.2.8:8080/live/{stream}.flv",
        "https//192.0.2.8:8080/live/{stream}.flv",
        "http://origin_1.example:8080/live/{stream}.flv",
        "http://192.0.2.8:0/live/{stream}.flv",
        "http://192.0.2.8:8080/",
        "http://192.0.2.8:8080/live/{stream} x.flv",
        "rtmp://192.0.2.7:1935/live",
        "srt://192.0.2.7:9000/live/{stream}",
    ] {
        assert!(OriginUrl::parse(bad, "live", "cam").is_err(), "{bad}");
    }
}

#[test]
fn the_via_list_refuses_this_server_and_long_chains() {
    let me = 0xabc;
    assert_eq!(Via::of(None, me), Ok(Via::default()));
    assert_eq!(Via::of(Some("token=x"), me), Ok(Via::default()));
    let via = Via::of(Some("token=x&corecast_via=1f,2e"), me).unwrap();
    assert_eq!(via.param_with(me), "corecast_via=1f,2e,abc");
    assert_eq!(
        Via::default().param_with(me),
        "corecast_via=abc",
        "the first hop names itself"
    );
    assert_eq!(
        Via::of(Some("corecast_via=1f,abc"), me),
        Err(LoopError::Loop)
    );
    let long = (1..=MAX_HOPS as u64 + 1)
        .map(|id| format!("{id:x}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        Via::of(Some(&format!("corecast_via={long}")), me),
        Err(LoopError::TooLong)
    );
    for bad in ["corecast_via=", "corecast_via=zz", "corecast_via=1,,2"] {
        assert_eq!(Via::of(Some(bad), me), Err(LoopError::TooLong), "{bad}");
    }
    assert_eq!(with_param("/live/cam.flv", "a=1"), "/live/cam.flv?a=1");
    assert_eq!(with_param("cam?token=x", "a=1"), "cam?token=x&a=1");
}

#[test]
fn failover_goes_round_the_origins_then_waits_longer_each_round() {
    let mut f = Failover::new(3);
    assert_eq!(f.current(), 0);
    // Before any origin delivered, one round of failures gives up.
    assert_eq!(f.failed(), Next::Try(1));
    assert_eq!(f.failed(), Next::Try(2));
    assert_eq!(f.failed(), Next::GiveUp);

    let mut f = Failover::new(3);
    f.delivered();
    // The origin that delivered drops the stream: the next at once.
    assert_eq!(f.failed(), Next::Try(1));
    assert_eq!(f.failed(), Next::Try(2));
    assert_eq!(f.failed(), Next::Wait(Duration::from_secs(1), 0));
    assert_eq!(f.failed(), Next::Try(1));
    assert_eq!(f.failed(), Next::Try(2));
    assert_eq!(f.failed(), Next::Wait(Duration::from_secs(2), 0));
    for _ in 0..30 {
        f.failed();
    }
    assert!(matches!(
        f.failed(),
        Next::Try(_) | Next::Wait(LAST_ROUND_WAIT, _)
    ));
    // A session that delivers starts the count again.
    f.delivered();
    let current = f.current();
    assert_eq!(f.failed(), Next::Try((current + 1) % 3));

    // One origin: a drop waits before the origin is tried again.
    let mut one = Failover::new(1);
    one.delivered();
    assert_eq!(one.failed(), Next::Wait(Duration::from_secs(1), 0));
    assert_eq!(one.failed(), Next::Wait(Duration::from_secs(2), 0));
}
