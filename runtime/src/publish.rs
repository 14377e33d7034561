//! Publishing what a handler returns: `#[kafka_handler(publish = "topic")]`.
//!
//! The handler's return value is turned into zero or more records
//! ([`IntoOutputs`]), each produced to the `publish` topic through the
//! consumer's [`TracedProducer`], under a `send {topic}` span that is a
//! child of the record's `process` span. The record ends only when the
//! broker acknowledged every output, so its offset is committed after them;
//! a send that fails is a transient failure of the record (retried, then
//! dead-lettered, as a handler error is). A retry runs the handler again and
//! publishes all of its outputs again: an output acknowledged before another
//! failed is published twice, the at-least-once rule.

use std::fmt;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::extract::Json;
use crate::outcome::{ErrorKind, HandlerError, Outcome};
use crate::record::Record;

/// A value that can be a record's payload: the encoders, mirroring the
/// extractors. Implement it for your own formats (protobuf, Avro).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be published as a record's payload",
    label = "not a payload",
    note = "publish `Json<T>` (with `T: Serialize`), `String`, `&str`, `Vec<u8>` or `&[u8]`, \
            or implement `kafka_handler::IntoPayload` for `{Self}`"
)]
pub trait IntoPayload {
    /// The payload's bytes. An error fails the record permanently: encoding
    /// the same value again will not succeed.
    fn into_payload(self) -> Result<Vec<u8>, HandlerError>;
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        Ok(self)
    }
}

impl IntoPayload for &[u8] {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        Ok(self.to_vec())
    }
}

impl IntoPayload for String {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        Ok(self.into_bytes())
    }
}

impl IntoPayload for &str {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        Ok(self.as_bytes().to_vec())
    }
}

/// JSON, as `serde_json` writes it.
impl IntoPayload for serde_json::Value {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        Json(self).into_payload()
    }
}

impl<T: Serialize> IntoPayload for Json<T> {
    fn into_payload(self) -> Result<Vec<u8>, HandlerError> {
        serde_json::to_vec(&self.0).map_err(|err| {
            HandlerError::new(
                ErrorKind::Publish,
                "serialization",
                format!("encoding the output as JSON: {err}"),
            )
            .with_permanent(true)
        })
    }
}

/// An output with its key and headers chosen. A bare payload is published
/// under the input record's key, with no headers besides the trace context.
///
/// ```
/// # use kafka_handler::{Json, Output};
/// # #[derive(serde::Serialize)] struct Invoice { order: u64 }
/// let invoice = Output::new(Json(Invoice { order: 7 }))
///     .key("customer-42")
///     .header("content-type", "application/json");
/// ```
#[derive(Clone, Debug)]
pub struct Output<P> {
    payload: P,
    key: OutputKey,
    headers: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OutputKey {
    /// The input record's key (the default).
    Input,
    Set(Vec<u8>),
    None,
}

impl<P> Output<P> {
    /// `payload`, under the input record's key.
    pub fn new(payload: P) -> Self {
        Self {
            payload,
            key: OutputKey::Input,
            headers: Vec::new(),
        }
    }

    /// Publishes under `key` instead of the input record's key.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = OutputKey::Set(key.as_ref().to_vec());
        self
    }

    /// Publishes without a key (the producer's partitioner spreads such
    /// records).
    pub fn without_key(mut self) -> Self {
        self.key = OutputKey::None;
        self
    }

    /// Adds a header. Trace headers (`traceparent`, `tracestate`, `b3`, ..)
    /// are the send span's, whatever is set here.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }
}

/// An output encoded, ready to send.
#[doc(hidden)]
#[derive(Debug)]
pub struct Encoded(Output<Vec<u8>>);

/// What a handler with `publish` may return as its value: one payload
/// ([`IntoPayload`]), an [`Output`], `Option<_>` (zero or one) or `Vec<_>`
/// (zero or more) of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be published",
    label = "not publishable",
    note = "a handler with `publish` returns a payload (`Json<T>`, `String`, `&str`, `Vec<u8>`, \
            `&[u8]` or a type implementing `IntoPayload`), an `Output<_>` of one, or an \
            `Option<_>` or `Vec<_>` of those, optionally in a `Result<_, E>`"
)]
pub trait IntoOutputs {
    /// Encodes the outputs into `outputs`.
    fn into_outputs(self, outputs: &mut Vec<Encoded>) -> Result<(), HandlerError>;
}

