//! The fMP4 writer (src/hls/fmp4.rs) and the LL-HLS segmenter (src/hls/llsegmenter.rs) fed
//! with real encoder output, checked by ffprobe and ffmpeg: FLV files made by ffmpeg (H.264
//! with B-frames + AAC from Debian's ffmpeg; HEVC with B-frames + AAC and AV1 + Opus, in
//! Enhanced RTMP FLV, from the recent ffmpeg of the `imageio-ffmpeg` wheel) are read with
//! `corecast::flv::reader`, turned into units as the origin makes them, and cut by the
//! segmenter into parts of at most 200 ms and a segment per GOP. The init segment and the
//! segments, as one file, are probed (codecs, picture size, sampling rate, every frame
//! counted) and decoded without an error; the final playlist passes the test kit's checker.
//! Skips with a notice when a tool is missing; fails instead under CORECAST_REQUIRE_TOOLS=1.

mod common;

use common::{have_tool, modern_ffmpeg, wait_exit};
use corecast::flv::codec;
use corecast::flv::reader::{self, TagKind};
use corecast::hls::llhls::{LlSettings, PlaylistRequest};
use corecast::hls::llsegmenter::LlSegmenter;
use corecast::media::{Unit, UnitKind};
use corecast_testkit::hls_check;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The part target of the writer's caller.
const PART_MS: u64 = 200;

/// Seconds of media encoded.
const SECONDS: &str = "2";

/// One encoding: the ffmpeg that makes it and its codec arguments, and what the probe must
/// find.
struct Case {
    name: &'static str,
    /// The recent ffmpeg (Enhanced RTMP) rather than Debian's.
    modern: bool,
    encode: &'static [&'static str],
    /// The CODECS string starts so (the level follows from the encoder's choices).
    codecs: &'static str,
    video: &'static str,
    audio: &'static str,
    sample_rate: u32,
}

const CASES: [Case; 3] = [
    Case {
        name: "h264-aac",
        modern: false,
        encode: &["-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"],
        codecs: "avc1.64",
        video: "h264",
        audio: "aac",
        sample_rate: 44_100,
    },
    Case {
        name: "hevc-aac",
        modern: true,
        encode: common::HEVC_AAC,
        codecs: "hvc1.1.6.L",
        video: "hevc",
        audio: "aac",
        sample_rate: 44_100,
    },
    Case {
        name: "av1-opus",
        modern: true,
        encode: common::AV1_OPUS,
        codecs: "av01.0.",
        video: "av1",
        audio: "opus",
        sample_rate: 48_000,
    },
];

/// Runs `command`, at most 60 s.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if wait_exit(&mut child, Duration::from_secs(60)).is_none() {
        let _ = child.kill();
        panic!("{command:?} did not finish within 60 s");
    }
    child.wait_with_output().expect("output")
}

/// Encodes 320x240 at 25 fps with a tone into an FLV file.
fn encode(ffmpeg: &Path, case: &Case, rate: u32, out: &Path) {
    let output = run(Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:sample_rate={rate}"),
        ])
        .args(["-t", SECONDS])
        .args(case.encode)
        .args(["-f", "flv"])
        .arg(out));
    assert!(
        output.status.success(),
        "{}: encoding failed: {}",
        case.name,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What went into the segmenter and came out of it.
struct Written {
    codecs: String,
    video_frames: usize,
    /// Audio frames from the first picture's presentation time on: those before it are
    /// left out, so that both tracks start together (see the fMP4 writer's notes).
    audio_frames: usize,
    /// Every part, in order: duration (ms) and whether it starts with a keyframe.
    parts: Vec<(u64, bool)>,
    /// Complete segments.
    segments: usize,
    /// The final playlist.
    playlist: String,
}

/// Feeds the FLV file's tags as units to the LL-HLS segmenter (1 s segments, parts of at
/// most [`PART_MS`]), the wall clock following their timestamps, and ends the stream.
/// Writes the init segment and the segments to `out`.
fn write(flv: &Path, out: &Path) -> Written {
    let (_, tags) = reader::read_file(flv).expect("read the FLV file");
    let settings = LlSettings {
        segment_target_ms: 1000,
        part_target_ms: PART_MS,
        window: 16,
    };
    let mut segmenter = LlSegmenter::new("t", 1, settings);
    let mut video_frames = 0;
    // The first picture's presentation time, and the audio frames' timestamps: the audio
    // before that picture is left out.
    let mut first_shown = None;
    let mut audio = Vec::new();
    let t0 = 1_796_515_200_000;
    for tag in &tags {
        let (kind, key, header) = match tag.kind {
            TagKind::Video => {
                let t = codec::video(&tag.data).expect("video tag");
                // Frames: legacy packet type 1 (0 is the header, 2 the end of sequence).
                let frame = t.payload && !t.header && (t.enhanced || tag.data.get(1) == Some(&1));
                video_frames += usize::from(frame);
                if frame && first_shown.is_none() {
                    first_shown = Some(i64::from(tag.timestamp) + i64::from(t.composition_time));
                }
                (UnitKind::Video, t.keyframe, t.header)
            }
            TagKind::Audio => {
                let t = codec::audio(&tag.data).expect("audio tag");
                if t.payload && !t.header {
                    audio.push(i64::from(tag.timestamp));
                }
                (UnitKind::Audio, false, t.header)
            }
            _ => (UnitKind::Script, false, true),
        };
        let unit = Unit::serialize(kind, tag.timestamp, key, header, &tag.data, 4096, None);
        segmenter
            .push(&unit, t0 + u64::from(tag.timestamp))
            .expect("push");
    }
    let end = tags.last().map_or(0, |t| u64::from(t.timestamp));
    segmenter.end(t0 + end).expect("end");
    let window = segmenter.window();
    let mut file = segmenter.init(0).expect("init segment").to_vec();
    let mut parts = Vec::new();
    for segment in window.segments() {
        file.extend_from_slice(&segment.bytes);
        parts.extend(segment.parts.iter().map(|p| (p.duration_ms, p.independent)));
    }
    std::fs::write(out, file).expect("write the fMP4 file");
    let first_shown = first_shown.expect("a picture");
    Written {
        codecs: segmenter.writer().codecs().expect("codecs"),
        video_frames,
        audio_frames: audio.iter().filter(|&&t| t >= first_shown).count(),
        parts,
        segments: window.segments().len(),
        playlist: window.playlist(&PlaylistRequest::default()),
    }
}

/// ffprobe's view of each stream: codec, size or sampling rate, frames decoded.
fn probe(file: &Path) -> Vec<serde_json::Value> {
    let output = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-of", "json"])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,width,height,sample_rate,nb_read_frames",
        ])
        .arg(file));
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    json["streams"].as_array().expect("streams").clone()
}

