//! Configuration checks: what `build()` rejects before anything connects,
//! and the client configuration of one group.

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

use crate::error::Error;
use crate::handler::{Handler, HandlerOptions, ProcessingOrder};

use super::rebalance::Protocol;

/// Properties kafka-handler owns: it commits offsets itself, after handling.
const OWNED_PROPERTIES: [(&str, &str); 2] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

/// librdkafka's statistics feed the lag metric and tell readiness that
/// commits go through; every 5 s unless `statistics.interval.ms` is set.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// How long the broker may hold a fetch that finds no new record
/// (librdkafka's default is 500 ms). When the consumer pauses a partition it
/// holds a full window of, librdkafka drops what it had prefetched of it;
/// on resume it fetches again, but only once the fetch in flight returns,
/// which waits this long when the prefetch had reached the end of the log.
/// An idle consumer sends a few more empty fetches.
const FETCH_WAIT_MAX_MS: &str = "100";

/// How long librdkafka postpones a partition's next fetch once its local
/// queue is over its thresholds (librdkafka's default is 1,000 ms). The
/// consumer takes records as fast as they come and bounds what it holds
/// itself (pausing a partition at a full window), so a second-long pause in
/// fetching, after a resume or whenever the consumer was briefly behind,
/// only idles it.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The longest wait between two attempts to reconnect to a broker
/// (librdkafka's default is 10 s; the Java client's is 1 s). After a broker
/// outage the group's coordinator is reachable again within a second of the
/// broker, so a member stopped then can still commit within the final
/// commit's retry.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// librdkafka's default `max.poll.interval.ms`.
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_millis(300_000);

/// Rejects a user property that would take over what kafka-handler owns.
pub(crate) fn check_properties(properties: &[(String, String)]) -> Result<(), Error> {
    for (key, value) in properties {
        if let Some((_, owned)) = OWNED_PROPERTIES.iter().find(|(k, _)| k == key) {
            if value != owned {
                return Err(Error::Config(format!(
                    "`{key}={value}` is not supported: kafka-handler commits offsets itself, \
                     only after a record is handled (remove the property)"
                )));
            }
        }
    }
    Ok(())
}

/// The client configuration of `group`, checked by librdkafka: the user's
/// properties over our defaults, and what we own over both.
pub(crate) fn client_config(
    brokers: &str,
    group: &str,
    properties: &[(String, String)],
) -> Result<ClientConfig, Error> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    for (key, value) in properties {
        config.set(key, value);
    }
    // The cooperative assignor hands over only the partitions that move: a
    // rolling restart does not stop every member. Not under KIP-848, where
    // the broker assigns and the property is rejected.
    if config.get("partition.assignment.strategy").is_none() && !uses_kip848(&config) {
        config.set("partition.assignment.strategy", "cooperative-sticky");
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
        Error::kafka(format!("configuring the consumer for group `{group}`"), err)
    })?;
    Ok(config)
}

/// Whether the group uses the consumer group protocol of KIP-848
/// (`group.protocol=consumer`), where the broker assigns partitions.
fn uses_kip848(config: &ClientConfig) -> bool {
    config
        .get("group.protocol")
        .is_some_and(|protocol| protocol.trim().eq_ignore_ascii_case("consumer"))
}

/// How the group hands partitions over: incrementally under KIP-848 and with
/// the `cooperative-sticky` assignor (which librdkafka does not mix with
/// others), all at once otherwise.
pub(crate) fn protocol(config: &ClientConfig) -> Protocol {
    let cooperative_assignor = config
        .get("partition.assignment.strategy")
        .is_some_and(|strategy| strategy.trim().eq_ignore_ascii_case("cooperative-sticky"));
    if uses_kip848(config) || cooperative_assignor {
        Protocol::Cooperative
    } else {
        Protocol::Eager
    }
}

/// The group's `max.poll.interval.ms`: how long its poll loop may go
/// without turning.
pub(crate) fn max_poll_interval(config: &ClientConfig) -> Duration {
    config
        .get("max.poll.interval.ms")
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(DEFAULT_MAX_POLL_INTERVAL, Duration::from_millis)
}

/// Checks the handler's retry, dead-letter, timeout, batch and concurrency
/// options.
pub(crate) fn check_options(handler: &Handler) -> Result<(), Error> {
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
        let max_in_flight = handler.max_in_flight();
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
