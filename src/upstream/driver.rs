//! The task that pulls one stream on its owner shard: origins in the order [`Failover`]
//! gives them, one session at a time, the stream published with what comes (see the
//! module's notes in [`crate::upstream`]).

use super::flv::FlvPull;
use super::rtmp::RtmpPull;
use super::{Failover, Next, OriginUrl, PullError, PullState, Pulled, Via};
use crate::hub::origin::PublisherInfo;
use crate::hub::StreamKey;
use crate::media::now_ns;
use crate::net::tls;
use crate::shard::pull::Pull;
use crate::shard::Shard;
use crate::stats;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tracing::{info, warn};

/// Bytes read from an origin at a time.
const READ_BYTES: usize = 64 * 1024;

/// How often a session checks that its stream is still wanted: the pull stops within this
/// much of `edge.idle_timeout_ms` after the last viewer left.
const WANTED_CHECK_NS: u64 = 100_000_000;

/// How a session ended, when not by an error.
#[derive(Debug)]
enum Ended {
    /// The stream has had no viewer for `edge.idle_timeout_ms`: the pull stops.
    Idle,
    /// Another publisher has the stream (a publish here), or the server stops.
    Over,
    /// The origin ended the stream or the connection, or went silent: the next origin.
    Lost(String),
}

/// A session's client, by protocol.
enum Client {
    Flv(FlvPull),
    Rtmp(Box<RtmpPull>),
}

impl Client {
    /// The client of `origin` and its first bytes; its request names the servers in `via`
    /// and this one.
    fn new(origin: &OriginUrl, via: &Via, shard: &Shard) -> Result<(Client, Vec<u8>), PullError> {
        let config = shard.config();
        let max_message = config.rtmp.max_message_bytes;
        let param = via.param_with(shard.node_id());
        match origin {
            OriginUrl::Flv { host, path, .. } => {
                let request = FlvPull::request(host, &super::with_param(path, &param));
                Ok((Client::Flv(FlvPull::new(max_message as usize)), request))
            }
            OriginUrl::Rtmp(target) => {
                let stream = super::with_param(&target.stream, &param);
                let mut pull =
                    RtmpPull::new(target, stream, max_message, config.rtmp.max_chunk_size)?;
                let first = pull.take_output();
                Ok((Client::Rtmp(Box::new(pull)), first))
            }
        }
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<Vec<Pulled>, PullError> {
        match self {
            Client::Flv(pull) => pull.handle_input(bytes),
            Client::Rtmp(pull) => pull.handle_input(bytes),
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        match self {
            Client::Flv(_) => Vec::new(),
            Client::Rtmp(pull) => pull.take_output(),
        }
    }
}

/// Pulls `key` from `origins` while it is wanted; keeps `pull`'s status up to date. `via`
/// lists the servers the request that started it went through.
pub async fn run(
    shard: Rc<Shard>,
    key: StreamKey,
    origins: Vec<OriginUrl>,
    via: Via,
    pull: Rc<Pull>,
) {
    let puller = Puller {
        shard: &shard,
        key: &key,
        via: &via,
        conn_id: shard.conn_id(),
        pull: &pull,
    };
    let mut failover = Failover::new(origins.len());
    loop {
        let origin = &origins[failover.current()];
        pull.status
            .borrow_mut()
            .enter(PullState::Connecting, origin.shown());
        let why = match puller.session(origin, &mut failover).await {
            Ok(Ended::Idle | Ended::Over) => break,
            Ok(Ended::Lost(why)) => why,
            Err(err) => err.to_string(),
        };
        stats::inc(&shard.stats.upstream_failures);
        {
            let mut status = pull.status.borrow_mut();
            status.failures += 1;
            status.last_error = Some(why.clone());
        }
        let next = failover.failed();
        warn!(action = "pull-failed", shard = shard.id, stream = %key, origin = %origin.shown(), "pull: {why}; next: {next:?}");
        match next {
            Next::Try(_) => {}
            Next::Wait(wait, _) => {
                pull.status
                    .borrow_mut()
                    .enter(PullState::Waiting, origin.shown());
                glommio::timer::sleep(wait).await;
            }
            Next::GiveUp => {
                info!(action = "pull-not-found", shard = shard.id, stream = %key, "pull: no origin has the stream");
                break;
            }
        }
        if shard.is_stopping() || !shard.pull_wanted(&key, &pull, now_ns()) {
            break;
        }
    }
    shard.pull_ended(&key, puller.conn_id);
}

/// One pull's sessions: what every session of it shares.
struct Puller<'a> {
    /// The owner shard.
    shard: &'a Rc<Shard>,
    /// The stream.
    key: &'a StreamKey,
    /// The servers the request that started the pull went through.
    via: &'a Via,
    /// The pull's publisher id (one for all its sessions: a republish each time).
    conn_id: u64,
    /// Its registry entry: status, and when it was last wanted.
    pull: &'a Pull,
}

impl Puller<'_> {
    /// One session with `origin`: connect, ask, then publish what comes until it ends. The
    /// stream, once published by the session, goes into its republish grace when the
    /// session is lost (the next origin takes it on).
    async fn session(
        &self,
        origin: &OriginUrl,
        failover: &mut Failover,
    ) -> Result<Ended, PullError> {
        let mut publishing = false;
        let ended = self.pull_stream(origin, failover, &mut publishing).await;
        if publishing && !matches!(ended, Ok(Ended::Idle)) {
            self.shard.stop_publishing(self.key, self.conn_id);
        }
        ended
    }

