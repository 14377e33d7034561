//! The crate's error type.

use std::fmt;

use rdkafka::error::KafkaError;

/// Why a consumer could not be built or stopped running.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the fix.
    Config(String),
    /// A consumer group's task stopped unexpectedly (a bug: handler panics
    /// are caught per record).
    Task(String),
    /// The Kafka client failed.
    Kafka {
        /// What the consumer was doing.
        context: String,
        /// The client's error.
        source: KafkaError,
    },
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "invalid configuration: {message}"),
            Error::Task(message) => f.write_str(message),
            Error::Kafka { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(_) | Error::Task(_) => None,
            Error::Kafka { source, .. } => Some(source),
        }
    }
}
