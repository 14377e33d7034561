//! The traced producer: every record sent under a `send {topic}` PRODUCER
//! span whose context replaces the record's trace headers, ended when the
//! broker answers.

use std::sync::{Arc, OnceLock};

use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::Counter;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, OwnedHeaders, ToBytes};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use crate::attributes::{operation_attributes, push_message_attributes, record_failure};
use crate::error::{error_type, Error};

/// Trace headers every propagator we know of writes. They are dropped from
/// a record before its new context is injected, even when the installed
/// propagator does not write them, so a stale context from an earlier hop
/// never survives next to the new one.
const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// Properties of the consumer's configuration its producers (the
/// dead-letter one, the one handlers take) share: where the brokers are and how to reach them.
const SHARED_PREFIXES: [&str; 10] = [
    "bootstrap.servers",
    "client.id",
    "security.",
    "sasl.",
    "ssl.",
    "socket.",
    "broker.",
    "reconnect.",
    "enable.ssl",
    "client.dns.",
];

/// What a consumer's producers set unless told otherwise.
const PRODUCER_DEFAULTS: [(&str, &str); 3] = [
    // No duplicates from librdkafka's own resends.
    ("enable.idempotence", "true"),
    // A send the broker has not acknowledged within 30 s fails, is logged
    // and counted, and is tried again, instead of waiting silently for
    // librdkafka's default of five minutes.
    ("message.timeout.ms", "30000"),
    // A dead-letter copy is as large as the record it copies; the consumer
    // may fetch records larger than the producer's 1 MB default. The broker's own
    // limit still applies.
    ("message.max.bytes", "104857600"),
];

/// The configuration of a producer beside the consumer configured by
/// `consumer`: the defaults, the consumer's connection properties, then
/// `overrides`.
pub(crate) fn config_for(consumer: &ClientConfig, overrides: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in PRODUCER_DEFAULTS {
        config.set(key, value);
    }
    for (key, value) in consumer.config_map() {
        if SHARED_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
            config.set(key, value);
        }
    }
    for (key, value) in overrides {
        config.set(key, value);
    }
    config
}

/// A Kafka producer whose records carry their trace.
///
/// [`send`](Self::send) opens a `send {topic}` span (kind `PRODUCER`, a
/// child of the current context: inside a handler, the record's `process`
/// span), replaces the record's trace headers with that span's context
/// through the global propagator (exactly one `traceparent`; non-trace
/// headers are kept; baggage flows with the context), and ends the span
/// when the broker acknowledges the record (with its partition and offset)
/// or the send fails (with the error). A downstream kafka-handler consumer
/// continues the same trace.
///
/// A handler can take one as an argument, `producer: &TracedProducer`: the
/// consumer's own (see [`ConsumerBuilder::producer`](crate::ConsumerBuilder::producer)),
/// created on first use from the consumer's connection properties. Or keep
/// one in the handler's state: it is cheap to clone.
#[derive(Clone)]
pub struct TracedProducer {
    producer: FutureProducer,
    tracer: Arc<BoxedTracer>,
    client_id: Option<Arc<str>>,
    /// `messaging.client.sent.messages`, created on the first send (from
    /// the global meter provider as it is then), shared by the clones.
    sent: Arc<OnceLock<Counter<u64>>>,
}

impl TracedProducer {
    /// Traces the records sent through `producer`.
    pub fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            tracer: Arc::new(crate::attributes::tracer()),
            client_id: None,
            sent: Arc::default(),
        }
    }

    /// A producer created from `config`.
    pub fn from_config(config: &ClientConfig) -> Result<Self, Error> {
        let producer: FutureProducer = config
            .create()
            .map_err(|err| Error::kafka("creating the traced producer", err))?;
        let mut traced = Self::new(producer);
        traced.client_id = config.get("client.id").map(Arc::from);
        Ok(traced)
    }

    /// The rdkafka producer underneath, for what the traced one does not
    /// wrap (flushing, transactions, metadata). Records sent through it
    /// directly are not traced.
    pub fn inner(&self) -> &FutureProducer {
        &self.producer
    }

    /// Sends `record` under a `send {topic}` span, a child of the current
    /// context, and waits for the broker's answer, counted in
    /// `messaging.client.sent.messages`. The record's trace
    /// headers (`traceparent`, `tracestate`, `b3`, `x-b3-*`, and every
    /// header the installed propagator writes) are replaced by the span's
    /// context; its other headers are kept, in order.
    ///
    /// As rdkafka's [`FutureProducer::send`]: `queue_timeout` bounds the
    /// wait for room in the local queue, and the result is the delivery or
    /// the error with the record.
    pub async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: impl Into<Timeout>,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let span = SendSpan::start(
            &self.tracer,
            Message {
                topic: record.topic,
                key: record.key.map(ToBytes::to_bytes),
                tombstone: record.payload.is_none(),
                client_id: self.client_id.as_ref(),
            },
            &Context::current(),
        );
        let existing = record.headers.take();
        let kept = existing
            .iter()
            .flat_map(|headers| headers.iter().map(|header| (header.key, header.value)));
        record.headers = Some(with_context(kept, span.context(), |_| false));
        let topic = record.topic;
        let result = self.producer.send(record, queue_timeout).await;
        let answer = result.as_ref().map_err(|(err, _)| err);
        let sent = self.sent.get_or_init(crate::metrics::sent_messages);
        crate::metrics::record_sent(sent, topic, answer.err());
        span.answered(answer);
        result
    }
}

