//! The consumer: one rdkafka consumer per group, a poll loop that hands each
//! record to its handler in partition order, and at-least-once commits.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{abortable, AbortHandle, Abortable, Aborted, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::time::Instant;

use crate::commit::{self, OffsetTracker};
use crate::dead_letter::{DeadLetterConfig, DeadLetters};
use crate::error::{self, Error};
use crate::gather::{Batch, Gathering};
use crate::handler::{Handler, HandlerOptions, ProcessingOrder};
use crate::health::{GroupHealth, Health};
use crate::metrics::{Metrics, PartitionLag, ProcessMetrics};
use crate::outcome::Failure;
use crate::process::Processor;
use crate::producer::{self, ProducerSlot, TracedProducer};
use crate::record::Record;
use crate::retry::Resolver;
use crate::shutdown::Shutdown;

/// The environment variable read for the bootstrap servers when the builder
/// is given none.
pub const BROKERS_ENV: &str = "KAFKA_BROKERS";

/// Properties kafka-handler owns: it commits offsets itself, after handling.
const OWNED_PROPERTIES: [(&str, &str); 2] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

/// librdkafka's statistics feed the lag metric and tell readiness that
/// commits go through; every 5 s unless `statistics.interval.ms` is set.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_millis(300_000);

/// Builds a [`Consumer`].
#[derive(Debug)]
#[must_use]
pub struct ConsumerBuilder {
    handlers: Vec<Handler>,
    brokers: Option<String>,
    group: Option<String>,
    properties: Vec<(String, String)>,
    dead_letter_properties: Vec<(String, String)>,
    commit_interval: Duration,
    shutdown_timeout: Duration,
    tracer_provider: Option<SdkTracerProvider>,
    producer: Option<TracedProducer>,
}

impl Default for ConsumerBuilder {
    fn default() -> Self {
        Self {
            handlers: Vec::new(),
            brokers: None,
            group: None,
            properties: Vec::new(),
            dead_letter_properties: Vec::new(),
            commit_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            tracer_provider: None,
            producer: None,
        }
    }
}

impl ConsumerBuilder {
    /// Adds one handler.
    pub fn handler(mut self, handler: Handler) -> Self {
        self.handlers.push(handler);
        self
    }

    /// Adds handlers, typically `handlers![a, b]`.
    pub fn handlers(mut self, handlers: impl IntoIterator<Item = Handler>) -> Self {
        self.handlers.extend(handlers);
        self
    }

    /// The bootstrap servers. Default: the `KAFKA_BROKERS` environment variable.
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = Some(brokers.into());
        self
    }

    /// Runs every handler in this group instead of its own.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets any librdkafka consumer property, passed through unchanged
    /// (`session.timeout.ms`, `security.protocol`, ...). Later calls win.
    ///
    /// `enable.auto.commit` and `enable.auto.offset.store` are owned by
    /// kafka-handler (both `false`: offsets are committed after handling);
    /// setting them to anything else is a configuration error.
    /// `auto.offset.reset` defaults to `earliest`, so a new group does not
    /// skip records produced before it first joined.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Sets a librdkafka property of the dead-letter producer. It starts
    /// from the consumer's connection properties (`bootstrap.servers`,
    /// `client.id`, `security.*`, `sasl.*`, `ssl.*`, `socket.*`, ...) with
    /// `enable.idempotence=true`, `message.timeout.ms=30000` and
    /// `message.max.bytes=104857600`; this overrides any of them.
    pub fn dead_letter_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.dead_letter_properties.push((key.into(), value.into()));
        self
    }

    /// How often handled offsets are committed in the background (default 5 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// How long a record in flight may keep running after shutdown is
    /// triggered (default 30 s). Past it the handler is cancelled and its
    /// record is not committed, so it is handled again after a restart.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The producer handlers get when they take a `&TracedProducer`
    /// argument. Default: one per group, created on first use from the
    /// consumer's connection properties (`bootstrap.servers`, `client.id`,
    /// `security.*`, `sasl.*`, `ssl.*`, ...) and the dead-letter producer's
    /// defaults (`enable.idempotence=true`, ...).
    pub fn producer(mut self, producer: TracedProducer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// The tracer provider to flush when the consumer stops.
    pub fn tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider);
        self
    }

    /// Validates the configuration and creates one Kafka consumer per group.
    pub fn build(self) -> Result<Consumer, Error> {
        if self.handlers.is_empty() {
            return Err(Error::Config(
                "no handlers: add at least one with `.handlers(handlers![..])`".into(),
            ));
        }
        let brokers = match self.brokers {
            Some(brokers) => brokers,
            None => std::env::var(BROKERS_ENV).map_err(|_| {
                Error::Config(format!(
                    "no brokers: call `.brokers(\"host:9092\")` or set {BROKERS_ENV}"
                ))
            })?,
        };
        for (key, value) in &self.properties {
            if let Some((_, owned)) = OWNED_PROPERTIES.iter().find(|(k, _)| k == key) {
                if value != owned {
                    return Err(Error::Config(format!(
                        "`{key}={value}` is not supported: kafka-handler commits offsets itself, \
                         only after a record is handled (remove the property)"
                    )));
                }
            }
        }
        let client_id = self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "client.id")
            .map(|(_, v)| Arc::<str>::from(v.as_str()));

        let mut groups: Vec<GroupConsumer> = Vec::new();
        for handler in self.handlers {
            let group = self
                .group
                .clone()
                .unwrap_or_else(|| handler.group().to_owned());
            if group.is_empty() {
                return Err(Error::Config(format!(
                    "handler `{}` has an empty group",
                    handler.name()
                )));
            }
            check_options(&handler)?;
            let index = match groups.iter().position(|g| g.group == group) {
                Some(index) => index,
                None => {
                    groups.push(GroupConsumer::new(group.clone()));
                    groups.len() - 1
                }
            };
            groups[index].add(handler, client_id.clone())?;
        }

        let timings = Timings {
            commit_interval: self.commit_interval,
            shutdown_timeout: self.shutdown_timeout,
        };
        if !self.dead_letter_properties.is_empty() {
            // Checked even when no handler has a `dlq` yet: a typo should
            // not wait for the first dead letter to surface.
            DeadLetterConfig::new(
                "".into(),
                &ClientConfig::new(),
                &self.dead_letter_properties,
            )
            .validate()?;
        }
        let mut runs = Vec::with_capacity(groups.len());
        for group in groups {
            runs.push(group.configure(
                &brokers,
                &self.properties,
                &self.dead_letter_properties,
                self.producer.clone(),
                timings,
            )?);
        }
        let health = Health::new(runs.iter().map(|group| group.health.clone()).collect());
        Ok(Consumer {
            groups: runs,
            tracer_provider: self.tracer_provider,
            health,
        })
    }
}

