//! The consumer: one Kafka consumer per group, records of many partitions
//! and keys in flight at once, and at-least-once commits.
//!
//! Where things happen:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the builder, and `Consumer::run`: one task per group |
//! | `config.rs` | what `build()` checks; a group's client configuration |
//! | `group.rs` | a group's handlers and routes; creating its Kafka consumer |
//! | `poll.rs` | the poll loop: takes records, starts them, drives them, pauses and drains |
//! | `schedule.rs` | which record may start: partition and key lanes, `max_in_flight` |
//! | `gather.rs` | cutting batches for batch handlers |
//! | `work.rs` | what a started record or batch runs: its attempts, retries, dead letters |
//! | `offsets.rs` | the commit watermark of each partition, and every commit |
//! | `rebalance.rs` | librdkafka's callbacks: revoke and assign, logs, errors, statistics |
//!
//! The record's context is made current in `attach.rs`, its span started
//! in `span.rs`, and each attempt run in `process.rs`.

mod config;
mod gather;
mod group;
mod offsets;
mod poll;
mod rebalance;
mod schedule;
mod work;

use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::ClientConfig;

use crate::dead_letter::DeadLetterConfig;
use crate::error::Error;
use crate::handler::Handler;
use crate::health::Health;
use crate::producer::TracedProducer;
use crate::redact;
use crate::shutdown::Shutdown;

use group::{Group, GroupHandlers};

/// The environment variable read for the bootstrap servers when the builder
/// is given none.
pub const BROKERS_ENV: &str = "KAFKA_BROKERS";

/// Builds a [`Consumer`].
#[must_use]
pub struct ConsumerBuilder {
    handlers: Vec<Handler>,
    brokers: Option<String>,
    group: Option<String>,
    properties: Vec<(String, String)>,
    dead_letter_properties: Vec<(String, String)>,
    commit_interval: Duration,
    shutdown_timeout: Duration,
    max_in_flight: Option<usize>,
    tracer_provider: Option<SdkTracerProvider>,
    producer: Option<TracedProducer>,
}

/// Secret-valued properties (`sasl.password`, `ssl.key.password`, ...)
/// are redacted.
impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("handlers", &self.handlers)
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("properties", &redact::Properties(&self.properties))
            .field(
                "dead_letter_properties",
                &redact::Properties(&self.dead_letter_properties),
            )
            .field("commit_interval", &self.commit_interval)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("tracer_provider", &self.tracer_provider)
            .field("producer", &self.producer)
            .finish()
    }
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
            max_in_flight: None,
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

    /// Sets every handler's `max_in_flight` (the most records of one handler
    /// running at once), overriding what each declares: for sizing a
    /// deployment without a rebuild. `build()` checks it like a handler's
    /// own.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = Some(max_in_flight);
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
        config::check_properties(&self.properties)?;

        let mut groups: Vec<GroupHandlers> = Vec::new();
        for handler in self.handlers {
            let handler = match self.max_in_flight {
                Some(max) => handler.with_max_in_flight(max),
                None => handler,
            };
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
            config::check_options(&handler)?;
            let index = match groups.iter().position(|g| g.group == group) {
                Some(index) => index,
                None => {
                    groups.push(GroupHandlers::new(group.clone()));
                    groups.len() - 1
                }
            };
            groups[index].add(handler)?;
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
    groups: Vec<Group>,
    tracer_provider: Option<SdkTracerProvider>,
    health: Health,
}

/// How often a group commits, and how long a record in flight may run
/// after shutdown is triggered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timings {
    pub(crate) commit_interval: Duration,
    pub(crate) shutdown_timeout: Duration,
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
        for group in self.groups {
            let shutdown = shutdown.clone();
            let health = group.health.clone();
            let task = tasks.spawn(async move {
                let result = match group.connect(&shutdown) {
                    Ok(running) => {
                        let result = running.run().await;
                        running.close().await;
                        result
                    }
                    Err(error) => Err(error),
                };
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