/// Decodes the whole file; the error lines, if any.
fn decode_errors(ffmpeg: &Path, file: &Path) -> String {
    let output = run(Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]));
    assert!(output.status.success(), "{ffmpeg:?} failed on {file:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("corecast-fmp4-{}-{name}", std::process::id()))
}

fn check(case: &Case, ffmpeg: &Path) {
    let flv = temp(&format!("{}.flv", case.name));
    let mp4 = temp(&format!("{}.mp4", case.name));
    encode(ffmpeg, case, case.sample_rate, &flv);
    let written = write(&flv, &mp4);
    let name = case.name;
    assert!(
        written.codecs.starts_with(case.codecs),
        "{name}: CODECS {}",
        written.codecs
    );
    assert_eq!(written.video_frames, 50, "{name}: 2 s at 25 fps fed");
    // Parts: at most the part target, each GOP's first one independent and starting a
    // segment; the playlist passes the checker.
    for (i, (duration_ms, _)) in written.parts.iter().enumerate() {
        assert!(
            *duration_ms <= PART_MS,
            "{name}: part {i} lasts {duration_ms} ms"
        );
    }
    let independent = written
        .parts
        .iter()
        .filter(|(_, independent)| *independent)
        .count();
    assert_eq!(independent, 2, "{name}: one independent part per GOP");
    assert_eq!(written.segments, 2, "{name}: one segment per GOP");
    if let Err(violations) = hls_check::check(&written.playlist) {
        panic!(
            "{name}: {}{}",
            hls_check::report(&violations),
            written.playlist
        );
    }

    eprintln!(
        "{name}: CODECS {}, {} video and {} audio frames in {} parts, {} bytes",
        written.codecs,
        written.video_frames,
        written.audio_frames,
        written.parts.len(),
        std::fs::metadata(&mp4).map_or(0, |m| m.len())
    );
    let streams = probe(&mp4);
    assert_eq!(streams.len(), 2, "{name}: {streams:?}");
    let stream = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .unwrap_or_else(|| panic!("{name}: no {kind} stream in {streams:?}"))
    };
    let frames = |s: &serde_json::Value| {
        s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{name}: frame count of {s}"))
    };
    let video = stream("video");
    assert_eq!(video["codec_name"], case.video, "{name}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(
        frames(video),
        written.video_frames,
        "{name}: every video frame decoded"
    );
    let audio = stream("audio");
    assert_eq!(audio["codec_name"], case.audio, "{name}");
    assert_eq!(audio["sample_rate"], case.sample_rate.to_string(), "{name}");
    assert_eq!(
        frames(audio),
        written.audio_frames,
        "{name}: every audio frame decoded"
    );

    // Decoded by Debian's ffmpeg and, for Enhanced RTMP input, by the one that made it.
    let errors = decode_errors(Path::new("ffmpeg"), &mp4);
    assert!(errors.is_empty(), "{name}: ffmpeg decoding: {errors}");
    if case.modern {
        let errors = decode_errors(ffmpeg, &mp4);
        assert!(
            errors.is_empty(),
            "{name}: recent ffmpeg decoding: {errors}"
        );
    }
    let _ = std::fs::remove_file(flv);
    let _ = std::fs::remove_file(mp4);
}

#[test]
fn h264_and_aac_from_debian_ffmpeg() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    check(&CASES[0], Path::new("ffmpeg"));
}

#[test]
fn hevc_aac_and_av1_opus_from_a_recent_ffmpeg() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let Some(modern) = modern_ffmpeg() else {
        return;
    };
    for case in &CASES[1..] {
        check(case, &modern);
    }
}