/// Consumes the handlers' topics, one Kafka consumer per group, until shut down.
pub struct Consumer {
    groups: Vec<ConnectedGroup>,
    tracer_provider: Option<SdkTracerProvider>,
    health: Health,
}

/// How often a group commits, and how long a record in flight may run
/// after shutdown is triggered.
#[derive(Clone, Copy, Debug)]
struct Timings {
    commit_interval: Duration,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field(
                "groups",
                &self.groups.iter().map(|g| &*g.group).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A builder; see [`ConsumerBuilder`].
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// The consumer's health, for liveness and readiness probes. Take it
    /// before calling [`run`](Self::run); it stays valid while the consumer runs.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Consumes until `shutdown` is triggered, then finishes the records in
    /// flight (within the shutdown timeout), commits, and flushes spans.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        // Each group on its own task: a slow handler in one group does not
        // hold up the others.
        let mut tasks = tokio::task::JoinSet::new();
        let mut healths = Vec::with_capacity(self.groups.len());
        for mut group in self.groups {
            let shutdown = shutdown.clone();
            let health = group.health.clone();
            let task = tasks.spawn(async move {
                let result = group.run(&shutdown).await;
                let error = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                group.health.stopped(error);
                result
            });
            healths.push((task.id(), health));
        }
        let mut result = Ok(());
        while let Some(finished) = tasks.join_next_with_id().await {
            let outcome = finished
                .map(|(_, outcome)| outcome)
                .unwrap_or_else(|join_error| {
                    let error = Error::Task(format!(
                        "a consumer group task stopped unexpectedly: {join_error}"
                    ));
                    if let Some((_, health)) = healths.iter().find(|(id, _)| *id == join_error.id())
                    {
                        health.stopped(Some(&error));
                    }
                    Err(error)
                });
            if let Err(error) = outcome {
                // One group failing stops the others (they commit and stop
                // cleanly): the consumer as a whole no longer does its job.
                tracing::error!(target: "kafka_handler", %error, "consumer group failed; stopping");
                shutdown.trigger();
                if result.is_ok() {
                    result = Err(error);
                }
            }
        }
        if let Some(provider) = &self.tracer_provider {
            if let Err(err) = provider.force_flush() {
                tracing::warn!(target: "kafka_handler", error = %err, "flushing spans failed");
            }
        }
        result
    }
}

/// A group's handlers before its Kafka consumer exists.
struct GroupConsumer {
    group: String,
    processors: Vec<Processor>,
    routes: Vec<(String, usize)>,
}

impl GroupConsumer {
    fn new(group: String) -> Self {
        Self {
            group,
            processors: Vec::new(),
            routes: Vec::new(),
        }
    }

