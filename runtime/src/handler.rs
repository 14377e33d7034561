//! Handler descriptors: what the runtime needs to drive one handler.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::batch::{BatchInput, BatchOptions};

use crate::outcome::Outcome;
use crate::record::Record;

/// The boxed future of an async handler, borrowing its record.
pub type HandlerFuture<'r> = Pin<Box<dyn Future<Output = Outcome> + Send + 'r>>;

type SyncFn = dyn Fn(&Record<'_>) -> Outcome + Send + Sync;
type AsyncFn = dyn for<'r> Fn(&'r Record<'r>) -> HandlerFuture<'r> + Send + Sync;
pub(crate) type BatchFn = dyn for<'r> Fn(BatchInput<'r>) -> HandlerFuture<'r> + Send + Sync;

/// How the runtime calls the user's function.
#[derive(Clone)]
pub(crate) enum Invoke {
    Sync(Arc<SyncFn>),
    Async(Arc<AsyncFn>),
    /// `is_async`: whether the future can be cancelled while the user's
    /// code runs (a synchronous batch function runs in one poll).
    Batch {
        f: Arc<BatchFn>,
        is_async: bool,
    },
}

/// Per-handler options beyond topics and group.
///
/// The same options as the attribute's keys; see the README's "When
/// handlers fail" for what they do together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// Record the record key as `messaging.kafka.message.key` (default: yes).
    /// Turn it off when keys carry personal data.
    pub record_key: bool,
    /// Attempts after the first before a record is given up on (default 3).
    /// A [permanent](crate::HandlerError::permanent) error skips them.
    pub retries: u32,
    /// The delay before each retry (default `100ms..10s`).
    pub backoff: Backoff,
    /// The dead-letter topic a given-up record is copied to (default none:
    /// the record is held, see [`Handler::with_dlq`]).
    pub dlq: Option<String>,
    /// The topic the handler's return value is produced to (default none),
    /// set by `#[kafka_handler(publish = "..")]`; see [`Handler::with_publish`].
    pub publish: Option<String>,
    /// How long one attempt of an async handler may run before it is
    /// cancelled and counted as a transient failure (default: no limit).
    /// For a batch handler, one call with its whole batch.
    pub timeout: Option<Duration>,
    /// How a batch handler's batches are cut (default: none, for a handler
    /// of one record; [`BatchOptions::default`] for a batch handler).
    pub batch: Option<BatchOptions>,
    /// Which of the handler's records may run beside each other (default
    /// [`ProcessingOrder::Partition`]).
    pub ordering: ProcessingOrder,
    /// The most records of this handler running at once in this process
    /// (default: [`Self::DEFAULT_MAX_IN_FLIGHT`] for a handler of one
    /// record, [`Self::DEFAULT_BATCHES_IN_FLIGHT`] batches' worth for a
    /// batch handler). A batch counts its records.
    pub max_in_flight: Option<usize>,
}

impl HandlerOptions {
    /// The default number of retries.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// The default `max_in_flight` of a handler of one record.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
    /// A batch handler's default `max_in_flight`, in batches of
    /// `max_records`.
    pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 8;
    /// The largest `max_in_flight` accepted.
    pub const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
}

/// Which records of one handler may run beside each other. Ordering is about
/// when a handler *starts*: a record starts only after its predecessor in
/// the same lane has ended (succeeded, or given up on after its retries).
///
/// | order | lane | what runs in parallel |
/// |---|---|---|
/// | `Partition` (default) | the partition | records of different partitions |
/// | `Key` | the key, within its partition | records of different keys, even in one partition |
/// | `Unordered` | none | any record of the handler beside any other |
///
/// In every order at most `max_in_flight` records of the handler run at
/// once, and offsets are committed as a watermark: never past a record that
/// has not ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessingOrder {
    /// One record in flight per partition, in offset order (`"partition"`).
    #[default]
    Partition,
    /// One record in flight per key within a partition, in offset order
    /// (`"key"`). Records without a key (null) share one lane per
    /// partition: they keep their offset order among themselves, and run
    /// beside records that have one.
    Key,
    /// No order (`"none"`): for idempotent work that does not care which
    /// record runs first.
    Unordered,
}

impl ProcessingOrder {
    /// The name in `#[kafka_handler(ordering = "..")]`: `partition`, `key`
    /// or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::Key => "key",
            Self::Unordered => "none",
        }
    }
}

