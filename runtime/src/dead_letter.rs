//! Dead-letter copies: a given-up record re-published to its handler's DLQ
//! topic under a `send {dlq}` span, so the failure stays in the producer's
//! trace.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global::BoxedTracer;
use opentelemetry::Context;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::backoff::Backoff;
use crate::error::error_type;
use crate::error::Error;
use crate::handler::Handler;
use crate::health::GroupHealth;
use crate::metrics::Metrics;
use crate::outcome::Failure;
use crate::producer::{self, Message, SendSpan};
use crate::record::Record;

/// The `dlq.*` headers added to every dead-letter copy.
pub mod headers {
    /// The topic the record was consumed from.
    pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
    /// Its partition, in decimal.
    pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
    /// Its offset, in decimal.
    pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
    /// Its timestamp in milliseconds since the Unix epoch, in decimal
    /// (absent when the record had none).
    pub const ORIGINAL_TIMESTAMP: &str = "dlq.original.timestamp";
    /// The consumer group that gave up on it.
    pub const GROUP: &str = "dlq.group";
    /// The handler that gave up on it (its path).
    pub const HANDLER: &str = "dlq.handler";
    /// How many attempts were made, in decimal.
    pub const ATTEMPTS: &str = "dlq.attempts";
    /// The last attempt's `error.type`: `handler`, `deserialization`,
    /// `panic` or `timeout`.
    pub const ERROR_TYPE: &str = "dlq.error.type";
    /// The last attempt's error message, UTF-8, cut on a character boundary
    /// to at most [`MAX_ERROR_MESSAGE`] bytes.
    pub const ERROR_MESSAGE: &str = "dlq.error.message";
    /// The bound on `dlq.error.message`, in bytes.
    pub const MAX_ERROR_MESSAGE: usize = 1024;
}

/// One group's dead-letter producer.
pub(crate) struct DeadLetters {
    producer: FutureProducer,
    tracer: BoxedTracer,
    group: Arc<str>,
    metrics: Metrics,
    health: Arc<GroupHealth>,
}

/// A record given up on, and why.
pub(crate) struct GivenUp<'a> {
    pub(crate) record: &'a Record<'a>,
    pub(crate) dlq: &'a str,
    pub(crate) handler: &'a Handler,
    pub(crate) attempts: u32,
    /// The last attempt's failure; its span is the parent of the
    /// `send {dlq}` span.
    pub(crate) failure: &'a Failure,
}

/// A group's dead-letter producer configuration, checked by `build()`.
#[derive(Clone, Debug)]
pub(crate) struct DeadLetterConfig {
    group: Arc<str>,
    config: ClientConfig,
}

impl DeadLetterConfig {
    /// The configuration for `group`: the defaults, the connection
    /// properties of the group's `consumer` configuration, then `overrides`.
    pub(crate) fn new(
        group: Arc<str>,
        consumer: &ClientConfig,
        overrides: &[(String, String)],
    ) -> Self {
        let config = producer::config_for(consumer, overrides);
        Self { group, config }
    }

    /// Has librdkafka check the configuration.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.config
            .create_native_config()
            .map(drop)
            .map_err(|err| self.error(err))
    }

    /// Creates the producer.
    pub(crate) fn create(
        &self,
        metrics: Metrics,
        health: Arc<GroupHealth>,
    ) -> Result<DeadLetters, Error> {
        let producer = self.config.create().map_err(|err| self.error(err))?;
        Ok(DeadLetters {
            producer,
            tracer: crate::attributes::tracer(),
            group: self.group.clone(),
            metrics,
            health,
        })
    }

    fn error(&self, err: KafkaError) -> Error {
        let context = if self.group.is_empty() {
            "configuring the dead-letter producer".to_owned()
        } else {
            format!(
                "configuring the dead-letter producer of group `{}`",
                self.group
            )
        };
        Error::kafka(context, err)
    }
}

