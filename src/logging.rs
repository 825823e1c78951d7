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
//!
//! Every line about a connection hangs from that connection's span ([`connection_span`]):
//! its id, protocol, shard, peer and, once known, stream. The text format prints them as the
//! span's prefix, the JSON format under `span`, the ECS format as the line's own fields; so
//! one connection's history is one filter (`corecast.connection: 4353`) in any of them.
//! Lines carry `action` (ECS `event.action`) where they record something happening: the
//! values are listed in docs/OPERATIONS.md.

use serde_json::{Map, Value};
use std::fmt;
use std::net::SocketAddr;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Span, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The span of one connection: the context every line about it carries. `conn` is the
/// process-unique connection id (a publisher handed to its stream's owner shard keeps its
/// id; its span there names the owner). `stream` is recorded once the connection publishes
/// or plays. The span is at level ERROR so that it is enabled whenever any line is: a
/// `warn` line of a connection keeps its context under `log.level = "warn"`.
///
/// Lines in the connection's own code name it as their parent (`info!(parent: &span, ..)`);
/// calls into the shard that may log run inside it (`span.in_scope(..)`). The task is not
/// instrumented as a whole: entering a span on every poll would cost on every message.
pub fn connection_span(conn: u64, protocol: &'static str, shard: usize, peer: SocketAddr) -> Span {
    tracing::span!(
        Level::ERROR,
        "conn",
        conn,
        protocol,
        shard,
        %peer,
        stream = tracing::field::Empty
    )
}

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11";

/// The `tracing_subscriber` event format of ECS lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ecs;

/// The ECS layer formats span fields as JSON ([`JsonFields`]), which the lines read back.
impl<S> FormatEvent<S, JsonFields> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        // The spans' fields first, outermost first, then the event's: a later one wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(json) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) {
                    fields.rest.extend(map);
                }
            }
        }
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
    rest: Vec<(String, Value)>,
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
            (name, value) => self.rest.push((name.to_string(), value)),
        }
    }
}

/// The ECS line of one event (pure: the time comes formatted).
pub fn ecs_line(
    timestamp: &str,
    level: &str,
    target: &str,
    message: String,
    fields: Vec<(String, Value)>,
) -> String {
    // The rest, after the four fields ECS wants first, in key order.
    let mut line = Map::new();
    line.insert("log.logger".into(), target.into());
    line.insert("service.name".into(), "corecast".into());
    for (name, value) in fields {
        match name.as_str() {
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
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
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
            .fmt_fields(JsonFields::new())
            .event_format(Ecs)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        let peer: SocketAddr = "192.0.2.1:1935".parse().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let span = connection_span(4353, "http", 1, peer);
            tracing::warn!(parent: &span, action = "connection-close", "http: closing: \"quoted\"");
            span.record("stream", "live/cam");
            span.in_scope(|| tracing::info!(action = "play-start", "flv viewer start"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let value = &lines[0];
        assert_eq!(value["log.level"], "warn");
        assert_eq!(value["message"], "http: closing: \"quoted\"");
        assert_eq!(value["event.action"], "connection-close");
        assert_eq!(value["corecast.stream"], Value::Null);
        let stamp = value["@timestamp"].as_str().unwrap();
        assert!(stamp.len() >= 20 && stamp.ends_with('Z'), "{stamp}");
        // Both lines carry the connection's fields, the second its stream too.
        for value in &lines {
            assert_eq!(value["client.ip"], "192.0.2.1");
            assert_eq!(value["client.port"], 1935);
            assert_eq!(value["network.protocol"], "http");
            assert_eq!(value["corecast.shard"], 1);
            assert_eq!(value["corecast.connection"], 4353);
        }
        assert_eq!(lines[1]["corecast.stream"], "live/cam");
        assert_eq!(lines[1]["event.action"], "play-start");
    }
}
