//! The Low-Latency HLS segmenter of one stream (pure: wall-clock time is passed in): the
//! fMP4 writer ([`Fmp4Writer`]) cut into parts, and the window of segments and parts
//! ([`LlWindow`]) they go into, with the initialization segment of each discontinuity
//! sequence number. It takes the units the MPEG-TS segmenter takes, in the same order.
//!
//! # Where parts end
//!
//! After each unit:
//!
//! - at a sample that can start a part (a video keyframe, or an audio frame of a stream
//!   without video) where the window says a segment starts
//!   ([`LlWindow::starts_segment`]): every complete sample before it is handed over, in
//!   parts of at most the part target, so that the segment ends right before it and the
//!   next one starts with it; with the audio up to the keyframe's presentation time, which
//!   the hand-over waits for, a part target of video at most (see the fMP4 writer's notes
//!   on segment ends);
//! - whenever the complete samples queued reach the part target, or one more frame (as
//!   long as the last one) would take them past it: a part of at most the target is
//!   handed over ([`Fmp4Writer::take_fragment_within`]).
//!
//! A part is therefore handed over when the sample after its last one arrives (the writer
//! holds the last sample of each track until its duration is known), which is when the
//! part ends: with frames of 40 ms and a part target of 250 ms, parts of 240 ms, each
//! available at its end.
//! Every part is at most the part target, and every part but the last of a segment at least
//! the target less one frame (RFC 8216bis 4.4.4.9 asks 85% of it: a frame is at most 15%
//! of the target at the default target and 25 fps or more).
//!
//! A sample longer than the part target (a timestamp gap) makes a part longer than the
//! target, which the window refuses ([`PartError::TooLong`]): the part is left out, the
//! error returned, and the segment being written closes there (so that the part before the
//! gap, which may be short, is the last of its segment); the next segment starts at the next
//! keyframe.
//!
//! # Program dates
//!
//! A part goes to the window with the wall-clock time its first frame reached the server:
//! the arrival of the unit that completed it, less how much media that unit is after the
//! part's start. So a segment that starts the playlist's timeline (the first, and the first
//! after a discontinuity) is dated when its first frame arrived, not when its first part was
//! complete, and `EXT-X-PROGRAM-DATE-TIME` tells a player how far behind the server's live
//! edge it plays.
//!
//! # Initialization segments
//!
//! The writer's initialization segment changes when a sequence header configures a track
//! differently (or configures a second track after parts went out with one). What the
//! writer queued before it goes out first, as the last parts of the old configuration (the
//! writer cuts them at the part target, [`Fmp4Writer::with_part_target`]); then, if any part went out with the old one, the window marks a discontinuity, so the
//! next segment starts with `EXT-X-DISCONTINUITY` and its own `EXT-X-MAP`. A change before
//! any part went out only replaces the initialization segment. The segmenter keeps the
//! initialization segment of every discontinuity sequence number that a segment in the
//! window (or the one being written) has, and [`LlSegmenter::init`] serves them.
//!
//! # Republish and end
//!
//! [`LlSegmenter::flush`] (the publisher left: its stream waits out the republish grace),
//! [`LlSegmenter::discontinuity`] (the publisher reconnected) and [`LlSegmenter::end`] first
//! hand over everything queued, the held samples included, in parts
//! ([`Fmp4Writer::finish_within`]): the old publisher's media is complete. Then the window marks the
//! discontinuity, or ends the playlist (`EXT-X-ENDLIST`).

use super::fmp4::{Fmp4Error, Fmp4Writer, Fragment, Pushed};
use super::llhls::{Added, LlSettings, LlWindow, PartError};
use super::Demand;
use crate::media::Unit;
use bytes::Bytes;
use std::collections::VecDeque;

/// Why a unit was not (wholly) taken. The segmenter goes on with the next unit.
#[derive(Debug, thiserror::Error)]
pub enum LlError {
    /// The fMP4 writer refused the unit (see [`Fmp4Error`]).
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
    /// The window refused a part made from it (see [`PartError`]): the part is left out.
    #[error("LL-HLS part left out: {0}")]
    Part(#[from] PartError),
}

/// What a unit changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// Parts added to the window (each one changes the playlist).
    pub parts: u32,
    /// The segment that closed, if one did.
    pub closed: Option<u64>,
}

impl Changed {
    /// Whether the playlist changed.
    pub fn any(&self) -> bool {
        self.parts > 0 || self.closed.is_some()
    }

    fn note(&mut self, added: Added) {
        self.parts += u32::from(added.part.is_some());
        self.closed = added.closed.or(self.closed);
    }
}

