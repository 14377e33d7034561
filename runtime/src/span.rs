//! The `process {topic}` consumer span: one span per attempt, activated for
//! the handler and ended by a guard whatever happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Link, Span as _, SpanContext, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::attributes::{
    operation_attributes, partition_id, push_message_attributes, record_failure,
};
use crate::outcome::{ErrorKind, HandlerError};
use crate::propagation::extract_parent_context;
use crate::record::Record;

/// The attempt number (1 for the first) on every `process` span.
pub(crate) const ATTEMPT: &str = "kafka_handler.attempt";

/// What every span of one handler in one consumer shares.
#[derive(Clone, Debug)]
pub(crate) struct SpanScope {
    pub(crate) tracer: Arc<BoxedTracer>,
    pub(crate) group: Arc<str>,
    pub(crate) client_id: Option<Arc<str>>,
    pub(crate) record_key: bool,
    /// The span name and interned name of each of the handler's topics,
    /// looked up without the global tables' lock and hash.
    pub(crate) topics: Arc<[TopicNames]>,
    /// Whether `tracer` starts no span of its own (the no-op tracer of an
    /// application without a tracer provider: its span only carries its
    /// parent's context), learned from the first span it builds under a
    /// valid parent. Then a record's context is its producer's as is, with
    /// nothing to build or end.
    pub(crate) pass_through: OnceLock<bool>,
}

/// A topic's span name and interned name, both `&'static str`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopicNames {
    topic: &'static str,
    span_name: &'static str,
}

impl TopicNames {
    /// The names of `topics`, interned once.
    pub(crate) fn for_topics(topics: &[String]) -> Arc<[TopicNames]> {
        topics.iter().map(|topic| *interned(topic)).collect()
    }
}

impl SpanScope {
    /// `topic` interned, and its span name: from the handler's own topics,
    /// else from the global tables.
    fn names(&self, topic: &str) -> TopicNames {
        match self.topics.iter().find(|names| names.topic == topic) {
            Some(names) => *names,
            None => *interned(topic),
        }
    }
}

/// The span of one attempt at one record.
///
/// It is a single span. When a `tracing` subscriber with the
/// tracing-opentelemetry layer is interested, the layer's span *is* the
/// OpenTelemetry span (we hand it the producer's context with `set_parent`
/// and read its context back), so `tracing::Span::current()` and
/// `Context::current()` name the same span. Otherwise the span is started
/// directly on the OpenTelemetry tracer, and the `tracing` span, if any
/// subscriber wants it, carries log context only. Never both: a bridged copy
/// would double the span count and the cost.
pub(crate) struct ProcessSpan {
    cx: Context,
    tracing_span: tracing::Span,
    finished: bool,
}

impl ProcessSpan {
    /// Extracts the record's context and starts the span of attempt
    /// `attempt` (1-based). Every attempt at a record has the same parent:
    /// the headers, hence the extracted context, do not change. Nothing is
    /// activated yet: see [`Self::context`] and [`Self::tracing_span`].
    pub(crate) fn start(scope: &SpanScope, record: &Record<'_>, attempt: u32) -> Self {
        let parent_cx = extract_parent_context(record.headers());
        Self::start_with_parent(scope, record, attempt, parent_cx, None)
    }

    /// As [`Self::start`], with the record's context already extracted, and
    /// a link to the span of the batch the record was delivered in.
    pub(crate) fn start_with_parent(
        scope: &SpanScope,
        record: &Record<'_>,
        attempt: u32,
        parent_cx: Context,
        batch: Option<&SpanContext>,
    ) -> Self {
        let batch = batch.filter(|batch| batch.is_valid());
        let names = scope.names(record.topic());

        // The `tracing` span carries what a log line needs: the record's
        // position. The layer turns those fields into the same-named
        // attributes; the rest are set on the OpenTelemetry span below.
        let tracing_span = tracing::info_span!(
            target: "kafka_handler",
            parent: None,
            "process",
            otel.name = names.span_name,
            otel.kind = "consumer",
            messaging.destination.name = names.topic,
            messaging.destination.partition.id = %record.partition(),
            messaging.kafka.offset = record.offset(),
        );

        let (cx, position_recorded) =
            if !tracing_span.is_disabled() && tracing_span.set_parent(parent_cx.clone()).is_ok() {
                // The layer owns the span; `context()` builds it now, with
                // the producer's context as parent.
                if let Some(batch) = batch {
                    tracing_span.add_link(batch.clone());
                }
                (tracing_span.context(), true)
            } else if scope.pass_through.get() == Some(&true) {
                (parent_cx, false)
            } else {
                let mut builder = scope
                    .tracer
                    .span_builder(names.span_name)
                    .with_kind(SpanKind::Consumer);
                if let Some(batch) = batch {
                    builder = builder.with_links(vec![Link::with_context(batch.clone())]);
                }
                let span = scope.tracer.build_with_context(builder, &parent_cx);
                let parent = parent_cx.span();
                let parent = parent.span_context();
                if parent.is_valid() && scope.pass_through.get().is_none() {
                    let _ = scope
                        .pass_through
                        .set(span.span_context() == parent && !span.is_recording());
                }
                (parent_cx.with_span(span), false)
            };
        let span_ref = cx.span();
        // Attributes are built only for spans someone records: an unsampled
        // record costs no allocation here.
        if span_ref.is_recording() {
            span_ref.set_attributes(process_attributes(
                scope,
                record,
                names.topic,
                position_recorded,
                attempt,
            ));
        }
        Self {
            cx,
            tracing_span,
            finished: false,
        }
    }

