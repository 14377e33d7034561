//! The failure path's metrics, on the global meter provider.

use opentelemetry::metrics::Counter;
use opentelemetry::{global, InstrumentationScope, KeyValue};
use opentelemetry_semantic_conventions::attribute as semconv;

/// Records copied to a dead-letter topic (and then committed).
pub const DEAD_LETTERED: &str = "kafka_handler.dead_letter.messages";
/// Failed attempts to send a dead-letter copy; the record stays uncommitted
/// and its partition paused until one succeeds.
pub const DEAD_LETTER_SEND_FAILURES: &str = "kafka_handler.dead_letter.send_failures";
/// Attempts after a record's first.
pub const RETRIES: &str = "kafka_handler.retries";

/// The instruments, created from the global meter provider when a consumer
/// starts (so a provider installed before `run` is the one used).
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    dead_lettered: Counter<u64>,
    send_failures: Counter<u64>,
    retries: Counter<u64>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let meter = global::meter_with_scope(
            InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Self {
            dead_lettered: meter
                .u64_counter(DEAD_LETTERED)
                .with_unit("{message}")
                .with_description("Records copied to a dead-letter topic after their last attempt")
                .build(),
            send_failures: meter
                .u64_counter(DEAD_LETTER_SEND_FAILURES)
                .with_unit("{error}")
                .with_description(
                    "Dead-letter sends the broker did not acknowledge; the record stays uncommitted",
                )
                .build(),
            retries: meter
                .u64_counter(RETRIES)
                .with_unit("{attempt}")
                .with_description("Attempts at a record after its first")
                .build(),
        }
    }

    pub(crate) fn dead_lettered(&self, group: &str, topic: &str, dlq: &str, error_type: &str) {
        self.dead_lettered.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
                KeyValue::new("kafka_handler.dlq", dlq.to_owned()),
                KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()),
            ],
        );
    }

    pub(crate) fn send_failed(&self, group: &str, dlq: &str, error_type: &str) {
        self.send_failures.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, dlq.to_owned()),
                KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()),
            ],
        );
    }

    pub(crate) fn retried(&self, group: &str, topic: &str) {
        self.retries.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group.to_owned()),
                KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, topic.to_owned()),
            ],
        );
    }
}
