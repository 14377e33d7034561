//! Batch handlers: many records per call, and still one context per record.
//!
//! A batch handler takes one [`Batch<T>`] argument. The runtime opens one
//! `process {topic}` batch span per delivery, linked to every record's
//! producer, and makes it current for the call. Walking the batch, the
//! handler runs each record's code under that record's own context and its
//! own `process {topic}` span ([`BatchRecord::process`],
//! [`BatchRecord::process_async`]); outside those scopes no record's context
//! is current.
//!
//! Each record has its own outcome. A record whose scope fails (or that the
//! handler [fails](BatchRecord::fail)) goes through the handler's retries and
//! dead-letter topic alone, in its own trace; the others are done. A
//! whole-batch error (the handler returns `Err`, panics or times out) fails
//! every record of the batch.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt as _;
use opentelemetry::trace::SpanContext;
use opentelemetry::Context;

use crate::extract::FromRecord;
use crate::lock;
use crate::outcome::{log_failure, ErrorKind, Failure, HandlerError, IntoOutcome, Outcome};
use crate::publish::Publish;
use crate::record::Record;
use crate::span::{ProcessSpan, SpanScope};

/// How a batch handler's batches are cut: at most `max_records` records,
/// delivered once that many have arrived or `max_wait` after the first one
/// arrived, whichever comes first.
///
/// A batch holds records of one partition, in offset order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    max_records: usize,
    max_wait: Duration,
}

impl BatchOptions {
    /// The default `max_records`.
    pub const DEFAULT_MAX_RECORDS: usize = 500;
    /// The default `max_wait`.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(50);
    /// The largest `max_records` accepted.
    pub const MAX_RECORDS_LIMIT: usize = 100_000;

    /// Batches of at most `max_records`, waiting at most `max_wait` for them
    /// to fill. `build()` rejects zero for either, and `max_records` above
    /// [`Self::MAX_RECORDS_LIMIT`].
    pub const fn new(max_records: usize, max_wait: Duration) -> Self {
        Self {
            max_records,
            max_wait,
        }
    }

    /// The most records in one batch.
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// How long the first record of a batch waits for others.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_records == 0 || self.max_records > Self::MAX_RECORDS_LIMIT {
            return Err(format!(
                "`max_records` is {}; it must be between 1 and {}",
                self.max_records,
                Self::MAX_RECORDS_LIMIT
            ));
        }
        if self.max_wait.is_zero() {
            return Err("`max_wait` must be above zero".into());
        }
        Ok(())
    }
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_RECORDS, Self::DEFAULT_MAX_WAIT)
    }
}

/// The records of one call of a batch handler, before decoding.
///
/// `#[kafka_handler(batch(..))]` turns it into the handler's argument with
/// [`FromBatch`]; a handler built by hand calls [`Batch::from_input`].
pub struct BatchInput<'r> {
    records: &'r [Record<'r>],
    shared: &'r Shared<'r>,
}

impl<'r> BatchInput<'r> {
    pub(crate) fn new(records: &'r [Record<'r>], shared: &'r Shared<'r>) -> Self {
        Self { records, shared }
    }

    /// The records, in offset order.
    pub fn records(&self) -> &'r [Record<'r>] {
        self.records
    }
}

impl std::fmt::Debug for BatchInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchInput")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

/// The argument type of a batch handler.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch of records",
    label = "a `batch(..)` handler takes one `Batch<T>` argument",
    note = "write the handler as `fn store(batch: Batch<'_, Json<Click>>)`, where `T` is any type a \
            single-record handler could take"
)]
pub trait FromBatch<'r>: Sized {
    /// Decodes the input; `None` when no record is left to hand the handler
    /// (every one failed to decode).
    fn from_batch(input: BatchInput<'r>) -> Option<Self>;
}

impl<'r, T: FromRecord<'r>> FromBatch<'r> for Batch<'r, T> {
    fn from_batch(input: BatchInput<'r>) -> Option<Self> {
        Batch::from_input(input)
    }
}

