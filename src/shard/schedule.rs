//! When a shard wakes a stream's viewers (pure: loads and times are passed in).
//!
//! Fan-out costs per send, not per byte: measured on one shard with 1,000 RTMP players of a
//! 2.6 Mbit/s stream, the shard's CPU followed its sends at about 5-10 µs each whatever they
//! carried (docs/TUNING.md). Waking viewers for every unit gives the lowest latency and the
//! most sends; holding units so that several go out in one send saves sends and adds the
//! time they are held. What players wait for is the picture, so the sends worth making are
//! the ones a picture completes:
//! - **frames**: a picture (a video unit, or any unit of an audio-only stream) wakes the
//!   viewers at once, and the audio between two pictures rides with the next one (at most a
//!   window later). One send per frame: latency is the pass over the viewers, nothing more.
//! - **pictures in groups**: every k-th picture wakes the viewers, with the units held
//!   since; what waits longer than k-1 windows goes out then whatever came. k sends carry k
//!   frames, and a picture waits at most k-1 frame intervals: at 30 frames a second, k = 2
//!   holds a picture up to 33 ms for half the sends, where a 50 ms window holds every unit
//!   up to 50 ms for about as many (a window's sends are not aligned with the pictures, so
//!   its last picture waits for nothing).
//!
//! [`Schedule::Adaptive`] (the default) groups as few pictures per send as the shard's load
//! allows. What decides is the load the shard *would* have in frames, which must not depend
//! on the grouping (else it would flap: grouping lowers the busy fraction that made it
//! group). A send costs a fixed part and a part per picture it carries, about a tenth of
//! the fixed part ([`PICTURE_SHARE`]; measured: pairs took 0.5 and threes 0.4 of what
//! frames took), so that load is the busy fraction times what k pictures a send save; while
//! the audience is too small for its sends to be the shard's load (fewer than
//! [`MIN_SENDS`] frame sends a sample), it is the busy fraction alone. With
//! k pictures a send the shard expects about load / k: k grows while that passes
//! [`MERGE_ABOVE`] and shrinks when k - 1 would stay under [`FRAMES_BELOW`], up to
//! [`MAX_PICTURES_PER_SEND`].
//! [`Schedule::Fixed`] keeps one window whatever the load.
//!
//! Samples are taken every [`LOAD_SAMPLE`] and smoothed over about [`SMOOTHING_SAMPLES`]
//! (half a second), so one long pass or a burst of joins does not switch the grouping, and
//! a change of audience is followed within a second or two.

use crate::media::UnitKind;
use std::time::Duration;

/// How often the shard's load is sampled.
pub const LOAD_SAMPLE: Duration = Duration::from_millis(50);

/// Samples the load is smoothed over (the weight of a new sample is its inverse).
pub const SMOOTHING_SAMPLES: f64 = 10.0;

/// Expected busy fraction (load in frames over pictures per send) above which an adaptive
/// schedule groups more pictures per send.
pub const MERGE_ABOVE: f64 = 0.5;

/// Expected busy fraction with one picture fewer per send under which an adaptive schedule
/// groups one fewer (down to frames).
pub const FRAMES_BELOW: f64 = 0.4;

/// Most pictures an adaptive schedule groups into one send: at 30 frames a second, a
/// picture waits at most 67 ms. Beyond, a busier shard's longer passes space the sends
/// (four a send held pictures longer than a fixed 50 ms window, whose sends a long pass
/// spaces the same way).
pub const MAX_PICTURES_PER_SEND: u32 = 3;

/// Windows shorter than this are no windows: the units go out at once (a timer that short
/// costs more than the wake-up it would save).
pub const MIN_WINDOW: Duration = Duration::from_millis(1);

/// A picture's part of the cost of a send, against the send's fixed part.
pub const PICTURE_SHARE: f64 = 0.1;

/// Fewest frame sends in a sample for its busy fraction to be taken as theirs.
pub const MIN_SENDS: u64 = 100;

/// How many times fewer a shard's sends cost it with `pictures` per send than one by one.
fn saving(pictures: u32) -> f64 {
    let k = f64::from(pictures);
    k * (1.0 + PICTURE_SHARE) / (1.0 + k * PICTURE_SHARE)
}

/// Whether a unit is a picture: a video unit, or any unit of an audio-only stream (which
/// the schedule treats as frames).
pub fn is_picture(kind: UnitKind, has_video: bool) -> bool {
    kind == UnitKind::Video || (kind == UnitKind::Audio && !has_video)
}