/// The LL-HLS segmenter of one stream incarnation.
#[derive(Debug)]
pub struct LlSegmenter {
    writer: Fmp4Writer,
    window: LlWindow,
    /// The initialization segment of the parts being handed over (the writer's, except
    /// while the parts of an old configuration go out).
    init: Option<Bytes>,
    /// A part went out with `init`: a new one needs a discontinuity.
    init_used: bool,
    /// Initialization segments by discontinuity sequence number, oldest first: those of the
    /// segments in the window and of the one being written.
    inits: VecDeque<(u64, Bytes)>,
    /// Last request served, shared with the snapshots (see [`LlSegmenter::demand`]).
    demand: Demand,
}

impl LlSegmenter {
    /// A segmenter for stream `name` (the last path component) of incarnation `instance`.
    pub fn new(name: &str, instance: u64, settings: LlSettings) -> Self {
        let window = LlWindow::new(name, instance, settings);
        LlSegmenter {
            writer: Fmp4Writer::with_part_target(window.settings().part_target_ms),
            window,
            init: None,
            init_used: false,
            inits: VecDeque::new(),
            demand: Demand::default(),
        }
    }

    /// When a request for the stream's LL-HLS was last served, shared with every snapshot:
    /// written by the shards that serve them (the start of the segmenter counts as one).
    pub fn demand(&self) -> &Demand {
        &self.demand
    }

    /// The window of segments and parts: playlists, blocking reloads, parts and segments.
    pub fn window(&self) -> &LlWindow {
        &self.window
    }

    /// The fMP4 writer: its `CODECS` string, picture size, and the track it cannot carry.
    pub fn writer(&self) -> &Fmp4Writer {
        &self.writer
    }

    /// The initialization segment of discontinuity sequence number `discontinuity_seq`, while
    /// a segment of it is in the window or being written.
    pub fn init(&self, discontinuity_seq: u64) -> Option<&Bytes> {
        self.inits
            .iter()
            .find(|(seq, _)| *seq == discontinuity_seq)
            .map(|(_, bytes)| bytes)
    }

    /// The initialization segments held, oldest first, by discontinuity sequence number.
    pub fn inits(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.inits.iter()
    }

