//! RTMP: the connection driver, around the pure [`connection::Connection`].
//!
//! [`Connection`] decides what the protocol decides (handshake, session, guard, which
//! request is valid in which state, timeouts); this driver owns the socket, the timers and
//! the calls into the shard: it reads, feeds the connection, acts on its [`Action`]s
//! (authorize and register publishers and players, ingest media), and writes its output in
//! order. A publish request for a stream owned by another shard hands the connection over
//! (socket and connection together, see [`Handoff`]); the owner continues with [`resume`].

pub mod amf;
pub mod chunk;
pub mod connection;
pub mod guard;

use crate::hub::feed::Feed;
use crate::hub::origin::PublisherInfo;
use crate::hub::StreamKey;
use crate::limits::Ticket;
use crate::logging::connection_span;
use crate::media::{now_ns, AggregateError, Format};
use crate::net::readiness::Registration;
use crate::net::{self, Duplex};
use crate::shard::{PublishRefusal, Shard};
use crate::stats;
use crate::util::Escaped;
use crate::viewer::{self, Delivery, Ending, Outbox};
use bytes::Bytes;
use connection::{Action, Connection, Refusal, Request, Settings};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use guard::GuardError;
use rml_rtmp::handshake::HandshakeError;
use rml_rtmp::sessions::{ServerSession, ServerSessionError, ServerSessionResult};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::{debug, info, Span};

/// A publisher connection on its way from the shard that accepted it to the stream's owner:
/// the socket and the connection (mid-conversation, its publish request waiting for the
/// owner's decision, with the input and session results behind it) travel together.
pub struct Handoff {
    /// The connection (a duplicate of the accepting shard's descriptor, which it closed).
    pub fd: OwnedFd,
    /// The protocol state.
    pub conn: Box<Connection>,
    /// The connection's place under the connection limits.
    pub ticket: Option<Ticket>,
    /// The connection's id, which it keeps on the owner (its log lines stay one history).
    pub conn_id: u64,
}

