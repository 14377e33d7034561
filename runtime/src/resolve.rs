//! A record's attempts, from the first to the end: retried with backoff
//! after a transient failure, then copied to the dead-letter topic, or held.
//!
//! The record keeps its lane busy the whole time (its partition, or its key,
//! see [`ProcessingOrder`](crate::ProcessingOrder)), so the records queued
//! behind it wait while others flow, and its offset stays below the commit
//! watermark until [`Resolver::resolve`] returns.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetters, GivenUp};
use crate::metrics::Metrics;
use crate::outcome::Failure;
use crate::process::Processor;
use crate::record::Record;
use crate::shutdown::Shutdown;

/// What resolving a record needs from its group.
#[derive(Clone, Copy)]
pub(crate) struct Resolver<'g> {
    pub(crate) group: &'g str,
    pub(crate) dead_letters: Option<&'g DeadLetters>,
    pub(crate) metrics: &'g Metrics,
    /// Once triggered, no retry is started: the record is abandoned,
    /// uncommitted, and handled again after a restart.
    pub(crate) shutdown: &'g Shutdown,
}

/// How a record's attempts ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Handled, or given up on and dead-lettered: it may be committed.
    Ended,
    /// Left at shutdown while it waited for a retry: not committed.
    Abandoned,
}

impl Resolver<'_> {
    /// Attempts `record` until an attempt succeeds, it fails permanently, or
    /// its retries are spent; then dead-letters it, or holds it when the
    /// handler has no dead-letter topic. `first` is the failure of attempt 1
    /// when it already ran (a batch's record).
    pub(crate) async fn resolve(
        self,
        processor: &Processor,
        record: &Record<'_>,
        first: Option<Failure>,
    ) -> Resolution {
        let failure = match first {
            Some(failure) => failure,
            None => match processor.attempt(record, 1).await {
                Ok(()) => return Resolution::Ended,
                Err(failure) => failure,
            },
        };
        // The failure path's state (backoff timers, the dead-letter send) is
        // boxed, so a record that succeeds first time carries none of it.
        Box::pin(self.after_failure(processor, record, failure)).await
    }

    /// Retries, then dead-letters or holds, a record whose first attempt
    /// failed with `failure`.
    async fn after_failure(
        self,
        processor: &Processor,
        record: &Record<'_>,
        mut failure: Failure,
    ) -> Resolution {
        let handler = processor.handler();
        let options = handler.options();
        let mut attempts = 1;
        while !failure.error.is_permanent() && attempts <= options.retries {
            let delay = options.backoff.delay(attempts);
            match self.retry(processor, record, &mut attempts, delay).await {
                Some(Ok(())) => return Resolution::Ended,
                Some(Err(next)) => failure = next,
                None => return Resolution::Abandoned,
            }
        }

        if let (Some(dlq), Some(dead_letters)) = (&options.dlq, self.dead_letters) {
            let given_up = GivenUp {
                record,
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
            return Resolution::Ended;
        }

        // No dead-letter topic: never skip the record. Keep its lane busy
        // and its offset uncommitted, and try again at the longest backoff,
        // until it passes or the consumer restarts (and the record is
        // redelivered).
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
             (not committed, its lane waiting) and attempting it every {:?}",
            hold.max()
        );
        loop {
            match self
                .retry(processor, record, &mut attempts, hold.delay(1))
                .await
            {
                Some(Ok(())) => return Resolution::Ended,
                Some(Err(_)) => {}
                None => return Resolution::Abandoned,
            }
        }
    }

    /// Waits `delay`, then makes the next attempt; `None` when shutdown was
    /// triggered first.
    async fn retry(
        self,
        processor: &Processor,
        record: &Record<'_>,
        attempts: &mut u32,
        delay: Duration,
    ) -> Option<Result<(), Failure>> {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.triggered() => return None,
        }
        *attempts += 1;
        self.metrics.retried(self.group, record.topic());
        Some(processor.attempt(record, *attempts).await)
    }
}
