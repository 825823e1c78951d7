//! RTMP sessions: messages that would crash the process (deep AMF nesting), and requests
//! that would make the session keep state nobody answers.

use super::*;
use crate::common::raw_rtmp::RawClient;
use bytes::Bytes;
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

/// RTMP message types of AMF0 commands and data.
const COMMAND: u8 = 20;
const DATA: u8 = 18;

/// About the size of the message that used to abort the process.
const NESTED_BYTES: usize = 36 * 1024;

/// An AMF0 string value.
fn amf_string(s: &str) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// How a container nests in AMF0: the bytes that open one level (with one entry whose value
/// is the next level) and the bytes that close it.
#[derive(Clone, Copy, Debug)]
enum Nesting {
    /// Strict arrays of one element.
    StrictArray,
    /// Anonymous objects with one property.
    Object,
    /// ECMA arrays with one property.
    EcmaArray,
}

/// `NESTED_BYTES` of AMF0 values nested as deep as they fit.
fn nested(kind: Nesting) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = match kind {
        Nesting::StrictArray => (&[0x0a, 0, 0, 0, 1], &[]),
        Nesting::Object => (&[0x03, 0, 1, b'a'], &[0, 0, 9]),
        Nesting::EcmaArray => (&[0x08, 0, 0, 0, 1, 0, 1, b'a'], &[0, 0, 9]),
    };
    let depth = NESTED_BYTES / (open.len() + close.len());
    let mut out = open.repeat(depth);
    out.push(0x05); // null, the innermost value
    out.extend(close.repeat(depth));
    out
}

/// A whole message of `type_id` with `body`, on message stream 0.
fn message(client: &mut RawClient, type_id: u8, body: Vec<u8>) -> Vec<u8> {
    client.payload(&MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id,
        message_stream_id: 0,
        data: Bytes::from(body),
    })
}

/// Right after the handshake, before any credential: a command or a data message nesting
/// thousands of levels. Each closes only its own connection, as a limit hit.
#[test]
fn deeply_nested_amf_closes_only_its_connection() {
    hostile("", |server| {
        let mut attacks = Vec::new();
        for kind in [Nesting::StrictArray, Nesting::Object, Nesting::EcmaArray] {
            let mut command = amf_string("connect");
            command.push(0x00);
            command.extend_from_slice(&1.0f64.to_be_bytes());
            command.extend(nested(kind));
            attacks.push((kind, COMMAND, command));
            let mut data = amf_string("@setDataFrame");
            data.extend(amf_string("onMetaData"));
            data.extend(nested(kind));
            attacks.push((kind, DATA, data));
        }
        for (kind, type_id, body) in attacks {
            let before = server.counter("rtmp_limits_hit_total");
            let mut client = RawClient::connect(server.rtmp);
            let bytes = message(&mut client, type_id, body);
            client.send(&bytes);
            let took = read_until_closed(&mut client.stream, Duration::from_secs(3)).1;
            assert!(
                took < Duration::from_secs(2),
                "{kind:?}/{type_id}: {took:?}"
            );
            assert_eq!(
                server.counter("rtmp_limits_hit_total"),
                before + 1,
                "{kind:?} nesting in message type {type_id}"
            );
        }
    });
}

/// The commands a player sends to play the witness, on message stream 1.
fn play_witness(client: &mut RawClient) -> Vec<u8> {
    let mut out = client.connect_app();
    out.extend(client.command("createStream", 2.0, 0, Vec::new()));
    let name = WITNESS.rsplit('/').next().unwrap();
    out.extend(client.command("play", 3.0, 1, vec![Amf0Value::Utf8String(name.into())]));
    out
}

/// Reads until `count` bytes of the witness arrived (the player is playing).
fn read_some(stream: &mut TcpStream, count: usize) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 16384];
    let mut got = 0;
    while got < count {
        got += stream.read(&mut buf).expect("the player gets media");
    }
}

/// A playing connection that sends publish requests (which the session would keep, each
/// unanswered, for as long as the connection lives): the first one closes it. 100 MB of
/// them cannot be sent, and the server's memory does not move.
#[test]
fn requests_on_a_playing_connection_close_it() {
    hostile("", |server| {
        let before = server.counter("rtmp_bad_input_total");
        let mut player = RawClient::connect(server.rtmp);
        let setup = play_witness(&mut player);
        player.send(&setup);
        read_some(&mut player.stream, 10_000);
        let publish = player.command(
            "publish",
            4.0,
            1,
            vec![
                Amf0Value::Utf8String("hijack".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        );
        let flood = publish.repeat((1 << 20) / publish.len());
        let started = Instant::now();
        let sent = send_until_refused(&mut player.stream, &flood, 100 << 20);
        assert!(
            sent < 100 << 20,
            "the server took {sent} bytes of publish requests"
        );
        read_until_closed(&mut player.stream, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(server.counter("rtmp_bad_input_total"), before + 1);
        assert!(server.logs_soon("publish not allowed while playing"));
    });
}

/// `connect` twice on one connection closes it: the second would be answered again (and a
/// client that repeats it without reading would make the server queue the answers).
#[test]
fn a_second_connect_closes_the_connection() {
    hostile("", |server| {
        let before = server.counter("rtmp_bad_input_total");
        let mut client = RawClient::connect(server.rtmp);
        let connect = client.connect_app();
        let again = client.connect_app();
        client.send(&[connect, again].concat());
        read_until_closed(&mut client.stream, Duration::from_secs(2));
        assert_eq!(server.counter("rtmp_bad_input_total"), before + 1);
    });
}

/// `createStream` again and again (rml_rtmp answers each by itself and keeps a message
/// stream for it), without reading the answers: closed at the 17th, as a limit hit.
#[test]
fn create_stream_floods_are_refused() {
    hostile("", |server| {
        let before = server.counter("rtmp_limits_hit_total");
        let mut client = RawClient::connect(server.rtmp);
        let mut flood = client.connect_app();
        for transaction in 0..10_000 {
            flood.extend(client.command("createStream", f64::from(transaction + 2), 0, Vec::new()));
        }
        // The kernel's buffers may take all of it before the server reads the 17th.
        send_until_refused(&mut client.stream, &flood, flood.len());
        read_until_closed(&mut client.stream, Duration::from_secs(3));
        assert_eq!(server.counter("rtmp_limits_hit_total"), before + 1);
        assert!(server.logs_soon("more than 16 createStream requests"));
    });
}
