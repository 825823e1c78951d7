//! Fake-server helpers shared by the publisher and player tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{ServerSessionEvent, ServerSessionResult};
use rml_rtmp::time::RtmpTimestamp;

use super::connection::READ_BUFFER_LEN;

/// Timeout for clients and fake servers in tests.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts one connection and completes the server side of the handshake.
pub(super) fn accept_with_handshake(listener: &TcpListener) -> (TcpStream, Vec<u8>) {
    let (mut socket, _) = listener.accept().unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = vec![0; READ_BUFFER_LEN];
    loop {
        let len = socket.read(&mut buf).unwrap();
        assert_ne!(len, 0, "client closed during handshake");
        match handshake.process_bytes(&buf[..len]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).unwrap();
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes).unwrap();
                return (socket, remaining_bytes);
            }
        }
    }
}

/// Writes a `ServerSession`'s packets and returns its events; adds the
/// number of bytes written to `sent`.
pub(super) fn write_server_results(
    socket: &mut TcpStream,
    results: Vec<ServerSessionResult>,
    sent: &mut u64,
) -> Vec<ServerSessionEvent> {
    let mut events = Vec::new();
    for result in results {
        match result {
            ServerSessionResult::OutboundResponse(packet) => {
                socket.write_all(&packet.bytes).unwrap();
                *sent += packet.bytes.len() as u64;
            }
            ServerSessionResult::RaisedEvent(event) => events.push(event),
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    events
}

/// An AMF0 status object as sent with `onStatus` or `_error`.
pub(super) fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    let properties: HashMap<String, Amf0Value> = [
        ("level", level),
        ("code", code),
        ("description", description),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Amf0Value::Utf8String(v.to_owned())))
    .collect();
    Amf0Value::Object(properties)
}

/// A hand-rolled server speaking raw RTMP messages, for what `ServerSession`
/// cannot be made to send (error-level `onStatus`, `StreamEOF`, custom chunking).
pub(super) struct RawServer {
    pub(super) socket: TcpStream,
    pub(super) serializer: ChunkSerializer,
    deserializer: ChunkDeserializer,
    pending: Vec<u8>,
    buf: Vec<u8>,
}

impl RawServer {
    /// Accepts one connection and completes the handshake.
    pub(super) fn accept(listener: &TcpListener) -> Self {
        let (socket, pending) = accept_with_handshake(listener);
        Self {
            socket,
            serializer: ChunkSerializer::new(),
            deserializer: ChunkDeserializer::new(),
            pending,
            buf: vec![0; READ_BUFFER_LEN],
        }
    }

    /// Returns the name and transaction id of the client's next command,
    /// skipping other messages; `None` once the client closed.
    pub(super) fn next_command(&mut self) -> Option<(String, f64)> {
        loop {
            let input = std::mem::take(&mut self.pending);
            if let Some(payload) = self.deserializer.get_next_message(&input).unwrap() {
                match payload.to_rtmp_message().unwrap() {
                    RtmpMessage::SetChunkSize { size } => {
                        self.deserializer.set_max_chunk_size(size as usize).unwrap();
                    }
                    RtmpMessage::Amf0Command {
                        command_name,
                        transaction_id,
                        ..
                    } => return Some((command_name, transaction_id)),
                    _ => {}
                }
                continue;
            }
            match self.socket.read(&mut self.buf) {
                Ok(0) | Err(_) => return None,
                Ok(len) => self.pending = self.buf[..len].to_vec(),
            }
        }
    }

    /// Answers `connect` and `createStream` (stream id 1) successfully until
    /// the client sends `command`; returns false if it closed first.
    pub(super) fn accept_until(&mut self, command: &str) -> bool {
        while let Some((name, transaction_id)) = self.next_command() {
            match name.as_str() {
                "connect" => {
                    let ok = status_object("status", "NetConnection.Connect.Success", "ok");
                    self.send_command("_result", transaction_id, vec![ok], 0);
                }
                "createStream" => {
                    let id = Amf0Value::Number(1.0);
                    self.send_command("_result", transaction_id, vec![id], 0);
                }
                name if name == command => return true,
                _ => {}
            }
        }
        false
    }

    /// Sends a command with a null command object.
    pub(super) fn send_command(
        &mut self,
        name: &str,
        transaction_id: f64,
        arguments: Vec<Amf0Value>,
        stream_id: u32,
    ) {
        self.send_message(
            RtmpMessage::Amf0Command {
                command_name: name.to_owned(),
                transaction_id,
                command_object: Amf0Value::Null,
                additional_arguments: arguments,
            },
            stream_id,
        );
    }

    /// Serializes and sends one message at timestamp 0.
    pub(super) fn send_message(&mut self, message: RtmpMessage, stream_id: u32) {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(0), stream_id)
            .unwrap();
        let packet = self.serializer.serialize(&payload, false, false).unwrap();
        self.socket.write_all(&packet.bytes).unwrap();
    }
}
