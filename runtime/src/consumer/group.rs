//! One consumer group: its handlers and the topics that route to them, its
//! checked client configuration, and, while it runs, its Kafka consumer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::ClientConfig;

use crate::dead_letter::{DeadLetterConfig, DeadLetters};
use crate::error::{self, Error};
use crate::handler::Handler;
use crate::health::GroupHealth;
use crate::metrics::{Metrics, ProcessMetrics};
use crate::process::Processor;
use crate::producer::{self, ProducerSlot, TracedProducer};
use crate::resolve::Resolver;
use crate::shutdown::Shutdown;

use super::config;
use super::offsets::{self, Offsets};
use super::rebalance::GroupContext;
use super::Timings;

/// A group's handlers before its Kafka consumer exists.
pub(super) struct GroupHandlers {
    pub(super) group: String,
    handlers: Vec<Handler>,
    /// Each topic, and the index of the handler that consumes it.
    routes: Vec<(String, usize)>,
}

impl GroupHandlers {
    pub(super) fn new(group: String) -> Self {
        Self {
            group,
            handlers: Vec::new(),
            routes: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, handler: Handler) -> Result<(), Error> {
        if handler.topics().is_empty() {
            return Err(Error::Config(format!(
                "handler `{}` has no topics",
                handler.name()
            )));
        }
        let index = self.handlers.len();
        for topic in handler.topics() {
            if let Some((_, other)) = self.routes.iter().find(|(t, _)| t == topic) {
                return Err(Error::Config(format!(
                    "handlers `{}` and `{}` both consume topic `{topic}` in group `{}`: \
                     a group delivers each record once, so give one of them another group",
                    self.handlers[*other].name(),
                    handler.name(),
                    self.group
                )));
            }
            self.routes.push((topic.clone(), index));
        }
        self.handlers.push(handler);
        Ok(())
    }

    /// Builds the group's client configuration and has librdkafka validate
    /// it. The Kafka consumer itself is created by [`Group::connect`].
    pub(super) fn configure(
        self,
        brokers: &str,
        properties: &[(String, String)],
        dead_letter_properties: &[(String, String)],
        producer: Option<TracedProducer>,
        timings: Timings,
    ) -> Result<Group, Error> {
        let config = config::client_config(brokers, &self.group, properties)?;
        let client_id = config.get("client.id").map(Arc::<str>::from);
        let dead_letters = self
            .handlers
            .iter()
            .any(|handler| handler.options().dlq.is_some())
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
        Ok(Group {
            health: GroupHealth::new(self.group.clone(), config::max_poll_interval(&config)),
            group: self.group,
            handlers: self.handlers,
            routes: self.routes,
            client_id,
            config,
            dead_letters,
            producer,
            timings,
        })
    }
}

/// A group with its validated client configuration.
pub(super) struct Group {
    pub(super) group: String,
    pub(super) handlers: Vec<Handler>,
    routes: Vec<(String, usize)>,
    client_id: Option<Arc<str>>,
    config: ClientConfig,
    dead_letters: Option<DeadLetterConfig>,
    /// The producer handlers can take as an argument.
    pub(super) producer: ProducerSlot,
    pub(super) timings: Timings,
    pub(super) health: Arc<GroupHealth>,
}

impl Group {
    /// The topics the group consumes.
    fn topics(&self) -> Vec<&str> {
        self.routes.iter().map(|(t, _)| t.as_str()).collect()
    }