impl fmt::Display for ProcessingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProcessingOrder {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "partition" => Ok(Self::Partition),
            "key" => Ok(Self::Key),
            "none" => Ok(Self::Unordered),
            other => Err(format!(
                "unknown ordering {other:?}; expected \"partition\", \"key\" or \"none\""
            )),
        }
    }
}

impl Default for HandlerOptions {
    fn default() -> Self {
        Self {
            record_key: true,
            retries: Self::DEFAULT_RETRIES,
            backoff: Backoff::default(),
            dlq: None,
            publish: None,
            timeout: None,
            batch: None,
            ordering: ProcessingOrder::Partition,
            max_in_flight: None,
        }
    }
}

/// A handler: a function plus the topics and group it consumes.
///
/// `#[kafka_handler]` generates one beside each annotated function; collect
/// them with [`handlers!`](crate::handlers). Without the macro, build one
/// with [`Handler::sync`] or [`Handler::asynchronous`].
#[derive(Clone)]
pub struct Handler {
    name: Cow<'static, str>,
    topics: Vec<String>,
    group: String,
    options: HandlerOptions,
    pub(crate) invoke: Invoke,
}

impl Handler {
    /// A handler around a synchronous function of the record.
    ///
    /// In a consumer, a synchronous handler runs on the group's task while
    /// its calls return within a millisecond, which costs nothing beyond the
    /// call. Once three calls in a row have taken longer (it blocks: a database
    /// driver, a blocking HTTP client), its calls move to Tokio's blocking
    /// pool for the rest of the run, each on a copy of its record, so that
    /// they no longer stall the async workers and run in parallel as far as
    /// their [`ProcessingOrder`] and `max_in_flight` allow.
    pub fn sync<F>(
        name: impl Into<Cow<'static, str>>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        group: impl Into<String>,
        f: F,
    ) -> Self
    where
        F: Fn(&Record<'_>) -> Outcome + Send + Sync + 'static,
    {
        Self::from_invoke(name, topics, group, Invoke::Sync(Arc::new(f)))
    }

    /// A handler around an async function of the record. The function
    /// returns a boxed future, `Box::pin(async move { .. })`.
    pub fn asynchronous<F>(
        name: impl Into<Cow<'static, str>>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        group: impl Into<String>,
        f: F,
    ) -> Self
    where
        F: for<'r> Fn(&'r Record<'r>) -> HandlerFuture<'r> + Send + Sync + 'static,
    {
        Self::from_invoke(name, topics, group, Invoke::Async(Arc::new(f)))
    }

    /// A batch handler: called with up to `max_records` records of one
    /// partition at a time (see [`Batch`](crate::Batch) and
    /// [`with_batch`](Self::with_batch)). The function decodes its input
    /// with [`Batch::from_input`](crate::Batch::from_input):
    ///
    /// ```ignore
    /// Handler::batch("store", ["clicks"], "analytics", |input| {
    ///     Box::pin(async move {
    ///         let Some(batch) = Batch::<Json<Click>>::from_input(input) else { return Ok(()) };
    ///         store(batch).await.into_outcome()
    ///     })
    /// })
    /// ```
    pub fn batch<F>(
        name: impl Into<Cow<'static, str>>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        group: impl Into<String>,
        f: F,
    ) -> Self
    where
        F: for<'r> Fn(BatchInput<'r>) -> HandlerFuture<'r> + Send + Sync + 'static,
    {
        let invoke = Invoke::Batch {
            f: Arc::new(f),
            is_async: true,
        };
        Self::from_invoke(name, topics, group, invoke).with_batch(BatchOptions::default())
    }

    /// Marks a batch handler's function as synchronous: its future does all
    /// its work in one poll, so it cannot be cancelled by a `timeout`.
    #[doc(hidden)]
    pub fn synchronous_batch(mut self) -> Self {
        if let Invoke::Batch { is_async, .. } = &mut self.invoke {
            *is_async = false;
        }
        self
    }

    fn from_invoke(
        name: impl Into<Cow<'static, str>>,
        topics: impl IntoIterator<Item = impl Into<String>>,
        group: impl Into<String>,
        invoke: Invoke,
    ) -> Self {
        Self {
            name: name.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            group: group.into(),
            options: HandlerOptions::default(),
            invoke,
        }
    }

    /// Replaces the handler's options.
    pub fn with_options(mut self, options: HandlerOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether to record the key as `messaging.kafka.message.key`.
    pub fn with_record_key(mut self, record_key: bool) -> Self {
        self.options.record_key = record_key;
        self
    }

    /// Attempts after the first before the record is given up on.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.options.retries = retries;
        self
    }