/// Why an RTMP connection ended.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The handshake bytes were invalid.
    #[error("bad handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A publisher that was replaced by a new one (`auth.takeover_after_ms`), or whose
    /// stream ended under it, sent more media.
    #[error("this publisher was replaced, or its stream ended")]
    Replaced,
    /// The handshake did not complete within `rtmp.handshake_timeout_ms`.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The connection neither published nor played within `rtmp.handshake_timeout_ms`.
    #[error("neither published nor played in time")]
    SetupTimeout,
    /// A publisher sent no audio or video for `rtmp.idle_timeout_ms`.
    #[error("no media in time (idle publisher)")]
    IdleTimeout,
    /// The client did not take the server's answers within `server.write_timeout_ms`.
    #[error("answers not taken within the write timeout")]
    WriteTimeout,
    /// Input refused before the session saw it: a limit (message size, chunk size, chunk
    /// streams, AMF nesting) or chunking the session cannot follow.
    #[error("input refused: {0}")]
    Input(#[from] GuardError),
    /// The peer sent bytes the session could not decode (bad chunk, bad AMF, ...).
    #[error("protocol error: {0}")]
    Session(#[from] ServerSessionError),
    /// A request the connection may not make in its state (a second connect; connect,
    /// publish or play while playing): refused by closing the connection, so that the
    /// session never keeps requests nobody answers.
    #[error("{0} not allowed {1}")]
    NotAllowed(&'static str, &'static str),
    /// An aggregate message (type 22) whose sub-messages do not fit in it.
    #[error("bad aggregate message: {0}")]
    Aggregate(#[from] AggregateError),
    /// The session library failed on the input (contained to this connection).
    #[error("session failed on malformed input")]
    SessionPanic,
    /// The session's own output could not be rewritten for the peer (a bug, not the
    /// peer's doing: logged, not counted as bad input).
    #[error(transparent)]
    Output(#[from] connection::OutputError),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl RtmpError {
    /// Counts the error in the shard's statistics.
    fn count(&self, shard: &Shard) {
        let counter = match self {
            RtmpError::Input(err) if err.is_limit() => &shard.stats.rtmp_limits_hit,
            RtmpError::SessionPanic => {
                stats::inc(&shard.stats.rtmp_session_panics);
                &shard.stats.rtmp_bad_input
            }
            RtmpError::Handshake(_)
            | RtmpError::Session(_)
            | RtmpError::Aggregate(_)
            | RtmpError::NotAllowed(..)
            | RtmpError::Input(_) => &shard.stats.rtmp_bad_input,
            RtmpError::HandshakeTimeout
            | RtmpError::SetupTimeout
            | RtmpError::IdleTimeout
            | RtmpError::WriteTimeout => &shard.stats.timeouts,
            RtmpError::Replaced | RtmpError::Output(_) | RtmpError::Io(_) => return,
        };
        stats::inc(counter);
    }
}

/// What the driver does after acting on the connection's actions.
enum Next {
    /// Send the output, then read.
    Read,
    /// Play was accepted: send the output, then deliver the stream.
    Play,
    /// Send the output, then hand the connection to shard `owner`, which decides on its
    /// publish request.
    HandOff(usize),
    /// Send the output, then close.
    Close,
    /// A play request for a stream that an edge pull may bring: wait for it, then decide.
    Pull(Request),
}

/// The driver's side of one connection: what it registered with the shard.
struct Driver {
    /// The shard serving it.
    shard: Rc<Shard>,
    /// Process-unique id, to tell this publisher apart from a later one on the same stream.
    conn_id: u64,
    /// Remote address, for the publisher record.
    peer: SocketAddr,
    /// The connection's log context ([`crate::logging::connection_span`]).
    span: Span,
    /// The connection's place under the connection limits (goes along on a handoff).
    ticket: Option<Ticket>,
    /// The stream this connection publishes, registered with the shard.
    publishing: Option<StreamKey>,
    /// The stream this connection plays and the feed it is attached to.
    playing: Option<(StreamKey, Rc<RefCell<Feed>>)>,
}

/// Serves one accepted RTMP connection.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, ticket: Ticket) {
    let accepted_ns = now_ns();
    stats::inc(&shard.stats.rtmp_accepted);
    let _ = stream.set_nodelay(true);
    let conn_id = shard.conn_id();
    let span = connection_span(conn_id, "rtmp", shard.id, peer);
    debug!(parent: &span, action = "connection-open", "rtmp: connection open");
    let conn = Connection::new(Settings::from_config(&shard.config()), peer, accepted_ns);
    let result = match conn.map(Box::new) {
        Ok(mut conn) => {
            conn.set_span(span.clone());
            Driver::new(&shard, conn_id, peer, span.clone(), Some(ticket))
                .run(stream, conn)
                .await
        }
        Err(err) => Err(err),
    };
    report(&shard, &span, result);
}

/// Continues a publisher handed over by another shard.
pub async fn resume(shard: Rc<Shard>, handoff: Box<Handoff>) {
    let Handoff {
        fd,
        mut conn,
        ticket,
        conn_id,
    } = *handoff;
    // SAFETY: `fd` is an open TCP socket whose ownership the accepting shard gave up.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    let peer = conn.peer();
    let span = connection_span(conn_id, "rtmp", shard.id, peer);
    debug!(parent: &span, action = "connection-resume", "rtmp: publisher taken on from another shard");
    conn.set_span(span.clone());
    conn.repeat_request();
    let driver = Driver::new(&shard, conn_id, peer, span.clone(), ticket);
    let result = driver.run(stream, conn).await;
    report(&shard, &span, result);
}

/// How a connection left its shard without an error.
enum Left {
    /// It closed (the peer left, or it finished).
    Closed,
    /// It went on to the owner shard of the stream it publishes (which logs the rest).
    HandedOff,
}

fn report(shard: &Shard, span: &Span, result: Result<Left, RtmpError>) {
    const ACTION: &str = "connection-close";
    match result {
        Ok(Left::HandedOff) => {}
        Ok(Left::Closed) => debug!(parent: span, action = ACTION, "rtmp: connection closed"),
        Err(err) => {
            err.count(shard);
            match err {
                RtmpError::Io(err) => debug!(parent: span, action = ACTION, "rtmp: {err}"),
                err => info!(parent: span, action = ACTION, "rtmp: closing: {err}"),
            }
        }
    }
}

/// Feeds bytes received after the handshake to a connection's session: the one place the
/// server calls the session's input path, public so that tests can feed it as the server
/// does.
///
/// rml_rtmp can panic on hostile chunk headers. The panic is contained here and becomes
/// [`RtmpError::SessionPanic`], which closes that one connection (and is counted as bad
/// input). This relies on panics unwinding, the release profile's default: see the
/// `[profile.release]` note in Cargo.toml. The session must not be used after an error.
pub fn session_input(
    session: &mut ServerSession,
    bytes: &[u8],
) -> Result<Vec<ServerSessionResult>, RtmpError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)))
        .map_err(|_| RtmpError::SessionPanic)?
        .map_err(RtmpError::from)
}

