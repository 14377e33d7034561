//! Log lines, as text or JSON, each with the current trace and span ids.
//!
//! [`LogLayer`] is a `tracing_subscriber` layer that writes one line per
//! event (to stderr in the binary):
//!
//! ```text
//! 2026-11-21T10:00:00.123Z  INFO kafka_handler: billing id=4 trace_id=4bf9..36 span_id=00f0..b7
//! {"timestamp":"2026-11-21T10:00:00.123Z","level":"INFO","target":"kafka_handler","message":"billing","id":4,"trace_id":"4bf9..36","span_id":"00f0..b7"}
//! ```
//!
//! The ids are those of the OpenTelemetry span current when the event is
//! recorded (`opentelemetry::Context::current()`: inside a handler, the
//! record's `process` span, with or without the tracing-opentelemetry
//! layer). When that has none and the layer is installed, the event's
//! `tracing` span's OpenTelemetry context is used instead. Lines outside
//! any valid span context carry no ids.
//!
//! An event is always one line: what it carries (often from a record: a
//! payload, a key, an error message) never reaches the output with a raw
//! control character. In text, field values and messages that have one are
//! quoted and escaped (`"\n"`, `"\u{1b}[31m"`); in JSON, every control
//! character is a `\u` escape.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable, one line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (a log collector).
    pub(crate) fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }

    /// Reads `auto`, `text` or `json` (any ASCII case); anything else is an
    /// error naming the valid values.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::auto()),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format {value:?}: expected auto, text or json")),
        }
    }
}

/// Writes every event it sees as one line in a [`LogFormat`].
pub(crate) struct LogLayer<W> {
    format: LogFormat,
    ansi: bool,
    make_writer: W,
    /// The subscriber this layer is part of, to read the OpenTelemetry
    /// context of `tracing` spans (events are recorded inside the
    /// dispatcher, where `tracing`'s own lookups see no subscriber).
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> fmt::Debug for LogLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogLayer")
            .field("format", &self.format)
            .field("ansi", &self.ansi)
            .finish_non_exhaustive()
    }
}

/// The layer the binary installs: lines to stderr, coloured (text only)
/// when stderr is a terminal and `NO_COLOR` is unset or empty.
pub(crate) fn stderr_layer(format: LogFormat) -> LogLayer<fn() -> std::io::Stderr> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal() && !no_color;
    LogLayer::new(format, ansi, std::io::stderr)
}

impl<W> LogLayer<W> {
    /// Lines in `format` to the writers `make_writer` makes; ANSI colours
    /// for the level when `ansi` (text only).
    pub(crate) fn new(format: LogFormat, ansi: bool, make_writer: W) -> Self {
        Self {
            format,
            ansi: ansi && format == LogFormat::Text,
            make_writer,
            dispatch: OnceLock::new(),
        }
    }

    /// The trace and span ids to print with `event`, if any.
    fn ids<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<(TraceId, SpanId)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        opentelemetry::Context::map_current(ids_of).or_else(|| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let span = ctx.event_span(event)?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            ids_of(&cx)
        })
    }

    /// `event` as one line, newline included, into `out`.
    fn format_line(&self, out: &mut String, event: &Event<'_>, ids: Option<(TraceId, SpanId)>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let line = Line {
            time: SystemTime::now(),
            level: *metadata.level(),
            target: metadata.target(),
            fields: &fields,
            ids,
        };
        match self.format {
            LogFormat::Text => line.write_text(out, self.ansi),
            LogFormat::Json => line.write_json(out),
        }
    }
}

/// The trace and span ids of `cx`'s span, when valid.
fn ids_of(cx: &opentelemetry::Context) -> Option<(TraceId, SpanId)> {
    let span = cx.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| (span_context.trace_id(), span_context.span_id()))
}

thread_local! {
    /// A line buffer per thread, reused from event to event.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let ids = self.ids(event, &ctx);
        let write = |line: &mut String| {
            line.clear();
            self.format_line(line, event, ids);
            let mut writer = self.make_writer.make_writer_for(event.metadata());
            let _ = writer.write_all(line.as_bytes());
        };
        // A writer that logs would re-enter here: use a fresh buffer then.
        let reused = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                write(&mut line);
                true
            }
            Err(_) => false,
        });
        if reused != Ok(true) {
            write(&mut String::new());
        }
    }
}

