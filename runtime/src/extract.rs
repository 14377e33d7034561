//! Handler arguments, extracted from the record by type.

use std::ops::{Deref, DerefMut};

use serde::de::DeserializeOwned;

use crate::outcome::HandlerError;
use crate::producer::TracedProducer;
use crate::record::{Record, RecordHeaders, RecordMeta};

/// A type a handler can take as an argument: the runtime builds it from the
/// record before calling the handler.
///
/// Implemented for the payload (`&[u8]`, `&str`, `String`, [`Json<T>`], and
/// `Option` of each to accept tombstones), the key ([`Key`]), the headers ([`RecordHeaders`]) and the
/// metadata (`&RecordMeta`, `&Record`). Implement it for your own types to
/// decode payloads another way (Avro, Protobuf, ...).
///
/// A failed extraction is a [`HandlerError`] of kind
/// [`Deserialization`](crate::ErrorKind::Deserialization): the handler is not
/// called and the failure is recorded on the record's span.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be extracted from a Kafka record",
    label = "not a kafka-handler argument",
    note = "handler arguments are extracted by type: `&[u8]`, `&str`, `String`, `Json<T>` \
            (or an `Option` of one, to accept tombstones), `Key<'_>`, `RecordHeaders<'_>`, \
            `&RecordMeta`, `&Record<'_>`, `&TracedProducer`, or a type that implements \
            `kafka_handler::FromRecord`; \
            a `Batch<'_, T>` argument needs `batch` in the attribute"
)]
pub trait FromRecord<'r>: Sized {
    /// Builds the argument from the record.
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError>;
}

/// The payload as bytes.
///
/// A tombstone (null payload) has no body: it fails as
/// [`Deserialization`](crate::ErrorKind::Deserialization) (permanent, so
/// it goes to the dead-letter topic). Take `Option<&[u8]>` to receive
/// tombstones as `None`; the same holds for every payload type.
impl<'r> FromRecord<'r> for &'r [u8] {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        record.payload().ok_or_else(|| tombstone("bytes"))
    }
}

/// The payload as bytes, `None` for a tombstone.
impl<'r> FromRecord<'r> for Option<&'r [u8]> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        Ok(record.payload())
    }
}

/// The payload as UTF-8 text; a tombstone fails (take `Option<&str>`).
impl<'r> FromRecord<'r> for &'r str {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        utf8(record.payload().ok_or_else(|| tombstone("text"))?)
    }
}

/// The payload as UTF-8 text, `None` for a tombstone.
impl<'r> FromRecord<'r> for Option<&'r str> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        record.payload().map(utf8).transpose()
    }
}

/// The payload as owned UTF-8 text; a tombstone fails (take `Option<String>`).
impl<'r> FromRecord<'r> for String {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        <&str as FromRecord<'r>>::from_record(record).map(str::to_owned)
    }
}

/// The payload as owned UTF-8 text, `None` for a tombstone.
impl<'r> FromRecord<'r> for Option<String> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        <Option<&str> as FromRecord<'r>>::from_record(record).map(|text| text.map(str::to_owned))
    }
}

fn utf8(payload: &[u8]) -> Result<&str, HandlerError> {
    std::str::from_utf8(payload)
        .map_err(|err| HandlerError::deserialization(format!("payload is not valid UTF-8: {err}")))
}

fn tombstone(expected: &str) -> HandlerError {
    HandlerError::deserialization(format!(
        "payload is null (tombstone), expected {expected}; \
         take an `Option<..>` argument to accept tombstones"
    ))
}

impl<'r> FromRecord<'r> for RecordHeaders<'r> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        Ok(record.headers())
    }
}

impl<'r> FromRecord<'r> for &'r RecordMeta {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        Ok(record.meta())
    }
}

impl<'r> FromRecord<'r> for &'r Record<'r> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        Ok(record)
    }
}

/// The consumer's [`TracedProducer`]: records produced through it continue
/// this record's trace (their `send` spans are children of its `process`
/// span). Created on first use from the consumer's connection properties,
/// unless the builder was given one
/// ([`ConsumerBuilder::producer`](crate::ConsumerBuilder::producer)). If it
/// cannot be created the attempt fails, transiently.
impl<'r> FromRecord<'r> for &'r TracedProducer {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        record.producer().map_err(HandlerError::transient)
    }
}

/// The record's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key<'r>(pub Option<&'r [u8]>);

impl<'r> Key<'r> {
    /// The key's bytes, if the record has a key.
    pub fn as_bytes(&self) -> Option<&'r [u8]> {
        self.0
    }

    /// The key as UTF-8 text, if the record has a key and it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'r str> {
        self.0.and_then(|k| std::str::from_utf8(k).ok())
    }
}

impl<'r> FromRecord<'r> for Key<'r> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        Ok(Key(record.key()))
    }
}

/// A JSON payload, decoded with serde.
///
/// A payload that is not valid JSON for `T`, or a tombstone, fails with
/// `error.type = deserialization` and serde's message; the handler is not
/// called, and the record goes to the dead-letter topic without retries.
/// `Option<Json<T>>` receives tombstones as `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The decoded value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<'r, T: DeserializeOwned> FromRecord<'r> for Json<T> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        json(record.payload().ok_or_else(|| tombstone("JSON"))?)
    }
}

/// A JSON payload, `None` for a tombstone.
impl<'r, T: DeserializeOwned> FromRecord<'r> for Option<Json<T>> {
    fn from_record(record: &'r Record<'r>) -> Result<Self, HandlerError> {
        record.payload().map(json).transpose()
    }
}

fn json<T: DeserializeOwned>(payload: &[u8]) -> Result<Json<T>, HandlerError> {
    serde_json::from_slice(payload)
        .map(Json)
        .map_err(|err| HandlerError::deserialization(format!("invalid JSON payload: {err}")))
}