    /// Creates the group's Kafka consumer, its processors and dead-letter
    /// producer: the group, ready for its poll loop. Inside the async
    /// runtime: rdkafka's stream consumer spawns a task.
    pub(super) fn connect(&self, shutdown: &Shutdown) -> Result<RunningGroup<'_>, Error> {
        let metrics = Metrics::new();
        let group: Arc<str> = self.group.as_str().into();
        let processors = self
            .handlers
            .iter()
            .map(|handler| {
                Processor::with_identity(
                    handler.clone(),
                    group.clone(),
                    self.client_id.clone(),
                    Some(ProcessMetrics::new(metrics.clone(), group.clone())),
                )
            })
            .collect();
        let dead_letters = self
            .dead_letters
            .as_ref()
            .map(|config| config.create(metrics.clone(), self.health.clone()))
            .transpose()?;
        // The consumer's context owns the lags; the gauge only looks.
        let lags = Arc::new(Mutex::new(Vec::new()));
        Metrics::observe_lag(Arc::downgrade(&lags));
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let held = Arc::downgrade(&offsets);
        Metrics::observe_held(
            move || {
                let offsets = held.upgrade()?;
                let held = crate::lock(&offsets).held();
                Some(held)
            },
            group.clone(),
        );
        let context = GroupContext::new(
            self.group.clone(),
            config::protocol(&self.config),
            offsets.clone(),
            self.health.clone(),
            lags,
        );
        let consumer: StreamConsumer<GroupContext> =
            self.config.create_with_context(context).map_err(|err| {
                Error::kafka(
                    format!("creating the consumer for group `{}`", self.group),
                    err,
                )
            })?;
        Ok(RunningGroup {
            group: self,
            consumer,
            offsets,
            processors,
            dead_letters,
            metrics,
            shutdown: shutdown.clone(),
        })
    }
}

/// A group while it runs: its Kafka consumer, offsets and processors.
pub(super) struct RunningGroup<'g> {
    pub(super) group: &'g Group,
    pub(super) consumer: StreamConsumer<GroupContext>,
    pub(super) offsets: Arc<Mutex<Offsets>>,
    /// One per handler, in the order of `group.handlers`.
    pub(super) processors: Vec<Processor>,
    dead_letters: Option<DeadLetters>,
    metrics: Metrics,
    pub(super) shutdown: Shutdown,
}

/// How long a stopped group's consumer may take to close (leave the group,
/// hand its partitions back) before the group stops without waiting for it.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl RunningGroup<'_> {
    /// Closes the Kafka consumer: it leaves the group, serving the last
    /// rebalance (its callback commits nothing new: the final commit went
    /// before). librdkafka's close has no bound of its own, so it runs on the
    /// blocking pool and the group waits for it at most [`CLOSE_TIMEOUT`];
    /// past that the close goes on in the background and the group stops.
    pub(super) async fn close(self) {
        let group = self.group.group.clone();
        let consumer = self.consumer;
        let closing = tokio::task::spawn_blocking(move || drop(consumer));
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(_) => tracing::debug!(target: "kafka_handler", group = %group, "consumer closed"),
            Err(_) => tracing::warn!(
                target: "kafka_handler",
                group = %group,
                "the consumer did not close within {CLOSE_TIMEOUT:?}; stopping without waiting \
                 for it (its offsets were committed before)"
            ),
        }
    }

    /// The index of the handler that consumes `topic`.
    pub(super) fn route(&self, topic: &str) -> Option<usize> {
        self.group
            .routes
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, index)| *index)
    }

    /// What resolving a record's attempts needs.
    pub(super) fn resolver(&self) -> Resolver<'_> {
        Resolver {
            group: &self.group.group,
            dead_letters: self.dead_letters.as_ref(),
            metrics: &self.metrics,
            shutdown: &self.shutdown,
        }
    }

    /// Commits the watermarks that moved, in the background.
    pub(super) fn commit_async(&self) {
        let group = &self.group;
        offsets::commit_async(&self.consumer, &self.offsets, &group.health, &group.group);
    }

    /// Commits every watermark not yet confirmed, and waits for the answer.
    pub(super) fn commit_unconfirmed(&self) -> KafkaResult<()> {
        let group = &self.group;
        offsets::commit_unconfirmed(&self.consumer, &self.offsets, &group.health, &group.group)
    }

    /// The error of a final commit that failed.
    pub(super) fn final_commit_failed(&self, err: KafkaError) -> Error {
        self.group.health.commit_failed(&err);
        Error::kafka(
            format!(
                "committing offsets of group `{}` at shutdown",
                self.group.group
            ),
            err,
        )
    }

    /// The error that stops the group when its consumer reports `err`:
    /// authentication and authorization failures, and fatal client errors.
    pub(super) fn stopping_error(&self, err: &KafkaError) -> Option<Error> {
        let reason = self
            .consumer
            .context()
            .take_error_reason(err.rdkafka_error_code());
        error::stopping_error(
            &self.group.group,
            &self.group.topics(),
            err,
            reason.as_deref(),
            self.consumer.client().fatal_error(),
        )
    }
}
