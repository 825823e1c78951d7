//! The owner shard's side of a stream: turns publisher messages into units (pure).

use super::budget::Meter;
use super::fanout::Subscribers;
use crate::flv;
use crate::flv::codec::{self, AudioCodec, VideoCodec};
use crate::forward::TargetStatus;
use crate::hls::llsegmenter::LlSegmenter;
use crate::hls::segmenter::Segmenter;
use crate::media::{Body, Rebaser, Unit, UnitKind};
use rml_rtmp::sessions::StreamMetadata;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Who is publishing a stream right now.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// Connection id (unique per process), to tell publishers apart.
    pub conn_id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    /// The publish name's query string (`stream?token=...`), kept for access control.
    pub query: Option<String>,
    /// Monotonic ns at which publishing started.
    pub since_ns: u64,
    /// The stream is pulled from an origin by this server (`[[upstream]]`): the per-address
    /// publish limits, which are for clients, do not apply.
    pub pulled: bool,
}

/// Owner-side state of a stream.
#[derive(Debug, Default)]
pub struct Origin {
    /// Timestamp continuity across wraps and republishes.
    pub rebaser: Rebaser,
    /// Sequence number of the next unit.
    next_seq: u64,
    /// The current publisher; `None` while the grace period runs.
    pub publisher: Option<PublisherInfo>,
    /// Bumped whenever a publisher leaves or arrives, so a stale grace timer can tell that
    /// the stream was published again meanwhile.
    pub generation: u64,
    /// The shards that receive this stream's units, and the ones that lost one.
    pub subscribers: Subscribers,
    /// Video has been seen: from then on only video keyframes are start points.
    has_video: bool,
    /// Chunk size of the shared RTMP serialization (`rtmp.chunk_size`).
    chunk_size: usize,
    /// What the stream's units count against while they live.
    meter: Option<Arc<Meter>>,
    /// HLS segmenter, when HLS is enabled.
    pub hls: Option<Segmenter>,
    /// Low-Latency HLS segmenter, while its rendition is requested.
    pub ll: Option<LlSegmenter>,
    /// The publisher's last announced metadata.
    pub metadata: Option<StreamMetadata>,
    /// Codec of the last video unit.
    pub video_codec: Option<VideoCodec>,
    /// Codec of the last audio unit.
    pub audio_codec: Option<AudioCodec>,
    /// When the last audio or video message with a payload arrived (ns, `media::now_ns`
    /// clock): what `auth.takeover_after_ms` measures.
    pub last_media_ns: u64,
    /// Timestamp of the last keyframe.
    last_key_dts: Option<u32>,
    /// Distance between the last two keyframes, ms.
    pub gop_ms: Option<u64>,
    /// Media bytes received since the last report.
    bytes_in: u64,
    /// Its `[[forward]]` targets' states, shared with their tasks.
    pub forwards: Vec<Rc<RefCell<TargetStatus>>>,
}

impl Origin {
    /// State for a stream served to `shards` shards, chunking RTMP at `chunk_size`, with an
    /// optional HLS segmenter.
    pub fn new(shards: usize, chunk_size: usize, hls: Option<Segmenter>) -> Self {
        Origin {
            subscribers: Subscribers::new(shards),
            chunk_size,
            hls,
            ..Origin::default()
        }
    }

