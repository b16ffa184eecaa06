//! The JSON log line: the same object tracing-subscriber's `json()` format writes with
//! `flatten_event(true)`, `with_current_span(true)` and `with_span_list(false)` —
//! `{"timestamp", "level", <the event's fields>, "target", "span": {<its fields>, "name"}}`,
//! one per line — written without its per-event cost. That format stores each span's fields
//! as a JSON object (`JsonFields`) and then parses that object again for every event logged
//! inside the span (tracing issue #391), which for the api's request span was a large part of
//! each request at `RUST_LOG=info`. Here the stored object is spliced in as it is, and the
//! line is built in one buffer and written once. Span fields are stored by [`JsonMembers`]
//! as the object's members, written by the same visitor as an event's fields, so a span costs
//! no intermediate map either.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `LOG_FORMAT=json` (span fields are stored by [`JsonMembers`]).
#[derive(Debug, Default)]
pub(crate) struct JsonLines {
    timer: SystemTime,
}

/// Stores a span's fields as JSON object members, each with a leading comma
/// (`,"request_id":"…","method":"GET"`), ready to be copied into every line logged inside it.
#[derive(Debug, Default)]
pub(crate) struct JsonMembers;

impl<'writer> FormatFields<'writer> for JsonMembers {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = String::with_capacity(128);
        fields.record(&mut FieldWriter { line: &mut members });
        writer.write_str(&members)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        fields.record(&mut FieldWriter { line: &mut added });
        if current.fields.is_empty() {
            current.fields = added;
            return Ok(());
        }
        // A field recorded again must appear once, with its newest value, as in `json()`.
        // Recording into a span after its creation is rare, so the members are simply merged.
        let parse = |members: &str| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&format!(
                "{{{}}}",
                members.strip_prefix(',').unwrap_or(members)
            ))
        };
        let (Ok(mut merged), Ok(newer)) = (parse(&current.fields), parse(&added)) else {
            return Err(fmt::Error);
        };
        merged.extend(newer);
        current.fields.clear();
        for (name, value) in merged {
            current.fields.push(',');
            push_str(&mut current.fields, &name);
            current.fields.push(':');
            current.fields.push_str(&value.to_string());
        }
        Ok(())
    }
}

impl<S> FormatEvent<S, JsonMembers> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        self.timer.format_time(&mut Writer::new(&mut line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        event.record(&mut FieldWriter { line: &mut line });
        line.push_str(",\"target\":");
        push_str(&mut line, meta.target());
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let extensions = span.extensions();
            if let Some(stored) = extensions.get::<FormattedFields<JsonMembers>>() {
                line.push_str(",\"span\":{\"name\":");
                push_str(&mut line, span.metadata().name());
                line.push_str(&stored.fields);
                line.push('}');
            }
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Writes an event's fields as members of the line's object, as `tracing-serde` does: 64-bit
/// numbers and booleans as JSON values, everything else (128-bit numbers too) as strings.
struct FieldWriter<'a> {
    line: &'a mut String,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_str(self.line, field.name());
        self.line.push(':');
    }

    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }
}

impl Visit for FieldWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's shortest round-trip form (`null` when not finite), as tracing-serde
        // writes it.
        self.key(field);
        let _ = serde_json::to_string(&value).map(|text| self.line.push_str(&text));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_str(self.line, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        push_str(self.line, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Appends `text` as a JSON string.
fn push_str(line: &mut String, text: &str) {
    line.push('"');
    let _ = Escaped(line).write_str(text);
    line.push('"');
}

/// Writes text into a JSON string as serde_json escapes it: `"`, `\\` and control characters;
/// everything else (non-ASCII too) as it is.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
            self.0.push_str(&rest[..at]);
            let special = rest.as_bytes()[at];
            match special {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                0x08 => self.0.push_str("\\b"),
                0x0c => self.0.push_str("\\f"),
                control => write!(self.0, "\\u{control:04x}")?,
            }
            rest = &rest[at + 1..];
        }
        self.0.push_str(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        /// Each line as JSON, without its timestamp (the two formatters ran at other instants).
        fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().expect("buffer lock").clone();
            String::from_utf8(bytes)
                .expect("utf-8 lines")
                .lines()
                .map(|line| {
                    let mut value: Value = serde_json::from_str(line).expect("a JSON line");
                    let timestamp = value
                        .as_object_mut()
                        .and_then(|object| object.remove("timestamp"));
                    assert!(
                        timestamp
                            .as_ref()
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.ends_with('Z')),
                        "{line}"
                    );
                    value
                })
                .collect()
        }
    }

    #[derive(Debug)]
    struct Failure;

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("it \"broke\"\nbadly")
        }
    }

    impl std::error::Error for Failure {}

    fn emit() {
        tracing::info!(count = 3, "outside any span");
        let span = tracing::info_span!(
            "request",
            request_id = %"0193-ab",
            method = %"GET",
            path = %"/a \"quoted\" path/ünïcode\t\u{1}\u{8}\u{c}\r\n\\",
            late = tracing::field::Empty,
        );
        span.in_scope(|| {
            tracing::warn!(
                status = 404_u16,
                latency_ms = 1.25_f64,
                big = -170_141_183_460_469_231_731_687_303_715_884_105_728_i128,
                ok = false,
                nan = f64::NAN,
                word = "plain",
                debug = ?Some("x"),
                error = &Failure as &(dyn std::error::Error + 'static),
                "request {} finished",
                "GET"
            );
        });
        span.record("late", 7);
        span.in_scope(|| tracing::error!("after a field was recorded"));
        span.record("late", "again");
        span.in_scope(|| tracing::error!("after a field was recorded twice"));
        let empty = tracing::info_span!("empty");
        empty.in_scope(|| tracing::info!("in a span without fields"));
    }

    #[test]
    fn lines_are_the_objects_tracing_subscribers_json_format_writes() {
        let theirs = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(theirs.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);

        let ours = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonMembers)
                .event_format(JsonLines::default())
                .with_writer(ours.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);

        let (theirs, ours) = (theirs.lines(), ours.lines());
        assert_eq!(ours.len(), 5);
        assert_eq!(ours, theirs);
        assert_eq!(
            ours[1]["span"]["path"],
            "/a \"quoted\" path/ünïcode\t\u{1}\u{8}\u{c}\r\n\\"
        );
        assert_eq!(ours[2]["span"]["late"], 7);
        assert_eq!(ours[3]["span"]["late"], "again");
    }
}
