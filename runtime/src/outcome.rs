//! What a handler returns, and how a failure is classified.

use std::borrow::Cow;
use std::fmt;

use opentelemetry::Context;

use crate::record::Record;

/// The class of a failure, recorded on the span as `error.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The handler returned an error.
    Handler,
    /// An argument could not be extracted from the record (bad JSON, bad UTF-8, ...).
    Deserialization,
    /// The handler panicked.
    Panic,
    /// The handler was cancelled before it finished (shutdown past its bound).
    Cancelled,
    /// An attempt ran past the handler's `timeout` and was cancelled.
    Timeout,
    /// What the handler returned could not be encoded, or the broker did
    /// not acknowledge it (`publish`).
    Publish,
}

impl ErrorKind {
    /// The stable, low-cardinality `error.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Handler => "handler",
            ErrorKind::Deserialization => "deserialization",
            ErrorKind::Panic => "panic",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Publish => "publish",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record's handling failed, and whether trying again can help.
///
/// A handler that returns `Result<(), E>` with any `E: Display` fails
/// *transiently*: the record is retried. Return a `HandlerError` to choose:
///
/// ```
/// # use kafka_handler::HandlerError;
/// # fn charge() -> Result<(), std::io::Error> { Ok(()) }
/// fn bill(amount: i64) -> Result<(), HandlerError> {
///     if amount < 0 {
///         // Retrying will not fix the record: straight to the dead-letter topic.
///         return Err(HandlerError::permanent(format!("negative amount {amount}")));
///     }
///     charge().map_err(|err| HandlerError::transient(&err))
/// }
/// ```
///
/// Decoding failures ([`ErrorKind::Deserialization`]) are permanent; panics
/// and timeouts are transient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    kind: ErrorKind,
    permanent: bool,
    exception_type: Cow<'static, str>,
    message: String,
}

impl HandlerError {
    /// A failure of class `kind` with a message.
    pub fn new(
        kind: ErrorKind,
        exception_type: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            permanent: kind == ErrorKind::Deserialization,
            exception_type: exception_type.into(),
            message: message.into(),
        }
    }

    /// A payload or argument that could not be decoded. Permanent.
    pub fn deserialization(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Deserialization, "deserialization", message)
    }

    /// An error returned by the handler; its Rust type name becomes
    /// `exception.type`. Transient.
    pub fn from_handler<E: fmt::Display + ?Sized>(error: &E) -> Self {
        Self::new(
            ErrorKind::Handler,
            std::any::type_name::<E>(),
            error.to_string(),
        )
    }

    /// A handler failure that retrying will not fix (a record that breaks
    /// a business rule): the remaining retries are skipped and the record
    /// goes straight to the dead-letter topic.
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::from_handler(&error).with_permanent(true)
    }

    /// A handler failure that may pass on a later attempt (a timeout
    /// talking to a database): the record is retried with backoff.
    pub fn transient(error: impl fmt::Display) -> Self {
        Self::from_handler(&error)
    }

    /// The same failure, marked permanent or transient.
    pub fn with_permanent(mut self, permanent: bool) -> Self {
        self.permanent = permanent;
        self
    }

    /// Whether retrying cannot help: the record skips its remaining retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// A panic, with the panic message when it was a string.
    pub fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "handler panicked".to_owned());
        Self::new(ErrorKind::Panic, "panic", message)
    }

    /// The failure's class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The `exception.type`: the Rust type of the error, or the class.
    pub fn exception_type(&self) -> &str {
        &self.exception_type
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for HandlerError {}

/// The result of handling one record.
pub type Outcome = Result<(), HandlerError>;

/// A handler's return type: `()` or `Result<(), E>` with `E: Display +
/// 'static` (every owned error type is). A [`HandlerError`] keeps its
/// classification (permanent or transient); any other error is transient.
#[diagnostic::on_unimplemented(
    message = "a kafka handler must return `()` or `Result<(), E>` where `E: Display + 'static`, not `{Self}`",
    label = "unsupported handler return type"
)]
pub trait IntoOutcome {
    /// Converts the handler's return value.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Ok(())
    }
}

impl<E: fmt::Display + 'static> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        self.map_err(|err| {
            // A `HandlerError` is passed through as the handler classified it.
            match (&err as &dyn std::any::Any).downcast_ref::<HandlerError>() {
                Some(error) => error.clone(),
                None => HandlerError::from_handler(&err),
            }
        })
    }
}

/// Logs a failed attempt at `record`.
pub(crate) fn log_failure(handler: &str, record: &Record<'_>, attempt: u32, error: &HandlerError) {
    tracing::warn!(
        target: "kafka_handler",
        handler,
        topic = record.topic(),
        partition = record.partition(),
        offset = record.offset(),
        attempt,
        error.type = error.kind().as_str(),
        permanent = error.is_permanent(),
        error = %error.message(),
        "record handling failed"
    );
}

/// A failed attempt: why, and the context of its (ended) span, the parent
/// of the dead-letter send.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) error: HandlerError,
    pub(crate) span_cx: Context,
}

impl Failure {
    /// An attempt whose blocking-pool task was lost (the runtime is shutting
    /// down): it did not end, so it counts as cancelled.
    pub(crate) fn lost(error: &dyn fmt::Display) -> Self {
        Self {
            error: HandlerError::new(
                ErrorKind::Cancelled,
                "cancelled",
                format!("the handler's blocking task did not finish: {error}"),
            ),
            span_cx: Context::new(),
        }
    }
}