    fn add(&mut self, handler: Handler, client_id: Option<Arc<str>>) -> Result<(), Error> {
        if handler.topics().is_empty() {
            return Err(Error::Config(format!(
                "handler `{}` has no topics",
                handler.name()
            )));
        }
        let index = self.processors.len();
        for topic in handler.topics() {
            if let Some((_, other)) = self.routes.iter().find(|(t, _)| t == topic) {
                return Err(Error::Config(format!(
                    "handlers `{}` and `{}` both consume topic `{topic}` in group `{}`: \
                     a group delivers each record once, so give one of them another group",
                    self.processors[*other].handler().name(),
                    handler.name(),
                    self.group
                )));
            }
            self.routes.push((topic.clone(), index));
        }
        self.processors.push(Processor::with_identity(
            handler,
            self.group.as_str().into(),
            client_id,
        ));
        Ok(())
    }

    /// Builds the group's client configuration and has librdkafka validate
    /// it. The Kafka consumer itself is created by [`ConnectedGroup::run`],
    /// inside the async runtime: rdkafka's stream consumer spawns a task.
    fn configure(
        self,
        brokers: &str,
        properties: &[(String, String)],
        dead_letter_properties: &[(String, String)],
        producer: Option<TracedProducer>,
        timings: Timings,
    ) -> Result<ConnectedGroup, Error> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", &self.group)
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        for (key, value) in properties {
            config.set(key, value);
        }
        for (key, value) in OWNED_PROPERTIES {
            config.set(key, value);
        }
        // rdkafka derives librdkafka's log level from the `log` crate's,
        // which is `Error` when only `tracing` is set up. Readiness needs
        // the warnings: a failed async commit is only a `COMMITFAIL` one.
        if (config.log_level as i32) < RDKafkaLogLevel::Warning as i32 {
            config.set_log_level(RDKafkaLogLevel::Warning);
        }
        config.create_native_config().map_err(|err| {
            Error::kafka(
                format!("configuring the consumer for group `{}`", self.group),
                err,
            )
        })?;
        let dead_letters = self
            .processors
            .iter()
            .any(|p| p.handler().options().dlq.is_some())
            .then(|| {
                let dead_letter = DeadLetterConfig::new(
                    self.group.as_str().into(),
                    &config,
                    dead_letter_properties,
                );
                dead_letter.validate().map(|()| dead_letter)
            })
            .transpose()?;
        let producer = match producer {
            Some(producer) => ProducerSlot::ready(producer),
            None => ProducerSlot::lazy(producer::config_for(&config, &[])),
        };
        let max_poll_interval = config
            .get("max.poll.interval.ms")
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(DEFAULT_MAX_POLL_INTERVAL, Duration::from_millis);
        Ok(ConnectedGroup {
            health: GroupHealth::new(self.group.clone(), max_poll_interval),
            group: self.group,
            processors: self.processors,
            routes: self.routes,
            config,
            dead_letters,
            producer,
            timings,
        })
    }
}

/// A group with its validated client configuration.
struct ConnectedGroup {
    group: String,
    processors: Vec<Processor>,
    routes: Vec<(String, usize)>,
    config: ClientConfig,
    dead_letters: Option<DeadLetterConfig>,
    /// The producer handlers can take as an argument.
    producer: ProducerSlot,
    timings: Timings,
    health: Arc<GroupHealth>,
}

/// A group while it runs: its Kafka consumer and offsets.
struct RunningGroup<'g> {
    group: &'g ConnectedGroup,
    consumer: StreamConsumer<GroupContext>,
    tracker: Arc<Mutex<OffsetTracker>>,
    dead_letters: Option<DeadLetters>,
    metrics: Metrics,
}

/// Records being retried (or dead-lettered) on their paused partition,
/// abortable when the partition is revoked.
type Lane<'g> = Abortable<BoxFuture<'g, Resolved>>;

/// A lane's records need no more attempts: the partition is handled up to
/// `offset`.
struct Resolved {
    topic: String,
    partition: i32,
    offset: i64,
}

impl ConnectedGroup {
    fn processor_for(&self, topic: &str) -> Option<&Processor> {
        self.routes
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, index)| &self.processors[*index])
    }

    async fn run(&mut self, shutdown: &Shutdown) -> Result<(), Error> {
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let metrics = Metrics::new();
        let group: Arc<str> = self.group.as_str().into();
        for processor in &mut self.processors {
            processor.set_metrics(ProcessMetrics::new(metrics.clone(), group.clone()));
        }
        let dead_letters = self
            .dead_letters
            .as_ref()
            .map(|config| config.create(metrics.clone(), self.health.clone()))
            .transpose()?;
        // The consumer's context owns the lags; the gauge only looks.
        let lags = Arc::new(Mutex::new(Vec::new()));
        Metrics::observe_lag(Arc::downgrade(&lags));
        let context = GroupContext {
            group: self.group.clone(),
            tracker: tracker.clone(),
            revoked: Mutex::default(),
            any_revoked: AtomicBool::new(false),
            health: self.health.clone(),
            lags,
            last_error: Mutex::default(),
        };
        let consumer: StreamConsumer<GroupContext> =
            self.config.create_with_context(context).map_err(|err| {
                Error::kafka(
                    format!("creating the consumer for group `{}`", self.group),
                    err,
                )
            })?;
        RunningGroup {
            group: self,
            consumer,
            tracker,
            dead_letters,
            metrics,
        }
        .run(shutdown)
        .await
    }
}

