//! RTMP play against real peers: ffmpeg, rtmpdump and GStreamer play from corecast, and
//! nginx-rtmp relays in both directions (it pulls from corecast, and pushes into it).
//!
//! Every external program runs as a child process on 127.0.0.1 with its output in a
//! temporary directory, is bounded in time, and is killed when its guard is dropped, so a
//! failing assertion leaves no process behind. Each test skips with a notice when a program
//! it needs is missing, and fails instead under CORECAST_REQUIRE_TOOLS=1.

mod common;

use bytes::Bytes;
use common::peers::*;
use common::*;
use corecast::flv::reader::{FlvReader, FlvTag, TagKind};
use corecast::Server;
use corecast_testkit::client::{Pace, Publisher};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// ffmpeg publishing the fixture at twice real time (`loops + 1` passes) to `url`.
fn ffmpeg_publish(url: &str, loops: u32, dir: &TempDir) -> Proc {
    Proc::spawn(
        "ffmpeg-publish",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-readrate", "2", "-stream_loop", &loops.to_string(), "-i"])
            .arg(fixture_path())
            .args(["-c", "copy", "-f", "flv", url]),
        dir,
    )
}

/// Waits until `path` is live on the server's HTTP port, failing early (with its stderr)
/// when the publishing child has exited.
fn wait_live_while(server: &Server, path: &str, publisher: &mut Proc) {
    let http = server.http_addr();
    let live = wait_until(Duration::from_secs(15), || {
        publisher.exited().is_none() && FlvViewer::open(http, path).status == 200
    });
    if !live {
        let (_, stderr) = publisher.output();
        panic!(
            "{path} did not go live; {} stderr: {stderr}",
            publisher.name
        );
    }
}

/// Publishes the fixture into `live/{name}` with the project's client at `speed` x real
/// time, pass after pass, until `stop` is set (at most 10 passes). Returns the media
/// payloads sent, in order.
fn publish_until(
    server: &Server,
    name: &str,
    speed: f64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Bytes>> {
    publish_until_at(server.rtmp_addr(), "live", name, speed, stop)
}

/// [`publish_until`] into `app/{name}` of the RTMP server at `addr` (any server).
fn publish_until_at(
    addr: SocketAddr,
    app: &str,
    name: &str,
    speed: f64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Bytes>> {
    let (app, name) = (app.to_string(), name.to_string());
    thread::spawn(move || {
        let tags = fixture_tags();
        let media: Vec<Bytes> = tags
            .iter()
            .filter(|t| is_media(t))
            .map(|t| t.data.clone())
            .collect();
        let mut publisher =
            Publisher::connect(addr, &app, &name, Duration::from_secs(5)).expect("publish");
        let (mut offset, mut sent) = (0, Vec::new());
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            offset = publisher
                .replay(&tags, Pace::RealTime { speed }, offset)
                .expect("replay")
                + 40;
            sent.extend(media.iter().cloned());
        }
        publisher.finish().expect("finish");
        sent
    })
}

/// Complete tags of an FLV file whose writer may have been stopped in the middle of a tag:
/// the file is demuxed incrementally and reading stops at the first incomplete tag.
/// Returns the tags and the length of the complete part.
fn read_flv_prefix(path: &Path) -> (Vec<FlvTag>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = FlvReader::new();
    let mut tags = Vec::new();
    for chunk in bytes.chunks(4096) {
        reader.push(chunk);
        while let Some(tag) = reader.next_tag().expect("valid FLV") {
            tags.push(tag);
        }
    }
    let header = reader.header().expect("an FLV header");
    assert!(
        header.has_audio && header.has_video,
        "FLV header flags: {header:?}"
    );
    (tags, bytes.len() - reader.buffered_len())
}

/// An AVC end-of-sequence body (packet type 2), which muxers add when they close a file.
/// librtmp (rtmpdump) drops it on reception, as it drops every video message of 5 bytes
/// or fewer ("ignoring too small video packet").
fn is_end_of_sequence(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] & 0x0f == 7 && body[1] == 2
}

/// Audio and video tag bodies, sequence headers and end-of-sequence excluded.
fn media_payloads(tags: &[FlvTag]) -> Vec<Bytes> {
    tags.iter()
        .filter(|t| is_media(t) && !is_end_of_sequence(&t.data))
        .map(|t| t.data.clone())
        .collect()
}

