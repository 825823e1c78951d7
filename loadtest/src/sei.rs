//! Send-time stamps carried in the video itself: an H.264 SEI message of type
//! user_data_unregistered (5) with a fixed UUID and the send time (Unix ns, big endian).
//! Relays pass SEI through untouched on every protocol (RTMP, FLV, the TS of HLS), so the
//! same probe measures any relay end to end.

/// Identifies corecast-load's stamps among other user data.
pub const UUID: [u8; 16] = *b"corecast-load-ts";

/// The SEI NAL unit (with emulation prevention) carrying `send_ns`.
pub fn nal(send_ns: u64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24);
    payload.extend_from_slice(&UUID);
    payload.extend_from_slice(&send_ns.to_be_bytes());
    let mut rbsp = vec![5u8, payload.len() as u8];
    rbsp.extend_from_slice(&payload);
    rbsp.push(0x80); // rbsp trailing bits
    let mut nal = vec![0x06]; // nal_unit_type 6: SEI
    let mut zeros = 0;
    for &b in &rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    nal
}

/// Prepends a stamp to an FLV AVC NALU body (4-byte NAL lengths); other bodies unchanged.
pub fn stamp_flv_video(body: &[u8], send_ns: u64) -> Vec<u8> {
    if body.len() < 5 || body[0] & 0x0f != 7 || body[1] != 1 {
        return body.to_vec();
    }
    let sei = nal(send_ns);
    let mut out = Vec::with_capacity(body.len() + sei.len() + 4);
    out.extend_from_slice(&body[..5]);
    out.extend_from_slice(&(sei.len() as u32).to_be_bytes());
    out.extend_from_slice(&sei);
    out.extend_from_slice(&body[5..]);
    out
}

/// Finds a stamp in an FLV AVC NALU body (4-byte NAL lengths).
pub fn find_in_flv_video(body: &[u8]) -> Option<u64> {
    if body.len() < 5 || body[0] & 0x0f != 7 || body[1] != 1 {
        return None;
    }
    length_prefixed(&body[5..], 4).find_map(parse_nal)
}

/// The NAL units of length-prefixed H.264 data (AVCC: an FLV AVC NALU body after its header,
/// an MP4 sample), each length `length_size` bytes (1 to 4; the record's
/// `lengthSizeMinusOne` + 1), big endian. Stops at the first unit that does not fit: a
/// truncated sample yields the units before the cut; a length size outside 1 to 4 yields
/// nothing.
pub fn length_prefixed(data: &[u8], length_size: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = if (1..=4).contains(&length_size) {
        data
    } else {
        &[]
    };
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (prefix, after) = rest.split_at_checked(length_size)?;
        let len = prefix
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        let (nal, next) = after.split_at_checked(len)?;
        rest = next;
        Some(nal)
    })
}

/// The stamp in an SEI NAL unit, if it is one of ours.
pub fn parse_nal(nal: &[u8]) -> Option<u64> {
    if nal.first()? & 0x1f != 6 {
        return None;
    }
    // Undo emulation prevention.
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in &nal[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        rbsp.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    if rbsp.first() != Some(&5) || rbsp.get(1) != Some(&24) || rbsp.get(2..18)? != UUID {
        return None;
    }
    let ts: [u8; 8] = rbsp.get(18..26)?.try_into().ok()?;
    Some(u64::from_be_bytes(ts))
}

/// Unix time in ns.
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_flv_bodies() {
        let frame = [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a];
        for ns in [
            0u64,
            1,
            0x0000_0100_0000_0000,
            1_795_547_244_123_456_789,
            u64::MAX,
        ] {
            let stamped = stamp_flv_video(&frame, ns);
            assert_eq!(find_in_flv_video(&stamped), Some(ns), "{ns:#x}");
            assert!(
                stamped.ends_with(&frame[5..]),
                "the frame's NAL units follow"
            );
        }
        assert_eq!(find_in_flv_video(&frame), None);
        assert_eq!(
            stamp_flv_video(&[0x17, 0, 0, 0, 0, 1], 5),
            vec![0x17, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn length_prefixed_units_are_split_and_bounded() {
        let data = [0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 1, 0x06, 0, 0, 0, 9, 1];
        let units: Vec<&[u8]> = length_prefixed(&data, 4).collect();
        assert_eq!(
            units,
            [&[0x41, 0x9a][..], &[0x06][..]],
            "the cut unit is left out"
        );
        let short = [2, 0x41, 0x9a, 1, 0x06];
        let units: Vec<&[u8]> = length_prefixed(&short, 1).collect();
        assert_eq!(units, [&[0x41, 0x9a][..], &[0x06][..]]);
        assert_eq!(length_prefixed(&data, 0).count(), 0);
        assert_eq!(length_prefixed(&data, 5).count(), 0);
        assert_eq!(length_prefixed(&[0xff; 3], 4).count(), 0);
        assert_eq!(length_prefixed(&[0xff; 8], 4).count(), 0);
    }

    #[test]
    fn emulation_prevention_is_applied() {
        let nal = nal(0);
        assert!(nal
            .windows(3)
            .all(|w| !(w[0] == 0 && w[1] == 0 && w[2] <= 2)));
        assert_eq!(parse_nal(&nal), Some(0));
    }
}