impl<'s> RunningGroup<'s> {
    async fn run(&'s self, shutdown: &Shutdown) -> Result<(), Error> {
        let topics: Vec<&str> = self.group.routes.iter().map(|(t, _)| t.as_str()).collect();
        self.consumer.subscribe(&topics).map_err(|err| {
            Error::kafka(
                format!("subscribing group `{}` to {topics:?}", self.group.group),
                err,
            )
        })?;
        tracing::info!(target: "kafka_handler", group = %self.group.group, ?topics, "consumer started");
        let health = &self.group.health;
        health.started();

        // One long-lived stream: `recv()` would register and unregister a
        // waker (two mutex locks) per message.
        let mut stream = self.consumer.stream();
        let commit_interval = self.group.timings.commit_interval;
        let mut next_commit = Instant::now() + commit_interval;
        // An idle loop still turns (and polls) often enough for liveness.
        let heartbeat = health.max_poll_interval() / 2;
        let mut waiting = Waiting::default();
        let mut lanes: FuturesUnordered<Lane<'s>> = FuturesUnordered::new();
        let mut stopped_by = None;
        // When the last record's attempt ended: the next turn's time.
        let mut ended = None;
        'poll: while !shutdown.is_triggered() {
            // One clock read per turn (or the last attempt's end), for
            // liveness, commits, batches and the next record's duration.
            let now = ended.take().unwrap_or_else(Instant::now);
            health.turned(now.into_std());
            self.commit_if_due(now, &mut next_commit);
            if !lanes.is_empty() {
                // Lanes progress on every turn, also while the stream
                // always has a message ready.
                while let Some(Some(resolved)) = lanes.next().now_or_never() {
                    self.resolved(resolved, &mut waiting, &mut lanes);
                }
            }
            if !waiting.gathering.is_empty() {
                // Batches past their `max_wait` go out, also while the
                // stream always has a message ready.
                while let Some(batch) = waiting.gathering.take_due(now) {
                    if !self
                        .deliver(batch, shutdown, &mut waiting, &mut lanes)
                        .await
                    {
                        break 'poll;
                    }
                }
            }
            // The record's duration starts with the turn that took it (its
            // poll included), or when it arrived, after a wait.
            let mut taken = now;
            let polled = match stream.next().now_or_never() {
                Some(polled) => polled,
                None => {
                    let batch_due = waiting.gathering.next_deadline();
                    tokio::select! {
                        polled = stream.next() => {
                            taken = Instant::now();
                            polled
                        }
                        Some(resolved) = lanes.next(), if !lanes.is_empty() => {
                            self.resolved(resolved, &mut waiting, &mut lanes);
                            continue;
                        }
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep_until(next_commit.min(now + heartbeat)) => continue,
                        () = sleep_until_some(batch_due) => continue,
                    }
                }
            };
            // Rebalance callbacks run inside the poll: drop the lanes and
            // open batches of partitions this member lost before anything
            // else.
            self.drop_revoked(&mut waiting);
            let message = match polled {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    if let Some(error) = self.stopping_error(&err) {
                        stopped_by = Some(error);
                        break;
                    }
                    tracing::warn!(target: "kafka_handler", group = %self.group.group, error = %err, "consumer error");
                    continue;
                }
                None => break,
            };
            // rdkafka measures and checks the topic name on every call.
            let topic = message.topic();
            if let Some(partition) = waiting.held.find_mut(topic, message.partition()) {
                // Fetched before the pause took effect: keep it, in order,
                // behind the record being retried.
                partition.pending.push_back(message.detach());
                continue;
            }
            let Some(processor) = self.group.processor_for(topic) else {
                tracing::warn!(
                    target: "kafka_handler",
                    topic,
                    "record from a topic no handler consumes; skipped"
                );
                self.mark_done(topic, message.partition(), message.offset());
                continue;
            };
            if let Some(options) = processor.handler().batch_options() {
                let (max_records, max_wait) = (options.max_records(), options.max_wait());
                let Some(batch) = waiting
                    .gathering
                    .push(processor, max_records, max_wait, message)
                else {
                    continue;
                };
                if !self
                    .deliver(batch, shutdown, &mut waiting, &mut lanes)
                    .await
                {
                    break;
                }
            } else {
                ended = self
                    .handle(
                        processor,
                        &message,
                        taken,
                        shutdown,
                        &mut waiting,
                        &mut lanes,
                    )
                    .await;
                if ended.is_none() {
                    break;
                }
            }
        }
        if !waiting.gathering.is_empty() {
            tracing::info!(
                target: "kafka_handler",
                group = %self.group.group,
                records = waiting.gathering.records(),
                "stopping with records waiting for their batch; they stay uncommitted and are \
                 handled after a restart"
            );
        }
        drop(waiting);
        drop(stream);
        if !lanes.is_empty() {
            tracing::info!(
                target: "kafka_handler",
                group = %self.group.group,
                records = lanes.len(),
                "stopping with records still being retried; they stay uncommitted and are \
                 handled again after a restart"
            );
        }
        drop(lanes);
        let committed = self.commit_final();
        match stopped_by {
            Some(error) => {
                if let Err(err) = committed {
                    tracing::warn!(target: "kafka_handler", group = %self.group.group, error = %err, "final commit failed");
                }
                Err(error)
            }
            None => committed,
        }
    }

    /// The error that stops the group when its consumer reports `err`:
    /// authentication and authorization failures, and fatal client errors.
    fn stopping_error(&self, err: &KafkaError) -> Option<Error> {
        let topics: Vec<&str> = self.group.routes.iter().map(|(t, _)| t.as_str()).collect();
        // librdkafka's text for the error, when its error callback just gave it.
        let reason = crate::lock(&self.consumer.context().last_error)
            .take()
            .filter(|(code, _)| err.rdkafka_error_code() == Some(*code))
            .map(|(_, reason)| reason);
        error::stopping_error(
            &self.group.group,
            &topics,
            err,
            reason.as_deref(),
            self.consumer.client().fatal_error(),
        )
    }

    /// Handles one message's first attempt, taken up at `taken`; when it
    /// ended, or `None` when its handler was cancelled at shutdown. A
    /// failed record is handed to a lane on its paused partition.
    async fn handle(
        &'s self,
        processor: &'s Processor,
        message: &BorrowedMessage<'_>,
        taken: Instant,
        shutdown: &Shutdown,
        waiting: &mut Waiting<'s>,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) -> Option<Instant> {
        let record = Record::from_message(message).with_producer(&self.group.producer);
        let attempt = finish_within(
            processor.attempt_timed(&record, 1, taken.into_std()),
            shutdown,
            self.group.timings.shutdown_timeout,
        );
        let Some((outcome, ended)) = self.beside_lanes(attempt, waiting, lanes).await else {
            tracing::warn!(
                target: "kafka_handler",
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                "handler cancelled at shutdown; the record stays uncommitted"
            );
            return None;
        };
        match outcome {
            Ok(()) => self.mark_done(record.topic(), record.partition(), record.offset()),
            Err(failure) => {
                let offset = record.offset();
                self.hold(
                    vec![(message.detach(), Some(failure))],
                    offset,
                    waiting,
                    lanes,
                );
            }
        }
        Some(Instant::from_std(ended))
    }

    /// Delivers one batch (records of one partition, in order) to its
    /// handler; `false` when the handler was cancelled at shutdown. The
    /// records before the first failed one are done at once; the failed
    /// ones are handed to a lane on the paused partition, and the rest of
    /// the batch is done once they are resolved.
    async fn deliver(
        &'s self,
        Batch {
            processor,
            messages: batch,
        }: Batch<'s>,
        shutdown: &Shutdown,
        waiting: &mut Waiting<'s>,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) -> bool {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return true;
        };
        let (topic, partition, last_offset) = (first.topic(), first.partition(), last.offset());
        let records: Vec<Record<'_>> = batch
            .iter()
            .map(|message| Record::from_message(message).with_producer(&self.group.producer))
            .collect();
        let delivery = finish_within(
            processor.deliver(&records),
            shutdown,
            self.group.timings.shutdown_timeout,
        );
        let Some(failures) = self.beside_lanes(delivery, waiting, lanes).await else {
            tracing::warn!(
                target: "kafka_handler",
                topic,
                partition,
                first_offset = first.offset(),
                records = batch.len(),
                "batch handler cancelled at shutdown; its records stay uncommitted"
            );
            return false;
        };
        let Some((first_failed, _)) = failures.first() else {
            self.mark_done(topic, partition, last_offset);
            return true;
        };
        if *first_failed > 0 {
            self.mark_done(topic, partition, batch[first_failed - 1].offset());
        }
        let failed = failures
            .into_iter()
            .map(|(index, failure)| (batch[index].detach(), Some(failure)))
            .collect();
        self.hold(failed, last_offset, waiting, lanes);
        true
    }

    /// Runs `inline` to completion while the lanes of retried records keep
    /// their schedule.
    async fn beside_lanes<T>(
        &'s self,
        inline: impl Future<Output = T>,
        waiting: &mut Waiting<'s>,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) -> T {
        let mut inline = std::pin::pin!(inline);
        loop {
            if lanes.is_empty() {
                return inline.await;
            }
            tokio::select! {
                biased;
                finished = &mut inline => return finished,
                Some(resolved) = lanes.next() => self.resolved(resolved, waiting, lanes),
            }
        }
    }

    fn mark_done(&self, topic: &str, partition: i32, offset: i64) {
        crate::lock(&self.tracker).mark_done(topic, partition, offset);
    }

    /// Pauses the partition of `records` (failed records of one partition,
    /// in order) and starts its lane, which resolves them and then marks
    /// `done` handled.
    fn hold(
        &'s self,
        records: Vec<(OwnedMessage, Option<Failure>)>,
        done: i64,
        waiting: &mut Waiting<'s>,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) {
        let Some((first, _)) = records.first() else {
            return;
        };
        let (topic, partition) = (first.topic().to_owned(), first.partition());
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, partition);
        if let Err(err) = self.consumer.pause(&list) {
            tracing::warn!(target: "kafka_handler", group = %self.group.group, topic, partition, error = %err, "pausing a partition failed");
        }
        let abort = self.start_lane(records, done, lanes);
        waiting.held.partitions.push(HeldPartition {
            topic,
            partition,
            abort,
            pending: VecDeque::new(),
        });
    }

    /// Starts a lane that resolves `records` one after the other (each with
    /// the failure of its first attempt, or `None` when it has not been
    /// attempted), then reports `done` handled.
    fn start_lane(
        &'s self,
        records: Vec<(OwnedMessage, Option<Failure>)>,
        done: i64,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) -> AbortHandle {
        let resolver = Resolver {
            group: &self.group.group,
            dead_letters: self.dead_letters.as_ref(),
            metrics: &self.metrics,
            producer: &self.group.producer,
        };
        let (topic, partition) = records
            .first()
            .map(|(message, _)| (message.topic().to_owned(), message.partition()))
            .unwrap_or_default();
        let processor = self.group.processor_for(&topic);
        let lane = async move {
            if let Some(processor) = processor {
                for (message, failure) in records {
                    resolver.resolve(processor, &message, failure).await;
                }
            }
            Resolved {
                topic,
                partition,
                offset: done,
            }
        };
        let (lane, abort) = abortable(lane.boxed());
        lanes.push(lane);
        abort
    }

    /// A lane finished: its records may be committed; the partition's next
    /// pending record gets a lane, or the partition resumes.
    fn resolved(
        &'s self,
        resolved: Result<Resolved, Aborted>,
        waiting: &mut Waiting<'s>,
        lanes: &mut FuturesUnordered<Lane<'s>>,
    ) {
        // Aborted: its partition was revoked, and already forgotten.
        let Ok(resolved) = resolved else { return };
        // A revoke may have run in the same poll that completed this lane:
        // never mark an offset of a partition this member no longer owns.
        self.drop_revoked(waiting);
        let held = &mut waiting.held;
        let Some(index) = held.position(&resolved.topic, resolved.partition) else {
            return;
        };
        tracing::debug!(target: "kafka_handler", topic = %resolved.topic, partition = resolved.partition, offset = resolved.offset, "records resolved");
        self.mark_done(&resolved.topic, resolved.partition, resolved.offset);
        if let Some(next) = held.partitions[index].pending.pop_front() {
            let offset = next.offset();
            held.partitions[index].abort = self.start_lane(vec![(next, None)], offset, lanes);
            return;
        }
        let partition = held.partitions.swap_remove(index);
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.topic, partition.partition);
        if let Err(err) = self.consumer.resume(&list) {
            tracing::warn!(target: "kafka_handler", group = %self.group.group, topic = %partition.topic, partition = partition.partition, error = %err, "resuming a partition failed");
        }
    }

    /// Aborts the lanes, and drops the open batches, of partitions revoked
    /// since the last poll.
    fn drop_revoked(&self, waiting: &mut Waiting<'_>) {
        let context = self.consumer.context();
        // One atomic load per message; the swap and the lock only after a
        // revoke.
        if !context.any_revoked.load(Ordering::Acquire)
            || !context.any_revoked.swap(false, Ordering::AcqRel)
        {
            return;
        }
        let revoked = std::mem::take(&mut *crate::lock(&context.revoked));
        waiting.gathering.drop_revoked(&revoked);
        waiting.held.partitions.retain(|partition| {
            let lost = revoked
                .iter()
                .any(|(topic, p)| *p == partition.partition && *topic == partition.topic);
            if lost {
                partition.abort.abort();
                tracing::info!(
                    target: "kafka_handler",
                    topic = %partition.topic,
                    partition = partition.partition,
                    "partition revoked while a record was retried; its new owner handles it again"
                );
            }
            !lost
        });
    }

    /// Commits handled offsets in the background once `next_commit` has
    /// passed (it is `now`), and schedules the next commit.
    fn commit_if_due(&self, now: Instant, next_commit: &mut Instant) {
        if now < *next_commit {
            return;
        }
        *next_commit = now + self.group.timings.commit_interval;
        self.commit_async();
    }

    fn commit_async(&self) {
        let Some(list) = crate::lock(&self.tracker).take_unsent() else {
            return;
        };
        if let Err(err) = self.consumer.commit(&list, CommitMode::Async) {
            self.group.health.commit_failed(&err);
            tracing::warn!(target: "kafka_handler", group = %self.group.group, error = %err, "periodic commit failed");
        }
    }

    fn commit_final(&self) -> Result<(), Error> {
        let Some(list) = crate::lock(&self.tracker).unconfirmed(|_, _| true) else {
            return Ok(());
        };
        commit::commit_sync(&self.consumer, &self.tracker, &list).map_err(|err| {
            self.group.health.commit_failed(&err);
            Error::kafka(
                format!(
                    "committing offsets of group `{}` at shutdown",
                    self.group.group
                ),
                err,
            )
        })?;
        self.group.health.commits_succeeded();
        tracing::info!(target: "kafka_handler", group = %self.group.group, "offsets committed at shutdown");
        Ok(())
    }
}

