//! When a shard wakes a stream's viewers (pure: loads and times are passed in).
//!
//! Fan-out costs per send, not per byte: measured on one shard with 1,000 RTMP players of a
//! 2.6 Mbit/s stream, the shard's CPU followed its sends at about 8-10 µs each whatever they
//! carried (docs/TUNING.md). Waking viewers for every unit gives the lowest latency and the
//! most sends; merging the units of a window into one wake-up gives the fewest sends and up
//! to a window of latency. Two ways in between matter:
//! - **frames**: a picture (a video unit, or any unit of an audio-only stream) wakes the
//!   viewers at once, and the audio between two pictures rides with the next one (at most a
//!   window later). One send per frame: latency is the pass over the viewers, nothing more.
//! - **merging**: every unit waits for the window. At 50 ms and 25 or 30 frames a second,
//!   about half the sends of frames.
//!
//! [`Schedule::Adaptive`] (the default) uses frames while the shard can afford them and
//! merging when it cannot. What decides is the load the shard *would* have in frames, which
//! must not depend on the mode it is in (else the mode would flap: merging lowers the busy
//! fraction that made it merge). In frames, that load is the busy fraction, and the shard
//! learns from it what one frame send costs (busy fraction per frame send a second). While
//! merging, the load is that cost times the frame sends the audience would need now (every
//! viewer once per picture, counted whatever the mode). The shard turns to merging when the
//! load passes [`MERGE_ABOVE`], and back to frames when it falls under [`FRAMES_BELOW`].
//! [`Schedule::Fixed`] keeps one window whatever the load.
//!
//! Samples are taken every [`LOAD_SAMPLE`] and smoothed over about [`SMOOTHING_SAMPLES`]
//! (half a second), so one long pass or a burst of joins does not switch the mode, and a
//! change of audience is followed within a second or two.

use crate::media::UnitKind;
use std::time::Duration;

/// How often the shard's load is sampled.
pub const LOAD_SAMPLE: Duration = Duration::from_millis(50);

/// Samples the load is smoothed over (the weight of a new sample is its inverse).
pub const SMOOTHING_SAMPLES: f64 = 10.0;

/// Load in frames (busy fraction) above which an adaptive schedule merges.
pub const MERGE_ABOVE: f64 = 0.5;

/// Load in frames (busy fraction) under which an adaptive schedule goes back to frames.
pub const FRAMES_BELOW: f64 = 0.4;

/// Windows shorter than this are no windows: the units go out at once (a timer that short
/// costs more than the wake-up it would save).
pub const MIN_WINDOW: Duration = Duration::from_millis(1);

/// Fewest frame sends in a sample for it to tell the cost of one.
const MIN_SENDS: u64 = 100;

/// Whether a unit is a picture: a video unit, or any unit of an audio-only stream (which
/// the schedule treats as frames).
pub fn is_picture(kind: UnitKind, has_video: bool) -> bool {
    kind == UnitKind::Video || (kind == UnitKind::Audio && !has_video)
}

/// A shard's send schedule, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Frames while the shard can afford them, merging with `window` when it cannot.
    Adaptive {
        /// The merge window.
        window: Duration,
    },
    /// One window whatever the load (zero: every unit at once).
    Fixed(Duration),
}

/// When to wake viewers for a new unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Now.
    Now,
    /// At the end of a window of this length, opened by the first unit that waits.
    After(Duration),
}

/// What the shard did in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Time the executor spent running tasks.
    pub ran: Duration,
    /// Wall time of the sample.
    pub wall: Duration,
    /// Sends frames would make: every viewer of a stream once per picture.
    pub frame_sends: u64,
}

/// The schedule, its mode and the load it follows.
#[derive(Debug, Clone)]
pub struct SendSchedule {
    schedule: Schedule,
    /// A video unit wakes the viewers at once, whatever the window (`flush_on_video`).
    video_at_once: bool,
    /// Smoothed load the shard would have in frames (busy fraction, may exceed 1).
    load: f64,
    /// Smoothed busy fraction per frame send a second, learnt in frames.
    cost: Option<f64>,
    /// An adaptive schedule is merging.
    merging: bool,
}

impl SendSchedule {
    /// A schedule, starting from an idle shard; with `video_at_once`, video units are never
    /// held by a window.
    pub fn new(schedule: Schedule, video_at_once: bool) -> Self {
        SendSchedule {
            schedule,
            video_at_once,
            load: 0.0,
            cost: None,
            merging: false,
        }
    }

    /// Takes one sample, and switches an adaptive schedule's mode if its load says so.
    pub fn observe(&mut self, sample: Sample) {
        if sample.wall.is_zero() {
            return;
        }
        let seconds = sample.wall.as_secs_f64();
        let busy = (sample.ran.as_secs_f64() / seconds).clamp(0.0, 1.0);
        let frame_rate = sample.frame_sends as f64 / seconds;
        let in_frames = if self.merging {
            // What frames would cost now, at the cost they had when last used.
            self.cost.map_or(busy, |cost| cost * frame_rate)
        } else {
            if sample.frame_sends >= MIN_SENDS {
                let cost = busy / frame_rate;
                let learnt = self.cost.get_or_insert(cost);
                *learnt += (cost - *learnt) / SMOOTHING_SAMPLES;
            }
            busy
        };
        self.load += (in_frames - self.load) / SMOOTHING_SAMPLES;
        if self.merging && self.load < FRAMES_BELOW {
            self.merging = false;
        } else if !self.merging && self.load > MERGE_ABOVE {
            self.merging = true;
        }
    }

    /// The smoothed load the shard would have in frames.
    pub fn load(&self) -> f64 {
        self.load
    }