impl Driver {
    fn new(
        shard: &Rc<Shard>,
        conn_id: u64,
        peer: SocketAddr,
        span: Span,
        ticket: Option<Ticket>,
    ) -> Self {
        Driver {
            shard: shard.clone(),
            conn_id,
            peer,
            span,
            ticket,
            publishing: None,
            playing: None,
        }
    }

    /// Runs the connection until the peer leaves, an error occurs, or it is handed to
    /// another shard; then gives back what it registered with the shard.
    async fn run(
        mut self,
        mut stream: TcpStream,
        mut conn: Box<Connection>,
    ) -> Result<Left, RtmpError> {
        // Each phase's future is boxed: the task then holds only the phase it is in, not
        // room for both (a player's task stays for as long as it plays).
        let result = Box::pin(self.converse(&mut stream, &mut conn)).await;
        let result = match result {
            Ok(Next::Play) => {
                conn.settle();
                Box::pin(self.play(stream, &mut conn))
                    .await
                    .map(|()| Left::Closed)
            }
            Ok(Next::HandOff(owner)) => self
                .hand_off(&stream, conn, owner)
                .map(|()| Left::HandedOff),
            // `converse` decides on pulls before it returns.
            Ok(Next::Read | Next::Close | Next::Pull(_)) => Ok(Left::Closed),
            Err(err) => Err(err),
        };
        if let Some(key) = self.publishing.take() {
            let shard = &self.shard;
            self.span
                .in_scope(|| shard.stop_publishing(&key, self.conn_id));
        }
        if let Some((key, feed)) = self.playing.take() {
            self.shard.detach_viewer(&key, &feed, Format::Rtmp);
            stats::dec(&self.shard.stats.rtmp_players);
        }
        result
    }

    /// Reads, feeds the connection and acts on it until it plays, closes or is handed over.
    ///
    /// One stop listener and one deadline alarm serve the whole conversation, not one of
    /// each per read (a publisher reads once per message): the alarm stays armed while the
    /// deadline only moves later, and when it fires before the deadline it is armed again.
    async fn converse(
        &mut self,
        stream: &mut TcpStream,
        conn: &mut Connection,
    ) -> Result<Next, RtmpError> {
        let mut buf = vec![0u8; self.shard.config().rtmp.read_buffer_bytes];
        let shard = self.shard.clone();
        let mut held = stats::Held::new(shard.stats.clone(), |s| &s.connection_buffer_bytes);
        let mut stop = std::pin::pin!(shard.stopped());
        let mut alarm: Option<Alarm> = None;
        let mut registration = None;
        loop {
            let mut next = self.act(conn)?;
            while let Next::Pull(request) = next {
                let played = self.pull_and_decide(conn, request).await;
                next = match self.act(conn)? {
                    Next::Read if played => Next::Play,
                    other => other,
                };
            }
            let out = conn.take_output();
            held.set((buf.len() + out.capacity()) as u64 + conn.buffered_bytes());
            if !out.is_empty() {
                write_within(&self.shard, stream, &out).await?;
            }
            if !matches!(next, Next::Read) {
                return Ok(next);
            }
            let Some((deadline, expired)) = conn.deadline() else {
                return Ok(Next::Close);
            };
            let now = now_ns();
            if now >= deadline {
                return Err(expired);
            }
            let armed = match &mut alarm {
                Some(armed) if armed.covers(deadline, now) => armed,
                _ => alarm.insert(Alarm::new(deadline, now)),
            };
            if registration.is_none() && self.publishing.is_some() {
                registration = self.register(stream);
            }
            let read = async {
                Woke::Read(match &registration {
                    Some(registration) => registration.read(&mut buf).await,
                    None => stream.read(&mut buf).await,
                })
            };
            let stopped = async {
                (&mut stop).await;
                Woke::Stop
            };
            let fired =
                futures_lite::future::poll_fn(|cx| armed.poll_fired(cx).map(|()| Woke::Deadline));
            let n = match futures_lite::future::or(read, futures_lite::future::or(stopped, fired))
                .await
            {
                Woke::Read(read) => read?,
                // A stopping server closes connections that are not playing.
                Woke::Stop => return Ok(Next::Close),
                // Armed for an earlier deadline: looked at again above.
                Woke::Deadline => {
                    alarm = None;
                    continue;
                }
            };
            if n == 0 {
                return Ok(Next::Close);
            }
            if self.publishing.is_some() {
                stats::add(&self.shard.stats.bytes_in, n as u64);
            }
            conn.handle_input(&buf[..n], now_ns());
        }
    }

