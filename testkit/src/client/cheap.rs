//! Cheap viewers on a glommio executor, for load generation and benchmarks: a connection
//! that starts an HTTP-FLV or RTMP playback and then only counts the bytes it drains. Much
//! cheaper per viewer than a parsing client, so that a load test measures the server.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
};
use std::io;
use std::net::SocketAddr;

/// The protocol of a cheap viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `GET /{app}/{stream}.flv`.
    Flv,
    /// RTMP handshake, connect, createStream, play.
    Rtmp,
}

/// Connects and starts playing `app/stream`; afterwards the stream only carries media.
/// For RTMP, the player answers nothing more (no acknowledgements): fine while it receives
/// less than the server's acknowledgement window (1 GiB with rml_rtmp's defaults).
pub async fn start(
    addr: SocketAddr,
    protocol: Protocol,
    app: &str,
    stream: &str,
) -> io::Result<TcpStream> {
    let mut s = connect(addr).await?;
    match protocol {
        Protocol::Flv => {
            let request = format!("GET /{app}/{stream}.flv HTTP/1.1\r\nHost: load\r\n\r\n");
            s.write_all(request.as_bytes()).await?;
        }
        Protocol::Rtmp => start_rtmp(&mut s, app, stream).await?,
    }
    Ok(s)
}

/// Connects with Nagle's algorithm off: the RTMP handshake and commands are small writes
/// that would otherwise wait for delayed acknowledgements.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    s.set_nodelay(true)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(s)
}

/// Reads until the connection ends, calling `count` with the size of every read.
pub async fn drain(s: &mut TcpStream, mut count: impl FnMut(usize)) -> io::Result<()> {
    drain_bytes(s, |bytes| count(bytes.len())).await
}

/// Read buffer of a cheap viewer: small, since a load test holds thousands of them.
const READ_BUFFER: usize = 16 * 1024;

/// Reads until the connection ends, handing every read's bytes to `seen`.
pub async fn drain_bytes(s: &mut TcpStream, mut seen: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(()),
            n => seen(&buf[..n]),
        }
    }
}

fn protocol_error(what: impl std::fmt::Debug) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what:?}"))
}

async fn start_rtmp(s: &mut TcpStream, app: &str, stream: &str) -> io::Result<()> {
    start_rtmp_session(s, app, stream).await.map(|_| ())
}

/// An RTMP player's session once playback is accepted: the session (for a player that keeps
/// parsing) and the results that arrived with the acceptance (media may already follow it).
pub struct RtmpPlayback {
    /// The client session.
    pub session: ClientSession,
    /// Results after `PlaybackRequestAccepted` in the same input.
    pub pending: Vec<ClientSessionResult>,
}

/// RTMP handshake, connect, createStream and play on a connected socket.
pub async fn start_rtmp_session(
    s: &mut TcpStream,
    app: &str,
    stream: &str,
) -> io::Result<RtmpPlayback> {
    let mut handshake = Handshake::new(PeerType::Client);
    let hello = handshake
        .generate_outbound_p0_and_p1()
        .map_err(protocol_error)?;
    s.write_all(&hello).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut input = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match handshake.process_bytes(&buf[..n]).map_err(protocol_error)? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).await?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                s.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, _) =
        ClientSession::new(ClientSessionConfig::new()).map_err(protocol_error)?;
    let connect = session
        .request_connection(app.to_string())
        .map_err(protocol_error)?;
    send(s, connect).await?;
    loop {
        let mut results = session
            .handle_input(&input)
            .map_err(protocol_error)?
            .into_iter();
        while let Some(result) = results.next() {
            match result {
                ClientSessionResult::OutboundResponse(p) => s.write_all(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    let play = session
                        .request_playback(stream.to_string())
                        .map_err(protocol_error)?;
                    send(s, play).await?;
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PlaybackRequestAccepted) => {
                    return Ok(RtmpPlayback {
                        session,
                        pending: results.collect(),
                    });
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => return Err(protocol_error(description)),
                _ => {}
            }
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        input = buf[..n].to_vec();
    }
}

async fn send(s: &mut TcpStream, result: ClientSessionResult) -> io::Result<()> {
    if let ClientSessionResult::OutboundResponse(p) = result {
        s.write_all(&p.bytes).await?;
    }
    Ok(())
}
