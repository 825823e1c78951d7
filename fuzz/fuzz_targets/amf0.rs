//! AMF0 decoding: rml_amf0 (through rml_rtmp) on raw bytes admitted by corecast's nesting
//! scanner, and AMF0 in RTMP data and command messages of a publishing connection, which
//! reaches the input guard's nesting bound, rml_rtmp's onMetaData parsing and corecast's
//! rebuilding of it (`corecast::flv::metadata_body`, via `Origin::metadata`). Runs on a
//! thread with a shard's stack (`corecast_fuzz::on_shard_stack`).
//!
//! Input: a mode byte, then the AMF0 bytes. Mode % 4: 0 = the nesting scanner
//! (`corecast::rtmp::amf::Nesting`, as the guard runs it on a data message), then, if it
//! admits the bytes, deserialize (and re-serialize): the scanner must have seen at least the
//! nesting the reader decoded; 1 = an AMF0 data message (type 18) on the publishing stream;
//! 2 = the same after "@setDataFrame", "onMetaData" (the bytes are the metadata properties);
//! 3 = an AMF0 command message (type 20) on the publishing stream.
#![no_main]

use corecast::flv::metadata_body;
use corecast::rtmp::amf::Nesting;
use corecast_fuzz::{
    message, on_shard_stack, tolerate_contained_panics, Ingest, PUBLISH_STREAM_ID,
};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::rml_amf0::{self, Amf0Value};

/// Message type of an AMF0 data message.
const DATA: u8 = 18;

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| on_shard_stack(data, run));

/// Nesting of decoded values (containers inside one another).
fn depth(value: &Amf0Value) -> usize {
    match value {
        Amf0Value::Object(properties) => 1 + properties.values().map(depth).max().unwrap_or(0),
        Amf0Value::StrictArray(values) => 1 + values.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn run(data: &[u8]) {
    let [mode, amf @ ..] = data else {
        return;
    };
    let body = match mode % 4 {
        0 => {
            let mut nesting = Nesting::new(DATA);
            if nesting.read(amf).is_err() {
                return;
            }
            if let Ok(values) = rml_amf0::deserialize(&mut &amf[..]) {
                // At most, not exactly: the reader reads every value, but keeps only the
                // last of the properties with the same key.
                let decoded = values.iter().map(depth).max().unwrap_or(0);
                assert!(decoded <= nesting.deepest(), "the scanner saw less nesting");
                if let Ok(bytes) = rml_amf0::serialize(&values) {
                    let _ = rml_amf0::deserialize(&mut &bytes[..]);
                }
            }
            return;
        }
        2 => {
            let mut body = rml_amf0::serialize(&vec![
                Amf0Value::Utf8String("@setDataFrame".into()),
                Amf0Value::Utf8String("onMetaData".into()),
            ])
            .expect("strings serialize");
            body.extend_from_slice(amf);
            body
        }
        _ => amf.to_vec(),
    };
    let type_id = if mode % 4 == 3 { 20 } else { DATA };
    let mut ingest = Ingest::new();
    ingest.publish();
    if ingest
        .feed(&message(type_id, PUBLISH_STREAM_ID, 40, &body))
        .is_err()
    {
        return;
    }
    // Whatever metadata was accepted, corecast's rebuilt onMetaData must be valid AMF0.
    if let Some(meta) = &ingest.origin.metadata {
        let rebuilt = metadata_body(meta);
        let values = rml_amf0::deserialize(&mut &rebuilt[..]).expect("corecast's onMetaData");
        assert_eq!(
            values.first(),
            Some(&Amf0Value::Utf8String("onMetaData".into()))
        );
    }
}