    /// Puts a publisher's socket in the shard's epoll set (`rtmp.input_poll_us`, see
    /// [`crate::net::readiness`]) until the conversation ends: its messages are then taken
    /// once a tick instead of through an io_uring poll each. Until it publishes, a
    /// connection reads through glommio, so that the handshake's round trips wait for no
    /// tick. `None` (reads through glommio) when the setting is 0 or the socket cannot be
    /// registered.
    fn register(&self, stream: &TcpStream) -> Option<Registration> {
        let tick = self.shard.config().rtmp.input_poll_us;
        if tick == 0 {
            return None;
        }
        let registered = net::dup(stream).and_then(|socket| {
            self.shard
                .readiness()
                .register(socket, Duration::from_micros(tick))
        });
        match registered {
            Ok(registration) => Some(registration),
            Err(err) => {
                debug!(parent: &self.span, "rtmp: reading through glommio: cannot register: {err}");
                None
            }
        }
    }

    /// Acts on the connection's actions, in order.
    fn act(&mut self, conn: &mut Connection) -> Result<Next, RtmpError> {
        let mut next = Next::Read;
        while let Some(action) = conn.poll_action() {
            match action {
                Action::Publish(request) => {
                    if let Some(owner) = self.decide_publish(conn, request) {
                        return Ok(Next::HandOff(owner));
                    }
                }
                Action::Play(request) if self.shard.may_pull(&request.key) => {
                    return Ok(Next::Pull(request));
                }
                Action::Play(request) => {
                    if self.decide_play(conn, request) {
                        next = Next::Play;
                    }
                }
                Action::Media {
                    kind,
                    timestamp,
                    body,
                    at,
                } => {
                    let ingested = self.publishing.as_ref().is_some_and(|key| {
                        self.shard
                            .ingest_media(key, self.conn_id, kind, timestamp, body, at)
                    });
                    if !ingested {
                        return Err(RtmpError::Replaced);
                    }
                }
                Action::Metadata { metadata, at } => {
                    let ingested = self.publishing.as_ref().is_some_and(|key| {
                        self.shard.ingest_metadata(key, self.conn_id, &metadata, at)
                    });
                    if !ingested {
                        return Err(RtmpError::Replaced);
                    }
                }
                Action::Unpublished => {
                    if let Some(key) = self.publishing.take() {
                        let shard = &self.shard;
                        self.span
                            .in_scope(|| shard.stop_publishing(&key, self.conn_id));
                    }
                }
                Action::Refused(refusal) => self.refused(refusal),
                Action::Close(Some(err)) => return Err(err),
                Action::Close(None) => next = Next::Close,
            }
        }
        Ok(next)
    }

    /// A publish request: decided here when this shard owns the stream; otherwise the shard
    /// that does (returned) decides.
    fn decide_publish(&mut self, conn: &mut Connection, request: Request) -> Option<usize> {
        let shard = self.shard.clone();
        let query = request.query.as_deref();
        let auth = self.span.in_scope(|| {
            shard.authorize(
                crate::auth::Action::Publish,
                &request.app,
                &request.name,
                query,
            )
        });
        if let Err(denied) = auth {
            conn.refuse("NetStream.Publish.Unauthorized", denied.message());
            return None;
        }
        let owner = shard.owner(&request.key);
        if owner != shard.id {
            return Some(owner);
        }
        let now = now_ns();
        let cap = shard.config().limits.max_publishes_per_connection;
        let result = if cap > 0 && conn.publishes() >= cap {
            Err(PublishRefusal::ConnectionPublishes)
        } else {
            let publisher = PublisherInfo {
                conn_id: self.conn_id,
                peer: self.peer,
                query: request.query.clone(),
                since_ns: now,
                pulled: false,
            };
            self.span
                .record("stream", tracing::field::display(&request.key));
            self.span
                .in_scope(|| shard.start_publishing(&request.key, publisher))
        };
        match result {
            Ok(()) => {
                self.publishing = Some(request.key);
                conn.accept(now);
            }
            Err(refusal) => {
                let (code, description) = refusal.status();
                // A refusal while stopping is no client's doing: not counted.
                if refusal != PublishRefusal::Stopping {
                    stats::inc(&shard.stats.publish_rejected);
                    info!(parent: &self.span, action = "publish-refused", "publish refused: {description}");
                }
                conn.refuse(code, description);
            }
        }
        None
    }

