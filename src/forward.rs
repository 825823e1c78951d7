//! Restreaming (`[[forward]]`): every stream published to an application is also pushed, by
//! its owner shard, to other RTMP servers (another corecast, nginx-rtmp, a platform's
//! ingest). Target URLs are parsed purely here; [`run`] is the driver of one target.
//!
//! A target is a player of the stream whose socket is a publishing client's: once the
//! target has accepted the connect and the publish, the stream goes to it through
//! [`viewer::deliver`] exactly as to an RTMP player, from the GOP cache on, as the shared
//! RTMP messages every player gets. So a target never slows the stream or other targets: a
//! slow one skips to the newest keyframe, one that stays behind is disconnected, as any slow
//! viewer (`viewer.skip_after_ms`, `viewer.disconnect_after_ms`). A failed or dropped
//! target is tried again, after 1 s, then twice as long each time, at most 30 s, while the
//! stream lives. Each target's task keeps a [`TargetStatus`] that the stream's origin holds
//! and the API reports (state, sessions, failures, the last error).
//!
//! The shared messages are on message stream 1 with `rtmp.chunk_size` chunks: the client
//! announces that chunk size, and a target must give stream id 1 to the first
//! `createStream`, as nginx-rtmp, SRS and corecast do (another id is an error of that
//! target).

use crate::config::ForwardRule;
use crate::hub::StreamKey;
use crate::media::{now_ns, Format};
use crate::metrics::api::ForwardReport;
use crate::net::host::Host;
use crate::net::Duplex;
use crate::shard::Shard;
use crate::stats;
use crate::viewer::{self, Delivery, Ending, Outbox};
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tracing::{info, warn};

/// First wait before trying a failed target again.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between tries.
const LAST_RETRY: Duration = Duration::from_secs(30);
/// How long a target may take to accept the connection, the handshake, the connect and the
/// publish.
const SETUP: Duration = Duration::from_secs(10);

/// Why a target could not be pushed to.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The URL is not `rtmp://IP:PORT/APP/STREAM`.
    #[error("{0}: not rtmp://IP:PORT/APP/STREAM (an IP address: names are not resolved)")]
    Url(String),
    /// The target did not accept in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The target refused the connect or the publish.
    #[error("refused: {0}")]
    Refused(String),
    /// The handshake or the session failed.
    #[error("rtmp: {0}")]
    Rtmp(String),
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The port of an `rtmp://` URL that names none.
pub const RTMP_PORT: u16 = 1935;

/// Where one stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server.
    pub host: Host,
    /// Its application.
    pub app: String,
    /// The stream name there (with its query, such as a stream key).
    pub stream: String,
    /// The URL, for logs, without the query (which may hold a key).
    pub shown: String,
}

impl Target {
    /// The target of stream `app/stream` under `url`, whose `{app}` and `{stream}` are
    /// replaced.
    pub fn parse(url: &str, app: &str, stream: &str) -> Result<Target, ForwardError> {
        let bad = || ForwardError::Url(url.to_string());
        let filled = url.replace("{app}", app).replace("{stream}", stream);
        let rest = filled.strip_prefix("rtmp://").ok_or_else(bad)?;
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let host = Host::parse(authority, RTMP_PORT).ok_or_else(bad)?;
        let (app, stream) = path.split_once('/').ok_or_else(bad)?;
        if app.is_empty() || stream.is_empty() {
            return Err(bad());
        }
        let name = stream.split('?').next().unwrap_or_default();
        Ok(Target {
            shown: format!("rtmp://{host}/{app}/{name}"),
            host,
            app: app.to_string(),
            stream: stream.to_string(),
        })
    }

    /// The targets of stream `key` (`app/stream`) under `rules`.
    pub fn of(rules: &[ForwardRule], key: &str) -> Vec<Result<Target, ForwardError>> {
        let (app, stream) = key.split_once('/').unwrap_or((key, ""));
        rules
            .iter()
            .filter(|rule| rule.app == app)
            .map(|rule| Target::parse(&rule.url, app, stream))
            .collect()
    }

    /// The `tcUrl` of the session's `connect`: the server and application, as RTMP clients
    /// send it (servers such as SRS read the virtual host and application from it).
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.host, self.app)
    }
}

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Connecting, in the handshake, or waiting for the target to accept the publish.
    Connecting,
    /// The stream goes to the target.
    Publishing,
    /// The last try failed or the session was lost: the next try waits for the backoff.
    Waiting,
}

impl TargetState {
    /// The name the API shows.
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Connecting => "connecting",
            TargetState::Publishing => "publishing",
            TargetState::Waiting => "waiting",
        }
    }
}

