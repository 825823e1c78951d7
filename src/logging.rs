//! Log lines in the Elastic Common Schema (`log.format = "ecs"`): one JSON object per line
//! whose field names Filebeat, Vector, Fluent Bit and Logstash map without a parsing rule.
//!
//! The ECS fields come first (`@timestamp`, `log.level`, `message`, `ecs.version`), as the
//! ECS logging specification asks, then `log.logger` (the module) and `service.name`. The
//! event's own fields are mapped where ECS has a field for them (`peer` to `client.address`,
//! `client.ip`, `client.port`; `protocol` to `network.protocol`; `action` to `event.action`)
//! and kept under `corecast.` otherwise (`corecast.shard`, `corecast.stream`,
//! `corecast.connection`). Keys are dotted, not nested: both forms are ECS, and dotted keys
//! keep one line flat for `grep` too.

use serde_json::{Map, Value};
use std::fmt;
use std::net::SocketAddr;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11";

/// The `tracing_subscriber` event format of ECS lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ecs;

impl<S, N> FormatEvent<S, N> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = ecs_line(
            &timestamp,
            meta.level().as_str(),
            meta.target(),
            fields.message,
            fields.rest,
        );
        writeln!(writer, "{line}")
    }
}

/// One event's message and other fields, as JSON values.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::String(text)) => self.message = text,
            (name, value) => self.rest.push((name, value)),
        }
    }
}

/// The ECS line of one event (pure: the time comes formatted).
pub fn ecs_line(
    timestamp: &str,
    level: &str,
    target: &str,
    message: String,
    fields: Vec<(&'static str, Value)>,
) -> String {
    // The rest, after the four fields ECS wants first, in key order.
    let mut line = Map::new();
    line.insert("log.logger".into(), target.into());
    line.insert("service.name".into(), "corecast".into());
    for (name, value) in fields {
        match name {
            "peer" => {
                let text = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                if let Ok(addr) = text.parse::<SocketAddr>() {
                    line.insert(
                        "client.ip".into(),
                        addr.ip().to_canonical().to_string().into(),
                    );
                    line.insert("client.port".into(), addr.port().into());
                }
                line.insert("client.address".into(), text.into());
            }
            "protocol" => {
                line.insert("network.protocol".into(), value);
            }
            "action" => {
                line.insert("event.action".into(), value);
            }
            "conn" | "conn_id" | "connection" => {
                line.insert("corecast.connection".into(), value);
            }
            name => {
                line.insert(format!("corecast.{name}"), value);
            }
        }
    }
    let first = [
        ("@timestamp", Value::from(timestamp)),
        ("log.level", Value::from(level.to_ascii_lowercase())),
        ("message", Value::from(message)),
        ("ecs.version", Value::from(ECS_VERSION)),
    ];
    let mut out = String::with_capacity(256);
    out.push('{');
    let pairs = first
        .iter()
        .map(|(key, value)| (*key, value))
        .chain(line.iter().map(|(key, value)| (key.as_str(), value)));
    for (i, (key, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_fields_come_first_and_known_fields_take_their_ecs_names() {
        let fields = vec![
            ("peer", Value::from("[::ffff:10.0.0.7]:50412")),
            ("protocol", Value::from("rtmp")),
            ("shard", Value::from(3u64)),
            ("stream", Value::from("live/cam")),
            ("conn", Value::from(771u64)),
            ("action", Value::from("publish")),
        ];
        let line = ecs_line(
            "2026-12-06T12:00:00.000001Z",
            "INFO",
            "corecast::shard::publish",
            "publish start".into(),
            fields,
        );
        assert!(
            line.starts_with(
                "{\"@timestamp\":\"2026-12-06T12:00:00.000001Z\",\"log.level\":\"info\",\
                 \"message\":\"publish start\",\"ecs.version\":\"8.11\","
            ),
            "{line}"
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["log.logger"], "corecast::shard::publish");
        assert_eq!(value["service.name"], "corecast");
        assert_eq!(value["client.ip"], "10.0.0.7");
        assert_eq!(value["client.port"], 50412);
        assert_eq!(value["client.address"], "[::ffff:10.0.0.7]:50412");
        assert_eq!(value["network.protocol"], "rtmp");
        assert_eq!(value["event.action"], "publish");
        assert_eq!(value["corecast.shard"], 3);
        assert_eq!(value["corecast.stream"], "live/cam");
        assert_eq!(value["corecast.connection"], 771);
    }

    #[test]
    fn a_formatted_event_is_one_ecs_line() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(Ecs)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        let peer: SocketAddr = "192.0.2.1:1935".parse().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(protocol = "http", shard = 1u64, %peer, "http: closing: \"quoted\"");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let value: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["log.level"], "warn");
        assert_eq!(value["message"], "http: closing: \"quoted\"");
        assert_eq!(value["client.ip"], "192.0.2.1");
        assert_eq!(value["network.protocol"], "http");
        assert_eq!(value["corecast.shard"], 1);
        let stamp = value["@timestamp"].as_str().unwrap();
        assert!(stamp.len() >= 20 && stamp.ends_with('Z'), "{stamp}");
    }
}