/// Runs `future` to completion, unless shutdown is triggered while it runs
/// and it then takes longer than `bound`: `None`, and the future is dropped
/// (cancelling the handler).
async fn finish_within<F: Future>(
    future: F,
    shutdown: &Shutdown,
    bound: Duration,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    // Most handlers finish on their first poll; skip the select for them.
    if let Some(output) = future.as_mut().now_or_never() {
        return Some(output);
    }
    tokio::select! {
        output = future.as_mut() => Some(output),
        () = shutdown.triggered() => tokio::time::timeout(bound, future).await.ok(),
    }
}

/// Records the poll loop has taken but not finished: partitions paused
/// behind a retried record, and batches still filling.
#[derive(Default)]
struct Waiting<'m> {
    held: Held,
    gathering: Gathering<'m>,
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Partitions paused while one of their records is retried.
#[derive(Default)]
struct Held {
    partitions: Vec<HeldPartition>,
}

struct HeldPartition {
    topic: String,
    partition: i32,
    /// Aborts the lane of the records being retried.
    abort: AbortHandle,
    /// Records of the partition fetched before the pause took effect.
    pending: VecDeque<OwnedMessage>,
}

impl Held {
    fn position(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partitions
            .iter()
            .position(|p| p.partition == partition && p.topic == topic)
    }