/// `received` is a contiguous, byte-identical run of `sent`; otherwise the failure says
/// where the two part.
fn assert_contiguous(sent: &[Bytes], received: &[Bytes], what: &str) {
    if is_contiguous_run(sent, received) {
        return;
    }
    let describe = |b: &Bytes| format!("{} bytes {:02x?}", b.len(), &b[..b.len().min(8)]);
    let Some(start) = sent.iter().position(|b| Some(b) == received.first()) else {
        panic!(
            "{what}: the first ({}) was never sent ({} sent, {} received)",
            received.first().map_or("none".into(), describe),
            sent.len(),
            received.len()
        );
    };
    let parted = received
        .iter()
        .zip(&sent[start..])
        .position(|(r, s)| r != s)
        .unwrap_or(sent.len() - start);
    panic!(
        "{what}: received {} payloads from sent #{start} of {}; they part at received #{parted}: \
         received {}, sent {}",
        received.len(),
        sent.len(),
        received.get(parted).map_or("none".into(), describe),
        sent.get(start + parted).map_or("none".into(), describe),
    );
}

/// What `ffmpeg -stream_loop {passes - 1} -i fixture -c copy` publishes, as media payloads
/// (see [`media_payloads`]): ffmpeg's own output to a file, not the fixture repeated. At
/// each loop boundary ffmpeg interleaves by timestamp, so the next pass's keyframe goes out
/// before the last audio frames of the pass before (and its FLV demuxer drops the
/// end-of-sequence tag).
fn fixture_media(passes: usize, dir: &Path) -> Vec<Bytes> {
    let file = dir.join("looped.flv");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-stream_loop", &(passes - 1).to_string(), "-i"])
        .arg(fixture_path())
        .args(["-c", "copy", "-f", "flv"])
        .arg(&file)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg -stream_loop to a file: {status}");
    media_payloads(&read_flv_prefix(&file).0)
}

/// (video, audio) tag counts, sequence headers excluded.
fn media_counts(tags: &[FlvTag]) -> (usize, usize) {
    let count = |kind| {
        tags.iter()
            .filter(|t| t.kind == kind && is_media(t))
            .count()
    };
    (count(TagKind::Video), count(TagKind::Audio))
}

/// Decoder configuration before any media, and a keyframe as the first video frame.
fn assert_headers_before_media(tags: &[FlvTag]) {
    let first_media = tags.iter().position(is_media).expect("some audio or video");
    let kinds: Vec<_> = tags[..first_media].iter().map(|t| t.kind).collect();
    let has = |kind| {
        tags[..first_media]
            .iter()
            .any(|t| t.kind == kind && t.is_sequence_header())
    };
    assert!(has(TagKind::Video), "AVC sequence header first: {kinds:?}");
    assert!(has(TagKind::Audio), "AAC sequence header first: {kinds:?}");
    assert_track_headers_first(tags);
}

/// Each track's sequence header before that track's first frame (nginx-rtmp sends each
/// header just before its track's first frame), and a keyframe as the first video frame.
fn assert_track_headers_first(tags: &[FlvTag]) {
    for kind in [TagKind::Video, TagKind::Audio] {
        let mut track = tags.iter().filter(|t| t.kind == kind);
        let first = track.next().unwrap_or_else(|| panic!("no {kind:?} tags"));
        assert!(
            first.is_sequence_header(),
            "{kind:?} starts with its sequence header"
        );
        let first_frame = track
            .find(|t| is_media(t))
            .unwrap_or_else(|| panic!("no {kind:?} frames"));
        if kind == TagKind::Video {
            assert!(
                first_frame.is_video_keyframe(),
                "first video frame is a keyframe"
            );
        }
    }
}

/// Timestamps of audio and video frames (sequence headers aside) never decrease.
fn assert_media_monotonic(tags: &[FlvTag]) {
    let media: Vec<FlvTag> = tags.iter().filter(|t| is_media(t)).cloned().collect();
    assert_monotonic(&media);
}

