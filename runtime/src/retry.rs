//! A record whose attempt failed: retried with backoff while its partition
//! is paused, then copied to the dead-letter topic, or held.
//!
//! The consumer pauses the record's partition and hands the record here; it
//! resumes the partition only once [`resolve`] returns. Other partitions
//! keep flowing meanwhile, and nothing of the paused partition is buffered:
//! librdkafka drops what it had fetched past the record and fetches it
//! again on resume.

use rdkafka::message::OwnedMessage;

use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetters, GivenUp};
use crate::metrics::Metrics;
use crate::process::{Failure, Processor};
use crate::record::Record;

/// How a record's handling ended: either way it may now be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// An attempt succeeded.
    Handled,
    /// The broker acknowledged its dead-letter copy.
    DeadLettered,
}

/// What resolving a record needs from its group.
#[derive(Clone, Copy)]
pub(crate) struct Resolver<'g> {
    pub(crate) group: &'g str,
    pub(crate) dead_letters: Option<&'g DeadLetters>,
    pub(crate) metrics: &'g Metrics,
}

impl Resolver<'_> {
    /// Retries `message` until an attempt succeeds, it fails permanently, or
    /// its retries are spent; then dead-letters it, or holds it when the
    /// handler has no dead-letter topic. `first` is the failure of attempt 1
    /// when it already ran.
    pub(crate) async fn resolve(
        self,
        processor: &Processor,
        message: &OwnedMessage,
        first: Option<Failure>,
    ) -> Resolution {
        let record = Record::from_owned(message);
        let handler = processor.handler();
        let options = handler.options();
        let mut attempts = 1;
        let mut failure = match first {
            Some(failure) => failure,
            None => match processor.attempt(&record, attempts).await {
                Ok(()) => return Resolution::Handled,
                Err(failure) => failure,
            },
        };

        while !failure.error.is_permanent() && attempts <= options.retries {
            tokio::time::sleep(options.backoff.delay(attempts)).await;
            attempts += 1;
            self.metrics.retried(self.group, record.topic());
            match processor.attempt(&record, attempts).await {
                Ok(()) => return Resolution::Handled,
                Err(next) => failure = next,
            }
        }

        if let (Some(dlq), Some(dead_letters)) = (&options.dlq, self.dead_letters) {
            let given_up = GivenUp {
                record: &record,
                dlq,
                handler: handler.name(),
                attempts,
                error: &failure.error,
                parent: &failure.span_cx,
                record_key: options.record_key,
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
            return Resolution::DeadLettered;
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
        loop {
            tokio::time::sleep(hold.delay(1)).await;
            attempts += 1;
            self.metrics.retried(self.group, record.topic());
            if processor.attempt(&record, attempts).await.is_ok() {
                return Resolution::Handled;
            }
        }
    }
}