/// A target's state for the API: written by the target's task, read by its stream's report
/// on the owner shard (both on that shard's thread).
#[derive(Debug)]
pub struct TargetStatus {
    /// The target's URL without its query.
    pub target: String,
    /// Where it stands.
    pub state: TargetState,
    /// Since when (ns, `media::now_ns` clock).
    pub since_ns: u64,
    /// Publish sessions established.
    pub sessions: u64,
    /// Tries that failed and sessions that were lost.
    pub failures: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

impl TargetStatus {
    /// A target about to be tried the first time.
    pub fn new(target: &Target) -> Self {
        TargetStatus {
            target: target.shown.clone(),
            state: TargetState::Connecting,
            since_ns: now_ns(),
            sessions: 0,
            failures: 0,
            last_error: None,
        }
    }

    fn enter(&mut self, state: TargetState) {
        if self.state != state {
            self.state = state;
            self.since_ns = now_ns();
        }
    }

    /// What the API shows at `now` (ns).
    pub fn report(&self, now: u64) -> ForwardReport {
        ForwardReport {
            target: self.target.clone(),
            state: self.state.name(),
            state_seconds: now.saturating_sub(self.since_ns) as f64 / 1e9,
            sessions: self.sessions,
            failures: self.failures,
            last_error: self.last_error.clone(),
        }
    }
}

/// Pushes stream `key` to `target` for as long as the stream lives, trying again after
/// failures; keeps `status` (which the stream's report shows) up to date.
pub async fn run(
    shard: Rc<Shard>,
    key: StreamKey,
    target: Target,
    status: Rc<RefCell<TargetStatus>>,
) {
    let mut wait = FIRST_RETRY;
    while shard.is_live(&key) && !shard.is_stopping() {
        status.borrow_mut().enter(TargetState::Connecting);
        let error = match push(&shard, &key, &target, &status).await {
            Ok(Ending::StreamEnded | Ending::Unavailable) => return,
            Ok(ending) => {
                let lost = lost(&ending);
                warn!(action = "forward-lost", shard = shard.id, stream = %key, target = %target.shown, "forward: {lost}; trying again in {wait:?}");
                lost
            }
            Err(err) => {
                warn!(action = "forward-failed", shard = shard.id, stream = %key, target = %target.shown, "forward: {err}; trying again in {wait:?}");
                err.to_string()
            }
        };
        stats::inc(&shard.stats.forward_failures);
        {
            let mut status = status.borrow_mut();
            status.failures += 1;
            status.last_error = Some(error);
            status.enter(TargetState::Waiting);
        }
        stats::inc(&shard.stats.forwards_waiting);
        glommio::timer::sleep(wait).await;
        stats::dec(&shard.stats.forwards_waiting);
        wait = (wait * 2).min(LAST_RETRY);
    }
}

/// Why a session that was publishing ended, in words.
fn lost(ending: &Ending) -> String {
    match ending {
        Ending::TooSlow => {
            "the target took the stream too slowly (viewer.disconnect_after_ms)".into()
        }
        Ending::Io(err) => format!("connection lost: {err}"),
        Ending::Stopped => "the target ended the session".into(),
        Ending::StreamEnded | Ending::Unavailable => "the stream ended".into(),
    }
}

/// One session: connect, publish, then deliver until the stream ends or the target fails.
async fn push(
    shard: &Rc<Shard>,
    key: &StreamKey,
    target: &Target,
    status: &RefCell<TargetStatus>,
) -> Result<Ending, ForwardError> {
    let setup = async {
        let (mut stream, _) = target.host.connect(SETUP).await?;
        let _ = stream.set_nodelay(true);
        let session = publish_session(&mut stream, target, shard.config().rtmp.chunk_size).await?;
        Ok::<_, ForwardError>((stream, session))
    };
    let (stream, mut session) = crate::util::timeout(SETUP, setup)
        .await
        .ok_or(ForwardError::Timeout(SETUP))??;
    // The stream's metadata goes first as `@setDataFrame`, which every server keeps (the
    // shared messages carry a bare `onMetaData`, as players expect it).
    let mut head = Vec::new();
    if let Some(metadata) = shard.stream_metadata(key) {
        let set = session.publish_metadata(&metadata);
        if let Ok(ClientSessionResult::OutboundResponse(packet)) = set {
            head.push(Bytes::from(packet.bytes));
        }
    }
    let Some(feed) = shard.attach_viewer(key, Format::Rtmp) else {
        return Ok(Ending::Unavailable);
    };
    stats::inc(&shard.stats.forwards_active);
    stats::inc(&shard.stats.forward_sessions);
    {
        let mut status = status.borrow_mut();
        status.sessions += 1;
        status.enter(TargetState::Publishing);
    }
    info!(action = "forward-start", shard = shard.id, stream = %key, target = %target.shown, "forward: publishing");
    let stream = Duplex::new(stream);
    let outbox = RefCell::new(Outbox::default());
    let delivery = Delivery {
        format: Format::Rtmp,
        tracks: crate::media::Tracks::Default,
        stream_id: crate::rtmp::chunk::MEDIA_STREAM_ID,
        head,
        outbox: Some(&outbox),
    };
    let ending = futures_lite::future::or(
        viewer::deliver(shard, &feed, &mut &stream, delivery),
        target_input(&stream, &mut session, &outbox),
    )
    .await;
    shard.detach_viewer(key, &feed, Format::Rtmp);
    stats::dec(&shard.stats.forwards_active);
    Ok(ending)
}

/// The client side of the handshake, the connect and the publish; the session, ready to
/// publish on message stream 1.
async fn publish_session(
    stream: &mut TcpStream,
    target: &Target,
    chunk_size: u32,
) -> Result<ClientSession, ForwardError> {
    let rtmp = |e: &dyn std::fmt::Debug| ForwardError::Rtmp(format!("{e:?}"));
    let mut handshake = Handshake::new(PeerType::Client);
    let first = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| rtmp(&e))?;
    stream.write_all(&first).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let rest = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ForwardError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        match handshake.process_bytes(&buf[..n]).map_err(|e| rtmp(&e))? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let config = ClientSessionConfig {
        chunk_size,
        tc_url: Some(target.tc_url()),
        ..ClientSessionConfig::new()
    };
    let (mut session, results) = ClientSession::new(config).map_err(|e| rtmp(&e))?;
    let mut pending = results;
    pending.extend(session.handle_input(&rest).map_err(|e| rtmp(&e))?);
    pending.push(
        session
            .request_connection(target.app.clone())
            .map_err(|e| rtmp(&e))?,
    );
    let mut connected = false;
    loop {
        for result in std::mem::take(&mut pending) {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    stream.write_all(&packet.bytes).await?
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    connected = true;
                    let publish = session
                        .request_publishing(target.stream.clone(), PublishRequestType::Live)
                        .map_err(|e| rtmp(&e))?;
                    if let ClientSessionResult::OutboundResponse(packet) = publish {
                        stream.write_all(&packet.bytes).await?;
                    }
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    return Ok(session);
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => return Err(ForwardError::Refused(description)),
                _ => {}
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            let step = if connected { "publish" } else { "connect" };
            return Err(ForwardError::Refused(format!("closed at the {step}")));
        }
        pending = session.handle_input(&buf[..n]).map_err(|e| rtmp(&e))?;
    }
}

