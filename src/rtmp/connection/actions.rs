//! What goes into a [`super::Connection`] besides bytes (its [`Settings`]) and what comes out
//! of it ([`Action`]s, with the [`Request`]s and [`Refusal`]s they carry).

use crate::config::Config;
use crate::hub::{NameError, StreamKey};
use crate::media::{Body, UnitKind};
use crate::rtmp::RtmpError;
use rml_rtmp::sessions::StreamMetadata;
use std::fmt;

/// The configuration a connection follows (copied from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Chunk size the server sends with (`rtmp.chunk_size`).
    pub chunk_size: u32,
    /// Largest chunk size a client may announce (`rtmp.max_chunk_size`).
    pub max_chunk_size: u32,
    /// Longest message from a publisher (`rtmp.max_message_bytes`); other messages are
    /// limited to [`CONTROL_MESSAGE_LIMIT`](crate::rtmp::guard::CONTROL_MESSAGE_LIMIT).
    pub max_message_bytes: u32,
    /// From the TCP accept (or the end of a publish) to publishing or playing
    /// (`rtmp.handshake_timeout_ms`), in ns.
    pub setup_timeout_ns: u64,
    /// Longest time a publisher may send no audio or video (`rtmp.idle_timeout_ms`), in ns.
    pub idle_timeout_ns: u64,
}

impl Settings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            chunk_size: config.rtmp.chunk_size,
            max_chunk_size: config.rtmp.max_chunk_size,
            max_message_bytes: config.rtmp.max_message_bytes,
            setup_timeout_ns: config.handshake_timeout().as_nanos() as u64,
            idle_timeout_ns: config.idle_timeout().as_nanos() as u64,
        }
    }
}

/// A publish or play request that the connection found valid, for the driver to decide.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Publish, or play on a message stream.
    pub kind: RequestKind,
    /// Application name.
    pub app: String,
    /// Stream name, without its query string.
    pub name: String,
    /// The query string after the stream name (`?token=...`): credentials, never logged.
    pub query: Option<String>,
    /// `app/name`.
    pub key: StreamKey,
    /// The session's id of the request, for the answer.
    pub(super) request_id: u32,
}

impl fmt::Debug for Request {
    /// Without the query, which may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("with_query", &self.query.is_some())
            .finish()
    }
}

/// What a [`Request`] asks for, on which of the connection's message streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Publish the stream.
    Publish {
        /// The message stream the publisher created for it.
        stream_id: u32,
    },
    /// Play the stream.
    Play {
        /// The message stream the player created for it.
        stream_id: u32,
    },
}

impl RequestKind {
    /// The message stream of the request.
    pub fn stream_id(self) -> u32 {
        match self {
            RequestKind::Publish { stream_id } | RequestKind::Play { stream_id } => stream_id,
        }
    }
}

/// A request the connection refused by itself, for the driver to count and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An invalid application or stream name (`names_rejected_total`).
    Name {
        /// `connect`, `publish` or `play`.
        request: &'static str,
        /// The name as sent, without its query string (log it escaped).
        shown: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// A play request that this connection may not make (`play_rejected_total`).
    Play {
        /// The stream asked for.
        key: StreamKey,
        /// The status code the player got.
        code: &'static str,
    },
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Decide on a publish request: authorize it and, on the stream's owner shard, register
    /// the publisher; then [`Connection::accept`] or [`Connection::refuse`]. A shard that does
    /// not own the stream hands the connection over, and the owner calls
    /// [`Connection::repeat_request`].
    Publish(Request),
    /// Decide on a play request: authorize it, attach a viewer; then accept or refuse.
    Play(Request),
    /// Audio or video from this connection's publisher, received at `at` (ns).
    Media {
        /// Audio or video.
        kind: UnitKind,
        /// RTMP timestamp (ms).
        timestamp: u32,
        /// The message body (an FLV tag body), with room for its wire headers.
        body: Body,
        /// When it was read.
        at: u64,
    },
    /// Stream metadata (`onMetaData`, with or without `@setDataFrame`) from this
    /// connection's publisher.
    Metadata {
        /// The metadata.
        metadata: Box<StreamMetadata>,
        /// When it was read.
        at: u64,
    },
    /// The publisher stopped publishing (`FCUnpublish`, `deleteStream`); it may publish again.
    Unpublished,
    /// A request was refused by the connection: count it and log it.
    Refused(Refusal),
    /// The connection is over: with `None`, after the output is sent; with an error, at once.
    Close(Option<RtmpError>),
}