/// A batch of records of one partition, each decoded as `T` (any type a
/// single-record handler can take: `Json<Order>`, `&str`, `&RecordMeta`, ...).
///
/// Records that fail to decode are not in it: each has already failed, with
/// its own span, and goes to the handler's retries and dead-letter topic.
///
/// ```ignore
/// #[kafka_handler(topics = ["clicks"], group = "analytics",
///                 batch(max_records = 500, max_wait = "50ms"))]
/// async fn store(batch: Batch<'_, Json<Click>>) {
///     for click in &batch {
///         // Under this record's context and its own `process clicks` span.
///         // A failure fails this record only.
///         click.process_async(|c| db.insert(c)).await;
///     }
/// }
/// ```
pub struct Batch<'r, T> {
    records: Vec<BatchRecord<'r, T>>,
}

impl<'r, T: FromRecord<'r>> Batch<'r, T> {
    /// Decodes every record of `input` as `T`. A record that fails to decode
    /// fails (permanently: a deserialization error) and is left out; `None`
    /// when none is left.
    pub fn from_input(input: BatchInput<'r>) -> Option<Self> {
        let mut records = Vec::with_capacity(input.records.len());
        for (index, record) in input.records.iter().enumerate() {
            match T::from_record(record) {
                Ok(value) => records.push(BatchRecord {
                    value,
                    record,
                    index,
                    shared: input.shared,
                }),
                Err(error) => {
                    let span_cx = input.shared.record_span_failure(index, record, &error);
                    log_failure(input.shared.handler, record, input.shared.attempt, &error);
                    input.shared.failed(index, error, span_cx);
                }
            }
        }
        (!records.is_empty()).then_some(Self { records })
    }
}

impl<'r, T> Batch<'r, T> {
    /// How many records the handler gets.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch is empty (never, for a batch handed to a handler).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in offset order.
    pub fn iter(&self) -> std::slice::Iter<'_, BatchRecord<'r, T>> {
        self.records.iter()
    }

    /// The decoded values, in offset order, for handlers that work on the
    /// whole batch at once (a bulk insert). No record's context is current
    /// while they are used: the work belongs to the batch span.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.records.iter().map(|record| &record.value)
    }

    /// The topic the batch was read from.
    pub fn topic(&self) -> &'r str {
        self.records[0].record.topic()
    }

    /// The partition the batch was read from.
    pub fn partition(&self) -> i32 {
        self.records[0].record.partition()
    }
}

impl<'a, 'r, T> IntoIterator for &'a Batch<'r, T> {
    type Item = &'a BatchRecord<'r, T>;
    type IntoIter = std::slice::Iter<'a, BatchRecord<'r, T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}

impl<'r, T> IntoIterator for Batch<'r, T> {
    type Item = BatchRecord<'r, T>;
    type IntoIter = std::vec::IntoIter<BatchRecord<'r, T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

impl<T> std::fmt::Debug for Batch<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.records.iter().map(|r| r.record))
            .finish()
    }
}

/// One record of a [`Batch`]: its decoded value, and the scopes that run
/// code under its own trace.
pub struct BatchRecord<'r, T> {
    value: T,
    record: &'r Record<'r>,
    index: usize,
    shared: &'r Shared<'r>,
}

impl<'r, T> BatchRecord<'r, T> {
    /// The decoded value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The decoded value, by value.
    pub fn into_value(self) -> T {
        self.value
    }

    /// The record itself: topic, partition, offset, key, headers.
    pub fn record(&self) -> &'r Record<'r> {
        self.record
    }

    /// Runs `f` under this record's context and its own `process {topic}`
    /// span (a child of the record's producer, linked to the batch span):
    /// inside, `Context::current()` and `tracing::Span::current()` belong to
    /// this record.
    ///
    /// `f` returns `()` or `Result<(), E>`, like a handler. If it fails (or
    /// panics), the failure is recorded on the record's span and the record
    /// fails alone: after the handler returns it goes through the handler's
    /// retries and dead-letter topic, and the other records are not
    /// affected. The returned [`Processed`] says which happened; ignoring it
    /// is fine.
    ///
    /// Each call opens one span; call it once per record.
    pub fn process<O: IntoOutcome>(&self, f: impl FnOnce(&T) -> O) -> Processed {
        let run = || {
            std::panic::catch_unwind(AssertUnwindSafe(|| f(&self.value).into_outcome()))
                .unwrap_or_else(|panic| Err(HandlerError::panic(&*panic)))
        };
        let Some(span) = self.shared.record_span(self.index, self.record) else {
            // Retrying this record alone: its attempt's span is already
            // current around the whole handler.
            return self.settle(run(), None);
        };
        let outcome = span.in_scope(run);
        self.settle(outcome, Some(span))
    }