    /// Bytes held: the window's segments and parts, the samples queued in the writer, the
    /// initialization segments.
    pub fn bytes_held(&self) -> usize {
        self.window.bytes_held()
            + self.writer.queued_bytes()
            + self.inits.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Takes a unit that arrived at `now_ms` (ms since the Unix epoch) and hands over the
    /// parts it completes (see the module's notes). Nothing changes once the stream ended.
    pub fn push(&mut self, unit: &Unit, now_ms: u64) -> Result<Changed, LlError> {
        let mut changed = Changed::default();
        if self.window.ended() {
            return Ok(changed);
        }
        let part_target = self.window.settings().part_target_ms;
        match self.writer.push(unit)? {
            Pushed::Configured {
                changed: true,
                flushed,
            } => {
                let added = self.add_all(flushed, now_ms, &mut changed);
                if std::mem::take(&mut self.init_used) {
                    self.mark_discontinuity(&mut changed);
                }
                self.init = self.writer.init_segment();
                added?;
            }
            Pushed::Sample { independent: true }
                if !self.writer.ending_segment()
                    && self.window.starts_segment(true, self.writer.pending_ms()) =>
            {
                self.writer.end_segment();
            }
            Pushed::Configured { .. }
            | Pushed::Sample { .. }
            | Pushed::Ignored
            | Pushed::Unsupported(_) => {}
        }
        if self.writer.ending_segment() {
            if !self.writer.segment_end_ready(part_target) {
                return Ok(changed);
            }
            self.hand_over_all(now_ms, &mut changed)?;
        }
        while self.part_due(part_target) {
            match self.writer.take_fragment_within(part_target)? {
                Some(fragment) => self.add(fragment, now_ms, &mut changed)?,
                None => break,
            }
        }
        Ok(changed)
    }

    /// Whether the complete samples make a part: they reach the part target, or one more
    /// frame (as long as the last) would take them past it, so that a part goes out as soon
    /// as its last sample is complete.
    fn part_due(&self, part_target: u64) -> bool {
        let pending = self.writer.pending_ms();
        pending >= part_target
            || (pending > 0
                && self
                    .writer
                    .frame_ms()
                    .is_some_and(|frame| pending + frame > part_target))
    }

    /// The publisher reconnected (`now_ms`): everything queued goes out as the last parts of
    /// the old publisher's media, and the next segment starts after a discontinuity.
    pub fn discontinuity(&mut self, now_ms: u64) -> Result<Changed, LlError> {
        let mut changed = Changed::default();
        if self.window.ended() {
            return Ok(changed);
        }
        let flushed = self.finish(now_ms, &mut changed);
        self.mark_discontinuity(&mut changed);
        self.init_used = false;
        flushed.map(|()| changed)
    }

    /// The publisher left (`now_ms`): everything queued goes out now, the held samples
    /// included, instead of waiting for the republish grace to end; the segment being
    /// written stays open. A republish then marks its discontinuity, an end ends the
    /// playlist, and neither has anything left to hand over.
    pub fn flush(&mut self, now_ms: u64) -> Result<Changed, LlError> {
        let mut changed = Changed::default();
        if self.window.ended() {
            return Ok(changed);
        }
        self.finish(now_ms, &mut changed).map(|()| changed)
    }

    /// The stream ended (`now_ms`): everything queued goes out, and the playlist ends.
    pub fn end(&mut self, now_ms: u64) -> Result<Changed, LlError> {
        let mut changed = Changed::default();
        if self.window.ended() {
            return Ok(changed);
        }
        let flushed = self.finish(now_ms, &mut changed);
        changed.closed = self.window.close_segment().or(changed.closed);
        self.window.end();
        flushed.map(|()| changed)
    }

    /// Drops the oldest complete segments until at most `keep` (at least one) remain (the
    /// media budget, when spent); true when some were dropped.
    pub fn trim_to(&mut self, keep: usize) -> bool {
        let trimmed = self.window.trim_to(keep);
        self.trim_inits();
        trimmed
    }

    /// Closes the segment being written, and makes the next one start after a
    /// discontinuity.
    fn mark_discontinuity(&mut self, changed: &mut Changed) {
        changed.closed = self.window.close_segment().or(changed.closed);
        self.window.discontinuity();
        self.trim_inits();
    }

    /// Hands over every complete sample queued before the segment's end, in parts of at
    /// most the part target.
    fn hand_over_all(&mut self, now_ms: u64, changed: &mut Changed) -> Result<(), LlError> {
        let part_target = self.window.settings().part_target_ms;
        while let Some(fragment) = self.writer.take_fragment_within(part_target)? {
            self.add(fragment, now_ms, changed)?;
        }
        Ok(())
    }

    /// Hands over everything queued, the held samples included.
    fn finish(&mut self, now_ms: u64, changed: &mut Changed) -> Result<(), LlError> {
        let part_target = self.window.settings().part_target_ms;
        let fragments = self.writer.finish_within(part_target)?;
        self.add_all(fragments, now_ms, changed)
    }

    /// Adds `fragments` in order; the first error, if any, once all were tried.
    fn add_all(
        &mut self,
        fragments: Vec<Fragment>,
        now_ms: u64,
        changed: &mut Changed,
    ) -> Result<(), LlError> {
        let mut result = Ok(());
        for fragment in fragments {
            let added = self.add(fragment, now_ms, changed);
            if result.is_ok() {
                result = added;
            }
        }
        result
    }

    /// Adds a fragment to the window as a part, and keeps the initialization segment of a
    /// segment it opens. A part the window refuses closes the segment being written.
    fn add(
        &mut self,
        fragment: Fragment,
        now_ms: u64,
        changed: &mut Changed,
    ) -> Result<(), LlError> {
        // When the part's first frame arrived: `now_ms` is when the unit that completed it
        // arrived, as much media later as that unit is after the part's start. The window
        // dates a segment that starts its timeline with it.
        let behind = self
            .writer
            .last_dts_ms()
            .map_or(0, |last| last.saturating_sub(fragment.first_dts_ms));
        let started_ms = now_ms.saturating_sub(behind);
        let added = match self.window.add_part(
            fragment.bytes,
            fragment.duration_ms,
            fragment.independent,
            started_ms,
        ) {
            Ok(added) => added,
            Err(err) => {
                changed.closed = self.window.close_segment().or(changed.closed);
                self.trim_inits();
                return Err(err.into());
            }
        };
        changed.note(added);
        if let Some(part) = added.part {
            self.init_used = true;
            let seq = self.window.discontinuity_seq();
            if part.part == 0 && self.inits.back().is_none_or(|(last, _)| *last != seq) {
                if let Some(init) = &self.init {
                    self.inits.push_back((seq, init.clone()));
                }
            }
        }
        if added.closed.is_some() {
            self.trim_inits();
        }
        Ok(())
    }

    /// Forgets the initialization segments that no segment in the window has any more.
    fn trim_inits(&mut self) {
        let oldest = match self.window.segments().front() {
            Some(segment) => segment.discontinuity_seq,
            None => self.window.discontinuity_seq(),
        };
        while self.inits.len() > 1 && self.inits.front().is_some_and(|(seq, _)| *seq < oldest) {
            self.inits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
