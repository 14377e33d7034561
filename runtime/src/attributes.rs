//! The messaging semantic-convention attributes every span of ours shares,
//! and how a failed operation is recorded on its span: for `process` and
//! `send` spans alike, and the tracer that starts them.

use std::sync::{Arc, OnceLock};

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_semantic_conventions::attribute as semconv;

/// kafka-handler's tracer, from the global provider as it is now.
pub(crate) fn tracer() -> BoxedTracer {
    opentelemetry::global::tracer_with_scope(
        opentelemetry::InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// What every span of ours carries: `messaging.system`, the operation
/// (`process` or `send`) and `messaging.client.id` when set.
pub(crate) fn operation_attributes(
    operation: &'static str,
    client_id: Option<&Arc<str>>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(11);
    attributes.extend([
        KeyValue::new(semconv::MESSAGING_SYSTEM, "kafka"),
        KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, operation),
        KeyValue::new(semconv::MESSAGING_OPERATION_NAME, operation),
    ]);
    if let Some(client_id) = client_id {
        attributes.push(KeyValue::new(
            semconv::MESSAGING_CLIENT_ID,
            client_id.clone(),
        ));
    }
    attributes
}

/// `messaging.kafka.message.key` for a UTF-8 `key`, and
/// `messaging.kafka.message.tombstone` for a null payload.
pub(crate) fn push_message_attributes(
    attributes: &mut Vec<KeyValue>,
    key: Option<&[u8]>,
    tombstone: bool,
) {
    if let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) {
        attributes.push(KeyValue::new(
            semconv::MESSAGING_KAFKA_MESSAGE_KEY,
            key.to_owned(),
        ));
    }
    if tombstone {
        attributes.push(KeyValue::new(
            semconv::MESSAGING_KAFKA_MESSAGE_TOMBSTONE,
            true,
        ));
    }
}

/// A partition number as a string value: `&'static` (no allocation) for the
/// first 1024 partitions, allocated beyond.
pub(crate) fn partition_id(partition: i32) -> Value {
    const STATIC_IDS: usize = 1024;
    static IDS: OnceLock<Box<[String]>> = OnceLock::new();
    let ids: &'static [String] =
        IDS.get_or_init(|| (0..STATIC_IDS).map(|p| p.to_string()).collect());
    match usize::try_from(partition).ok().and_then(|p| ids.get(p)) {
        Some(id) => Value::from(id.as_str()),
        None => Value::from(partition.to_string()),
    }
}

/// Marks the span of `cx` failed, as the contract says: `error.type`, an
/// `exception` event, and status Error with the message.
pub(crate) fn record_failure(
    cx: &Context,
    error_type: impl Into<StringValue>,
    exception_type: &str,
    message: &str,
) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type.into()));
    span.add_event(
        "exception",
        vec![
            KeyValue::new(semconv::EXCEPTION_TYPE, exception_type.to_owned()),
            KeyValue::new(semconv::EXCEPTION_MESSAGE, message.to_owned()),
        ],
    );
    span.set_status(Status::error(message.to_owned()));
}
