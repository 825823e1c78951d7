//! Unit tests of [`super`] (connection): every state transition, the hostile ones included.
//! Over 600 lines because they share one hand-written client (`Peer`); split by state, each
//! file would need its own copy.

use super::*;
use crate::rtmp::chunk::{ChunkError, MEDIA_STREAM_ID};
use crate::rtmp::guard::GuardError;
use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use std::collections::HashMap;

const MS: u64 = 1_000_000;

fn settings() -> Settings {
    Settings {
        chunk_size: 4096,
        max_chunk_size: 65536,
        max_message_bytes: 1 << 20,
        setup_timeout_ns: 10_000 * MS,
        idle_timeout_ns: 30_000 * MS,
    }
}

/// A connection past the handshake, and a client that writes messages by hand (so that
/// it can send what a well-behaved client would not).
struct Peer {
    conn: Connection,
    chunks: ChunkSerializer,
    /// Actions taken from the connection, not yet looked at.
    actions: VecDeque<Action>,
    /// Everything the connection sent.
    sent: Vec<u8>,
}

impl Peer {
    fn new() -> Peer {
        let peer = "192.0.2.1:5000".parse().unwrap();
        let mut conn = Connection::new(settings(), peer, 0).unwrap();
        let mut client = Handshake::new(PeerType::Client);
        let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
        conn.handle_input(&c0c1, 0);
        assert!(matches!(conn.state, State::Handshaking(_)));
        let reply = conn.take_output();
        let c2 = match client.process_bytes(&reply).unwrap() {
            HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
            HandshakeProcessResult::InProgress { .. } => panic!("handshake incomplete"),
        };
        conn.handle_input(&c2, 0);
        assert!(matches!(conn.state, State::Connected));
        let mut peer = Peer {
            conn,
            chunks: ChunkSerializer::new(),
            actions: VecDeque::new(),
            sent: Vec::new(),
        };
        peer.collect();
        peer
    }

    /// A connected client (`connect("live")` answered).
    fn connected() -> Peer {
        let mut peer = Peer::new();
        let connect = peer.connect("live");
        peer.send(&connect);
        assert!(peer.sent_status("NetConnection.Connect.Success"));
        peer
    }

    fn collect(&mut self) {
        while let Some(action) = self.conn.poll_action() {
            self.actions.push_back(action);
        }
        self.sent.extend(self.conn.take_output());
    }

    fn send_at(&mut self, bytes: &[u8], now: u64) {
        self.conn.handle_input(bytes, now);
        self.collect();
    }

    fn send(&mut self, bytes: &[u8]) {
        self.send_at(bytes, 0);
    }

    fn next(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the connection sent a status with this code (from the start).
    fn sent_status(&self, code: &str) -> bool {
        self.sent
            .windows(code.len())
            .any(|window| window == code.as_bytes())
    }

    fn message(&mut self, message: RtmpMessage, stream_id: u32, timestamp: u32) -> Vec<u8> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
            .unwrap();
        self.chunks.serialize(&payload, false, false).unwrap().bytes
    }

    fn command(&mut self, name: &str, tx: f64, stream_id: u32, args: Vec<Amf0Value>) -> Vec<u8> {
        let command = RtmpMessage::Amf0Command {
            command_name: name.to_string(),
            transaction_id: tx,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        };
        self.message(command, stream_id, 0)
    }

