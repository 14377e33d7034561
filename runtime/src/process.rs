//! Running one handler on one record (or one batch) under the record's
//! trace: one attempt, with its `process {topic}` span.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;

use crate::batch::{BatchInput, Shared};
use crate::handler::{BatchFn, Handler, HandlerFuture, Invoke};
use crate::metrics::ProcessMetrics;
use crate::outcome::{log_failure, ErrorKind, Failure, HandlerError, Outcome};
use crate::propagation::extract_parent_context;
use crate::record::{OwnedRecord, Record};
use crate::span::{ProcessSpan, SpanScope, TopicNames};

/// A handler bound to its consumer identity (group, client id) and tracer:
/// the per-record wrapper of the contract.
///
/// The consumer builds one per handler. It is public so that handlers can be
/// driven without a broker, in unit tests and benchmarks:
///
/// ```ignore
/// let processor = Processor::new(handlers![bill].remove(0));
/// let outcome = processor.process(&Record::new("orders", 0, 42, None, Some(b"{}"), None)).await;
/// ```
///
/// Cloning is cheap: clones share the handler.
#[derive(Clone, Debug)]
pub struct Processor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handler: Handler,
    scope: SpanScope,
    /// Set by a running consumer; a processor driven on its own records no
    /// metrics.
    metrics: Option<ProcessMetrics>,
    /// Where a synchronous handler's calls run in a consumer; `None` for an
    /// async handler, or a processor driven directly.
    placement: Option<Placement>,
}

/// Where a consumer runs a synchronous handler's calls: on the group's task
/// while they return quickly, on Tokio's blocking pool once they do not.
///
/// A call that returns within [`INLINE_LIMIT`] costs nothing to run in
/// place, and handing it to another thread would cost more than the call.
/// A handler whose calls block (a database driver, a blocking HTTP client)
/// would stall the group's task and everything in flight on it: after
/// [`SLOW_CALLS`] calls in a row over the limit, the handler's calls move to
/// the blocking pool for the rest of the run, each on a copy of its record,
/// where they run in parallel as far as the handler's ordering and
/// `max_in_flight` allow.
#[derive(Debug, Default)]
struct Placement {
    slow_calls: AtomicU32,
    on_blocking_pool: AtomicBool,
}

/// The longest a synchronous handler's call may take on the group's task
/// without counting as slow.
const INLINE_LIMIT: Duration = Duration::from_millis(1);

/// How many slow calls in a row move a synchronous handler to the blocking
/// pool: on a loaded machine a quick call is now and then slow because its
/// thread was descheduled, but not several in a row; a handler that blocks
/// is slow on every call.
const SLOW_CALLS: u32 = 3;

impl Placement {
    /// Counts a call that took `elapsed` on the group's task.
    fn ran_inline(&self, elapsed: Duration, handler: &str) {
        if elapsed <= INLINE_LIMIT {
            if self.slow_calls.load(Ordering::Relaxed) != 0 {
                self.slow_calls.store(0, Ordering::Relaxed);
            }
            return;
        }
        let slow = self.slow_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if slow >= SLOW_CALLS && !self.on_blocking_pool.swap(true, Ordering::Relaxed) {
            tracing::info!(
                target: "kafka_handler",
                handler,
                last_call = ?elapsed,
                "synchronous handler blocks ({SLOW_CALLS} calls in a row over {INLINE_LIMIT:?}); \
                 its calls now run on the blocking pool, in parallel"
            );
        }
    }
}

impl Processor {
    /// Binds `handler` to its own group and the global tracer provider as it
    /// is now.
    pub fn new(handler: Handler) -> Self {
        let group = handler.group().to_owned();
        Self::with_identity(handler, group.into(), None, None)
    }

    /// The processor of a consumer of `group`: synchronous handlers run on
    /// the blocking pool, and attempts are measured in `metrics`.
    pub(crate) fn with_identity(
        handler: Handler,
        group: Arc<str>,
        client_id: Option<Arc<str>>,
        metrics: Option<ProcessMetrics>,
    ) -> Self {
        let scope = SpanScope {
            tracer: Arc::new(crate::attributes::tracer()),
            group,
            client_id,
            record_key: handler.options().record_key,
            topics: TopicNames::for_topics(handler.topics()),
            pass_through: OnceLock::new(),
        };
        // Only in a consumer (which always measures): a processor driven
        // directly runs its handler where it is awaited.
        let placement = (metrics.is_some() && !handler.is_async()).then(Placement::default);
        Self {
            inner: Arc::new(Inner {
                handler,
                scope,
                metrics,
                placement,
            }),
        }
    }