/// A shard's send schedule, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Frames while the shard can afford them, pictures in groups when it cannot; a unit
    /// waits at most `window` times one less than the pictures per send (and audio at most
    /// `window` for the next picture in frames).
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
    /// Pictures per send of an adaptive schedule (1: frames).
    pictures: u32,
}

impl SendSchedule {
    /// A schedule, starting from an idle shard; with `video_at_once`, video units are never
    /// held by a window.
    pub fn new(schedule: Schedule, video_at_once: bool) -> Self {
        SendSchedule {
            schedule,
            video_at_once,
            load: 0.0,
            pictures: 1,
        }
    }

    /// Follows a new configuration; an adaptive schedule keeps its load and grouping.
    pub fn reconfigure(&mut self, schedule: Schedule, video_at_once: bool) {
        self.schedule = schedule;
        self.video_at_once = video_at_once;
    }

    /// Takes one sample, and changes an adaptive schedule's pictures per send if its load
    /// says so.
    pub fn observe(&mut self, sample: Sample) {
        if sample.wall.is_zero() {
            return;
        }
        let busy = (sample.ran.as_secs_f64() / sample.wall.as_secs_f64()).clamp(0.0, 1.0);
        let in_frames = if sample.frame_sends >= MIN_SENDS {
            busy * saving(self.pictures)
        } else {
            busy
        };
        self.load += (in_frames - self.load) / SMOOTHING_SAMPLES;
        let expected = |pictures: u32| self.load / saving(pictures);
        // The fewest pictures per send that bring the load under the threshold, or fewer
        // while that would stay under the lower one (never both: FRAMES_BELOW < MERGE_ABOVE).
        while self.pictures < MAX_PICTURES_PER_SEND && expected(self.pictures) > MERGE_ABOVE {
            self.pictures += 1;
        }
        while self.pictures > 1 && expected(self.pictures - 1) < FRAMES_BELOW {
            self.pictures -= 1;
        }
    }

    /// The smoothed load the shard would have in frames.
    pub fn load(&self) -> f64 {
        self.load
    }

    /// Pictures per send: of an adaptive schedule, as its load says (1: frames); of a fixed
    /// one, 0 (the window decides, not the pictures).
    pub fn pictures_per_send(&self) -> u32 {
        match self.schedule {
            Schedule::Adaptive { .. } => self.pictures,
            Schedule::Fixed(_) => 0,
        }
    }

    /// When to wake viewers for a new unit of `kind`, on a stream that `has_video`, with
    /// `pictures_held` pictures of that stream waiting since its viewers were last woken.
    pub fn wake(&self, kind: UnitKind, has_video: bool, pictures_held: u32) -> Wake {
        if kind == UnitKind::Video && self.video_at_once {
            return Wake::Now;
        }
        let window = match self.schedule {
            Schedule::Fixed(window) => window,
            Schedule::Adaptive { window } => {
                if is_picture(kind, has_video) && pictures_held + 1 >= self.pictures {
                    return Wake::Now;
                }
                window * (self.pictures - 1).max(1)
            }
        };
        if window < MIN_WINDOW {
            Wake::Now
        } else {
            Wake::After(window)
        }
    }