    fn connect(&mut self, app: &str) -> Vec<u8> {
        let mut properties = HashMap::new();
        properties.insert("app".to_string(), Amf0Value::Utf8String(app.into()));
        let connect = RtmpMessage::Amf0Command {
            command_name: "connect".to_string(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(properties),
            additional_arguments: Vec::new(),
        };
        self.message(connect, 0, 0)
    }

    fn create_stream(&mut self) -> Vec<u8> {
        self.command("createStream", 2.0, 0, Vec::new())
    }

    fn publish(&mut self, name: &str) -> Vec<u8> {
        let args = vec![
            Amf0Value::Utf8String(name.into()),
            Amf0Value::Utf8String("live".into()),
        ];
        self.command("publish", 3.0, MEDIA_STREAM_ID, args)
    }

    fn play(&mut self, name: &str, stream_id: u32) -> Vec<u8> {
        self.command(
            "play",
            4.0,
            stream_id,
            vec![Amf0Value::Utf8String(name.into())],
        )
    }

    fn delete_stream(&mut self) -> Vec<u8> {
        let args = vec![Amf0Value::Number(MEDIA_STREAM_ID.into())];
        self.command("deleteStream", 0.0, 0, args)
    }

    fn video(&mut self, body: &[u8], timestamp: u32) -> Vec<u8> {
        let data = Bytes::copy_from_slice(body);
        self.message(RtmpMessage::VideoData { data }, MEDIA_STREAM_ID, timestamp)
    }

    /// Connected, then a publish request for `live/name` that waits for a decision.
    fn asking_to_publish(name: &str) -> (Peer, Request) {
        let mut peer = Peer::connected();
        let mut bytes = peer.create_stream();
        bytes.extend(peer.publish(name));
        peer.send(&bytes);
        match peer.next() {
            Some(Action::Publish(request)) => (peer, request),
            other => panic!("expected a publish request, got {other:?}"),
        }
    }

    /// A publisher of `live/cam`, accepted at `now`.
    fn publishing(now: u64) -> Peer {
        let (mut peer, _) = Peer::asking_to_publish("cam");
        peer.conn.accept(now);
        peer.collect();
        assert!(peer.sent_status("NetStream.Publish.Start"));
        peer
    }

    /// A player of `live/cam`, accepted.
    fn playing() -> Peer {
        let mut peer = Peer::connected();
        let mut bytes = peer.create_stream();
        bytes.extend(peer.play("cam", MEDIA_STREAM_ID));
        peer.send(&bytes);
        assert!(matches!(peer.next(), Some(Action::Play(_))));
        peer.conn.accept(0);
        peer.collect();
        assert_eq!(peer.conn.playing().map(|k| &**k), Some("live/cam"));
        peer
    }
}

/// An AVC keyframe of `len` bytes (an FLV video body with a payload).
fn keyframe(len: usize) -> Vec<u8> {
    let mut frame = vec![0x17, 1, 0, 0, 0];
    frame.resize(len, 0x65);
    frame
}

fn closed_with(action: Option<Action>) -> RtmpError {
    match action {
        Some(Action::Close(Some(err))) => err,
        other => panic!("expected a close with an error, got {other:?}"),
    }
}

#[test]
fn handshake_then_the_session_greets_and_the_setup_deadline_runs_from_the_accept() {
    let peer = "192.0.2.1:5000".parse().unwrap();
    let conn = Connection::new(settings(), peer, 5 * MS).unwrap();
    let (at, err) = conn.deadline().unwrap();
    assert_eq!(at, 10_005 * MS);
    assert!(matches!(err, RtmpError::HandshakeTimeout));
    let peer = Peer::new();
    // After the handshake's reply (taken by `Peer::new`), the session's window, bandwidth
    // and chunk size: protocol control messages on chunk stream 2.
    assert_eq!(peer.sent.first(), Some(&0x02));
    let (at, err) = peer.conn.deadline().unwrap();
    assert_eq!(at, 10_000 * MS);
    assert!(matches!(err, RtmpError::SetupTimeout));
}

#[test]
fn a_bad_handshake_closes() {
    let peer = "192.0.2.1:5000".parse().unwrap();
    let mut conn = Connection::new(settings(), peer, 0).unwrap();
    conn.handle_input(&[9; 1537], 0);
    assert!(matches!(
        closed_with(conn.poll_action()),
        RtmpError::Handshake(_)
    ));
    assert!(conn.is_closing());
    // Input after the close is ignored.
    conn.handle_input(&[3; 100], 0);
    assert!(conn.poll_action().is_none());
}

#[test]
fn connect_is_answered_and_a_second_connect_closes() {
    let mut peer = Peer::connected();
    assert!(peer.next().is_none());
    let again = peer.connect("live");
    peer.send(&again);
    assert!(matches!(
        closed_with(peer.next()),
        RtmpError::NotAllowed("connect", "twice")
    ));
}

#[test]
fn an_invalid_application_name_is_refused_counted_and_closed() {
    let mut peer = Peer::new();
    let connect = peer.connect("bad/app");
    peer.send(&connect);
    match peer.next() {
        Some(Action::Refused(Refusal::Name { request, shown, .. })) => {
            assert_eq!(request, "connect");
            assert_eq!(shown, "bad/app");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(peer.next(), Some(Action::Close(None))));
    assert!(peer.sent_status("NetConnection.Connect.Rejected"));
}

#[test]
fn a_publish_request_waits_for_the_decision_with_the_frames_behind_it() {
    let mut peer = Peer::connected();
    let mut bytes = peer.create_stream();
    bytes.extend(peer.publish("cam?token=secret"));
    bytes.extend(peer.video(&keyframe(300_000), 0));
    peer.send_at(&bytes, 7 * MS);
    let Some(Action::Publish(request)) = peer.next() else {
        panic!("expected a publish request");
    };
    assert_eq!(&*request.key, "live/cam");
    assert_eq!(request.query.as_deref(), Some("token=secret"));
    assert!(!format!("{request:?}").contains("secret"));
    // Nothing behind the request is read before the decision (the keyframe is over the
    // limit of a connection that does not publish).
    assert!(peer.next().is_none());
    assert!(peer.conn.deadline().is_none());
    peer.conn.accept(8 * MS);
    peer.collect();
    assert_eq!(peer.conn.publishing().map(|k| &**k), Some("live/cam"));
    match peer.next() {
        Some(Action::Media { kind, body, at, .. }) => {
            assert_eq!(kind, UnitKind::Video);
            assert_eq!(body.len(), 300_000);
            assert_eq!(at, 8 * MS);
        }
        other => panic!("expected the keyframe, got {other:?}"),
    }
    assert_eq!(peer.conn.publishes(), 1);
    let (at, err) = peer.conn.deadline().unwrap();
    assert_eq!(at, 30_008 * MS);
    assert!(matches!(err, RtmpError::IdleTimeout));
}

#[test]
fn a_refused_publish_sends_the_status_and_closes() {
    let (mut peer, _) = Peer::asking_to_publish("cam");
    peer.conn.refuse("NetStream.Publish.Unauthorized", "no");
    peer.collect();
    assert!(peer.sent_status("NetStream.Publish.Unauthorized"));
    assert!(matches!(peer.next(), Some(Action::Close(None))));
    assert!(peer.conn.is_closing());
    assert!(peer.conn.publishing().is_none());
    let frame = peer.video(&keyframe(100), 0);
    peer.send(&frame);
    assert!(peer.next().is_none());
}

#[test]
fn a_handed_over_request_is_asked_again_and_continues_where_it_stopped() {
    let mut peer = Peer::connected();
    let mut bytes = peer.create_stream();
    bytes.extend(peer.publish("cam"));
    bytes.extend(peer.video(&keyframe(100), 0));
    peer.send(&bytes);
    let Some(Action::Publish(first)) = peer.next() else {
        panic!("expected a publish request");
    };
    // The accepting shard moves the connection to the owner, which asks again.
    let mut conn = Box::new(peer.conn);
    conn.repeat_request();
    let Some(Action::Publish(again)) = conn.poll_action() else {
        panic!("expected the same request");
    };
    assert_eq!(first, again);
    conn.accept(0);
    assert!(matches!(
        conn.poll_action(),
        Some(Action::Media {
            kind: UnitKind::Video,
            ..
        })
    ));
}

#[test]
fn only_media_with_a_payload_keeps_a_publisher_alive() {
    let mut peer = Peer::publishing(0);
    // An empty video message and a bare AVC end-of-sequence carry no picture.
    let empty = peer.video(&[], 0);
    peer.send_at(&empty, 5_000 * MS);
    let end_of_sequence = peer.video(&[0x17, 2, 0, 0, 0], 0);
    peer.send_at(&end_of_sequence, 6_000 * MS);
    assert_eq!(peer.conn.deadline().unwrap().0, 30_000 * MS);
    let frame = peer.video(&keyframe(100), 40);
    peer.send_at(&frame, 7_000 * MS);
    assert_eq!(peer.conn.deadline().unwrap().0, 37_000 * MS);
}

#[test]
fn a_publisher_may_stop_and_publish_again_but_not_publish_twice_at_once() {
    let mut peer = Peer::publishing(0);
    let second = peer.publish("other");
    peer.send(&second);
    assert!(peer.sent_status("NetStream.Publish.BadName"));
    assert!(matches!(peer.next(), Some(Action::Close(None))));

    let mut peer = Peer::publishing(0);
    let delete = peer.delete_stream();
    peer.send_at(&delete, 2_000 * MS);
    assert!(matches!(peer.next(), Some(Action::Unpublished)));
    assert!(peer.conn.publishing().is_none());
    // Media after the end of the publish is not the stream's any more.
    let frame = peer.video(&keyframe(100), 0);
    peer.send(&frame);
    assert!(peer.next().is_none());
    // The setup deadline counts from the end of the publish.
    let (at, err) = peer.conn.deadline().unwrap();
    assert_eq!(at, 12_000 * MS);
    assert!(matches!(err, RtmpError::SetupTimeout));
    let mut bytes = peer.create_stream();
    bytes.extend(peer.publish("cam"));
    peer.send(&bytes);
    assert!(matches!(peer.next(), Some(Action::Publish(_))));
    peer.conn.accept(0);
    assert_eq!(peer.conn.publishes(), 2);
}

#[test]
fn long_messages_are_refused_before_publishing_and_past_the_limit_after() {
    let mut peer = Peer::connected();
    let long = peer.video(&keyframe(CONTROL_MESSAGE_LIMIT as usize + 1), 0);
    peer.send(&long);
    assert!(matches!(
        closed_with(peer.next()),
        RtmpError::Input(GuardError::Chunk(ChunkError::TooLong { .. }))
    ));

    let mut peer = Peer::publishing(0);
    let at_limit = peer.video(&keyframe(settings().max_message_bytes as usize), 0);
    peer.send(&at_limit);
    assert!(matches!(peer.next(), Some(Action::Media { .. })));
    let over = peer.video(&keyframe(settings().max_message_bytes as usize + 1), 40);
    peer.send(&over);
    assert!(matches!(
        closed_with(peer.next()),
        RtmpError::Input(GuardError::Chunk(ChunkError::TooLong { .. }))
    ));
}

#[test]
fn an_aggregate_message_is_split_into_its_frames() {
    let mut peer = Peer::publishing(0);
    let mut aggregate = Vec::new();
    for (ts, body) in [(100u32, keyframe(20)), (140, keyframe(30))] {
        let len = body.len() as u32;
        aggregate.push(9);
        aggregate.extend_from_slice(&len.to_be_bytes()[1..]);
        aggregate.extend_from_slice(&ts.to_be_bytes()[1..]);
        aggregate.push((ts >> 24) as u8);
        aggregate.extend_from_slice(&[0, 0, 0]);
        aggregate.extend_from_slice(&body);
        aggregate.extend_from_slice(&(len + 11).to_be_bytes());
    }
    let payload = rml_rtmp::messages::MessagePayload {
        timestamp: RtmpTimestamp::new(1000),
        type_id: message_type::AGGREGATE,
        message_stream_id: MEDIA_STREAM_ID,
        data: Bytes::from(aggregate),
    };
    let bytes = peer.chunks.serialize(&payload, false, false).unwrap().bytes;
    peer.send(&bytes);
    let stamps: Vec<(u32, usize)> = std::iter::from_fn(|| match peer.next() {
        Some(Action::Media {
            timestamp, body, ..
        }) => Some((timestamp, body.len())),
        _ => None,
    })
    .collect();
    assert_eq!(stamps, [(1000, 20), (1040, 30)]);
}

#[test]
fn a_play_request_is_decided_by_the_driver_and_then_only_answers_go_out() {
    let mut peer = Peer::playing();
    assert!(peer.sent_status("NetStream.Play.Start"));
    assert!(peer.conn.deadline().is_none());
    assert!(peer.conn.publishing().is_none());
    // A player's media is ignored.
    let frame = peer.video(&keyframe(100), 0);
    peer.send(&frame);
    assert!(peer.next().is_none());
    // A stop ends play in order.
    let delete = peer.delete_stream();
    peer.send(&delete);
    assert!(matches!(peer.next(), Some(Action::Close(None))));
    // The end of the stream, told to a player.
    let mut peer = Peer::playing();
    assert!(!peer.conn.finish_playing().unwrap().is_empty());
}

#[test]
fn a_player_that_asks_for_anything_else_is_closed() {
    for request in ["publish", "play", "connect"] {
        let mut peer = Peer::playing();
        let bytes = match request {
            "publish" => peer.publish("cam"),
            "play" => peer.play("cam", MEDIA_STREAM_ID),
            _ => peer.connect("live"),
        };
        peer.send(&bytes);
        assert!(
            matches!(closed_with(peer.next()), RtmpError::NotAllowed(name, "while playing") if name == request),
            "{request}"
        );
    }
    let mut peer = Peer::playing();
    let long = peer.video(&keyframe(CONTROL_MESSAGE_LIMIT as usize + 1), 0);
    peer.send(&long);
    assert!(matches!(
        closed_with(peer.next()),
        RtmpError::Input(GuardError::Chunk(ChunkError::TooLong { .. }))
    ));
}

#[test]
fn a_player_plays_on_any_message_stream_it_created() {
    let mut peer = Peer::connected();
    let mut bytes = peer.create_stream();
    bytes.extend(peer.create_stream());
    bytes.extend(peer.play("cam", 2));
    peer.send(&bytes);
    match peer.next() {
        Some(Action::Play(request)) => {
            assert_eq!(request.kind, RequestKind::Play { stream_id: 2 })
        }
        other => panic!("expected a play request, got {other:?}"),
    }
    peer.conn.accept(0);
    peer.collect();
    assert!(peer.sent_status("NetStream.Play.Start"));
    assert_eq!(peer.conn.play_stream(), Some(2));
}

#[test]
fn play_requests_the_connection_cannot_make_are_refused_by_it() {
    // While publishing.
    let mut peer = Peer::publishing(0);
    let play = peer.play("cam", MEDIA_STREAM_ID);
    peer.send(&play);
    match peer.next() {
        Some(Action::Refused(Refusal::Play { key, code })) => {
            assert_eq!(&*key, "live/cam");
            assert_eq!(code, "NetStream.Play.Failed");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // An invalid name.
    let mut peer = Peer::connected();
    let play = peer.play("", MEDIA_STREAM_ID);
    peer.send(&play);
    assert!(matches!(
        peer.next(),
        Some(Action::Refused(Refusal::Name {
            request: "play",
            ..
        }))
    ));
    assert!(peer.sent_status("NetStream.Play.BadName"));
}

#[test]
fn a_refused_play_closes_without_playing() {
    let mut peer = Peer::connected();
    let mut bytes = peer.create_stream();
    bytes.extend(peer.play("cam", MEDIA_STREAM_ID));
    peer.send(&bytes);
    assert!(matches!(peer.next(), Some(Action::Play(_))));
    peer.conn
        .refuse("NetStream.Play.StreamNotFound", "no such stream");
    peer.collect();
    assert!(peer.sent_status("NetStream.Play.StreamNotFound"));
    assert!(matches!(peer.next(), Some(Action::Close(None))));
    assert!(peer.conn.playing().is_none());
    assert!(peer.conn.finish_playing().unwrap().is_empty());
}

#[test]
fn input_split_anywhere_gives_the_same_actions() {
    let mut whole = Peer::connected();
    let mut bytes = whole.create_stream();
    bytes.extend(whole.publish("cam"));
    bytes.extend(whole.video(&keyframe(10_000), 0));
    bytes.extend(whole.video(&keyframe(20), 40));
    for step in [1, 7, 128, 4096] {
        let mut peer = Peer::connected();
        let mut media = 0;
        for piece in bytes.chunks(step) {
            peer.send(piece);
            while let Some(action) = peer.next() {
                match action {
                    Action::Publish(_) => {
                        peer.conn.accept(0);
                        peer.collect();
                    }
                    Action::Media { .. } => media += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(media, 2, "pieces of {step}");
    }
}

#[test]
fn players_get_no_phantom_streams_every_control_message_is_stamped_zero() {
    let peer = Peer::playing();
    let messages = super::output::messages(&peer.sent);
    assert!(messages.iter().all(|(_, timestamp, _)| *timestamp == 0));
    let data: Vec<&[u8]> = messages
        .iter()
        .filter(|(type_id, ..)| *type_id == 18)
        .map(|(_, _, body)| &body[..])
        .collect();
    // |RtmpSampleAccess only: no `onStatus` data message (NetStream.Data.Start).
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(data[0].starts_with(b"\x02\x00\x11|RtmpSampleAccess"));
    // The answers themselves are all there, in order.
    let statuses: Vec<&str> = ["NetStream.Play.Reset", "NetStream.Play.Start"]
        .into_iter()
        .filter(|code| peer.sent_status(code))
        .collect();
    assert_eq!(statuses, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
    // The end of the stream, told in the same rewritten form.
    let mut peer = Peer::playing();
    let end = peer.conn.finish_playing().unwrap();
    let end = super::output::messages_after(&peer.sent, &end);
    assert!(!end.is_empty() && end.iter().all(|(_, timestamp, _)| *timestamp == 0));
}

#[test]
fn rewritten_output_follows_the_chunk_size_and_long_messages() {
    let mut session_side = ChunkSerializer::new();
    let mut output = super::output::SessionOutput::default();
    let mut out = Vec::new();
    let set = session_side
        .set_max_chunk_size(256, RtmpTimestamp::new(7))
        .unwrap();
    output.push(&set.bytes, &mut out).unwrap();
    let long = rml_rtmp::messages::MessagePayload {
        timestamp: RtmpTimestamp::new(1234),
        type_id: 20,
        message_stream_id: 1,
        data: Bytes::from(vec![7u8; 1000]),
    };
    for _ in 0..2 {
        let packet = session_side.serialize(&long, false, false).unwrap();
        output.push(&packet.bytes, &mut out).unwrap();
    }
    let messages = super::output::messages(&out);
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].0, 1);
    for (type_id, timestamp, body) in &messages[1..] {
        assert_eq!((*type_id, *timestamp, body.len()), (20, 0, 1000));
    }
}

#[test]
fn enhanced_rtmp_is_answered_to_clients_that_announce_it() {
    // A legacy client gets the legacy answer.
    let peer = Peer::connected();
    assert!(peer.conn.announced().is_none());
    assert_eq!(peer.conn.tracks(), Tracks::Default);
    assert!(!peer.sent_status("capsEx"));
    // An enhanced client (v1 list and v2 maps).
    let mut peer = Peer::new();
    let mut properties = HashMap::new();
    properties.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
    properties.insert(
        "fourCcList".to_string(),
        Amf0Value::StrictArray(vec![
            Amf0Value::Utf8String("hvc1".into()),
            Amf0Value::Utf8String("av01".into()),
        ]),
    );
    properties.insert(
        "videoFourCcInfoMap".to_string(),
        Amf0Value::Object(HashMap::from([(
            "vp09".to_string(),
            Amf0Value::Number(3.0),
        )])),
    );
    properties.insert("capsEx".to_string(), Amf0Value::Number(6.0));
    let connect = RtmpMessage::Amf0Command {
        command_name: "connect".to_string(),
        transaction_id: 1.0,
        command_object: Amf0Value::Object(properties),
        additional_arguments: Vec::new(),
    };
    let bytes = peer.message(connect, 0, 0);
    // Split anywhere: the announcement is read across reads.
    for piece in bytes.chunks(7) {
        peer.send(piece);
    }
    assert!(peer.sent_status("NetConnection.Connect.Success"));
    let announced = peer.conn.announced().expect("announced");
    assert_eq!(announced.fourccs, ["hvc1", "av01", "vp09"]);
    assert_eq!(announced.caps_ex, Some(6));
    assert!(announced.multitrack(), "capsEx 6 includes Multitrack (2)");
    assert_eq!(peer.conn.tracks(), Tracks::All);
    // FourCCs alone (v1, ffmpeg's -rtmp_enhanced_codecs with capsEx 0): no multitrack.
    let fourccs = caps::Announced {
        fourccs: vec!["hvc1".into()],
        caps_ex: None,
    };
    assert!(!fourccs.multitrack());
    let zero = caps::Announced {
        caps_ex: Some(0),
        ..fourccs
    };
    assert!(!zero.multitrack());
    let result = super::output::messages(&peer.sent)
        .into_iter()
        .filter(|(type_id, ..)| *type_id == 20)
        .find_map(|(_, _, body)| {
            let payload = rml_rtmp::messages::MessagePayload {
                timestamp: RtmpTimestamp::new(0),
                type_id: 20,
                message_stream_id: 0,
                data: body,
            };
            match payload.to_rtmp_message().ok()? {
                RtmpMessage::Amf0Command {
                    command_name,
                    command_object: Amf0Value::Object(properties),
                    ..
                } if command_name == "_result" => Some(properties),
                _ => None,
            }
        })
        .expect("the connect _result");
    let forward = Amf0Value::Object(HashMap::from([("*".to_string(), Amf0Value::Number(4.0))]));
    assert_eq!(result.get("videoFourCcInfoMap"), Some(&forward));
    assert_eq!(result.get("audioFourCcInfoMap"), Some(&forward));
    assert_eq!(result.get("capsEx"), Some(&Amf0Value::Number(6.0)));
    assert_eq!(
        result.get("fourCcList"),
        Some(&Amf0Value::StrictArray(vec![Amf0Value::Utf8String(
            "*".into()
        )]))
    );
    // The legacy properties stay.
    assert!(result.contains_key("fmsVer") && result.contains_key("capabilities"));
    // And the conversation goes on: a publish request comes through.
    let mut bytes = peer.create_stream();
    bytes.extend(peer.publish("cam"));
    peer.send(&bytes);
    assert!(matches!(peer.next(), Some(Action::Publish(_))));
}