impl<P: IntoPayload> IntoOutputs for P {
    fn into_outputs(self, outputs: &mut Vec<Encoded>) -> Result<(), HandlerError> {
        Output::new(self).into_outputs(outputs)
    }
}

impl<P: IntoPayload> IntoOutputs for Output<P> {
    fn into_outputs(self, outputs: &mut Vec<Encoded>) -> Result<(), HandlerError> {
        outputs.push(Encoded(Output {
            payload: self.payload.into_payload()?,
            key: self.key,
            headers: self.headers,
        }));
        Ok(())
    }
}

impl<T: IntoOutputs> IntoOutputs for Option<T> {
    fn into_outputs(self, outputs: &mut Vec<Encoded>) -> Result<(), HandlerError> {
        self.map_or(Ok(()), |output| output.into_outputs(outputs))
    }
}

impl<T: IntoOutputs> IntoOutputs for Vec<T> {
    fn into_outputs(self, outputs: &mut Vec<Encoded>) -> Result<(), HandlerError> {
        self.into_iter()
            .try_for_each(|output| output.into_outputs(outputs))
    }
}

/// A return type of a handler with `publish`: outputs ([`IntoOutputs`]), or
/// `Result<outputs, E>` with `E: Display + 'static`, whose error fails the
/// record as [`IntoOutcome`](crate::IntoOutcome) says.
#[diagnostic::on_unimplemented(
    message = "a kafka handler with `publish` must return what to publish, or `Result<_, E>` of it, not `{Self}`",
    label = "nothing publishable",
    note = "publishable: a payload (`Json<T>`, `String`, `&str`, `Vec<u8>`, `&[u8]`, a type \
            implementing `IntoPayload`), an `Output<_>` of one, or an `Option<_>` or `Vec<_>` \
            of those"
)]
pub trait Publish {
    /// The encoded outputs, or why the record failed.
    fn into_encoded(self) -> Result<Vec<Encoded>, HandlerError>;
}

impl<T: IntoOutputs> Publish for T {
    fn into_encoded(self) -> Result<Vec<Encoded>, HandlerError> {
        let mut outputs = Vec::new();
        self.into_outputs(&mut outputs)?;
        Ok(outputs)
    }
}

impl<T: IntoOutputs, E: fmt::Display + 'static> Publish for Result<T, E> {
    fn into_encoded(self) -> Result<Vec<Encoded>, HandlerError> {
        match self {
            Ok(outputs) => outputs.into_encoded(),
            Err(err) => Err(crate::outcome::IntoOutcome::into_outcome(Err::<(), E>(err))
                .expect_err("an error stays an error")),
        }
    }
}

/// Produces `outputs` to `topic`, each under a `send {topic}` span that is a
/// child of the current context (the record's `process` span), and waits
/// until the broker acknowledged all of them. The first send that failed
/// fails the record, transiently.
#[doc(hidden)]
pub async fn publish(record: &Record<'_>, topic: &str, outputs: Vec<Encoded>) -> Outcome {
    if outputs.is_empty() {
        return Ok(());
    }
    let producer = record.producer().map_err(|err| {
        HandlerError::new(
            ErrorKind::Publish,
            "producer",
            format!("creating the producer to publish to `{topic}`: {err}"),
        )
    })?;
    let input_key = record.key();
    let sends = outputs.iter().map(|Encoded(output)| {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&output.payload);
        record.key = match &output.key {
            OutputKey::Input => input_key,
            OutputKey::Set(key) => Some(key),
            OutputKey::None => None,
        };
        if !output.headers.is_empty() {
            let headers =
                output
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (name, value)| {
                        headers.insert(Header {
                            key: name,
                            value: Some(value),
                        })
                    });
            record = record.headers(headers);
        }
        // librdkafka's `message.timeout.ms` bounds each delivery; a full
        // local queue is waited on.
        producer.send(record, Timeout::Never)
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut refused = answers.into_iter().filter_map(Result::err);
    let Some((first, _)) = refused.next() else {
        return Ok(());
    };
    Err(HandlerError::new(
        ErrorKind::Publish,
        "publish",
        format!(
            "{} of {} outputs to `{topic}` were not acknowledged: {first}",
            1 + refused.count(),
            outputs.len()
        ),
    ))
}