/// One event's fields, in the order they were recorded.
#[derive(Debug, Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(&'static str, FieldValue)>,
}

/// A field's value, kept typed for JSON.
#[derive(Debug)]
enum FieldValue {
    Str(String),
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
}

impl Fields {
    /// Adds a field other than `message`.
    fn push(&mut self, field: &Field, value: FieldValue) {
        self.values.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.push(field, FieldValue::Str(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.push(field, FieldValue::Str(value.to_owned()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::Str(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, FieldValue::I128(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.push(field, FieldValue::U128(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
}

/// What one line says.
struct Line<'a> {
    time: SystemTime,
    level: Level,
    target: &'a str,
    fields: &'a Fields,
    ids: Option<(TraceId, SpanId)>,
}

/// Keys a JSON line always has; an event field of one of these names is
/// written as `fields.<name>` so that keys stay unique.
const JSON_KEYS: [&str; 6] = [
    "timestamp",
    "level",
    "target",
    "message",
    "trace_id",
    "span_id",
];

impl Line<'_> {
    /// `2026-11-21T10:00:00.123Z  INFO target: message k=v trace_id=.. span_id=..`
    fn write_text(&self, out: &mut String, ansi: bool) {
        write_timestamp(out, self.time);
        out.push(' ');
        let level = format!("{:>5}", self.level.as_str());
        if ansi {
            let _ = write!(out, "\x1b[{}m{level}\x1b[0m", level_colour(self.level));
        } else {
            out.push_str(&level);
        }
        out.push(' ');
        push_text_message(out, self.target);
        out.push(':');
        if let Some(message) = self.fields.message.as_deref().filter(|m| !m.is_empty()) {
            out.push(' ');
            push_text_message(out, message);
        }
        for (name, value) in &self.fields.values {
            let _ = write!(out, " {name}=");
            push_text_value(out, value);
        }
        if let Some((trace_id, span_id)) = self.ids {
            let _ = write!(out, " trace_id={trace_id} span_id={span_id}");
        }
        out.push('\n');
    }

    /// `{"timestamp":..,"level":..,"target":..,"message":..,<fields>,"trace_id":..,"span_id":..}`
    fn write_json(&self, out: &mut String) {
        out.push_str("{\"timestamp\":\"");
        write_timestamp(out, self.time);
        out.push_str("\",\"level\":");
        push_json_string(out, self.level.as_str());
        out.push_str(",\"target\":");
        push_json_string(out, self.target);
        out.push_str(",\"message\":");
        push_json_string(out, self.fields.message.as_deref().unwrap_or(""));
        for (name, value) in &self.fields.values {
            out.push(',');
            if JSON_KEYS.contains(name) {
                push_json_string(out, &format!("fields.{name}"));
            } else {
                push_json_string(out, name);
            }
            out.push(':');
            push_json_value(out, value);
        }
        if let Some((trace_id, span_id)) = self.ids {
            let _ = write!(
                out,
                ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
            );
        }
        out.push_str("}\n");
    }
}

/// The ANSI colour code of `level`.
fn level_colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    }
}

/// A text value bare when it is one token, else quoted and escaped.
pub(crate) fn push_logfmt_value(out: &mut String, text: &str) {
    let bare = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=')
        && !has_unprintable(text);
    if bare {
        out.push_str(text);
    } else {
        push_escaped(out, text);
    }
}

/// An event's message: as is, unless it has a character that must not
/// reach a terminal or a log shipper raw (a newline, a carriage return, an
/// ANSI escape, any other control or unprintable character) or begins with
/// a quote; then quoted and escaped as a field value is (`\n`, `\u{1b}`).
/// So a message is one line, and a quoted one is always an escaped one.
fn push_text_message(out: &mut String, text: &str) {
    if text.starts_with('"') || has_unprintable(text) {
        push_escaped(out, text);
    } else {
        out.push_str(text);
    }
}

/// `text` quoted, with Rust's `Debug` escapes: `\"`, `\\`, `\n`, `\r`,
/// `\t`, and `\u{..}` for every other control (C0, DEL, C1) or
/// unprintable character.
fn push_escaped(out: &mut String, text: &str) {
    let _ = write!(out, "\"{}\"", text.escape_debug());
}

/// Whether Rust's `Debug` escapes `text` beyond its quotes and
/// backslashes: it has a control character (C0, DEL, C1), another
/// unprintable one (a line separator, a bidirectional override), or begins
/// with a combining mark.
fn has_unprintable(text: &str) -> bool {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    let plain = text
        .chars()
        .map(|c| if matches!(c, '"' | '\'' | '\\') { 2 } else { 1 })
        .sum::<usize>();
    text.escape_debug().count() != plain
}

/// A value as the text format writes it: a string as a logfmt value, a
/// number or a boolean as such.
fn push_text_value(out: &mut String, value: &FieldValue) {
    let _ = match value {
        FieldValue::Str(text) => {
            push_logfmt_value(out, text);
            Ok(())
        }
        FieldValue::Bool(v) => write!(out, "{v}"),
        FieldValue::I64(v) => write!(out, "{v}"),
        FieldValue::U64(v) => write!(out, "{v}"),
        FieldValue::I128(v) => write!(out, "{v}"),
        FieldValue::U128(v) => write!(out, "{v}"),
        FieldValue::F64(v) => write!(out, "{v}"),
    };
}

/// A JSON value: numbers and booleans as such, non-finite floats and
/// everything else as strings.
fn push_json_value(out: &mut String, value: &FieldValue) {
    match value {
        FieldValue::Str(text) => push_json_string(out, text),
        FieldValue::F64(v) if !v.is_finite() => push_json_string(out, &v.to_string()),
        other => push_text_value(out, other),
    }
}

/// `text` as a JSON string. Beyond what JSON requires (quotes,
/// backslashes, C0 controls), DEL, the C1 controls and the line and
/// paragraph separators are escaped too (`\u009b`), so no control
/// character reaches the line raw, whoever reads it.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-11-21T10:00:00.123Z`.
/// Times before 1970 print as the epoch.
pub(crate) fn write_timestamp(out: &mut String, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_millis(),
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Captures what a log layer writes.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        /// What was written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("UTF-8")
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN_ID: &str = "00f067aa0ba902b7";

    /// A remote span context with the ids above, made current.
    fn current_context() -> opentelemetry::ContextGuard {
        let span_context = SpanContext::new(
            TraceId::from_hex(TRACE_ID).expect("trace id"),
            SpanId::from_hex(SPAN_ID).expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new()
            .with_remote_span_context(span_context)
            .attach()
    }

    /// The lines `f` logs through a [`LogLayer`] in `format`.
    fn capture(format: LogFormat, f: impl FnOnce()) -> Vec<String> {
        capture_text(format, false, f)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What `f` logs through a [`LogLayer`] in `format`, as written.
    fn capture_text(format: LogFormat, ansi: bool, f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(LogLayer::new(format, ansi, buffer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buffer.text()
    }

    /// What a record can carry into a log line: a newline and a timestamp
    /// that would forge a second line, a carriage return, ANSI escapes that
    /// recolour (or clear) a terminal, a tab, DEL, a C1 control (CSI) and a
    /// line separator.
    const HOSTILE: &str = "order 4\n2026-01-01T00:00:00.000Z ERROR app: forged\r\x1b[31mred\x1b[0m\t\x7f\u{9b}2J\u{2028}end";

    /// [`HOSTILE`] quoted and escaped, as the text format writes it.
    const HOSTILE_ESCAPED: &str = r#""order 4\n2026-01-01T00:00:00.000Z ERROR app: forged\r\u{1b}[31mred\u{1b}[0m\t\u{7f}\u{9b}2J\u{2028}end""#;

    /// `text` is one line, ended by its only newline, with no other control
    /// character and no line or paragraph separator.
    fn assert_one_clean_line(text: &str) {
        assert!(text.ends_with('\n'), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        let body = &text[..text.len() - 1];
        assert!(
            !body
                .chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "a raw control character in {text:?}"
        );
    }

    /// The line without its timestamp, after checking the timestamp's shape.
    fn after_timestamp(line: &str) -> &str {
        let (timestamp, rest) = line.split_at(24);
        assert!(is_timestamp(timestamp), "{line}");
        rest
    }

    fn is_timestamp(text: &str) -> bool {
        let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
        text.len() == shape.len()
            && text.chars().zip(shape.chars()).all(|(c, s)| {
                if s == 'd' {
                    c.is_ascii_digit()
                } else {
                    c == s
                }
            })
    }

    #[test]
    fn text_lines_carry_fields_and_the_current_ids() {
        let lines = capture(LogFormat::Text, || {
            let _cx = current_context();
            tracing::info!(target: "kafka_handler", id = 4, ok = true, topic = "orders", note = "two words", "billing");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            after_timestamp(&lines[0]),
            format!(
                "  INFO kafka_handler: billing id=4 ok=true topic=orders note=\"two words\" \
                 trace_id={TRACE_ID} span_id={SPAN_ID}"
            )
        );
    }

    #[test]
    fn text_lines_without_a_context_have_no_ids() {
        let lines = capture(LogFormat::Text, || {
            tracing::warn!(target: "app", "plain");
        });
        assert_eq!(after_timestamp(&lines[0]), "  WARN app: plain");
    }

    #[test]
    fn json_lines_flatten_fields_with_their_types_and_the_current_ids() {
        let lines = capture(LogFormat::Json, || {
            let _cx = current_context();
            tracing::error!(
                target: "kafka_handler",
                partition = 3u64,
                delta = -2i64,
                ratio = 0.5,
                retry = false,
                key = "order-4",
                level = "field named level",
                detail = ?Some(1),
                "failed \"hard\""
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        let value: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
        assert!(
            is_timestamp(value["timestamp"].as_str().expect("timestamp")),
            "{line}"
        );
        let expected_tail = format!(
            "\"level\":\"ERROR\",\"target\":\"kafka_handler\",\"message\":\"failed \\\"hard\\\"\",\
             \"partition\":3,\"delta\":-2,\"ratio\":0.5,\"retry\":false,\"key\":\"order-4\",\
             \"fields.level\":\"field named level\",\"detail\":\"Some(1)\",\
             \"trace_id\":\"{TRACE_ID}\",\"span_id\":\"{SPAN_ID}\"}}"
        );
        assert!(line.starts_with("{\"timestamp\":\""), "{line}");
        assert!(
            line.ends_with(&expected_tail),
            "{line}\nexpected to end with\n{expected_tail}"
        );
    }

    #[test]
    fn json_lines_without_a_context_have_no_ids_and_keep_non_finite_floats() {
        let lines = capture(LogFormat::Json, || {
            tracing::info!(target: "app", value = f64::NAN);
        });
        let value: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
        assert_eq!(value["message"], "");
        assert_eq!(value["value"], "NaN");
        assert!(value.get("trace_id").is_none(), "{}", lines[0]);
    }

    /// With the tracing-opentelemetry layer, the ids of the current
    /// `tracing` span are used, through `Context::current()` (context
    /// activation, the default) or, without activation, read from the layer.
    #[test]
    fn ids_come_from_the_tracing_span_with_the_opentelemetry_layer() {
        for activation in [true, false] {
            let provider = SdkTracerProvider::builder().build();
            let buffer = Buffer::default();
            let subscriber = tracing_subscriber::registry()
                .with(LogLayer::new(LogFormat::Text, false, buffer.clone()))
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("test"))
                        .with_context_activation(activation),
                );
            let mut expected = None;
            tracing::subscriber::with_default(subscriber, || {
                tracing::info_span!("work").in_scope(|| {
                    let cx = tracing::Span::current().context();
                    let span = cx.span();
                    let sc = span.span_context();
                    assert!(sc.is_valid());
                    assert_eq!(
                        opentelemetry::Context::map_current(ids_of).is_some(),
                        activation,
                        "activation {activation}"
                    );
                    expected = Some(format!(
                        " trace_id={} span_id={}",
                        sc.trace_id(),
                        sc.span_id()
                    ));
                    tracing::info!("inside");
                });
                tracing::info!("outside");
            });
            let text = buffer.text();
            let lines: Vec<&str> = text.lines().collect();
            let expected = expected.expect("ran");
            assert!(
                lines[0].ends_with(&format!("inside{expected}")),
                "{activation}: {text}"
            );
            assert!(lines[1].ends_with("outside"), "{activation}: {text}");
        }
    }

    #[test]
    fn text_messages_and_fields_escape_control_characters() {
        let text = capture_text(LogFormat::Text, false, || {
            tracing::warn!(target: "app", payload = HOSTILE, "{HOSTILE}");
        });
        assert_one_clean_line(&text);
        assert_eq!(
            after_timestamp(text.trim_end()),
            format!("  WARN app: {HOSTILE_ESCAPED} payload={HOSTILE_ESCAPED}")
        );

        // Each control character alone, in a message and in a field.
        for (raw, escaped) in [
            ("a\nb", r"a\nb"),
            ("a\rb", r"a\rb"),
            ("\x1b[31mred", r"\u{1b}[31mred"),
            ("a\u{0}b", r"a\0b"),
            ("a\u{85}b", r"a\u{85}b"),
        ] {
            let lines = capture(LogFormat::Text, || {
                tracing::info!(target: "app", value = raw, "{raw}");
            });
            assert_eq!(lines.len(), 1, "{raw:?}: {lines:?}");
            assert_eq!(
                after_timestamp(&lines[0]),
                format!("  INFO app: \"{escaped}\" value=\"{escaped}\""),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn text_messages_without_control_characters_stay_as_they_are() {
        let lines = capture(LogFormat::Text, || {
            tracing::info!(target: "app", r#"failed "hard" at C:\tmp, café ✓"#);
            // A leading quote is quoted, so a quoted message is always escaped.
            tracing::info!(target: "app", r#""quoted" \n first"#);
        });
        assert_eq!(
            after_timestamp(&lines[0]),
            r#"  INFO app: failed "hard" at C:\tmp, café ✓"#
        );
        assert_eq!(
            after_timestamp(&lines[1]),
            r#"  INFO app: "\"quoted\" \\n first""#
        );
    }

    #[test]
    fn ansi_escapes_the_message_and_colours_only_the_level() {
        let text = capture_text(LogFormat::Text, true, || {
            tracing::error!(target: "app", "\x1b[2J\x1b[32m INFO\x1b[0m fine");
        });
        assert_one_clean_line(&text.replace("\x1b[31mERROR\x1b[0m", "ERROR"));
        assert_eq!(
            after_timestamp(text.trim_end()),
            format!(
                " \x1b[31mERROR\x1b[0m app: {}",
                r#""\u{1b}[2J\u{1b}[32m INFO\u{1b}[0m fine""#
            )
        );
    }

    #[test]
    fn json_lines_escape_every_control_character() {
        let text = capture_text(LogFormat::Json, false, || {
            tracing::warn!(target: "app", payload = HOSTILE, "{HOSTILE}");
        });
        assert_one_clean_line(&text);
        let escaped = r#""order 4\n2026-01-01T00:00:00.000Z ERROR app: forged\r\u001b[31mred\u001b[0m\t\u007f\u009b2J\u2028end""#;
        assert!(
            text.contains(&format!("\"message\":{escaped},\"payload\":{escaped}}}")),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["message"], HOSTILE);
        assert_eq!(value["payload"], HOSTILE);
    }

    #[test]
    fn ansi_colours_only_the_level() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(LogLayer::new(
            LogFormat::Text,
            true,
            buffer.clone(),
        ));
        tracing::subscriber::with_default(subscriber, || tracing::info!(target: "t", "hi"));
        assert_eq!(
            after_timestamp(buffer.text().trim_end()),
            " \x1b[32m INFO\x1b[0m t: hi"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let cases = [
            (1_795_255_200_123, "2026-11-21T10:00:00.123Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (0, "1970-01-01T00:00:00.000Z"),
        ];
        for (millis, expected) in cases {
            let mut out = String::new();
            write_timestamp(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn parses_formats() {
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(" text "), Ok(LogFormat::Text));
        assert!(LogFormat::parse("auto").is_ok());
        let err = LogFormat::parse("yaml").expect_err("unknown");
        assert!(err.contains("auto, text or json"), "{err}");
    }
}
