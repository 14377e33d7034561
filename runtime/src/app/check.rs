//! `--check`: the configuration is valid, the brokers answer, and every
//! topic the handlers consume or dead-letter to exists.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::Handler;

use super::diagnose::{self, Diagnosis};

/// How long the brokers get to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `--check` found: the lines to print, and the problems (none when
/// it passes).
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) lines: Vec<String>,
    pub(crate) problems: Vec<String>,
}

/// Connects with the consumer's properties and checks the topics.
pub(crate) fn run(brokers: &str, properties: &[(String, String)], handlers: &[Handler]) -> Report {
    let mut report = Report::default();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in properties {
        config.set(key, value);
    }
    // librdkafka logs some connection failures (a disconnect while
    // negotiating) at INFO, without an error event: `Errors::log` reads them.
    config.set_log_level(RDKafkaLogLevel::Info);
    let consumer: BaseConsumer<Errors> = match config.create_with_context(Errors::default()) {
        Ok(consumer) => consumer,
        Err(err) => {
            report.problems.push(format!(
                "cannot create a Kafka client: {} (check --set / KAFKA_SET)",
                crate::redact::error(err)
            ));
            return report;
        }
    };
    let metadata = match connect(&consumer) {
        Ok(metadata) => metadata,
        Err(problem) => {
            report.problems.push(match diagnose::connection_failure(&problem) {
                Some(Diagnosis { cause, fix }) => {
                    format!("cannot connect to the brokers at {brokers}: {cause} ({problem}): {fix}")
                }
                None => format!(
                    "cannot reach the brokers at {brokers}: {problem}. Check --brokers \
                     (KAFKA_BROKERS), that the cluster is up, and its security settings (--set \
                     security.protocol=.., sasl.*, ssl.*)"
                ),
            });
            return report;
        }
    };
    report.lines.push(format!(
        "brokers {brokers}: reachable ({} broker{})",
        metadata.brokers().len(),
        if metadata.brokers().len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    for (topic, uses) in topics(handlers) {
        let uses = uses.join(", ");
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(found) if found.error().is_none() => report.lines.push(format!(
                "topic {topic}: {} partitions ({uses})",
                found.partitions().len()
            )),
            Some(found) => {
                if let Some(error) = found.error() {
                    let code = RDKafkaErrorCode::from(error);
                    report.problems.push(topic_problem(&topic, &uses, code));
                }
            }
            None => report.problems.push(format!(
                "topic {topic} does not exist ({uses}): create it, or correct the handler's \
                 topics"
            )),
        }
    }
    report
}

/// The topics to check, each with who uses it, in first-use order.
fn topics(handlers: &[Handler]) -> Vec<(String, Vec<String>)> {
    let mut topics: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |topic: &str, use_: String| match topics.iter_mut().find(|(t, _)| t == topic) {
        Some((_, uses)) => uses.push(use_),
        None => topics.push((topic.to_owned(), vec![use_])),
    };
    for handler in handlers {
        let name = super::short_name(handler.name());
        for topic in handler.topics() {
            add(topic, name.to_owned());
        }
        if let Some(dlq) = &handler.options().dlq {
            add(dlq, format!("dead-letter topic of {name}"));
        }
        if let Some(publish) = &handler.options().publish {
            add(publish, format!("output topic of {name}"));
        }
    }
    topics
}

fn topic_problem(topic: &str, uses: &str, code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::TopicAuthorizationFailed => format!(
            "not authorized to describe topic {topic} ({uses}): grant the principal DESCRIBE \
             and READ on it (WRITE for a dead-letter topic)"
        ),
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => format!(
            "topic {topic} does not exist ({uses}): create it, or correct the handler's topics"
        ),
        other => format!("topic {topic} ({uses}): the broker reports {other}"),
    }
}

/// Fetches the cluster's metadata, failing fast once every broker is down.
fn connect(consumer: &BaseConsumer<Errors>) -> Result<Metadata, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        // Serves the error callback: "all brokers down" arrives as an event,
        // after the connection errors that explain it. One poll serves one
        // event; drain what is queued (bounded: events keep coming).
        for _ in 0..64 {
            if consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) => return Ok(metadata),
            Err(err) => {
                if let Some(reason) = consumer.context().fatal() {
                    return Err(reason);
                }
                if Instant::now() >= deadline {
                    let last = consumer.context().last().unwrap_or_else(|| err.to_string());
                    return Err(format!("no answer within {CONNECT_TIMEOUT:?} ({last})"));
                }
            }
        }
    }
}

/// Remembers the client's errors; librdkafka reports them on its own
/// threads while the metadata request waits.
#[derive(Default)]
struct Errors {
    last: Mutex<Option<String>>,
    fatal: Mutex<Option<String>>,
}

impl Errors {
    fn last(&self) -> Option<String> {
        self.last.lock().ok()?.clone()
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok()?.clone()
    }
}

impl ClientContext for Errors {
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        // `--check` prints a report, not librdkafka's connection log. But a
        // client without a group gets some connection failures (a TLS
        // handshake with a plaintext listener) only as `FAIL` log lines,
        // never as error events: keep them, and stop at one whose cause is
        // in the configuration, which retrying does not change.
        if facility != "FAIL" {
            return;
        }
        // Without librdkafka's "[thrd:..]: " prefix.
        let message = match message.split_once("]: ") {
            Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
            _ => message,
        };
        if diagnose::connection_failure(message).is_some() {
            if let Ok(mut fatal) = self.fatal.lock() {
                fatal.get_or_insert_with(|| message.to_owned());
            }
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let fatal = matches!(
            code,
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::SSL
            )
        );
        let text = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_owned()
        };
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if fatal {
            if let Ok(mut fatal) = self.fatal.lock() {
                // "All brokers down" follows the connection error that
                // explains it: say both.
                let cause = match last.as_deref() {
                    Some(cause) if code == Some(RDKafkaErrorCode::AllBrokersDown) => {
                        format!("{text} ({cause})")
                    }
                    _ => text.clone(),
                };
                fatal.get_or_insert(cause);
            }
        }
        *last = Some(text);
    }
}

impl ConsumerContext for Errors {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    #[test]
    fn topics_are_listed_once_with_their_uses() {
        let bill = Handler::sync("bill", ["orders"], "billing", |_| Outcome::Ok(()))
            .with_dlq("orders.dlq")
            .with_publish("invoices");
        let audit = Handler::sync("audit", ["orders", "returns"], "audit", |_| Outcome::Ok(()));
        let listed = topics(&[bill, audit]);
        assert_eq!(
            listed,
            [
                (
                    "orders".to_owned(),
                    vec!["bill".to_owned(), "audit".to_owned()]
                ),
                (
                    "orders.dlq".to_owned(),
                    vec!["dead-letter topic of bill".to_owned()]
                ),
                (
                    "invoices".to_owned(),
                    vec!["output topic of bill".to_owned()]
                ),
                ("returns".to_owned(), vec!["audit".to_owned()]),
            ]
        );
    }

    #[test]
    fn an_unreachable_broker_fails_with_its_address() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap();
        let brokers = format!("127.0.0.1:{port}");
        let report = run(&brokers, &[], &[]);
        assert!(report.lines.is_empty(), "{report:?}");
        assert_eq!(report.problems.len(), 1, "{report:?}");
        let problem = &report.problems[0];
        assert!(problem.contains(&brokers), "{problem}");
        assert!(problem.contains("KAFKA_BROKERS"), "{problem}");
    }
}