    /// When to wake viewers for a new unit of `kind`, on a stream that `has_video`.
    pub fn wake(&self, kind: UnitKind, has_video: bool) -> Wake {
        if kind == UnitKind::Video && self.video_at_once {
            return Wake::Now;
        }
        let window = match self.schedule {
            Schedule::Fixed(window) => window,
            Schedule::Adaptive { window } if self.merging || !is_picture(kind, has_video) => window,
            Schedule::Adaptive { .. } => return Wake::Now,
        };
        if window < MIN_WINDOW {
            Wake::Now
        } else {
            Wake::After(window)
        }
    }

    /// The window pictures wait for now (zero: none).
    pub fn picture_window(&self) -> Duration {
        match self.wake(UnitKind::Video, true) {
            Wake::Now => Duration::ZERO,
            Wake::After(window) => window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(50);
    const ADAPTIVE: Schedule = Schedule::Adaptive { window: WINDOW };

    /// When a video unit of a stream with video wakes the viewers.
    fn picture(s: &SendSchedule) -> Wake {
        s.wake(UnitKind::Video, true)
    }

    /// When an audio unit of a stream with video wakes them.
    fn audio(s: &SendSchedule) -> Wake {
        s.wake(UnitKind::Audio, true)
    }

    /// Two seconds of samples of a shard `busy` of the time, whose audience needs
    /// `frame_sends` a sample in frames.
    fn settle(s: &mut SendSchedule, busy: f64, frame_sends: u64) {
        for _ in 0..40 {
            s.observe(Sample {
                ran: LOAD_SAMPLE.mul_f64(busy),
                wall: LOAD_SAMPLE,
                frame_sends,
            });
        }
    }

    #[test]
    fn frames_while_idle_pictures_at_once_and_audio_riding_along() {
        let s = SendSchedule::new(ADAPTIVE, false);
        assert_eq!(picture(&s), Wake::Now);
        assert_eq!(audio(&s), Wake::After(WINDOW));
        assert_eq!(s.picture_window(), Duration::ZERO);
    }

    #[test]
    fn merges_when_frames_would_cost_too_much_and_comes_back_when_they_would_not() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        // 1,000 frame sends a sample at 30% busy: frames stay, and cost 0.3 for 20,000 a
        // second.
        settle(&mut s, 0.3, 1_000);
        assert_eq!(picture(&s), Wake::Now);
        // Twice the audience at 60%: merges.
        settle(&mut s, 0.6, 2_000);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        assert_eq!(s.picture_window(), WINDOW);
        // Merging lowers the busy fraction, not the load frames would have: it stays.
        settle(&mut s, 0.3, 2_000);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        assert!((s.load() - 0.6).abs() < 0.02, "{}", s.load());
        // Between the thresholds it stays as it is.
        settle(&mut s, 0.25, 1_500);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        // The audience shrinks to where frames cost 30%: back to frames.
        settle(&mut s, 0.15, 1_000);
        assert_eq!(picture(&s), Wake::Now);
        settle(&mut s, 0.45, 1_500);
        assert_eq!(
            picture(&s),
            Wake::Now,
            "between the thresholds, frames stay"
        );
    }

    #[test]
    fn a_burst_does_not_switch() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        settle(&mut s, 0.3, 1_000);
        for _ in 0..3 {
            s.observe(Sample {
                ran: LOAD_SAMPLE,
                wall: LOAD_SAMPLE,
                frame_sends: 1_000,
            });
        }
        assert_eq!(picture(&s), Wake::Now, "{}", s.load());
    }

    #[test]
    fn merging_before_any_cost_was_learnt_follows_the_busy_fraction() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        // A shard busy with something else than frames (joins, ingest): it merges on its
        // busy fraction, and comes back with it, having learnt no cost from few sends.
        settle(&mut s, 0.8, 10);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        settle(&mut s, 0.1, 10);
        assert_eq!(picture(&s), Wake::Now);
        let load = s.load();
        s.observe(Sample {
            ran: LOAD_SAMPLE,
            wall: Duration::ZERO,
            frame_sends: 10,
        });
        assert_eq!(s.load(), load, "an empty sample is ignored");
    }

    #[test]
    fn fixed_ignores_the_load() {
        let mut s = SendSchedule::new(Schedule::Fixed(WINDOW), false);
        settle(&mut s, 0.0, 0);
        assert_eq!(
            (picture(&s), audio(&s)),
            (Wake::After(WINDOW), Wake::After(WINDOW))
        );
        settle(&mut s, 1.0, 2_000);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        let at_once = SendSchedule::new(Schedule::Fixed(Duration::ZERO), false);
        assert_eq!((picture(&at_once), audio(&at_once)), (Wake::Now, Wake::Now));
    }

    #[test]
    fn audio_of_an_audio_only_stream_is_a_picture() {
        let s = SendSchedule::new(ADAPTIVE, false);
        assert_eq!(s.wake(UnitKind::Audio, false), Wake::Now);
        assert_eq!(s.wake(UnitKind::Script, false), Wake::After(WINDOW));
    }

    #[test]
    fn video_at_once_is_never_held_and_the_window_it_reports_is_none() {
        let mut s = SendSchedule::new(Schedule::Fixed(WINDOW), true);
        settle(&mut s, 1.0, 2_000);
        assert_eq!((picture(&s), audio(&s)), (Wake::Now, Wake::After(WINDOW)));
        assert_eq!(s.picture_window(), Duration::ZERO);
        let mut s = SendSchedule::new(ADAPTIVE, true);
        settle(&mut s, 0.8, 2_000);
        assert_eq!((picture(&s), audio(&s)), (Wake::Now, Wake::After(WINDOW)));
    }
}