/// `ffprobe -v error` on a file: must succeed silently; returns "codec_name,codec_type" lines.
fn ffprobe_streams(path: &Path, dir: &TempDir) -> String {
    let probe = Proc::spawn(
        "ffprobe",
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,codec_type",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path),
        dir,
    )
    .finish(Duration::from_secs(20));
    assert!(probe.status.success(), "ffprobe: {}", probe.stderr);
    assert!(probe.stderr.trim().is_empty(), "ffprobe: {}", probe.stderr);
    probe.stdout
}

#[test]
fn ffmpeg_plays_rtmp() {
    if !have_tool("ffmpeg") {
        return;
    }
    let dir = TempDir::new("ffmpeg");
    let server = start("");
    let rtmp = server.rtmp_addr();
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/x"), 2, &dir);
    wait_live_while(&server, "/live/x.flv", &mut publisher);

    // Decode three seconds of the stream played over RTMP; any complaint is a failure.
    let decode = Proc::spawn(
        "ffmpeg-play",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
            .arg(format!("rtmp://{rtmp}/live/x"))
            .args(["-t", "3", "-f", "framecrc", "-"]),
        &dir,
    )
    .finish(Duration::from_secs(30));
    assert!(
        decode.status.success(),
        "ffmpeg player failed: {}",
        decode.stderr
    );
    assert!(
        decode.stderr.trim().is_empty(),
        "decoder errors: {}",
        decode.stderr
    );

    // The framecrc header names each stream's type: "#media_type 0: video".
    let index_of = |kind: &str| {
        decode
            .stdout
            .lines()
            .find_map(|l| {
                let (index, rest) = l.strip_prefix("#media_type ")?.split_once(": ")?;
                (rest.trim() == kind).then(|| index.to_string())
            })
            .unwrap_or_else(|| panic!("no {kind} stream: {}", decode.stdout))
    };
    let frames = |index: String| {
        let prefix = format!("{index},");
        decode
            .stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    };
    let (video, audio) = (frames(index_of("video")), frames(index_of("audio")));
    assert!(video >= 50, "decoded {video} video frames");
    assert!(audio >= 80, "decoded {audio} audio frames");
    assert!(total(&server, |s| &s.rtmp_players_total) >= 1);

    let publisher = publisher.finish(Duration::from_secs(30));
    assert!(
        publisher.status.success(),
        "ffmpeg publisher: {}",
        publisher.stderr
    );
    server.stop();
}

#[test]
fn rtmpdump_plays_rtmp() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") || !have_tool("rtmpdump") {
        return;
    }
    let dir = TempDir::new("rtmpdump");
    let server = start("");
    let rtmp = server.rtmp_addr();
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/x"), 2, &dir);
    wait_live_while(&server, "/live/x.flv", &mut publisher);

    // rtmpdump's --stop does not end a live download, so it is stopped after 3 s (SIGTERM:
    // it flushes its file and exits). The file may still end in the middle of a tag.
    let file = dir.join("dump.flv");
    let mut dump = Proc::spawn(
        "rtmpdump",
        Command::new("rtmpdump")
            .args(["-r", &format!("rtmp://{rtmp}/live/x"), "--live", "-o"])
            .arg(&file),
        &dir,
    );
    let early = dump.wait_for(Duration::from_secs(3));
    let dump = dump.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(
        early.is_none(),
        "rtmpdump ended early ({:?}): {}",
        early,
        dump.stderr
    );

    let (tags, complete) = read_flv_prefix(&file);
    assert!(
        tags.len() > 3,
        "rtmpdump saved {} tags: {}",
        tags.len(),
        dump.stderr
    );
    assert_eq!(tags[0].kind, TagKind::Script, "metadata first");
    assert!(
        tags[0].data.windows(10).any(|w| w == b"onMetaData"),
        "onMetaData first"
    );
    assert_headers_before_media(&tags);
    assert_monotonic(&tags);
    let (video, audio) = media_counts(&tags);
    assert!(video >= 25, "{video} video tags");
    assert!(audio >= 40, "{audio} audio tags");
    assert_contiguous(
        &fixture_media(3, &dir.0),
        &media_payloads(&tags),
        "media payloads played by rtmpdump",
    );

    // ffprobe reads the complete part of the file without a complaint.
    let bytes = std::fs::read(&file).unwrap();
    let whole = dir.join("complete.flv");
    std::fs::write(&whole, &bytes[..complete]).unwrap();
    let streams = ffprobe_streams(&whole, &dir);
    assert!(streams.contains("h264,video"), "{streams}");
    assert!(streams.contains("aac,audio"), "{streams}");
    assert!(total(&server, |s| &s.rtmp_players_total) >= 1);

    drop(publisher);
    server.stop();
}