    /// Starts the span of one delivery of a batch handler: `process {topic}`
    /// with `messaging.batch.message_count`, one link per record whose
    /// producer's context (`parents`) is valid, and the ambient context as
    /// parent, not any record's.
    pub(crate) fn start_batch(
        scope: &SpanScope,
        topic: &str,
        partition: i32,
        parents: &[Context],
    ) -> Self {
        let names = scope.names(topic);
        // A record without a valid context gets no link: both
        // `SpanBuilder::with_links` and the layer's `add_link` drop invalid
        // span contexts.
        let links = parents.iter().map(|cx| cx.span().span_context().clone());
        let ambient = Context::current();
        let count = i64::try_from(parents.len()).unwrap_or(i64::MAX);
        let tracing_span = tracing::info_span!(
            target: "kafka_handler",
            "process",
            otel.name = names.span_name,
            otel.kind = "consumer",
            messaging.destination.name = names.topic,
            messaging.destination.partition.id = %partition,
            messaging.batch.message_count = count,
        );
        let (cx, position_recorded) =
            if !tracing_span.is_disabled() && tracing_span.set_parent(ambient.clone()).is_ok() {
                for link in links {
                    tracing_span.add_link(link);
                }
                (tracing_span.context(), true)
            } else {
                let builder = scope
                    .tracer
                    .span_builder(names.span_name)
                    .with_kind(SpanKind::Consumer)
                    .with_links(links.map(Link::with_context).collect());
                let span = scope.tracer.build_with_context(builder, &ambient);
                (ambient.with_span(span), false)
            };
        let span_ref = cx.span();
        if span_ref.is_recording() {
            let mut attributes = common_attributes(scope);
            if !position_recorded {
                attributes.extend([
                    KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, names.topic),
                    KeyValue::new(
                        semconv::MESSAGING_DESTINATION_PARTITION_ID,
                        partition_id(partition),
                    ),
                    KeyValue::new(semconv::MESSAGING_BATCH_MESSAGE_COUNT, count),
                ]);
            }
            span_ref.set_attributes(attributes);
        }
        Self {
            cx,
            tracing_span,
            finished: false,
        }
    }

    /// The context to make current while the handler runs.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Runs `f` under this span: its context attached, its `tracing` span
    /// entered.
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::attach::in_scope(&self.cx, &self.tracing_span, f)
    }

    /// `future`, polled under this span on every poll.
    pub(crate) fn attach<F: std::future::Future>(
        &self,
        future: F,
    ) -> crate::attach::Attached<'_, F> {
        crate::attach::Attached::new(future, &self.cx, &self.tracing_span)
    }

    /// Records the attempt's failure, if it failed, on the span and ends it.
    pub(crate) fn finish(mut self, error: Option<&HandlerError>) {
        if let Some(error) = error {
            record_failure(
                &self.cx,
                error.kind().as_str(),
                error.exception_type(),
                error.message(),
            );
        }
        self.finished = true;
    }
}

impl Drop for ProcessSpan {
    fn drop(&mut self) {
        if !self.finished {
            // Dropped before `finish`: the attempt was cancelled (its future
            // was dropped) or unwound past us.
            record_failure(
                &self.cx,
                ErrorKind::Cancelled.as_str(),
                "cancelled",
                "handler was cancelled before it finished",
            );
        }
        // Ending explicitly makes the span's end time the handler's, even if
        // user code cloned `tracing::Span::current()` into a longer-lived
        // task. Ending twice (the layer ends it again on close) is a no-op.
        self.cx.span().end();
    }
}

fn process_attributes(
    scope: &SpanScope,
    record: &Record<'_>,
    topic: &'static str,
    position_recorded: bool,
    attempt: u32,
) -> Vec<KeyValue> {
    let mut attributes = common_attributes(scope);
    attributes.push(KeyValue::new(ATTEMPT, i64::from(attempt)));
    // Unless the `tracing` span's fields already became these attributes.
    if !position_recorded {
        attributes.extend([
            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic),
            KeyValue::new(
                semconv::MESSAGING_DESTINATION_PARTITION_ID,
                partition_id(record.partition()),
            ),
            KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, record.offset()),
        ]);
    }
    push_record_attributes(&mut attributes, record, scope.record_key);
    attributes
}

/// What every `process` span carries, for one record or a batch: the
/// system, the operation, the client id and the group.
fn common_attributes(scope: &SpanScope) -> Vec<KeyValue> {
    let mut attributes = operation_attributes("process", scope.client_id.as_ref());
    attributes.push(KeyValue::new(
        semconv::MESSAGING_CONSUMER_GROUP_NAME,
        scope.group.clone(),
    ));
    attributes
}

/// The record's own attributes, shared by `process` and `send` spans:
/// `messaging.kafka.message.key` (UTF-8 keys, when `record_key`) and
/// `messaging.kafka.message.tombstone` (null payloads).
pub(crate) fn push_record_attributes(
    attributes: &mut Vec<KeyValue>,
    record: &Record<'_>,
    record_key: bool,
) {
    let key = record.key().filter(|_| record_key);
    push_message_attributes(attributes, key, record.payload().is_none());
}

/// A topic's names as `&'static str`s, so span names and attributes cost no
/// allocation. Interned once per distinct topic this process consumes.
fn interned(topic: &str) -> &'static TopicNames {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static TopicNames>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(names) = names.get(topic) {
        return names;
    }
    let interned: &'static TopicNames = Box::leak(Box::new(TopicNames {
        topic: Box::leak(topic.to_owned().into_boxed_str()),
        span_name: Box::leak(format!("process {topic}").into_boxed_str()),
    }));
    names.insert(topic.to_owned(), interned);
    interned
}
