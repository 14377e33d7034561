//! What became of a record, read from its spans: [`RecordOutcome`] and
//! [`Trace`].

use std::fmt;

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;

/// What became of one record in one consumer group, from the spans of its
/// attempts: [`TestApp::outcome_of`](super::TestApp::outcome_of).
#[derive(Clone, Debug)]
pub struct RecordOutcome {
    topic: String,
    offset: i64,
    trace_id: TraceId,
    /// The `process` spans of its attempts, in order.
    attempts: Vec<SpanData>,
    /// The `send` spans under its attempts: outputs and dead-letter copies.
    sends: Vec<SpanData>,
    dlq: bool,
}

/// One record produced by a handler while handling the record: a `send`
/// span under its `process` span that the broker acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Where it went.
    pub topic: String,
    /// Its offset there.
    pub offset: i64,
}

impl RecordOutcome {
    /// Reads the outcome of `topic`'s record at `offset`, consumed by
    /// `group`, from `spans`.
    /// `trace_id`, when known, is the trace the record carries: spans of
    /// other traces (another app's record at the same offset) are not its.
    pub(super) fn from_spans(
        spans: &[SpanData],
        topic: &str,
        group: &str,
        offset: i64,
        trace_id: Option<TraceId>,
    ) -> Self {
        let mut attempts: Vec<SpanData> = spans
            .iter()
            .filter(|span| {
                trace_id.is_none_or(|id| span.span_context.trace_id() == id)
                    && span.name == format!("process {topic}")
                    && attribute(span, "messaging.destination.name").as_deref() == Some(topic)
                    && attribute(span, "messaging.consumer.group.name").as_deref() == Some(group)
                    && int_attribute(span, "messaging.kafka.offset") == Some(offset)
            })
            .cloned()
            .collect();
        attempts.sort_by_key(|span| span.start_time);
        let trace_id = attempts
            .first()
            .map(|span| span.span_context.trace_id())
            .or(trace_id)
            .unwrap_or(TraceId::INVALID);
        let ids: Vec<SpanId> = attempts.iter().map(|s| s.span_context.span_id()).collect();
        let mut sends: Vec<SpanData> = spans
            .iter()
            .filter(|span| {
                span.name.starts_with("send ")
                    && span.span_context.trace_id() == trace_id
                    && ids.contains(&span.parent_span_id)
            })
            .cloned()
            .collect();
        sends.sort_by_key(|span| span.start_time);
        // A dead-letter copy is sent under the last, failed attempt.
        let dlq = attempts.last().is_some_and(|last| {
            is_error(last)
                && sends.iter().any(|send| {
                    send.parent_span_id == last.span_context.span_id() && !is_error(send)
                })
        });
        Self {
            topic: topic.to_owned(),
            offset,
            trace_id,
            attempts,
            sends,
            dlq,
        }
    }

    /// Whether the record has ended: an attempt succeeded, or it was
    /// dead-lettered.
    pub(super) fn has_ended(&self) -> bool {
        self.is_handled() || self.dlq
    }

    /// Whether an attempt succeeded.
    pub fn is_handled(&self) -> bool {
        self.attempts.last().is_some_and(|last| !is_error(last))
    }

    /// Whether it was given up on and copied to the dead-letter topic.
    pub fn is_dead_lettered(&self) -> bool {
        self.dlq
    }

    /// How many attempts it took (each with its own `process` span).
    pub fn attempts(&self) -> usize {
        self.attempts.len()
    }

    /// The `error.type` of the last failed attempt (`handler`, `panic`,
    /// `deserialization`, `timeout`, `publish`, ...), if one failed.
    pub fn error_type(&self) -> Option<String> {
        self.attempts
            .iter()
            .rev()
            .find(|span| is_error(span))
            .and_then(|span| attribute(span, "error.type"))
    }

    /// The message of the last failed attempt, if one failed.
    pub fn error_message(&self) -> Option<String> {
        self.attempts
            .iter()
            .rev()
            .find_map(|span| match &span.status {
                Status::Error { description } => Some(description.to_string()),
                _ => None,
            })
    }

    /// What the successful attempt published, in order (none when the
    /// record failed).
    pub fn outputs(&self) -> Vec<Sent> {
        let Some(last) = self.attempts.last().filter(|last| !is_error(last)) else {
            return Vec::new();
        };
        self.sends
            .iter()
            .filter(|send| send.parent_span_id == last.span_context.span_id() && !is_error(send))
            .filter_map(|send| {
                Some(Sent {
                    topic: attribute(send, "messaging.destination.name")?,
                    offset: int_attribute(send, "messaging.kafka.offset")?,
                })
            })
            .collect()
    }

    /// The trace the record continued (its producer's).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }
}

impl fmt::Display for RecordOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}: ", self.topic, self.offset)?;
        if self.attempts.is_empty() {
            return f.write_str("not handled yet (no attempt)");
        }
        let state = if self.is_handled() {
            "handled"
        } else if self.dlq {
            "dead-lettered"
        } else {
            "failing"
        };
        write!(f, "{state} after {} attempt(s)", self.attempts.len())?;
        if let (Some(kind), Some(message)) = (self.error_type(), self.error_message()) {
            write!(f, "; last error ({kind}): {message}")?;
        }
        Ok(())
    }
}

/// The finished spans of one record's trace:
/// [`TestApp::trace_of`](super::TestApp::trace_of).
#[derive(Clone, Debug)]
pub struct Trace {
    /// The record's last attempt.
    process: Option<SpanData>,
    spans: Vec<SpanData>,
}

impl Trace {
    pub(super) fn new(outcome: &RecordOutcome, spans: Vec<SpanData>) -> Self {
        let mut spans: Vec<SpanData> = spans
            .into_iter()
            .filter(|span| span.span_context.trace_id() == outcome.trace_id)
            .collect();
        spans.sort_by_key(|span| span.start_time);
        Self {
            process: outcome.attempts.last().cloned(),
            spans,
        }
    }

    /// Every finished span of the trace, in the order they started.
    pub fn spans(&self) -> &[SpanData] {
        &self.spans
    }

    /// The span named `name`; panics, listing the trace, when there is none.
    pub fn span(&self, name: &str) -> &SpanData {
        self.spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` in the trace: {self}"))
    }

    /// Asserts that the span named `child` is a child of the record's (last)
    /// `process` span.
    pub fn assert_parent_of(&self, child: &str) -> &Self {
        let process = self
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("the record has no process span: {self}"));
        let span = self.span(child);
        assert_eq!(
            span.parent_span_id,
            process.span_context.span_id(),
            "`{child}` is not a child of `{}`: {self}",
            process.name
        );
        self
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .spans
            .iter()
            .map(|span| format!("{} ({})", span.name, span.span_context.span_id()))
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn int_attribute(span: &SpanData, key: &str) -> Option<i64> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .and_then(|kv| match kv.value {
            Value::I64(value) => Some(value),
            _ => None,
        })
}