impl DeadLetters {
    /// Sends the copy, and again after each failure with `backoff`, until
    /// the broker acknowledges one. Only then may the record be committed.
    pub(crate) async fn send_until_acked(&self, given_up: &GivenUp<'_>, backoff: &Backoff) {
        let mut failures = 0;
        loop {
            match self.send(given_up).await {
                Ok(()) => {
                    self.health.dead_letter_succeeded(given_up.dlq);
                    self.metrics.dead_lettered(
                        &self.group,
                        given_up.record.topic(),
                        given_up.dlq,
                        given_up.failure.error.kind().as_str(),
                    );
                    return;
                }
                Err(err) => {
                    failures += 1;
                    let delay = backoff.delay(failures);
                    self.metrics
                        .send_failed(&self.group, given_up.dlq, &error_type(&err));
                    self.health.dead_letter_failed(given_up.dlq, &err);
                    tracing::error!(
                        target: "kafka_handler",
                        group = %self.group,
                        dlq = given_up.dlq,
                        topic = given_up.record.topic(),
                        partition = given_up.record.partition(),
                        offset = given_up.record.offset(),
                        failures,
                        error = %err,
                        "dead-letter send failed; the record stays uncommitted and its lane \
                         waits; retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One send under its own `send {dlq}` span, ended when the broker
    /// answers.
    async fn send(&self, given_up: &GivenUp<'_>) -> Result<(), KafkaError> {
        let record = given_up.record;
        let record_key = given_up.handler.options().record_key;
        let message = Message {
            topic: given_up.dlq,
            key: record.key().filter(|_| record_key),
            tombstone: record.payload().is_none(),
            client_id: None,
        };
        let span = SendSpan::start(&self.tracer, message, &given_up.failure.span_cx);
        let headers = copy_headers(given_up, &self.group, span.context());

        let mut copy = FutureRecord::<[u8], [u8]>::to(given_up.dlq).headers(headers);
        if let Some(key) = record.key() {
            copy = copy.key(key);
        }
        if let Some(payload) = record.payload() {
            copy = copy.payload(payload);
        }
        if let Some(timestamp) = record.timestamp() {
            copy = copy.timestamp(timestamp);
        }
        let result = self.producer.send(copy, Duration::from_secs(5)).await;
        let answer = result.as_ref().map_err(|(err, _)| err);
        self.metrics.sent(given_up.dlq, answer.err());
        span.answered(answer);
        result.map(drop).map_err(|(err, _)| err)
    }
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// The copy's headers: the record's own, minus trace headers and earlier
/// `dlq.*` headers, plus the send span's context and this failure's
/// `dlq.*` headers. Replaced, never appended: a copy of a copy carries one
/// `traceparent` and one set of `dlq.*` headers.
fn copy_headers(given_up: &GivenUp<'_>, group: &str, send_cx: &Context) -> OwnedHeaders {
    let record = given_up.record;
    let mut headers = producer::with_context(record.headers().iter(), send_cx, |key| {
        key.starts_with("dlq.")
    });
    let mut add = |key: &str, value: &str| {
        producer::push_header(&mut headers, key, Some(value.as_bytes()));
    };
    add(headers::ORIGINAL_TOPIC, record.topic());
    add(headers::ORIGINAL_PARTITION, &record.partition().to_string());
    add(headers::ORIGINAL_OFFSET, &record.offset().to_string());
    if let Some(timestamp) = record.timestamp() {
        add(headers::ORIGINAL_TIMESTAMP, &timestamp.to_string());
    }
    add(headers::GROUP, group);
    add(headers::HANDLER, given_up.handler.name());
    add(headers::ATTEMPTS, &given_up.attempts.to_string());
    add(headers::ERROR_TYPE, given_up.failure.error.kind().as_str());
    add(
        headers::ERROR_MESSAGE,
        truncate(given_up.failure.error.message(), headers::MAX_ERROR_MESSAGE),
    );
    headers
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("short", 1024), "short");
        let text = "é".repeat(600); // 1200 bytes, 2 per character
        let cut = truncate(&text, 1024);
        assert_eq!(cut.len(), 1024);
        let text = format!("a{}", "é".repeat(600)); // odd boundary
        let cut = truncate(&text, 1024);
        assert_eq!(cut.len(), 1023);
        assert!(cut.chars().all(|c| c == 'a' || c == 'é'));
    }
}