    /// The async form of [`process`](Self::process): the future `f` returns
    /// runs under this record's context and span on every poll, whatever
    /// worker thread polls it.
    pub async fn process_async<'s, O, F>(&'s self, f: impl FnOnce(&'s T) -> F) -> Processed
    where
        O: IntoOutcome,
        F: Future<Output = O>,
    {
        let run = AssertUnwindSafe(async move { f(&self.value).await.into_outcome() })
            .catch_unwind()
            .map(|outcome| outcome.unwrap_or_else(|panic| Err(HandlerError::panic(&*panic))));
        let Some(span) = self.shared.record_span(self.index, self.record) else {
            return self.settle(run.await, None);
        };
        let outcome = span.attach(run).await;
        self.settle(outcome, Some(span))
    }

    /// The publishing form of [`process_async`](Self::process_async), for a
    /// batch handler with `publish = "topic"`: what `f` returns (anything a
    /// single-record handler with `publish` may return) is produced to that
    /// topic under this record's `process` span, and the scope ends when the
    /// broker acknowledged every output. A failure of `f`, an output that
    /// cannot be encoded, or a send that fails fails this record alone, as
    /// in `process`; the batch ends (and is committed) after its records'
    /// outputs were acknowledged.
    pub async fn publish<'s, O, F>(&'s self, f: impl FnOnce(&'s T) -> F) -> Processed
    where
        O: Publish,
        F: Future<Output = O>,
    {
        let topic = self.shared.publish;
        let record = self.record;
        self.process_async(|value| async move {
            let Some(topic) = topic else {
                return Err(HandlerError::new(
                    ErrorKind::Publish,
                    "configuration",
                    "`publish` scope in a batch handler without a `publish` topic",
                ));
            };
            let outputs = f(value).await.into_encoded()?;
            crate::publish::publish(record, topic, outputs).await
        })
        .await
    }

    /// Fails this record without running code for it: it goes through the
    /// handler's retries and dead-letter topic alone, with `error` recorded
    /// on a `process {topic}` span in its own trace.
    pub fn fail(&self, error: HandlerError) {
        let span_cx = self
            .shared
            .record_span_failure(self.index, self.record, &error);
        log_failure(
            self.shared.handler,
            self.record,
            self.shared.attempt,
            &error,
        );
        self.shared.failed(self.index, error, span_cx);
    }

    fn settle(&self, outcome: Outcome, span: Option<ProcessSpan>) -> Processed {
        let Err(error) = outcome else {
            if let Some(span) = span {
                span.finish(None);
            }
            return Processed(None);
        };
        let span_cx = span.map(|span| {
            let cx = span.context().clone();
            span.in_scope(|| {
                log_failure(
                    self.shared.handler,
                    self.record,
                    self.shared.attempt,
                    &error,
                );
            });
            span.finish(Some(&error));
            cx
        });
        if span_cx.is_none() {
            log_failure(
                self.shared.handler,
                self.record,
                self.shared.attempt,
                &error,
            );
        }
        self.shared.failed(self.index, error.clone(), span_cx);
        Processed(Some(error))
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for BatchRecord<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRecord")
            .field("value", &self.value)
            .field("record", self.record)
            .finish_non_exhaustive()
    }
}

/// How one record's scope ended. Its failure is already recorded and the
/// record already scheduled for retries: there is nothing to propagate.
/// (Returning the error from the handler would fail the *whole* batch.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed(Option<HandlerError>);

impl Processed {
    /// Whether the record's code succeeded.
    pub fn is_ok(&self) -> bool {
        self.0.is_none()
    }

    /// The record's failure, if it failed.
    pub fn error(&self) -> Option<&HandlerError> {
        self.0.as_ref()
    }

    /// The outcome as a `Result`.
    pub fn into_result(self) -> Outcome {
        self.0.map_or(Ok(()), Err)
    }
}

/// What one call of a batch handler shares with its records' scopes.
pub(crate) struct Shared<'d> {
    handler: &'d str,
    /// The handler's `publish` topic.
    publish: Option<&'d str>,
    attempt: u32,
    mode: Mode<'d>,
    failures: Mutex<Vec<RecordFailure>>,
}

enum Mode<'d> {
    /// A delivery: each record's scope opens that record's own span.
    Delivery {
        scope: &'d SpanScope,
        parents: &'d [Context],
        batch: SpanContext,
    },
    /// One record retried alone: its attempt's span is current around the
    /// whole handler, and scopes open no other.
    Single,
}