    /// A play request for a stream an edge pull may bring: once authorized, the stream is
    /// pulled (or the request refused as a loop), then decided as any play request.
    async fn pull_and_decide(&mut self, conn: &mut Connection, request: Request) -> bool {
        let auth = self.authorize_play(&request);
        if auth.is_ok() {
            let query = request.query.as_deref();
            if let Err(looped) = self.shard.live_or_pulled(&request.key, query).await {
                info!(parent: &self.span, action = "pull-loop", "rtmp: play refused: {looped}");
            }
        }
        self.decide_play_as(conn, request, auth)
    }

    /// Whether the client may play `request`'s stream.
    fn authorize_play(&self, request: &Request) -> Result<(), crate::auth::Denied> {
        self.span.in_scope(|| {
            self.shard.authorize(
                crate::auth::Action::Play,
                &request.app,
                &request.name,
                request.query.as_deref(),
            )
        })
    }

    /// A play request: accepted when the stream is known on this shard (any shard serves
    /// players; a replica feed is created when needed). True when accepted.
    fn decide_play(&mut self, conn: &mut Connection, request: Request) -> bool {
        let auth = self.authorize_play(&request);
        self.decide_play_as(conn, request, auth)
    }

    /// [`Driver::decide_play`] with the request's authorization decided.
    fn decide_play_as(
        &mut self,
        conn: &mut Connection,
        request: Request,
        auth: Result<(), crate::auth::Denied>,
    ) -> bool {
        let shard = self.shard.clone();
        let refusal = match auth {
            Err(denied) => Some(("NetStream.Play.Unauthorized", denied.message())),
            Ok(()) => match shard.attach_viewer(&request.key, Format::Rtmp) {
                Some(feed) => {
                    stats::inc(&shard.stats.rtmp_players);
                    stats::inc(&shard.stats.rtmp_players_total);
                    // From here on, `run` detaches the viewer and undoes the gauge.
                    self.playing = Some((request.key.clone(), feed));
                    None
                }
                None => Some(("NetStream.Play.StreamNotFound", "no such stream")),
            },
        };
        match refusal {
            None => {
                conn.accept(now_ns());
                true
            }
            Some((code, description)) => {
                self.refused(Refusal::Play {
                    key: request.key,
                    code,
                });
                conn.refuse(code, description);
                false
            }
        }
    }

    /// Counts and logs a refused request.
    fn refused(&self, refusal: Refusal) {
        let shard = &self.shard;
        match refusal {
            Refusal::Name {
                request,
                shown,
                error,
            } => {
                stats::inc(&shard.stats.names_rejected);
                info!(parent: &self.span, action = "name-refused", request, name = %Escaped(&shown), "invalid name refused: {error}");
            }
            Refusal::Play { key, code } => {
                stats::inc(&shard.stats.play_rejected);
                info!(parent: &self.span, action = "play-refused", stream = %key, code, "play refused");
            }
        }
    }

    /// Hands the connection to the owner shard of the stream it asks to publish.
    fn hand_off(
        &mut self,
        stream: &TcpStream,
        conn: Box<Connection>,
        owner: usize,
    ) -> Result<(), RtmpError> {
        // Duplicate the descriptor for the owner; ours closes with `stream`.
        let fd = crate::net::dup(stream)?;
        debug!(parent: &self.span, action = "connection-handoff", owner, "rtmp: handing publisher to owner");
        let handoff = Handoff {
            fd,
            conn,
            ticket: self.ticket.take(),
            conn_id: self.conn_id,
        };
        let shard = &self.shard;
        self.span.in_scope(|| shard.hand_off(owner, handoff));
        Ok(())
    }

