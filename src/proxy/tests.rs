//! Unit tests of [`super`] (the PROXY protocol header).

use super::*;

fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = V2.to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(addresses);
    header
}

fn v2_tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut addresses = src.to_vec();
    addresses.extend_from_slice(&[192, 0, 2, 1]);
    addresses.extend_from_slice(&port.to_be_bytes());
    addresses.extend_from_slice(&1935u16.to_be_bytes());
    v2(1, 0x11, &addresses)
}

#[test]
fn version_1_names_the_client_and_its_length_ends_at_crlf() {
    let bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 50412 1935\r\n\x03rest";
    let header = parse(bytes).unwrap().unwrap();
    assert_eq!(header.client, Some("203.0.113.7:50412".parse().unwrap()));
    assert_eq!(&bytes[header.len..], b"\x03rest");
    let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8080\r\nGET";
    let header = parse(six).unwrap().unwrap();
    assert_eq!(header.client, Some("[2001:db8::7]:40000".parse().unwrap()));
    assert_eq!(&six[header.len..], b"GET");
    let unknown = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
    assert_eq!((unknown.client, unknown.len), (None, 15));
}

#[test]
fn version_2_names_the_client_and_local_names_none() {
    let mut bytes = v2_tcp4([198, 51, 100, 9], 61000);
    let len = bytes.len();
    bytes.extend_from_slice(b"\x03");
    let header = parse(&bytes).unwrap().unwrap();
    assert_eq!(header.client, Some("198.51.100.9:61000".parse().unwrap()));
    assert_eq!(header.len, len);
    let mut six = vec![0x20, 0x01, 0x0d, 0xb8];
    six.extend_from_slice(&[0; 11]);
    six.push(7);
    six.extend_from_slice(&[0; 16]);
    six.extend_from_slice(&443u16.to_be_bytes());
    six.extend_from_slice(&8080u16.to_be_bytes());
    let header = parse(&v2(1, 0x21, &six)).unwrap().unwrap();
    assert_eq!(header.client, Some("[2001:db8::7]:443".parse().unwrap()));
    // A balancer's health check: its own connection.
    let local = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
    assert_eq!((local.client, local.len), (None, 16));
}

#[test]
fn a_header_cut_anywhere_is_incomplete_until_its_end() {
    let whole = v2_tcp4([198, 51, 100, 9], 61000);
    for cut in 1..whole.len() {
        assert_eq!(parse(&whole[..cut]).unwrap(), None, "cut at {cut}");
    }
    let text = b"PROXY TCP4 203.0.113.7 192.0.2.1 50412 1935\r\n";
    for cut in 1..text.len() {
        assert_eq!(parse(&text[..cut]).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn what_is_not_a_header_or_not_a_valid_one_is_refused() {
    assert!(matches!(parse(b"\x03\x00\x00"), Err(ProxyError::Missing)));
    assert!(matches!(
        parse(b"GET / HTTP/1.1\r\n"),
        Err(ProxyError::Missing)
    ));
    assert!(matches!(
        parse(b"PROXY TCP4 999.0.113.7 192.0.2.1 50412 1935\r\n"),
        Err(ProxyError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 50412\r\n"),
        Err(ProxyError::Malformed(_))
    ));
    // Version 2 with a bad version nibble, and with an address block too short for its
    // family.
    let mut bad = v2_tcp4([198, 51, 100, 9], 1);
    bad[12] = 0x31;
    assert!(matches!(parse(&bad), Err(ProxyError::Malformed(_))));
    assert!(matches!(
        parse(&v2(1, 0x11, &[1, 2, 3])),
        Err(ProxyError::Malformed(_))
    ));
    // A version 1 line that never ends, and a version 2 header that announces more than
    // the bound.
    let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    assert!(matches!(parse(&endless), Err(ProxyError::Malformed(_))));
    let mut huge = v2(1, 0x11, &[0; 12]);
    huge[14..16].copy_from_slice(&4000u16.to_be_bytes());
    huge.resize(MAX_HEADER, 0);
    assert!(matches!(parse(&huge), Err(ProxyError::TooLong)));
}

#[test]
fn only_whole_signatures_look_like_headers_and_trust_is_by_network() {
    assert!(may_be_header(b"PRO") && may_be_header(b"\r\n\r\n"));
    assert!(!may_be_header(b"POST /api") && !may_be_header(b"\x03"));
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    assert!(is_trusted(&trusted, "10.1.2.3".parse().unwrap()));
    // An IPv4 proxy seen through a dual-stack listener.
    assert!(is_trusted(&trusted, "::ffff:10.1.2.3".parse().unwrap()));
    assert!(is_trusted(&trusted, "::1".parse().unwrap()));
    assert!(!is_trusted(&trusted, "11.0.0.1".parse().unwrap()));
}
