//! Probe viewers: they parse what they receive (HTTP-FLV or RTMP) and measure end-to-end
//! latency from the publishers' SEI send-time stamps, startup time (request to first
//! keyframe), stalls (no video frame for longer than a threshold) and skipped-frame gaps
//! (a jump in video timestamps larger than a threshold, which is what a relay's skip to the
//! next keyframe looks like from the viewer's side).

use crate::sei;
use corecast::flv::reader::{FlvReader, TagKind};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// A latency histogram: 1 µs to one hour, 3 significant digits, in nanoseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("static bounds are valid")
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `h` (nanosecond values); all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Thresholds of the probes.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// No video frame for longer than this is a stall.
    pub stall: Duration,
    /// A video timestamp advance larger than this between two consecutive frames is a
    /// skipped-frame gap.
    pub gap_ms: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            stall: Duration::from_secs(1),
            gap_ms: 250,
        }
    }
}

/// What the probes of one group of viewers measured.
pub struct Probed {
    /// Send time (SEI stamp) to frame received, ns.
    pub latency: Histogram<u64>,
    /// Request sent to first keyframe received, ns.
    pub startup: Histogram<u64>,
    /// Stalls seen.
    pub stalls: u64,
    /// Skipped-frame gaps seen.
    pub gaps: u64,
    /// Video frames parsed.
    pub frames: u64,
    /// Stamped frames sent before the probe asked (the GOP cache), left out of `latency`.
    pub cached: u64,
}

impl Default for Probed {
    fn default() -> Self {
        Probed {
            latency: histogram(),
            startup: histogram(),
            stalls: 0,
            gaps: 0,
            frames: 0,
            cached: 0,
        }
    }
}

/// One probe's view of the video frames it receives, independent of the protocol.
#[derive(Debug)]
pub struct FrameClock {
    asked: Instant,
    asked_unix_ns: u64,
    thresholds: Thresholds,
    started: bool,
    last_arrival: Option<Instant>,
    last_dts: Option<u32>,
}

impl FrameClock {
    /// A probe that sent its request at `asked`.
    pub fn new(asked: Instant, thresholds: Thresholds) -> Self {
        FrameClock {
            asked,
            asked_unix_ns: sei::now_unix_ns().saturating_sub(asked.elapsed().as_nanos() as u64),
            thresholds,
            started: false,
            last_arrival: None,
            last_dts: None,
        }
    }

    /// Accounts one video frame (not a sequence header) received at `now` (`now_unix_ns` on
    /// the wall clock, for the stamp) with timestamp `dts` ms and the stamp it carried.
    pub fn frame(
        &mut self,
        now: Instant,
        now_unix_ns: u64,
        dts: u32,
        keyframe: bool,
        stamp: Option<u64>,
        probed: &mut Probed,
    ) {
        probed.frames += 1;
        if !self.started {
            if !keyframe {
                return;
            }
            self.started = true;
            probed
                .startup
                .saturating_record(now.duration_since(self.asked).as_nanos() as u64);
        }
        if let Some(last) = self.last_arrival.replace(now) {
            if now.duration_since(last) > self.thresholds.stall {
                probed.stalls += 1;
            }
        }
        if let Some(last) = self.last_dts.replace(dts) {
            if dts.wrapping_sub(last) > self.thresholds.gap_ms && dts.wrapping_sub(last) < 1 << 31 {
                probed.gaps += 1;
            }
        }
        match stamp {
            // Sent before the probe asked: it came from the GOP cache, whose age says
            // nothing about the relay's latency.
            Some(stamp) if stamp < self.asked_unix_ns => probed.cached += 1,
            Some(stamp) => {
                probed
                    .latency
                    .saturating_record(now_unix_ns.saturating_sub(stamp).max(1_000));
            }
            None => {}
        }
    }

    /// Whether the first keyframe has arrived.
    pub fn started(&self) -> bool {
        self.started
    }
}

/// Feeds one FLV video tag body to `clock`.
pub fn flv_video(clock: &mut FrameClock, dts: u32, body: &[u8], probed: &mut Probed) {
    // AVC sequence headers (packet type 0) and non-AVC bodies carry no frame.
    if body.len() < 2 || body[1] != 1 {
        return;
    }
    let keyframe = body[0] >> 4 == 1;
    clock.frame(
        Instant::now(),
        sei::now_unix_ns(),
        dts,
        keyframe,
        sei::find_in_flv_video(body),
        probed,
    );
}

/// Parses an HTTP-FLV response as it arrives.
pub struct FlvProbe {
    head: Option<Vec<u8>>,
    reader: FlvReader,
    clock: FrameClock,
}