#[test]
fn gstreamer_plays_rtmp() {
    if !have_tool("ffmpeg") || !have_tool("gst-launch-1.0") || !have_tool("gst-inspect-1.0") {
        return;
    }
    let element = |name: &str| {
        Command::new("gst-inspect-1.0")
            .arg(name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for (name, package) in [
        ("rtmp2src", "gstreamer1.0-plugins-bad"),
        ("flvdemux", "gstreamer1.0-plugins-good"),
        ("h264parse", "gstreamer1.0-plugins-bad"),
        ("aacparse", "gstreamer1.0-plugins-good"),
        ("avdec_h264", "gstreamer1.0-libav"),
        ("avdec_aac", "gstreamer1.0-libav"),
    ] {
        if !have(
            &format!("GStreamer element {name} ({package})"),
            element(name),
        ) {
            return;
        }
    }
    let dir = TempDir::new("gst");
    let server = start("");
    let rtmp = server.rtmp_addr();
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/x"), 2, &dir);
    wait_live_while(&server, "/live/x.flv", &mut publisher);

    // Demux and decode both tracks; -v prints one `last-message = chain` line per decoded
    // buffer that reaches each fakesink. -e: SIGINT makes it drain (EOS) and exit 0.
    let pipeline = format!(
        "rtmp2src location=rtmp://{rtmp}/live/x ! flvdemux name=d \
         d.video ! queue ! h264parse ! avdec_h264 ! fakesink name=v silent=false \
         d.audio ! queue ! aacparse ! avdec_aac ! fakesink name=a silent=false"
    );
    let mut gst = Proc::spawn(
        "gst-launch",
        Command::new("gst-launch-1.0")
            .args(["-e", "-v"])
            .args(pipeline.split_whitespace()),
        &dir,
    );
    let count = |out: &str, sink: &str| {
        let needle = format!("GstFakeSink:{sink}: last-message = chain");
        out.lines().filter(|l| l.contains(&needle)).count()
    };
    // Its stdout is block-buffered: the counts seen while it runs are a lower bound.
    let enough = |out: &str| count(out, "v") >= 50 && count(out, "a") >= 80;
    let ran = wait_until(Duration::from_secs(15), || {
        gst.exited().is_some() || enough(&gst.output().0)
    });
    let early = gst.exited();
    let gst = gst.stop(libc::SIGINT, Duration::from_secs(10));
    assert!(
        early.is_none(),
        "gst-launch ended early ({early:?}): {}{}",
        gst.stdout,
        gst.stderr
    );
    assert!(ran || enough(&gst.stdout), "did not decode enough in 15 s");
    assert!(
        gst.status.success(),
        "gst-launch: {:?} {}",
        gst.status,
        gst.stderr
    );
    let errors: Vec<_> = gst
        .stdout
        .lines()
        .chain(gst.stderr.lines())
        .filter(|l| l.starts_with("ERROR") || l.starts_with("WARNING"))
        .collect();
    assert!(errors.is_empty(), "gst-launch: {errors:?}");
    let (video, audio) = (count(&gst.stdout, "v"), count(&gst.stdout, "a"));
    assert!(video >= 50, "decoded {video} video frames");
    assert!(audio >= 80, "decoded {audio} audio buffers");
    assert!(total(&server, |s| &s.rtmp_players_total) >= 1);

    drop(publisher);
    server.stop();
}

/// What rtmpdump plays from nginx at `path` (`app/stream`) for 4 s: the media payloads, once
/// checked (at least 100, each track's headers first, frame timestamps in order). Stops the
/// publisher (`stop`) afterwards.
fn play_from_nginx(nginx: &mut Nginx, path: &str, dir: &TempDir, stop: &AtomicBool) -> Vec<Bytes> {
    let file = dir.join("played.flv");
    let mut dump = Proc::spawn(
        "rtmpdump",
        Command::new("rtmpdump")
            .arg("-r")
            .arg(format!("rtmp://127.0.0.1:{}/{path}", nginx.port))
            .args(["--live", "-o"])
            .arg(&file),
        dir,
    );
    let early = dump.wait_for(Duration::from_secs(4));
    let dump = dump.stop(libc::SIGTERM, Duration::from_secs(5));
    nginx.assert_running(dir);
    stop.store(true, Ordering::Relaxed);
    assert!(
        early.is_none(),
        "rtmpdump ended early ({early:?}): {}\nnginx: {}",
        dump.stderr,
        nginx.log(dir)
    );
    // nginx-rtmp rebases timestamps and sends each track's sequence header (at timestamp 0)
    // just before that track's first frame, so only per-track order and frame timestamps
    // are checked.
    let (tags, _) = read_flv_prefix(&file);
    assert_track_headers_first(&tags);
    assert_media_monotonic(&tags);
    let received = media_payloads(&tags);
    assert!(
        received.len() >= 100,
        "received {} media tags through nginx: {}",
        received.len(),
        nginx.log(dir)
    );
    received
}

/// The media payloads a publisher sent, end-of-sequence messages left out.
fn published(publishing: std::thread::JoinHandle<Vec<Bytes>>) -> Vec<Bytes> {
    publishing
        .join()
        .expect("publisher")
        .into_iter()
        .filter(|body| !is_end_of_sequence(body))
        .collect()
}

#[test]
fn nginx_pulls_from_corecast() {
    if !have_tool("rtmpdump") {
        return;
    }
    let Some(nginx_setup) = nginx_rtmp() else {
        return;
    };
    let dir = TempDir::new("nginx-pull");
    let server = start("");
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_until(&server, "pulled", 2.0, stop.clone());
    wait_live(&server, "/live/pulled.flv");
    let mut nginx = start_nginx(&nginx_setup, server.rtmp_addr(), &dir);

    // A player on nginx makes nginx play the stream from corecast over RTMP.
    let received = play_from_nginx(&mut nginx, "pull/pulled", &dir, &stop);
    assert!(
        total(&server, |s| &s.rtmp_players_total) >= 1,
        "nginx played from corecast"
    );
    let sent = published(publishing);
    assert_contiguous(&sent, &received, "media payloads played through nginx");
    server.stop();
}

#[test]
fn corecast_forwards_into_nginx() {
    if !have_tool("rtmpdump") {
        return;
    }
    let Some(nginx_setup) = nginx_rtmp() else {
        return;
    };
    let dir = TempDir::new("nginx-forwarded");
    // nginx's pull and push applications are not used here.
    let unused = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut nginx = start_nginx(&nginx_setup, unused, &dir);
    let server = start(&format!(
        "[[forward]]\napp = \"live\"\nurl = \"rtmp://127.0.0.1:{}/forwarded/{{stream}}\"\n",
        nginx.port
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_until(&server, "pushed", 2.0, stop.clone());
    wait_live(&server, "/live/pushed.flv");
    assert!(
        wait_until(Duration::from_secs(10), || total(&server, |s| &s
            .forward_sessions)
            == 1),
        "corecast published to nginx: {}",
        nginx.log(&dir)
    );

    // A player of nginx gets the stream corecast pushes.
    let received = play_from_nginx(&mut nginx, "forwarded/pushed", &dir, &stop);
    let sent = published(publishing);
    assert_each_track_contiguous(&sent, &received, "forwarded to nginx");
    assert_eq!(total(&server, |s| &s.forward_failures), 0);
    server.stop();
}

/// nginx-rtmp interleaves the two tracks its own way (by arrival on their chunk streams):
/// each track of `received` is a contiguous run of the same track of `sent`.
fn assert_each_track_contiguous(sent: &[Bytes], received: &[Bytes], what: &str) {
    let track = |payloads: &[Bytes], audio: bool| -> Vec<Bytes> {
        payloads
            .iter()
            .filter(|p| (p.first() == Some(&0xaf)) == audio)
            .cloned()
            .collect()
    };
    for (audio, name) in [(false, "video"), (true, "audio")] {
        let (sent, received) = (track(sent, audio), track(received, audio));
        assert_contiguous(&sent, &received, &format!("{name} {what}"));
    }
}

/// A corecast edge pulls a stream from nginx-rtmp as its origin (`[[upstream]]`): its
/// HTTP-FLV viewer gets each track whole and in order, as it was published into nginx.
#[test]
fn corecast_pulls_from_nginx() {
    let Some(nginx_setup) = nginx_rtmp() else {
        return;
    };
    let dir = TempDir::new("nginx-origin");
    // nginx's pull and push applications are not used here.
    let unused = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut nginx = start_nginx(&nginx_setup, unused, &dir);
    let origin = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_until_at(origin, "forwarded", "cam", 1.0, stop.clone());
    let edge = start(&format!(
        "[[upstream]]\napp = \"live\"\norigins = [\"rtmp://{origin}/forwarded/{{stream}}\"]\n"
    ));
    // nginx has the stream once the publisher is in (its first pass takes seconds).
    thread::sleep(Duration::from_secs(1));
    let mut watch = common::watch::Watch::flv(&edge, "cam");
    watch.expect(WAIT, "media pulled from nginx", |got| {
        common::watch::media_of(got).len() > 150
    });
    nginx.assert_running(&dir);
    stop.store(true, Ordering::Relaxed);
    let sent = published(publishing);
    let (got, _) = watch.finish(WAIT);
    common::watch::assert_never_back("FLV viewer of the edge", &got);
    let received: Vec<Bytes> = got
        .iter()
        .map(|s| s.to_tag())
        .filter(is_media)
        .map(|t| t.data)
        .filter(|body| !is_end_of_sequence(body))
        .collect();
    assert_each_track_contiguous(&sent, &received, "pulled from nginx");
    assert_eq!(total(&edge, |s| &s.upstream_sessions), 1);
    edge.stop();
}

#[test]
fn nginx_pushes_into_corecast() {
    if !have_tool("ffmpeg") {
        return;
    }
    let Some(nginx_setup) = nginx_rtmp() else {
        return;
    };
    let dir = TempDir::new("nginx-push");
    let server = start("");
    let mut nginx = start_nginx(&nginx_setup, server.rtmp_addr(), &dir);

    // ffmpeg publishes to nginx, which republishes into corecast as relayed/pushed.
    let url = format!("rtmp://127.0.0.1:{}/push/pushed", nginx.port);
    let mut publisher = ffmpeg_publish(&url, 2, &dir);
    wait_live_while(&server, "/relayed/pushed.flv", &mut publisher);
    nginx.assert_running(&dir);

    let mut viewer = FlvViewer::open(server.http_addr(), "/relayed/pushed.flv");
    assert_eq!(viewer.status, 200);
    let tags = viewer.read_all(Duration::from_secs(3));
    drop(viewer);
    // nginx-rtmp pushes its metadata as a bare `onMetaData` data message (without
    // `@setDataFrame`): it arrives, first, with the fixture's picture size.
    let metadata = &tags[0];
    assert_eq!(metadata.kind, TagKind::Script, "metadata first");
    let fixture_metadata = fixture_tags()
        .into_iter()
        .find(|t| t.kind == TagKind::Script)
        .expect("the fixture's metadata");
    for key in ["width", "height"] {
        let sent = script_number(&fixture_metadata.data, key);
        assert!(sent.is_some_and(|v| v > 0.0), "the fixture's {key}");
        assert_eq!(
            script_number(&metadata.data, key),
            sent,
            "{key} pushed by nginx"
        );
    }
    // nginx-rtmp pushes the audio sequence header when its first audio frame comes, after
    // the first video frames: a viewer that joins in between gets it inline, before the
    // first audio frame, so each track's header before that track's frames is what holds.
    assert_track_headers_first(&tags);
    assert_monotonic(&tags);
    let received = media_payloads(&tags);
    assert!(
        received.len() >= 100,
        "received {} media tags pushed by nginx",
        received.len()
    );
    assert_contiguous(
        &fixture_media(3, &dir.0),
        &received,
        "media payloads pushed through nginx",
    );
    assert!(total(&server, |s| &s.publishers) >= 1);

    drop(publisher);
    server.stop();
}
