//! Enhanced RTMP capability negotiation in `connect` (pure): what a client announces in the
//! command object of its `connect` (`fourCcList`, `videoFourCcInfoMap`,
//! `audioFourCcInfoMap`, `capsEx`, enhanced-rtmp v1 and v2), and what corecast answers in
//! the properties of its `_result`.
//!
//! corecast is a forwarder: it relays every codec unchanged, parses ModEx and relays
//! multitrack tags. It says so to clients that announced Enhanced RTMP (the specification's
//! "the server SHOULD state its support via videoFourCcInfoMap, capsEx, and similar
//! properties"): `fourCcList: ["*"]` for v1 clients, `videoFourCcInfoMap` and
//! `audioFourCcInfoMap` of `{"*": CanForward}`, and `capsEx: Multitrack | ModEx`. A client
//! that announced nothing gets the legacy answer, unchanged.

use crate::rtmp::chunk::Message;
use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use std::collections::HashMap;

/// `FourCcInfoMask.CanForward`.
const CAN_FORWARD: f64 = 4.0;

/// `CapsExMask.Multitrack`: the client reads (or sends) multitrack tags.
const CAPS_EX_MULTITRACK: u32 = 0x02;

/// `CapsExMask.ModEx`: ModEx blocks are understood.
const CAPS_EX_MOD_EX: u32 = 0x04;

/// corecast's `capsEx`: multitrack tags are relayed, ModEx parsed.
const CAPS_EX: f64 = (CAPS_EX_MULTITRACK | CAPS_EX_MOD_EX) as f64;

/// FourCCs kept from a client's announcement (more are ignored: a `connect` is at most
/// 64 KiB, and the list is only informational).
const MAX_FOURCCS: usize = 32;

/// What a client announced of Enhanced RTMP in its `connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announced {
    /// FourCCs from `fourCcList` and the keys of the two info maps (`"*"` for any).
    pub fourccs: Vec<String>,
    /// `capsEx`, when present.
    pub caps_ex: Option<u32>,
}

impl Announced {
    /// The client said it handles multitrack tags (`capsEx` Multitrack): as a player, it
    /// gets them unchanged ("a client capable of issuing a play command [that] declares
    /// multitrack support MUST be equipped to handle the playback of such streams").
    /// Announcing FourCCs alone (v1, and ffmpeg's `-rtmp_enhanced_codecs`) is not enough.
    pub fn multitrack(&self) -> bool {
        self.caps_ex
            .is_some_and(|caps| caps & CAPS_EX_MULTITRACK != 0)
    }
}

/// Reads a `connect` command object; `None` when it announces nothing of Enhanced RTMP.
pub fn announced(command_object: &Amf0Value) -> Option<Announced> {
    let Amf0Value::Object(properties) = command_object else {
        return None;
    };
    let mut found = false;
    let mut out = Announced::default();
    let add = |fourcc: &str, out: &mut Announced| {
        let fourcc: String = fourcc.chars().take(4).collect();
        if out.fourccs.len() < MAX_FOURCCS && !out.fourccs.contains(&fourcc) {
            out.fourccs.push(fourcc);
        }
    };
    if let Some(Amf0Value::StrictArray(list)) = properties.get("fourCcList") {
        found = true;
        for value in list {
            if let Amf0Value::Utf8String(fourcc) = value {
                add(fourcc, &mut out);
            }
        }
    }
    for map in ["videoFourCcInfoMap", "audioFourCcInfoMap"] {
        if let Some(Amf0Value::Object(entries)) = properties.get(map) {
            found = true;
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            for key in keys {
                add(key, &mut out);
            }
        }
    }
    if let Some(Amf0Value::Number(caps)) = properties.get("capsEx") {
        found = true;
        out.caps_ex =
            (caps.is_finite() && *caps >= 0.0).then(|| caps.min(f64::from(u32::MAX)) as u32);
    }
    found.then_some(out)
}

/// Adds corecast's support to the properties of its `connect` `_result`.
pub fn answer(properties: &mut HashMap<String, Amf0Value>) {
    let forward_any = || {
        Amf0Value::Object(HashMap::from([(
            "*".to_string(),
            Amf0Value::Number(CAN_FORWARD),
        )]))
    };
    properties.insert(
        "fourCcList".to_string(),
        Amf0Value::StrictArray(vec![Amf0Value::Utf8String("*".to_string())]),
    );
    properties.insert("videoFourCcInfoMap".to_string(), forward_any());
    properties.insert("audioFourCcInfoMap".to_string(), forward_any());
    properties.insert("capsEx".to_string(), Amf0Value::Number(CAPS_EX));
}

/// Where a client stands after a message ([`read_setup`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Setup {
    /// No `connect` yet.
    Waiting,
    /// The `connect`, and what it announced (`None`: nothing of Enhanced RTMP).
    Connect(Option<Announced>),
    /// A command made the reader panic: the announcement is optional, and the session
    /// decides on the request anyway.
    GaveUp,
}

/// Reads one of a client's messages until its `connect`, for what it announces (rml_rtmp's
/// session does not pass the command object on).
pub fn read_setup(message: &Message) -> Setup {
    const AMF0_COMMAND: u8 = 20;
    if message.type_id != AMF0_COMMAND {
        return Setup::Waiting;
    }
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(message.timestamp),
        type_id: message.type_id,
        message_stream_id: message.stream_id,
        data: bytes::Bytes::copy_from_slice(&message.payload),
    };
    let decoded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| payload.to_rtmp_message()));
    match decoded {
        Ok(Ok(RtmpMessage::Amf0Command {
            command_name,
            command_object,
            ..
        })) if command_name == "connect" => Setup::Connect(announced(&command_object)),
        Ok(_) => Setup::Waiting,
        Err(_) => Setup::GaveUp,
    }
}