/// Reads the target's input while the stream goes to it: its session's answers
/// (acknowledgements, pings) go out through the outbox; a close or an error ends the push.
async fn target_input(
    stream: &Duplex,
    session: &mut ClientSession,
    outbox: &RefCell<Outbox>,
) -> Ending {
    let mut reader = stream;
    let mut failed = None;
    loop {
        let read = crate::net::read_with(&mut reader, |bytes| match session.handle_input(bytes) {
            Ok(results) => {
                for result in results {
                    if let ClientSessionResult::OutboundResponse(packet) = result {
                        if !outbox.borrow_mut().push(Bytes::from(packet.bytes)) {
                            failed = Some("the target does not read");
                        }
                    }
                }
            }
            Err(_) => failed = Some("the target's input is not valid RTMP"),
        });
        match read.await {
            Ok(0) => return Ending::Stopped,
            Ok(_) => {}
            Err(err) => return Ending::Io(err),
        }
        if let Some(why) = failed {
            return Ending::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_the_stream_and_app_and_hide_their_query() {
        let target = Target::parse(
            "rtmp://192.0.2.7:1935/{app}-copy/{stream}?key=secret",
            "live",
            "cam",
        )
        .unwrap();
        assert_eq!(target.host, Host::Addr("192.0.2.7:1935".parse().unwrap()));
        assert_eq!(target.tc_url(), "rtmp://192.0.2.7:1935/live-copy");
        assert_eq!(
            (target.app.as_str(), target.stream.as_str()),
            ("live-copy", "cam?key=secret")
        );
        assert_eq!(target.shown, "rtmp://192.0.2.7:1935/live-copy/cam");
        let named = Target::parse("rtmp://Ingest.Example.net/app/{stream}", "live", "cam").unwrap();
        assert_eq!(named.shown, "rtmp://ingest.example.net:1935/app/cam");
        assert_eq!(named.tc_url(), "rtmp://ingest.example.net:1935/app");
        for bad in [
            "http://192.0.2.7:1935/a/b",
            "rtmp://example_1.com:1935/a/b",
            "rtmp://192.0.2.7:0/a/b",
            "rtmp://192.0.2.7:1935/a",
            "rtmp://192.0.2.7:1935//b",
        ] {
            assert!(Target::parse(bad, "live", "cam").is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_apply_to_their_application_only() {
        let rules = vec![
            ForwardRule {
                app: "live".into(),
                url: "rtmp://127.0.0.1:1936/backup/{stream}".into(),
            },
            ForwardRule {
                app: "other".into(),
                url: "rtmp://127.0.0.1:1937/x/{stream}".into(),
            },
        ];
        let targets = Target::of(&rules, "live/cam");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].as_ref().unwrap().stream, "cam");
        assert!(Target::of(&rules, "studio/cam").is_empty());
    }
}
