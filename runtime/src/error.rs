//! The crate's error type.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why a consumer could not be built or stopped running.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the fix.
    Config(String),
    /// A consumer group's task stopped unexpectedly (a bug: handler panics
    /// are caught per record).
    Task(String),
    /// What a [`TestApp`](crate::testing::TestApp) waited for did not
    /// happen in time, or went wrong; the message says what it saw.
    Test(String),
    /// The Kafka client failed.
    Kafka {
        /// What the consumer was doing.
        context: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The cluster refused the consumer: it could not authenticate, or its
    /// principal may not read a topic or use the group. Retrying does not
    /// help, so the group stops (and with it the consumer); the message
    /// names the fix.
    Authorization {
        /// What was refused, what the client reported, and how to fix it:
        /// ``group `billing` is not authorized to read topic `orders`
        /// (...: Broker: Topic authorization failed): grant the consumer's
        /// principal READ on the topic and on the group (kafka-acls ...)``.
        context: String,
        /// The client's error.
        source: KafkaError,
    },
}

impl Error {
    /// The client's error `source` while doing `context`; a rejected
    /// secret property's value is redacted.
    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source: crate::redact::error(source),
        }
    }
}

/// The error that stops group `group` (consuming `topics`) when its
/// consumer reports `err`, or `None` when the consumer can go on.
/// Authentication and authorization failures stop it: retrying does not
/// help. So do librdkafka's fatal errors: the client cannot go on. `reason`
/// is librdkafka's text for the error, when it gave one; `fatal` is the
/// client's fatal error, when it has one.
pub(crate) fn stopping_error(
    group: &str,
    topics: &[&str],
    err: &KafkaError,
    reason: Option<&str>,
    fatal: Option<(RDKafkaErrorCode, String)>,
) -> Option<Error> {
    let code = match err {
        KafkaError::MessageConsumption(code)
        | KafkaError::MessageConsumptionFatal(code)
        | KafkaError::Global(code) => *code,
        _ => return None,
    };
    // librdkafka's text names the topic; without it, the error's own.
    let reason = format!(
        " ({})",
        reason.map_or_else(|| err.to_string(), str::to_owned)
    );
    let credentials = "or check the credentials and security settings (sasl.username, \
                       sasl.mechanism, security.protocol)";
    let (context, fix) = match code {
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            // The topics librdkafka named, or all of the group's.
            let named: Vec<&str> = topics
                .iter()
                .copied()
                .filter(|topic| reason.contains(topic))
                .collect();
            let named = if named.is_empty() { topics } else { &named };
            let list = named
                .iter()
                .map(|topic| format!("`{topic}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let plural = if named.len() == 1 { "" } else { "s" };
            let flags: String = named
                .iter()
                .map(|topic| format!(" --topic {topic}"))
                .collect();
            (
                format!("group `{group}` is not authorized to read topic{plural} {list}{reason}"),
                format!(
                    "grant the consumer's principal READ on the topic{plural} and on the group \
                     (kafka-acls --bootstrap-server <brokers> --add --allow-principal \
                     User:<principal> --operation Read{flags} --group {group}), {credentials}"
                ),
            )
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => (
            format!("group `{group}` is not authorized to use its consumer group{reason}"),
            format!(
                "grant the consumer's principal READ on the group (kafka-acls --bootstrap-server \
                 <brokers> --add --allow-principal User:<principal> --operation Read --group \
                 {group}), {credentials}"
            ),
        ),
        RDKafkaErrorCode::ClusterAuthorizationFailed => (
            format!("group `{group}` is not authorized on the cluster{reason}"),
            format!(
                "grant the consumer's principal the cluster permission it was refused \
                 (kafka-acls --bootstrap-server <brokers> --add --allow-principal \
                 User:<principal> --cluster ...), {credentials}"
            ),
        ),
        RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication => (
            format!("group `{group}` could not authenticate with the brokers{reason}"),
            "check sasl.username and sasl.password (or the client certificate), \
             sasl.mechanism and security.protocol"
                .to_owned(),
        ),
        _ => {
            let fatal_error = matches!(err, KafkaError::MessageConsumptionFatal(_))
                || code == RDKafkaErrorCode::Fatal
                || fatal.is_some();
            if !fatal_error {
                return None;
            }
            let (code, reason) = match fatal {
                Some((code, fatal_reason)) => (code, format!(" ({fatal_reason})")),
                None => (code, reason),
            };
            return Some(Error::kafka(
                format!(
                    "group `{group}`: librdkafka raised a fatal error{reason}, after which the \
                     client cannot go on; fix its cause and restart"
                ),
                KafkaError::MessageConsumptionFatal(code),
            ));
        }
    };
    Some(Error::Authorization {
        context: format!("{context}: {fix}"),
        source: err.clone(),
    })
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "invalid configuration: {message}"),
            Error::Task(message) | Error::Test(message) => f.write_str(message),
            Error::Kafka { context, source } => write!(f, "{context}: {source}"),
            // The context already says what the client reported.
            Error::Authorization { context, .. } => f.write_str(context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(_) | Error::Task(_) | Error::Test(_) => None,
            Error::Kafka { source, .. } | Error::Authorization { source, .. } => Some(source),
        }
    }
}

/// A short, stable `error.type` for a failed send: the librdkafka error
/// code's name (`MessageTimedOut`, `TopicAuthorizationFailed`, ...).
pub(crate) fn error_type(err: &KafkaError) -> String {
    match err.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "kafka".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_and_fatal_errors_stop_the_group_others_do_not() {
        let denied = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        let reason = "Subscribed topic not available: orders: Broker: Topic authorization failed";
        let error = stopping_error(
            "billing",
            &["orders", "refunds"],
            &denied,
            Some(reason),
            None,
        )
        .expect("stops");
        let message = error.to_string();
        assert!(matches!(error, Error::Authorization { .. }));
        assert!(
            message.starts_with("group `billing` is not authorized to read topic `orders` ("),
            "{message}"
        );
        assert!(
            message.contains("--topic orders --group billing"),
            "{message}"
        );

        let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(stopping_error("billing", &["orders"], &transport, None, None).is_none());

        let fatal = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal);
        let reason = Some((RDKafkaErrorCode::FencedInstanceId, "fenced".to_owned()));
        let error = stopping_error("billing", &["orders"], &fatal, None, reason).expect("stops");
        assert!(
            error.to_string().contains("fatal error (fenced)"),
            "{error}"
        );
    }
}