    /// The delay before each retry.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// The dead-letter topic: a record that failed every attempt, or failed
    /// permanently, is copied there (keeping its trace) and then committed.
    ///
    /// Without one, such a record is *held*: it is not committed, the
    /// records of its lane wait (the others keep flowing), and it is
    /// attempted again every `backoff.max()` until it succeeds or the
    /// consumer restarts. No record is ever skipped.
    pub fn with_dlq(mut self, topic: impl Into<String>) -> Self {
        self.options.dlq = Some(topic.into());
        self
    }

    /// Names the topic the handler publishes its return value to, for
    /// `--list` and `--check`. The macro's `publish = ".."` sets it and
    /// generates the publishing; a handler built by hand publishes through
    /// its [`TracedProducer`](crate::TracedProducer) argument and may name
    /// its output topic here so it is checked too.
    pub fn with_publish(mut self, topic: impl Into<String>) -> Self {
        self.options.publish = Some(topic.into());
        self
    }

    /// Cancels an attempt of an async handler that runs longer than
    /// `timeout`; it counts as a transient failure with `error.type =
    /// timeout`. A synchronous handler cannot be cancelled, so `build()`
    /// rejects a timeout on one.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// How the batches of a batch handler are cut. `build()` rejects it on
    /// a handler of one record.
    pub fn with_batch(mut self, batch: BatchOptions) -> Self {
        self.options.batch = Some(batch);
        self
    }

    /// Which of the handler's records may run beside each other (default
    /// [`ProcessingOrder::Partition`]).
    pub fn with_ordering(mut self, ordering: ProcessingOrder) -> Self {
        self.options.ordering = ordering;
        self
    }

    /// The most records of this handler running at once in this process
    /// (default [`HandlerOptions::DEFAULT_MAX_IN_FLIGHT`]; a batch counts
    /// its records). `build()` rejects zero, and less than a batch handler's
    /// `max_records`.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.options.max_in_flight = Some(max_in_flight);
        self
    }

    /// Replaces the handler's topics (for environment-specific topic names).
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the handler's consumer group.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The handler's name (the annotated function's path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topics the handler consumes.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The consumer group the handler consumes in.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The handler's options.
    pub fn options(&self) -> &HandlerOptions {
        &self.options
    }

    /// Whether the handler is an `async fn`.
    pub fn is_async(&self) -> bool {
        match self.invoke {
            Invoke::Sync(_) => false,
            Invoke::Async(_) => true,
            Invoke::Batch { is_async, .. } => is_async,
        }
    }

    /// Whether the handler takes batches of records.
    pub fn is_batch(&self) -> bool {
        matches!(self.invoke, Invoke::Batch { .. })
    }

    /// The most records of the handler running at once: its
    /// `max_in_flight`, or the default (for a batch handler, in batches of
    /// its `max_records`).
    pub fn max_in_flight(&self) -> usize {
        match (self.options.max_in_flight, self.batch_options()) {
            (Some(max), _) => max,
            (None, Some(batch)) => batch
                .max_records()
                .saturating_mul(HandlerOptions::DEFAULT_BATCHES_IN_FLIGHT),
            (None, None) => HandlerOptions::DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// A batch handler's batch options (the defaults when none were set);
    /// `None` for a handler of one record.
    pub(crate) fn batch_options(&self) -> Option<BatchOptions> {
        self.is_batch()
            .then(|| self.options.batch.unwrap_or_default())
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("options", &self.options)
            .field("async", &self.is_async())
            .field("batch", &self.is_batch())
            .finish()
    }
}

/// Implemented by the descriptor type `#[kafka_handler]` generates beside
/// each function (same name, type namespace). [`handlers!`](crate::handlers)
/// calls it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[kafka_handler]` function",
    note = "annotate the function with `#[kafka_handler(topics = [..], group = \"..\")]`"
)]
pub trait HandlerFactory {
    /// Builds the handler.
    fn handler() -> Handler;
}

/// Collects `#[kafka_handler]` functions into a `Vec<Handler>`.
///
/// ```ignore
/// let consumer = Consumer::builder().handlers(handlers![bill, audit]).build()?;
/// ```
#[macro_export]
macro_rules! handlers {
    ($($handler:path),* $(,)?) => {
        ::std::vec![$(<$handler as $crate::HandlerFactory>::handler()),*]
    };
}