impl FlvProbe {
    /// A probe that sent its request at `asked`.
    pub fn new(asked: Instant, thresholds: Thresholds) -> Self {
        FlvProbe {
            head: Some(Vec::new()),
            reader: FlvReader::new(),
            clock: FrameClock::new(asked, thresholds),
        }
    }

    /// Feeds received bytes; returns an error when the stream is not FLV.
    pub fn feed(&mut self, chunk: &[u8], probed: &mut Probed) -> Result<(), String> {
        match self.head.as_mut() {
            Some(head) => {
                head.extend_from_slice(chunk);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return match head.len() > 16 * 1024 {
                        true => Err("response head longer than 16 KiB".into()),
                        false => Ok(()),
                    };
                };
                if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
                    return Err(format!(
                        "response: {}",
                        String::from_utf8_lossy(&head[..end.min(64)])
                    ));
                }
                self.reader.push(&head[end + 4..]);
                self.head = None;
            }
            None => self.reader.push(chunk),
        }
        loop {
            match self.reader.next_tag() {
                Ok(Some(tag)) if tag.kind == TagKind::Video => {
                    flv_video(&mut self.clock, tag.timestamp, &tag.data, probed)
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(clock: &mut FrameClock, at_ms: u64, dts: u32, key: bool, p: &mut Probed) {
        let (base, unix) = (clock.asked, clock.asked_unix_ns + 100_000_000);
        clock.frame(
            base + Duration::from_millis(at_ms),
            unix + at_ms * 1_000_000,
            dts,
            key,
            Some(unix + at_ms * 1_000_000 - 20_000_000),
            p,
        );
    }

    #[test]
    fn frames_from_the_gop_cache_are_not_latency() {
        let mut p = Probed::default();
        let mut c = FrameClock::new(Instant::now(), Thresholds::default());
        let sent_before = c.asked_unix_ns - 1_500_000_000;
        c.frame(
            Instant::now(),
            sei::now_unix_ns(),
            0,
            true,
            Some(sent_before),
            &mut p,
        );
        assert_eq!((p.cached, p.latency.len(), p.startup.len()), (1, 0, 1));
    }

    #[test]
    fn startup_waits_for_a_keyframe() {
        let mut p = Probed::default();
        let mut c = FrameClock::new(Instant::now(), Thresholds::default());
        frame(&mut c, 10, 0, false, &mut p);
        assert!(!c.started() && p.startup.is_empty() && p.latency.is_empty());
        frame(&mut c, 120, 33, true, &mut p);
        assert!(c.started());
        assert_eq!(p.startup.len(), 1);
        let ms = p.startup.max() as f64 / 1e6;
        assert!((119.0..121.0).contains(&ms), "{ms}");
        let latency = Percentiles::of(&p.latency);
        assert!((latency.p50_ms - 20.0).abs() < 0.1, "{latency:?}");
    }

    #[test]
    fn stalls_and_gaps_are_counted() {
        let mut p = Probed::default();
        let thresholds = Thresholds {
            stall: Duration::from_millis(500),
            gap_ms: 250,
        };
        let mut c = FrameClock::new(Instant::now(), thresholds);
        frame(&mut c, 0, 1000, true, &mut p);
        frame(&mut c, 33, 1033, false, &mut p);
        // 600 ms without a frame: a stall; the timestamps are continuous: no gap.
        frame(&mut c, 633, 1066, false, &mut p);
        // A skip to the next keyframe: timestamps jump 900 ms.
        frame(&mut c, 666, 1966, true, &mut p);
        // Timestamps going back (a republish) and wrapping are not gaps.
        frame(&mut c, 700, 0, true, &mut p);
        frame(&mut c, 733, 33, false, &mut p);
        assert_eq!((p.stalls, p.gaps, p.frames), (1, 1, 6));
    }

    #[test]
    fn flv_probe_parses_a_response() {
        let mut probe = FlvProbe::new(Instant::now(), Thresholds::default());
        let mut body = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
        body.extend_from_slice(corecast::flv::file_header(false, true));
        let key = sei::stamp_flv_video(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65], sei::now_unix_ns());
        body.extend_from_slice(&corecast::flv::tag(
            corecast::media::UnitKind::Video,
            40,
            &key,
        ));
        let mut p = Probed::default();
        // Byte by byte: heads and tags split anywhere.
        for b in &body {
            probe.feed(std::slice::from_ref(b), &mut p).unwrap();
        }
        assert_eq!((p.frames, p.startup.len(), p.latency.len()), (1, 1, 1));

        let mut refused = FlvProbe::new(Instant::now(), Thresholds::default());
        let err = refused
            .feed(b"HTTP/1.1 404 Not Found\r\n\r\n", &mut p)
            .unwrap_err();
        assert!(err.contains("404"), "{err}");
    }
}