impl std::fmt::Debug for TracedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedProducer")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The producer a handler can take as an argument: one per consumer group,
/// given to the builder or created on first use. Cloning shares it.
#[derive(Clone)]
pub(crate) struct ProducerSlot {
    inner: Arc<SlotInner>,
}

struct SlotInner {
    config: ClientConfig,
    producer: OnceLock<Result<TracedProducer, String>>,
}

impl ProducerSlot {
    /// A slot holding `producer`.
    pub(crate) fn ready(producer: TracedProducer) -> Self {
        let slot = Self::lazy(ClientConfig::new());
        let _ = slot.inner.producer.set(Ok(producer));
        slot
    }

    /// A slot that creates its producer from `config` on first use.
    pub(crate) fn lazy(config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(SlotInner {
                config,
                producer: OnceLock::new(),
            }),
        }
    }

    /// The producer, created now if it was not yet.
    pub(crate) fn get(&self) -> Result<&TracedProducer, &str> {
        self.inner
            .producer
            .get_or_init(|| {
                TracedProducer::from_config(&self.inner.config).map_err(|err| err.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// What a `send` span says about the record it sends.
pub(crate) struct Message<'a> {
    pub(crate) topic: &'a str,
    /// The key, when it may be recorded.
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) tombstone: bool,
    pub(crate) client_id: Option<&'a Arc<str>>,
}

impl Message<'_> {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = operation_attributes("send", self.client_id);
        attributes.push(KeyValue::new(
            semconv::MESSAGING_DESTINATION_NAME,
            self.topic.to_owned(),
        ));
        push_message_attributes(&mut attributes, self.key, self.tombstone);
        attributes
    }
}

/// A `send {topic}` span: ended when the broker answers, or, if the send is
/// dropped first, ended as cancelled, so a record librdkafka may still
/// deliver is never shown as acknowledged.
pub(crate) struct SendSpan {
    cx: Context,
    answered: bool,
}

impl SendSpan {
    /// Starts `send {topic}` for `message`, a child of `parent`. Its
    /// attributes are built only when the span is recorded.
    pub(crate) fn start(tracer: &BoxedTracer, message: Message<'_>, parent: &Context) -> Self {
        let span = tracer.build_with_context(
            tracer
                .span_builder(format!("send {}", message.topic))
                .with_kind(SpanKind::Producer),
            parent,
        );
        let cx = parent.with_span(span);
        if cx.span().is_recording() {
            cx.span().set_attributes(message.attributes());
        }
        Self {
            cx,
            answered: false,
        }
    }

    /// The span's context, to inject into the record.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Records the broker's answer and ends the span.
    pub(crate) fn answered(mut self, result: Result<&Delivery, &KafkaError>) {
        let span = self.cx.span();
        match result {
            Ok(delivery) => span.set_attributes([
                KeyValue::new(
                    semconv::MESSAGING_DESTINATION_PARTITION_ID,
                    delivery.partition.to_string(),
                ),
                KeyValue::new(semconv::MESSAGING_KAFKA_OFFSET, delivery.offset),
            ]),
            Err(err) => record_failure(
                &self.cx,
                error_type(err),
                "rdkafka::error::KafkaError",
                &err.to_string(),
            ),
        }
        self.answered = true;
    }
}

impl Drop for SendSpan {
    fn drop(&mut self) {
        if !self.answered {
            record_failure(
                &self.cx,
                "cancelled",
                "cancelled",
                "the send was cancelled before the broker answered; the record may still arrive",
            );
        }
        self.cx.span().end();
    }
}

/// `headers` without trace headers (and without those `also_drop` names),
/// plus `cx` injected through the global propagator: replaced, never
/// appended.
pub(crate) fn with_context<'h>(
    mut headers: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    cx: &Context,
    also_drop: impl Fn(&str) -> bool,
) -> OwnedHeaders {
    let (lower, _) = headers.size_hint();
    let mut out = OwnedHeaders::new_with_capacity(lower + 12);
    global::get_text_map_propagator(|propagator| {
        let replaced = |key: &str| {
            also_drop(key)
                || TRACE_HEADERS
                    .iter()
                    .copied()
                    .chain(propagator.fields())
                    .any(|name| name.eq_ignore_ascii_case(key))
        };
        for (key, value) in headers.by_ref().filter(|(key, _)| !replaced(key)) {
            push_header(&mut out, key, value);
        }
        propagator.inject_context(cx, &mut HeaderInjector(&mut out));
    });
    out
}

/// Appends one header to `headers`.
pub(crate) fn push_header(headers: &mut OwnedHeaders, key: &str, value: Option<&[u8]>) {
    *headers = std::mem::replace(headers, OwnedHeaders::new()).insert(Header { key, value });
}

/// Injects a context straight into headers being built.
struct HeaderInjector<'a>(&'a mut OwnedHeaders);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The SDK's W3C propagator writes `tracestate` even when it is
        // empty; an empty trace header carries nothing.
        if !value.is_empty() {
            push_header(self.0, key, Some(value.as_bytes()));
        }
    }
}