    /// The same state, with its units counted against `meter` while they live.
    pub fn with_meter(mut self, meter: Arc<Meter>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Bytes its HLS renditions hold (segments, parts, what the writers queue).
    pub fn hls_bytes_held(&self) -> usize {
        self.hls.as_ref().map_or(0, Segmenter::bytes_held)
            + self.ll.as_ref().map_or(0, LlSegmenter::bytes_held)
    }

    /// Whether a publishing session starting now continues the stream's timeline (a
    /// republish): the HLS renditions then mark a discontinuity.
    pub fn resumes(&self) -> bool {
        self.rebaser.last_out() > 0
    }

    /// Starts a publishing session. (A republish's discontinuity in the Low-Latency HLS
    /// rendition, which hands over the media it holds, is the caller's: see
    /// [`Origin::resumes`].)
    pub fn start_publishing(&mut self, publisher: PublisherInfo) {
        if self.resumes() {
            if let Some(hls) = &mut self.hls {
                hls.discontinuity();
            }
        }
        self.rebaser.new_session();
        self.publisher = Some(publisher);
        self.generation += 1;
    }

    /// Whether `conn_id` is the current publisher.
    pub fn is_publisher(&self, conn_id: u64) -> bool {
        self.publisher
            .as_ref()
            .is_some_and(|p| p.conn_id == conn_id)
    }

    /// Ends the publishing session of `conn_id` (if it is the current publisher).
    pub fn stop_publishing(&mut self, conn_id: u64) -> bool {
        if self
            .publisher
            .as_ref()
            .is_some_and(|p| p.conn_id == conn_id)
        {
            self.publisher = None;
            self.generation += 1;
            true
        } else {
            false
        }
    }

    /// Turns an audio or video message into a unit. Returns `None` for an empty body.
    pub fn media(
        &mut self,
        kind: UnitKind,
        raw_ts: u32,
        body: impl Into<Body>,
        ingest_ns: u64,
    ) -> Option<Unit> {
        let body: Body = body.into();
        // One read of the codec header per message: keyframe, header, payload, codec, and
        // the default track of a multitrack tag. Codecs are the default track's.
        let (key, header, payload, multitrack) = match kind {
            UnitKind::Video => {
                let tag = codec::video(&body)?;
                self.has_video = true;
                if tag.multitrack.is_none_or(|m| m.default.is_some()) {
                    self.video_codec = Some(tag.codec);
                }
                (tag.keyframe, tag.header, tag.payload, tag.multitrack)
            }
            UnitKind::Audio => {
                if body.is_empty() {
                    return None;
                }
                let tag = codec::audio(&body);
                let multitrack = tag.and_then(|t| t.multitrack);
                let default_track = multitrack.is_none_or(|m| m.default.is_some());
                if default_track {
                    self.audio_codec = tag.map(|t| t.codec);
                }
                let header = tag.is_some_and(|t| t.header);
                (
                    !self.has_video && !header && default_track,
                    header,
                    tag.is_some_and(|t| t.payload),
                    multitrack,
                )
            }
            UnitKind::Script => (false, true, !body.is_empty(), None),
        };
        if payload {
            self.last_media_ns = ingest_ns;
        }
        let dts = match header {
            true => self.rebaser.map_header(raw_ts),
            false => self.rebaser.map(raw_ts),
        };
        self.bytes_in += body.len() as u64;
        if key && kind == UnitKind::Video {
            if let Some(last) = self.last_key_dts.replace(dts) {
                self.gop_ms = Some(u64::from(dts.wrapping_sub(last)));
            }
        }
        let default_track = multitrack.map(|m| m.default_body(&body));
        let unit = self.unit(kind, dts, key, header, body, ingest_ns);
        Some(match default_track {
            Some(track) => unit.with_default_track(&track, self.chunk_size, self.meter.as_ref()),
            None => unit,
        })
    }

    /// Turns metadata into an onMetaData unit stamped at the stream's current time.
    pub fn metadata(&mut self, metadata: &StreamMetadata, ingest_ns: u64) -> Unit {
        let dts = self.rebaser.last_out() as u32;
        let body = flv::metadata_body(metadata);
        self.metadata = Some(metadata.clone());
        self.unit(
            UnitKind::Script,
            dts,
            false,
            true,
            Body::copy_from(&body),
            ingest_ns,
        )
    }

    /// Media bytes received since the last call.
    pub fn take_bytes_in(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_in)
    }