    /// Delivers the stream to this player until it ends, the player stops, or it fails.
    /// The player's input is read at the same time, on the same descriptor (see
    /// [`Duplex`]): its session's responses go out between shared media messages.
    async fn play(&mut self, stream: TcpStream, conn: &mut Connection) -> Result<(), RtmpError> {
        let Some((key, feed)) = self.playing.clone() else {
            return Ok(());
        };
        let shard = self.shard.clone();
        self.span.record("stream", tracing::field::display(&key));
        debug!(parent: &self.span, action = "play-start", "rtmp player start");
        let stream = Duplex::new(stream);
        let outbox = RefCell::new(Outbox::default());
        let delivery = Delivery {
            format: Format::Rtmp,
            tracks: conn.tracks(),
            stream_id: conn.play_stream().unwrap_or(chunk::MEDIA_STREAM_ID),
            head: Vec::new(),
            outbox: Some(&outbox),
        };
        let ending = futures_lite::future::or(
            viewer::deliver(&shard, &feed, &mut &stream, delivery),
            self.player_input(&stream, conn, &outbox),
        )
        .await;
        self.span.in_scope(|| ending.record(&shard));
        if matches!(ending, Ending::StreamEnded | Ending::Unavailable) {
            let done = conn.finish_playing()?;
            write_within(&shard, &mut &stream, &done).await?;
        }
        Ok(())
    }

    /// Reads a player's input: the connection's answers go to the outbox; a stop ends play.
    async fn player_input(
        &self,
        stream: &Duplex,
        conn: &mut Connection,
        outbox: &RefCell<Outbox>,
    ) -> Ending {
        let mut reader = stream;
        let mut held = stats::Held::new(self.shard.stats.clone(), |s| &s.connection_buffer_bytes);
        loop {
            // A player sends little (acknowledgements, pings, stop).
            let read = net::read_with(&mut reader, |bytes| conn.handle_input(bytes, now_ns()));
            match read.await {
                Ok(0) => return Ending::Stopped,
                Ok(_) => {}
                Err(err) => return Ending::Io(err),
            }
            let out = conn.take_output();
            held.set((outbox.borrow().bytes() + out.len()) as u64 + conn.buffered_bytes());
            if !out.is_empty() && !outbox.borrow_mut().push(Bytes::from(out)) {
                info!(parent: &self.span, action = "connection-close", "rtmp player: not reading its answers; closing");
                return Ending::Stopped;
            }
            while let Some(action) = conn.poll_action() {
                match action {
                    Action::Close(None) => return Ending::Stopped,
                    Action::Close(Some(err)) => {
                        err.count(&self.shard);
                        info!(parent: &self.span, action = "connection-close", "rtmp player: closing: {err}");
                        return Ending::Io(io::Error::new(io::ErrorKind::InvalidData, err));
                    }
                    // A playing connection asks for nothing else.
                    _ => {}
                }
            }
        }
    }
}

/// What ended a wait of [`Driver::converse`].
/// The deadline timer of a conversation, registered with the reactor once per arming.
///
/// glommio's `Timer` registers itself again (a clock read and an update of the reactor's
/// timer map) each time it is polled, and a publisher waits once per message. An alarm polls
/// its timer only on the first wait after it is armed: the task's waker stays registered (a
/// task keeps one waker), so the reactor wakes the task when the time comes, and later
/// waits see that it has come from the clock.
struct Alarm {
    /// When it fires, in `now_ns` time.
    at: u64,
    timer: glommio::timer::Timer,
    registered: bool,
}

impl Alarm {
    fn new(at: u64, now: u64) -> Alarm {
        let timer = glommio::timer::Timer::new(Duration::from_nanos(at.saturating_sub(now)));
        Alarm {
            at,
            timer,
            registered: false,
        }
    }

    /// Whether the alarm still wakes the task in time for `deadline`: it fires no later
    /// and has not fired yet.
    fn covers(&self, deadline: u64, now: u64) -> bool {
        self.at <= deadline && now < self.at
    }

    /// Ready once the alarm's time has come.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.registered {
            self.registered = true;
            return Pin::new(&mut self.timer).poll(cx).map(drop);
        }
        if now_ns() >= self.at {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

enum Woke {
    /// The read finished.
    Read(io::Result<usize>),
    /// The server is stopping.
    Stop,
    /// The timer fired (the deadline may have moved since it was armed).
    Deadline,
}

/// Writes answers (not live media) within `server.write_timeout_ms`.
async fn write_within(
    shard: &Shard,
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> Result<(), RtmpError> {
    crate::util::timeout(shard.config().write_timeout(), stream.write_all(bytes))
        .await
        .ok_or(RtmpError::WriteTimeout)??;
    Ok(())
}
