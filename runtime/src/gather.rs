//! Cutting batches for batch handlers: records wait, per partition, until
//! `max_records` of them have arrived or `max_wait` has passed since the
//! first one arrived.
//!
//! Records are kept as rdkafka delivered them (no copy). A batch waiting
//! here is not in flight: a revoke drops it and shutdown leaves it, and as
//! none of its records is committed, whoever consumes the partition next
//! handles them.

use rdkafka::message::{BorrowedMessage, Message as _};
use tokio::time::Instant;

use crate::process::Processor;

/// The open batches of one group, one per partition at most.
#[derive(Default)]
pub(crate) struct Gathering<'m> {
    open: Vec<OpenBatch<'m>>,
}

struct OpenBatch<'m> {
    processor: &'m Processor,
    /// The partition's, kept: rdkafka measures and checks a message's topic
    /// name on every `topic()` call.
    topic: String,
    partition: i32,
    messages: Vec<BorrowedMessage<'m>>,
    max_records: usize,
    deadline: Instant,
}

/// A batch cut for delivery: its handler and its records, in order.
pub(crate) struct Batch<'m> {
    pub(crate) processor: &'m Processor,
    pub(crate) messages: Vec<BorrowedMessage<'m>>,
}

impl<'m> OpenBatch<'m> {
    fn into_batch(self) -> Batch<'m> {
        Batch {
            processor: self.processor,
            messages: self.messages,
        }
    }

    fn is_of(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && self.topic == topic
    }
}

impl<'m> Gathering<'m> {
    /// Adds `message` to its partition's batch for `processor` (a batch
    /// handler's), opening one if needed; returns the batch once it holds
    /// `max_records`.
    pub(crate) fn push(
        &mut self,
        processor: &'m Processor,
        max_records: usize,
        max_wait: std::time::Duration,
        message: BorrowedMessage<'m>,
    ) -> Option<Batch<'m>> {
        let (topic, partition) = (message.topic(), message.partition());
        let position = self
            .open
            .iter()
            .position(|batch| batch.is_of(topic, partition));
        let index = match position {
            Some(index) => {
                self.open[index].messages.push(message);
                index
            }
            None => {
                let topic = topic.to_owned();
                let mut messages = Vec::with_capacity(max_records.min(1024));
                messages.push(message);
                self.open.push(OpenBatch {
                    processor,
                    topic,
                    partition,
                    messages,
                    max_records,
                    deadline: Instant::now() + max_wait,
                });
                self.open.len() - 1
            }
        };
        (self.open[index].messages.len() >= self.open[index].max_records)
            .then(|| self.open.swap_remove(index).into_batch())
    }

    /// Whether no batch is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// When the next open batch is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|batch| batch.deadline).min()
    }

    /// Removes an open batch whose `max_wait` has passed at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Batch<'m>> {
        let index = self.open.iter().position(|batch| batch.deadline <= now)?;
        Some(self.open.swap_remove(index).into_batch())
    }

    /// Drops the open batches of partitions this member no longer owns.
    pub(crate) fn drop_revoked(&mut self, revoked: &[(String, i32)]) {
        self.open.retain(|batch| {
            let lost = revoked
                .iter()
                .any(|(topic, partition)| batch.is_of(topic, *partition));
            if lost {
                tracing::debug!(
                    target: "kafka_handler",
                    topic = batch.topic,
                    partition = batch.partition,
                    records = batch.messages.len(),
                    "partition revoked while its batch was open; its new owner handles the records"
                );
            }
            !lost
        });
    }

    /// How many records wait in open batches.
    pub(crate) fn records(&self) -> usize {
        self.open.iter().map(|batch| batch.messages.len()).sum()
    }
}
