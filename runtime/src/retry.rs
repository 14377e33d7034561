//! A record whose attempt failed: retried with backoff while its partition
//! is paused, then copied to the dead-letter topic, or held.
//!
//! The consumer pauses the record's partition and hands the record here; it
//! resumes the partition only once [`resolve`] returns. Other partitions
//! keep flowing meanwhile, and nothing of the paused partition is buffered:
//! librdkafka drops what it had fetched past the record and fetches it
//! again on resume.

use std::time::Duration;

use rdkafka::message::OwnedMessage;

use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetters, GivenUp};
use crate::metrics::Metrics;
use crate::outcome::Failure;
use crate::process::Processor;
use crate::producer::ProducerSlot;
use crate::record::Record;

/// What resolving a record needs from its group.
#[derive(Clone, Copy)]
pub(crate) struct Resolver<'g> {
    pub(crate) group: &'g str,
    pub(crate) dead_letters: Option<&'g DeadLetters>,
    pub(crate) metrics: &'g Metrics,
    /// The producer handlers can take as an argument.
    pub(crate) producer: &'g ProducerSlot,
}

impl Resolver<'_> {
    /// Retries `message` until an attempt succeeds, it fails permanently, or
    /// its retries are spent; then dead-letters it, or holds it when the
    /// handler has no dead-letter topic. `first` is the failure of attempt 1
    /// when it already ran. Either way, once this returns the record may be
    /// committed.
    pub(crate) async fn resolve(
        self,
        processor: &Processor,
        message: &OwnedMessage,
        first: Option<Failure>,
    ) {
        let record = Record::from_owned(message).with_producer(self.producer);
        let handler = processor.handler();
        let options = handler.options();
        let mut attempts = 1;
        let mut failure = match first {
            Some(failure) => failure,
            None => match processor.attempt(&record, attempts).await {
                Ok(()) => return,
                Err(failure) => failure,
            },
        };

        while !failure.error.is_permanent() && attempts <= options.retries {
            let delay = options.backoff.delay(attempts);
            match self.retry(processor, &record, &mut attempts, delay).await {
                Ok(()) => return,
                Err(next) => failure = next,
            }
        }

        if let (Some(dlq), Some(dead_letters)) = (&options.dlq, self.dead_letters) {
            let given_up = GivenUp {
                record: &record,
                dlq,
                handler,
                attempts,
                failure: &failure,
            };
            dead_letters
                .send_until_acked(&given_up, &options.backoff)
                .await;
            tracing::info!(
                target: "kafka_handler",
                group = self.group,
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                dlq = %dlq,
                attempts,
                error.type = failure.error.kind().as_str(),
                "record dead-lettered"
            );
            return;
        }

        // No dead-letter topic: never skip the record. Keep its partition
        // paused and try again at the longest backoff, until it passes or the
        // consumer restarts (and the record is redelivered).
        let hold = Backoff::constant(options.backoff.max());
        tracing::error!(
            target: "kafka_handler",
            group = self.group,
            handler = handler.name(),
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            attempts,
            error.type = failure.error.kind().as_str(),
            error = %failure.error.message(),
            "record given up on, and the handler has no dead-letter topic: holding it \
             (not committed, partition paused) and attempting it every {:?}",
            hold.max()
        );
        while self
            .retry(processor, &record, &mut attempts, hold.delay(1))
            .await
            .is_err()
        {}
    }

    /// Waits `delay`, then makes the next attempt.
    async fn retry(
        self,
        processor: &Processor,
        record: &Record<'_>,
        attempts: &mut u32,
        delay: Duration,
    ) -> Result<(), Failure> {
        tokio::time::sleep(delay).await;
        *attempts += 1;
        self.metrics.retried(self.group, record.topic());
        processor.attempt(record, *attempts).await
    }
}