    /// The body of [`Puller::session`]: the connection (with TLS for `https://`), then
    /// [`Puller::exchange`]; `publishing` tells it whether the stream was published.
    async fn pull_stream(
        &self,
        origin: &OriginUrl,
        failover: &mut Failover,
        publishing: &mut bool,
    ) -> Result<Ended, PullError> {
        let config = self.shard.config();
        let patience = Duration::from_millis(config.edge.connect_timeout_ms);
        let host = origin.host();
        let (stream, peer) = host.connect(patience).await?;
        let _ = stream.set_nodelay(true);
        let OriginUrl::Flv { tls: true, .. } = origin else {
            return self
                .exchange(stream, peer, origin, failover, publishing)
                .await;
        };
        let ca_file = config.edge.ca_file();
        let setup = async {
            let roots = move || tls::client_config(ca_file.as_deref());
            let tls_config = glommio::executor().spawn_blocking(roots).await?;
            Ok::<_, PullError>(tls::connect(tls_config, host, stream).await?)
        };
        let stream = crate::util::timeout(patience, setup)
            .await
            .ok_or(PullError::Timeout(patience))??;
        self.exchange(stream, peer, origin, failover, publishing)
            .await
    }

    /// A session's exchange with `origin` at `peer` over `stream`: ask, then publish what
    /// comes until it ends.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        origin: &OriginUrl,
        failover: &mut Failover,
        publishing: &mut bool,
    ) -> Result<Ended, PullError> {
        let (shard, key, pull) = (self.shard, self.key, self.pull);
        let config = shard.config();
        let patience = Duration::from_millis(config.edge.connect_timeout_ms);
        let write_limit = config.write_timeout();
        let (mut client, first) = Client::new(origin, self.via, shard)?;
        send(&mut stream, &first, write_limit).await?;
        let mut buf = vec![0u8; READ_BYTES];
        let mut checked = now_ns();
        loop {
            // Until the stream comes, the origin has `patience` in all; then, as long
            // between reads.
            let n = match crate::util::timeout(patience, stream.read(&mut buf)).await {
                // TLS: a close without close_notify (most HTTP servers' way) is an end too.
                Some(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Some(read) => read?,
                None if *publishing => {
                    return Ok(Ended::Lost(format!("nothing received for {patience:?}")))
                }
                None => return Err(PullError::Timeout(patience)),
            };
            if n == 0 {
                return match *publishing {
                    true => Ok(Ended::Lost("the origin closed the connection".into())),
                    false => Err(PullError::Refused("closed before the stream came".into())),
                };
            }
            pull.status.borrow_mut().bytes += n as u64;
            stats::add(&shard.stats.upstream_bytes, n as u64);
            let events = client.handle_input(&buf[..n])?;
            let out = client.take_output();
            if !out.is_empty() {
                send(&mut stream, &out, write_limit).await?;
            }
            let at = now_ns();
            for event in events {
                if let Pulled::Ended(why) = event {
                    return Ok(Ended::Lost(format!("the origin ended the stream: {why}")));
                }
                if !*publishing {
                    if !self.start(origin, peer, at) {
                        return Ok(Ended::Over);
                    }
                    *publishing = true;
                    failover.delivered();
                }
                if !ingest(shard, key, self.conn_id, event, at) {
                    return Ok(Ended::Over);
                }
            }
            if at.saturating_sub(checked) >= WANTED_CHECK_NS {
                checked = at;
                if shard.is_stopping() {
                    return Ok(Ended::Over);
                }
                if !shard.pull_wanted(key, pull, at) {
                    return Ok(Ended::Idle);
                }
            }
        }
    }

    /// The session's first media from `origin` at `peer` (at `at`): the stream is
    /// published with it. False when it cannot be (a publisher here has it, a limit).
    fn start(&self, origin: &OriginUrl, peer: SocketAddr, at: u64) -> bool {
        let (shard, key) = (self.shard, self.key);
        let publisher = PublisherInfo {
            conn_id: self.conn_id,
            peer,
            query: None,
            since_ns: at,
            pulled: true,
        };
        if let Err(refusal) = shard.start_publishing(key, publisher) {
            info!(action = "pull-refused", shard = shard.id, stream = %key, "pull: the stream cannot be published here: {}", refusal.status().1);
            return false;
        }
        stats::inc(&shard.stats.upstream_sessions);
        let mut status = self.pull.status.borrow_mut();
        status.sessions += 1;
        status.enter(PullState::Pulling, origin.shown());
        info!(action = "pull-session", shard = shard.id, stream = %key, origin = %origin.shown(), "pull: the stream comes from the origin");
        true
    }
}

/// Publishes one event of a session; false when the pull no longer publishes the stream.
fn ingest(shard: &Shard, key: &StreamKey, conn_id: u64, event: Pulled, at: u64) -> bool {
    match event {
        Pulled::Media {
            kind,
            timestamp,
            body,
        } => shard.ingest_media(key, conn_id, kind, timestamp, body, at),
        Pulled::Metadata(metadata) => shard.ingest_metadata(key, conn_id, &metadata, at),
        Pulled::Ended(_) => true,
    }
}

/// Sends `bytes` within `limit`.
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), PullError> {
    crate::util::timeout(limit, stream.write_all(bytes))
        .await
        .ok_or(PullError::Timeout(limit))?
        .map_err(PullError::Io)
}