    /// The longest a picture waits now (zero: pictures go out at once).
    pub fn picture_window(&self) -> Duration {
        match self.wake(UnitKind::Video, true, 0) {
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

    /// When the first video unit since the viewers were woken wakes them (stream with video).
    fn picture(s: &SendSchedule) -> Wake {
        s.wake(UnitKind::Video, true, 0)
    }

    /// When an audio unit of a stream with video wakes them.
    fn audio(s: &SendSchedule) -> Wake {
        s.wake(UnitKind::Audio, true, 0)
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
        assert_eq!(
            (s.picture_window(), s.pictures_per_send()),
            (Duration::ZERO, 1)
        );
    }

    /// Two seconds of samples of a shard whose audience would keep it `in_frames` busy
    /// in frames, as busy as its pictures per send make it, with `frame_sends` a sample;
    /// returns the pictures per send of every sample.
    fn run(s: &mut SendSchedule, in_frames: f64, frame_sends: u64) -> Vec<u32> {
        (0..40)
            .map(|_| {
                let busy = in_frames / saving(s.pictures_per_send());
                s.observe(Sample {
                    ran: LOAD_SAMPLE.mul_f64(busy.min(1.0)),
                    wall: LOAD_SAMPLE,
                    frame_sends,
                });
                s.pictures_per_send()
            })
            .collect()
    }

    /// Runs at `in_frames` and checks the grouping it ends with, and that it did not flap
    /// on the way (it only moved one way).
    fn settles(s: &mut SendSchedule, in_frames: f64, pictures: u32) {
        let seen = run(s, in_frames, 1_000);
        let ups = seen.windows(2).any(|w| w[1] > w[0]);
        let downs = seen.windows(2).any(|w| w[1] < w[0]);
        assert!(!(ups && downs), "flapped at {in_frames}: {seen:?}");
        assert_eq!(s.pictures_per_send(), pictures, "at {in_frames}: {seen:?}");
    }

    #[test]
    fn groups_as_few_pictures_as_the_load_allows() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        settles(&mut s, 0.3, 1);
        // Frames would take 60%: pairs. The first picture waits, up to a window; the
        // second wakes the viewers with both.
        settles(&mut s, 0.6, 2);
        assert_eq!(picture(&s), Wake::After(WINDOW));
        assert_eq!(s.wake(UnitKind::Video, true, 1), Wake::Now);
        assert_eq!(s.wake(UnitKind::Audio, true, 1), Wake::After(WINDOW));
        assert_eq!(s.picture_window(), WINDOW);
        assert!((s.load() - 0.6).abs() < 0.02, "{}", s.load());
        // Frames would take 120%: threes, each unit held at most two windows.
        settles(&mut s, 1.2, 3);
        assert_eq!(s.wake(UnitKind::Video, true, 1), Wake::After(WINDOW * 2));
        assert_eq!(s.wake(UnitKind::Video, true, 2), Wake::Now);
        assert_eq!(s.picture_window(), WINDOW * 2);
        // Far more: the most pictures per send, no more.
        settles(&mut s, 5.0, MAX_PICTURES_PER_SEND);
        // Between the thresholds the grouping stays: pairs would take 49%, over 40%.
        settles(&mut s, 0.9, 3);
        // Pairs would take 38%: pairs, not frames (70%).
        settles(&mut s, 0.7, 2);
        settles(&mut s, 0.45, 2);
        // Frames would take 35%: back to frames, where 45% stays.
        settles(&mut s, 0.35, 1);
        settles(&mut s, 0.45, 1);
        assert_eq!(picture(&s), Wake::Now);
    }

    #[test]
    fn a_burst_does_not_switch() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        settles(&mut s, 0.3, 1);
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
    fn with_few_sends_the_busy_fraction_is_the_load() {
        let mut s = SendSchedule::new(ADAPTIVE, false);
        // A shard busy with something else than frames (joins, ingest, HLS): it groups on
        // its busy fraction, which grouping does not lower, and comes back with it.
        settle(&mut s, 0.8, MIN_SENDS - 1);
        assert_eq!(s.pictures_per_send(), 2);
        settle(&mut s, 0.8, MIN_SENDS - 1);
        assert_eq!(s.pictures_per_send(), 2, "no climb: {}", s.load());
        settle(&mut s, 0.1, MIN_SENDS - 1);
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
    fn fixed_ignores_the_load_and_the_pictures() {
        let mut s = SendSchedule::new(Schedule::Fixed(WINDOW), false);
        settle(&mut s, 0.0, 0);
        assert_eq!(
            (picture(&s), audio(&s)),
            (Wake::After(WINDOW), Wake::After(WINDOW))
        );
        settle(&mut s, 1.0, 2_000);
        assert_eq!(s.wake(UnitKind::Video, true, 3), Wake::After(WINDOW));
        assert_eq!(s.pictures_per_send(), 0);
        let at_once = SendSchedule::new(Schedule::Fixed(Duration::ZERO), false);
        assert_eq!((picture(&at_once), audio(&at_once)), (Wake::Now, Wake::Now));
    }

    #[test]
    fn audio_of_an_audio_only_stream_is_a_picture() {
        let s = SendSchedule::new(ADAPTIVE, false);
        assert_eq!(s.wake(UnitKind::Audio, false, 0), Wake::Now);
        assert_eq!(s.wake(UnitKind::Script, false, 0), Wake::After(WINDOW));
    }

    #[test]
    fn video_at_once_is_never_held_and_the_window_it_reports_is_none() {
        let mut s = SendSchedule::new(Schedule::Fixed(WINDOW), true);
        settle(&mut s, 1.0, 2_000);
        assert_eq!((picture(&s), audio(&s)), (Wake::Now, Wake::After(WINDOW)));
        assert_eq!(s.picture_window(), Duration::ZERO);
        let mut s = SendSchedule::new(ADAPTIVE, true);
        run(&mut s, 0.8, 2_000);
        assert_eq!(s.pictures_per_send(), 2);
        assert_eq!((picture(&s), audio(&s)), (Wake::Now, Wake::After(WINDOW)));
    }
}