    fn unit(
        &mut self,
        kind: UnitKind,
        dts: u32,
        key: bool,
        header: bool,
        body: Body,
        ingest_ns: u64,
    ) -> Unit {
        let seq = self.next_seq;
        self.next_seq += 1;
        Unit {
            seq,
            ingest_ns,
            ..Unit::serialize(
                kind,
                dts,
                key,
                header,
                body,
                self.chunk_size,
                self.meter.as_ref(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_sequences() {
        let mut o = Origin::new(2, 4096, None);
        o.rebaser.new_session();
        let seq = o.media(UnitKind::Video, 0, &[0x17, 0, 0, 0, 0], 0).unwrap();
        assert!(seq.header && !seq.key);
        let key = o.media(UnitKind::Video, 0, &[0x17, 1, 0, 0, 0], 0).unwrap();
        assert!(key.key && !key.header);
        let inter = o
            .media(UnitKind::Video, 40, &[0x27, 1, 0, 0, 0], 0)
            .unwrap();
        assert!(!inter.key);
        let audio = o.media(UnitKind::Audio, 41, &[0xaf, 1, 0], 0).unwrap();
        assert!(!audio.key, "audio is not a start point once video exists");
        assert_eq!([seq.seq, key.seq, inter.seq, audio.seq], [0, 1, 2, 3]);
        assert!(o.media(UnitKind::Video, 80, &[], 0).is_none());
    }

    #[test]
    fn a_second_rendition_rides_along_without_moving_start_points() {
        use crate::media::{Format, Tracks};
        let mut o = Origin::new(1, 4096, None);
        o.rebaser.new_session();
        // As ffmpeg sends two video renditions: track 0 as plain tags, track 1 in multitrack
        // tags of one track (frame type 1, CodedFrames; avc1; track id 1; composition time).
        let key = o
            .media(UnitKind::Video, 0, &[0x17, 1, 0, 0, 0, 0x65], 0)
            .unwrap();
        let other = [0x96, 0x01, b'a', b'v', b'c', b'1', 1, 0, 0, 0, 0x65];
        let second = o.media(UnitKind::Video, 0, &other, 0).unwrap();
        assert!(
            key.key && !second.key,
            "track 1's keyframe is no start point"
        );
        assert_eq!(o.video_codec, Some(VideoCodec::Avc));
        assert!(key.default_track.is_none());
        assert_eq!(second.wire(Tracks::All).flv(), second.wire.flv());
        assert_eq!(second.wire(Tracks::Default).len(Format::Rtmp), 0);
        assert!(second.body(Tracks::Default).is_empty());
        assert_eq!(second.body(Tracks::All), &other);
        // A tag with both tracks: the default track's viewers get track 0 alone, stamped
        // like the tag.
        let both = [
            &[0x96, 0x11, b'h', b'v', b'c', b'1'][..],
            &[1, 0, 0, 5, 0, 0, 0, 0x26, 0x01],
            &[0, 0, 0, 5, 0, 0, 0, 0x26, 0x02],
        ]
        .concat();
        let unit = o.media(UnitKind::Video, 40, &both, 0).unwrap();
        assert!(unit.key);
        assert_eq!(o.video_codec, Some(VideoCodec::Hevc));
        assert_eq!(
            unit.body(Tracks::Default),
            &[0x91, b'h', b'v', b'c', b'1', 0, 0, 0, 0x26, 0x02]
        );
        assert_eq!(&unit.wire(Tracks::Default).flv()[4..7], &[0, 0, 40]);
        assert!(unit.len() > unit.wire.stored(), "counted in the ring");
    }

    #[test]
    fn audio_only_stream_starts_anywhere() {
        let mut o = Origin::new(1, 4096, None);
        o.rebaser.new_session();
        let header = o
            .media(UnitKind::Audio, 0, &[0xaf, 0, 0x12, 0x10], 0)
            .unwrap();
        assert!(header.header && !header.key);
        assert!(o.media(UnitKind::Audio, 23, &[0xaf, 1, 0], 0).unwrap().key);
    }
}
