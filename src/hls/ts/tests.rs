//! Unit tests of [`super`] (ts).

use super::*;

/// An HEVCDecoderConfigurationRecord with 4-byte NAL lengths and one SPS, VPS and PPS,
/// in that (unusual) order.
fn hvcc() -> Vec<u8> {
    let mut record = vec![1];
    record.resize(21, 0);
    record.push(0xfc | 3);
    record.push(3);
    for (nal_type, nal) in [
        (33u8, [0x42, 1, 0xbb]),
        (32, [0x40, 1, 0xaa]),
        (34, [0x44, 1, 0xcc]),
    ] {
        record.extend([0x80 | nal_type, 0, 1, 0, 3]);
        record.extend(nal);
    }
    record
}

#[test]
fn hevc_access_units_get_their_delimiter_and_parameter_sets() {
    let mut m = TsMuxer::new();
    // Enhanced RTMP sequence start: header byte, FourCC, record.
    let start = [&[0x90][..], b"hvc1", &hvcc()].concat();
    m.set_video_config(&start).unwrap();
    // Colour metadata changes nothing.
    m.set_video_config(&[&[0xd4][..], b"hvc1", &[2, 0, 9]].concat())
        .unwrap();
    // A keyframe with the encoder's own delimiter, which is replaced.
    let key = [
        &[0x91][..],
        b"hvc1",
        &[0, 0, 40],
        &[0, 0, 0, 3, 0x46, 1, 0x50],
        &[0, 0, 0, 3, 0x26, 1, 0xdd],
    ]
    .concat();
    let frame = m.video_frame(&key, true).unwrap().unwrap();
    let expected = [
        &HEVC_AUD[..],
        &[0, 0, 0, 1, 0x40, 1, 0xaa],
        &[0, 0, 0, 1, 0x42, 1, 0xbb],
        &[0, 0, 0, 1, 0x44, 1, 0xcc],
        &[0, 0, 0, 1, 0x26, 1, 0xdd],
    ]
    .concat();
    assert_eq!(frame.es, expected);
    assert_eq!(frame.cts, 40);
    // CodedFramesX: no composition time; an inter frame gets no parameter sets.
    let inter = [&[0xa3][..], b"hvc1", &[0, 0, 0, 3, 0x02, 1, 0xee]].concat();
    let frame = m.video_frame(&inter, false).unwrap().unwrap();
    assert_eq!(
        frame.es,
        [&HEVC_AUD[..], &[0, 0, 0, 1, 0x02, 1, 0xee]].concat()
    );
    assert_eq!(frame.cts, 0);
    // The PMT announces HEVC (stream type 0x24).
    let mut out = Vec::new();
    m.write_tables(&mut out).unwrap();
    assert!(out[188..].windows(3).any(|w| w == [0x24, 0xe1, 0x00]));
    // Legacy codec id 12 reads the same record after its 5-byte header.
    let mut legacy = TsMuxer::new();
    legacy
        .set_video_config(&[&[0x1c, 0, 0, 0, 0][..], &hvcc()].concat())
        .unwrap();
    assert!(legacy.has_video());
    // A record without a PPS is refused.
    let mut short = hvcc();
    short[22] = 2;
    short.truncate(short.len() - 8);
    let start = [&[0x90][..], b"hvc1", &short].concat();
    assert!(matches!(
        TsMuxer::new().set_video_config(&start),
        Err(TsError::VideoConfig)
    ));
}

#[test]
fn adts_header_and_pes_length() {
    let mut m = TsMuxer::new();
    // AAC-LC, 44.1 kHz, mono.
    m.set_audio_config(&[0xaf, 0, 0x12, 0x08]).unwrap();
    let mut out = Vec::new();
    m.write_audio(&mut out, 1000, &[0xaf, 1, 0xde, 0xad])
        .unwrap();
    assert_eq!(out.len(), 188);
    let adts = out.windows(2).position(|w| w == [0xff, 0xf1]).unwrap();
    // profile LC (1), index 4 (44.1 kHz), 1 channel, frame length 9.
    assert_eq!(
        &out[adts..adts + 7],
        &[0xff, 0xf1, 0x50, 0x40, 0x01, 0x3f, 0xfc]
    );
    assert_eq!(&out[adts + 7..adts + 9], &[0xde, 0xad]);
}

#[test]
fn bad_configurations_are_errors() {
    let mut m = TsMuxer::new();
    assert!(m.set_video_config(&[0x17, 0, 0, 0, 0, 1]).is_err());
    assert!(m.set_audio_config(&[0xaf, 0]).is_err());
    assert!(
        m.set_audio_config(&[0xaf, 0, 0x07, 0x88]).is_err(),
        "object type 0"
    );
}

#[test]
fn continuity_counters_wrap_per_pid() {
    let mut m = TsMuxer::new();
    let mut out = Vec::new();
    for _ in 0..17 {
        m.write_tables(&mut out).unwrap();
    }
    let ccs: Vec<u8> = out.chunks(188).step_by(2).map(|p| p[3] & 0x0f).collect();
    assert_eq!(ccs[15], 15);
    assert_eq!(ccs[16], 0);
}

#[test]
fn full_payload_packets_are_written_as_mpeg2ts_writes_them() {
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7) as u8).collect();
    for (pid_value, cc) in [(0x100, 0), (0x101, 5), (0x1fff, 15), (0x20, 9)] {
        let mut ours = Vec::new();
        write_full(&mut ours, pid_value, cc, &payload);
        let mut theirs = Vec::new();
        let raw = TsPayload::Raw(ts_bytes(&payload).expect("fits"));
        write(&mut theirs, packet(pid_value, cc, None, raw)).expect("written");
        assert_eq!(ours, theirs, "pid {pid_value:#x}, cc {cc}");
        assert_eq!(ours.len(), 188);
    }
}