/// One record's failure within a call.
pub(crate) struct RecordFailure {
    pub(crate) index: usize,
    pub(crate) error: HandlerError,
    /// The span the failure is recorded on (none when retrying alone: the
    /// attempt's span records it).
    span_cx: Option<Context>,
}

impl<'d> Shared<'d> {
    /// A delivery of records whose producers' contexts are `parents`, under
    /// the batch span `batch`.
    pub(crate) fn delivery(
        handler: &'d str,
        publish: Option<&'d str>,
        scope: &'d SpanScope,
        parents: &'d [Context],
        batch: SpanContext,
    ) -> Self {
        Self {
            handler,
            publish,
            attempt: 1,
            mode: Mode::Delivery {
                scope,
                parents,
                batch,
            },
            failures: Mutex::default(),
        }
    }

    /// Attempt `attempt` at one record, under its attempt's span.
    pub(crate) fn single(handler: &'d str, publish: Option<&'d str>, attempt: u32) -> Self {
        Self {
            handler,
            publish,
            attempt,
            mode: Mode::Single,
            failures: Mutex::default(),
        }
    }

    /// Starts the span of record `index` for a scope; `None` when retrying
    /// it alone.
    fn record_span(&self, index: usize, record: &Record<'_>) -> Option<ProcessSpan> {
        let Mode::Delivery {
            scope,
            parents,
            batch,
        } = &self.mode
        else {
            return None;
        };
        Some(ProcessSpan::start_with_parent(
            scope,
            record,
            self.attempt,
            parents[index].clone(),
            Some(batch),
        ))
    }

    /// Records `error` on a span of its own for record `index`, which failed
    /// outside a scope; the span's context, or `None` when retrying alone.
    fn record_span_failure(
        &self,
        index: usize,
        record: &Record<'_>,
        error: &HandlerError,
    ) -> Option<Context> {
        let span = self.record_span(index, record)?;
        let cx = span.context().clone();
        span.finish(Some(error));
        Some(cx)
    }

    fn failed(&self, index: usize, error: HandlerError, span_cx: Option<Context>) {
        let mut failures = lock(&self.failures);
        // A record that fails twice keeps its latest failure.
        failures.retain(|failure| failure.index != index);
        failures.push(RecordFailure {
            index,
            error,
            span_cx,
        });
    }

    /// Fails, with `error`, every record of `records` that has not failed
    /// on its own: the whole batch failed. One span per record, in its own
    /// trace.
    pub(crate) fn fail_all(&self, records: &[Record<'_>], error: &HandlerError) {
        let mut already = vec![false; records.len()];
        for failure in lock(&self.failures).iter() {
            already[failure.index] = true;
        }
        for (index, record) in records.iter().enumerate() {
            if !already[index] {
                let span_cx = self.record_span_failure(index, record, error);
                self.failed(index, error.clone(), span_cx);
            }
        }
    }

    /// The failed records, by index in offset order.
    pub(crate) fn into_failures(self) -> Vec<(usize, Failure)> {
        let mut failures = self
            .failures
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        failures.sort_unstable_by_key(|failure| failure.index);
        failures
            .into_iter()
            .map(|failure| {
                (
                    failure.index,
                    Failure {
                        error: failure.error,
                        span_cx: failure.span_cx.unwrap_or_default(),
                    },
                )
            })
            .collect()
    }

    /// When retrying one record alone: its failure, if its scope failed.
    pub(crate) fn single_outcome(self) -> Outcome {
        match self.into_failures().pop() {
            Some((_, failure)) => Err(failure.error),
            None => Ok(()),
        }
    }
}