    /// Records an attempt at `records` newly delivered records of
    /// `topic`/`partition` that took `elapsed`, when metrics are on.
    fn measure(
        &self,
        elapsed: Duration,
        topic: &str,
        partition: i32,
        records: usize,
        error: Option<&HandlerError>,
    ) {
        if let Some(metrics) = &self.inner.metrics {
            metrics.attempted(
                topic,
                partition,
                records as u64,
                elapsed,
                error.map(|error| error.kind().as_str()),
            );
        }
    }

    /// The handler this processor drives.
    pub fn handler(&self) -> &Handler {
        &self.inner.handler
    }

    /// Handles one record: extract its context, activate it, open the
    /// `process {topic}` span, run the handler (catching panics), record the
    /// outcome, end the span, detach. One attempt: retries and dead letters
    /// are the consumer's job.
    ///
    /// A synchronous handler runs inside this call, on the caller's thread.
    ///
    /// Dropping the returned future cancels the handler; the span still ends,
    /// with `error.type = cancelled`, and no context stays attached.
    pub async fn process(&self, record: &Record<'_>) -> Outcome {
        self.attempt(record, 1)
            .await
            .map_err(|failure| failure.error)
    }

    /// Whether the handler's calls run on Tokio's blocking pool (see
    /// [`Placement`]).
    fn on_blocking_pool(&self) -> bool {
        self.inner
            .placement
            .as_ref()
            .is_some_and(|placement| placement.on_blocking_pool.load(Ordering::Relaxed))
    }

    /// Notes how long a call took where it ran.
    fn ran(&self, elapsed: Duration, on_blocking_pool: bool) {
        if let (Some(placement), false) = (&self.inner.placement, on_blocking_pool) {
            placement.ran_inline(elapsed, self.handler().name());
        }
    }