    fn find_mut(&mut self, topic: &str, partition: i32) -> Option<&mut HeldPartition> {
        if self.partitions.is_empty() {
            return None;
        }
        let index = self.position(topic, partition)?;
        Some(&mut self.partitions[index])
    }
}

/// Routes librdkafka's logs and errors into `tracing`, commits
/// synchronously when partitions are revoked, and tells the poll loop which;
/// keeps the group's health and lags up to date.
struct GroupContext {
    group: String,
    tracker: Arc<Mutex<OffsetTracker>>,
    revoked: Mutex<Vec<(String, i32)>>,
    any_revoked: AtomicBool,
    health: Arc<GroupHealth>,
    /// Each assigned partition's lag, from the last statistics.
    lags: Arc<Mutex<Vec<PartitionLag>>>,
    /// The last error librdkafka reported, with its text, for the poll loop.
    last_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "COMMITFAIL" {
            // The only trace of a failed async commit.
            self.health.commit_failed(&message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", group = %self.group, error = %error, "{reason}");
        if let Some(code) = error.rdkafka_error_code() {
            *crate::lock(&self.last_error) = Some((code, reason.to_owned()));
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lags = crate::lock(&self.lags);
        let previous = std::mem::take(&mut *lags);
        let mut committed = false;
        for (topic, stats) in &statistics.topics {
            for (&partition, stats) in &stats.partitions {
                // -1 is librdkafka's internal unassigned partition; a
                // partition this member does not own is not desired.
                if partition < 0 || !stats.desired {
                    continue;
                }
                committed |= previous.iter().any(|lag| {
                    lag.partition == partition
                        && lag.topic == *topic
                        && stats.committed_offset > lag.committed
                });
                lags.push(PartitionLag::new(
                    &self.group,
                    topic,
                    partition,
                    stats.committed_offset,
                    stats.consumer_lag,
                ));
            }
        }
        if committed {
            self.health.commits_succeeded();
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Every record delivered before this poll has been handled (the loop
        // handles a record before it polls again) or is waiting, unmarked,
        // in a batch or behind a retried record, so the tracker is exact.
        let pending = crate::lock(&self.tracker)
            .unconfirmed(|topic, partition| revoked.find_partition(topic, partition).is_some());
        if let Some(list) = pending {
            match commit::commit_sync(consumer, &self.tracker, &list) {
                Ok(()) => {
                    self.health.commits_succeeded();
                    tracing::debug!(target: "kafka_handler", group = %self.group, "offsets committed on revoke")
                }
                Err(err) => {
                    self.health.commit_failed(&err);
                    tracing::warn!(
                        target: "kafka_handler",
                        group = %self.group,
                        error = %err,
                        "commit on revoke failed; the new owner will handle those records again"
                    )
                }
            }
        }
        crate::lock(&self.tracker).forget(revoked);
        crate::lock(&self.revoked).extend(
            revoked
                .elements()
                .iter()
                .map(|elem| (elem.topic().to_owned(), elem.partition())),
        );
        self.any_revoked.store(true, Ordering::Release);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps a partition's pause flag across a revoke and a
        // later assign; one revoked while paused must not come back paused.
        if let Rebalance::Assign(assigned) = rebalance {
            if let Err(err) = consumer.resume(assigned) {
                tracing::warn!(target: "kafka_handler", group = %self.group, error = %err, "resuming assigned partitions failed");
            }
        }
        // Whole or incremental, the assignment as it is now.
        let count = consumer.assignment().map_or(0, |list| list.count());
        self.health.assigned(count);
    }
}

/// Checks the handler's retry, dead-letter and timeout options.
fn check_options(handler: &Handler) -> Result<(), Error> {
    let options = handler.options();
    let name = handler.name();
    options
        .backoff
        .check()
        .map_err(|problem| Error::Config(format!("handler `{name}`: {problem}")))?;
    if let Some(dlq) = &options.dlq {
        check_topic_name(dlq).map_err(|problem| {
            Error::Config(format!(
                "handler `{name}`: invalid dead-letter topic {dlq:?}: {problem}"
            ))
        })?;
        if handler.topics().iter().any(|topic| topic == dlq) {
            return Err(Error::Config(format!(
                "handler `{name}` consumes its own dead-letter topic `{dlq}`: a failing record \
                 would be dead-lettered into the topic it came from, forever"
            )));
        }
    }
    if let Some(max) = options.max_in_flight {
        if max == 0 || max > HandlerOptions::MAX_IN_FLIGHT_LIMIT {
            return Err(Error::Config(format!(
                "handler `{name}`: `max_in_flight` is {max}; it must be between 1 and {}",
                HandlerOptions::MAX_IN_FLIGHT_LIMIT
            )));
        }
    }
    if let Some(batch) = handler.batch_options() {
        if options.ordering == ProcessingOrder::Key {
            return Err(Error::Config(format!(
                "handler `{name}` takes batches, which hold records of many keys: \
                 `ordering = \"key\"` is for handlers of one record (use \"partition\" or \"none\")"
            )));
        }
        let max_in_flight = options.effective_max_in_flight();
        if max_in_flight < batch.max_records() {
            return Err(Error::Config(format!(
                "handler `{name}`: `max_in_flight` ({max_in_flight}) is below `max_records` ({}): \
                 a full batch could never start",
                batch.max_records()
            )));
        }
    }
    if let Some(batch) = options.batch {
        if !handler.is_batch() {
            return Err(Error::Config(format!(
                "handler `{name}` takes one record at a time; batch options need a batch handler \
                 (`batch(..)` in `#[kafka_handler]`, or `Handler::batch`)"
            )));
        }
        batch
            .check()
            .map_err(|problem| Error::Config(format!("handler `{name}`: {problem}")))?;
    }
    if let Some(timeout) = options.timeout {
        if timeout.is_zero() {
            return Err(Error::Config(format!(
                "handler `{name}`: a timeout of zero cancels every attempt"
            )));
        }
        if !handler.is_async() {
            return Err(Error::Config(format!(
                "handler `{name}` is synchronous and cannot be cancelled: make it async, or \
                 drop its timeout"
            )));
        }
    }
    Ok(())
}

/// Kafka's rule for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// and not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err("a topic name has 1 to 249 characters".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not allowed".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(bad) => Err(format!(
            "{bad:?} is not allowed; use ASCII letters, digits, `.`, `_` and `-`"
        )),
        None => Ok(()),
    }
}