    /// Attempt number `attempt` (1-based) at `record`, measured when
    /// metrics are on.
    pub(crate) async fn attempt(&self, record: &Record<'_>, attempt: u32) -> Result<(), Failure> {
        let started = self.inner.metrics.is_some().then(Instant::now);
        let on_blocking_pool = self.on_blocking_pool();
        let outcome = if on_blocking_pool {
            let (this, owned) = (self.clone(), record.to_owned_record());
            let runtime = tokio::runtime::Handle::current();
            let run = move || runtime.block_on(this.run_attempt(&owned.record(), attempt));
            tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|error| Err(Failure::lost(&error)))
        } else {
            self.run_attempt(record, attempt).await
        };
        if let Some(started) = started {
            let elapsed = started.elapsed();
            self.ran(elapsed, on_blocking_pool);
            // A retried record was delivered before: counted once.
            self.measure(
                elapsed,
                record.topic(),
                record.partition(),
                usize::from(attempt == 1),
                outcome.as_ref().err().map(|failure| &failure.error),
            );
        }
        outcome
    }

    /// Attempt number `attempt` at `record`. A batch handler is called with
    /// a batch of this one record, under the attempt's span.
    async fn run_attempt(&self, record: &Record<'_>, attempt: u32) -> Result<(), Failure> {
        let span = ProcessSpan::start(&self.inner.scope, record, attempt);
        let outcome = match &self.inner.handler.invoke {
            Invoke::Sync(f) => span.in_scope(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| f(record)))
                    .unwrap_or_else(|panic| Err(HandlerError::panic(&*panic)))
            }),
            Invoke::Async(f) => self.run(f(record), &span).await,
            // Boxed: a batch handler's record is attempted alone only on
            // retries, and its state would sit in every attempt's.
            Invoke::Batch { f, .. } => Box::pin(self.run_alone(&**f, record, attempt, &span)).await,
        };
        let Err(error) = outcome else {
            span.finish(None);
            return Ok(());
        };
        span.in_scope(|| log_failure(self.handler().name(), record, attempt, &error));
        let span_cx = span.context().clone();
        span.finish(Some(&error));
        Err(Failure { error, span_cx })
    }

    /// A batch handler called with a batch of `record` alone, under `span`.
    async fn run_alone(
        &self,
        f: &BatchFn,
        record: &Record<'_>,
        attempt: u32,
        span: &ProcessSpan,
    ) -> Outcome {
        let shared = Shared::single(
            self.handler().name(),
            self.handler().options().publish.as_deref(),
            attempt,
        );
        let records = std::slice::from_ref(record);
        let outcome = self.run(f(BatchInput::new(records, &shared)), span).await;
        // A failure the record's scope reported is the attempt's.
        outcome.and_then(|()| shared.single_outcome())
    }

    /// One delivery of a batch handler: `records` are of one partition, in
    /// offset order. Opens the batch span, runs the handler under it, and
    /// returns the records that failed (by index), each with its failure
    /// recorded on a span in its own trace.
    pub(crate) async fn deliver(&self, records: &[Record<'_>]) -> Vec<(usize, Failure)> {
        if !self.on_blocking_pool() {
            let started = self.inner.placement.is_some().then(Instant::now);
            let failures = self.deliver_here(records).await;
            if let Some(started) = started {
                self.ran(started.elapsed(), false);
            }
            return failures;
        }
        let owned: Vec<OwnedRecord> = records.iter().map(Record::to_owned_record).collect();
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let delivery = tokio::task::spawn_blocking(move || {
            let records: Vec<Record<'_>> = owned.iter().map(OwnedRecord::record).collect();
            runtime.block_on(this.deliver_here(&records))
        });
        delivery.await.unwrap_or_else(|error| {
            let error = Failure::lost(&error);
            (0..records.len())
                .map(|index| (index, error.clone()))
                .collect()
        })
    }

    async fn deliver_here(&self, records: &[Record<'_>]) -> Vec<(usize, Failure)> {
        let Invoke::Batch { f, .. } = &self.inner.handler.invoke else {
            unreachable!("batches are cut only for batch handlers");
        };
        let Some(first) = records.first() else {
            return Vec::new();
        };
        let started = self.inner.metrics.is_some().then(Instant::now);
        let parents: Vec<Context> = records
            .iter()
            .map(|record| extract_parent_context(record.headers()))
            .collect();
        let scope = &self.inner.scope;
        let span = ProcessSpan::start_batch(scope, first.topic(), first.partition(), &parents);
        let batch = span.context().span().span_context().clone();
        let shared = Shared::delivery(
            self.handler().name(),
            self.handler().options().publish.as_deref(),
            scope,
            &parents,
            batch,
        );
        let outcome = self.run(f(BatchInput::new(records, &shared)), &span).await;
        if let Err(error) = &outcome {
            span.in_scope(|| {
                tracing::warn!(
                    target: "kafka_handler",
                    handler = self.handler().name(),
                    topic = first.topic(),
                    partition = first.partition(),
                    first_offset = first.offset(),
                    records = records.len(),
                    error.type = error.kind().as_str(),
                    error = %error.message(),
                    "batch handling failed; each of its records is retried alone"
                );
            });
            shared.fail_all(records, error);
        }
        span.finish(outcome.as_ref().err());
        self.measure(
            started.map_or(Duration::ZERO, |started| started.elapsed()),
            first.topic(),
            first.partition(),
            records.len(),
            outcome.as_ref().err(),
        );
        shared.into_failures()
    }

    /// Runs an async handler's future under `span` (current on every poll,
    /// whatever worker thread runs it), catching panics, within the
    /// handler's timeout.
    async fn run(&self, handler: HandlerFuture<'_>, span: &ProcessSpan) -> Outcome {
        let run = AssertUnwindSafe(handler).catch_unwind();
        let timeout = self.handler().options().timeout;
        let limited = async move {
            match timeout {
                None => run.await,
                // Boxed: its timer would otherwise sit in every attempt's
                // state, with a timeout or without.
                Some(limit) => Box::pin(tokio::time::timeout(limit, run))
                    .await
                    .unwrap_or_else(|_elapsed| Ok(Err(timed_out(limit)))),
            }
        };
        span.attach(limited)
            .await
            .unwrap_or_else(|panic| Err(HandlerError::panic(&*panic)))
    }
}

fn timed_out(limit: Duration) -> HandlerError {
    HandlerError::new(
        ErrorKind::Timeout,
        "timeout",
        format!("the attempt ran past the handler's {limit:?} timeout and was cancelled"),
    )
}
