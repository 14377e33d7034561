//! The record a handler sees: a borrowed view over one Kafka message.

use std::fmt;
use std::sync::OnceLock;

use crate::producer::{ProducerSlot, TracedProducer};
use rdkafka::message::{
    BorrowedHeaders, BorrowedMessage, Headers as _, Message, OwnedHeaders, OwnedMessage, Timestamp,
};

/// One Kafka record, borrowed from the consumer for the duration of its handler.
///
/// Extractors ([`FromRecord`](crate::FromRecord)) read their argument from it.
/// Building it costs a handful of field reads: nothing is copied or allocated
/// unless a handler asks for an owned view ([`RecordMeta`]).
pub struct Record<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: RecordHeaders<'a>,
    /// Boxed: most handlers never ask for it, and a record is held in
    /// every future that handles it.
    meta: OnceLock<Box<RecordMeta>>,
    producer: Option<&'a ProducerSlot>,
}

impl<'a> Record<'a> {
    /// A view over a message polled from rdkafka.
    pub fn from_message(message: &'a BorrowedMessage<'a>) -> Self {
        Self::of(message, RecordHeaders::borrowed(message.headers()))
    }

    /// A view over a message copied out of the consumer (a synchronous
    /// handler's record on the blocking pool).
    pub(crate) fn from_owned(message: &'a OwnedMessage) -> Self {
        Self::of(message, RecordHeaders::owned(message.headers()))
    }

    fn of(message: &'a impl Message, headers: RecordHeaders<'a>) -> Self {
        Self {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key(),
            payload: message.payload(),
            headers,
            meta: OnceLock::new(),
            producer: None,
        }
    }

    /// The consumer's producer, for handlers that take a `&TracedProducer`.
    pub(crate) fn with_producer(mut self, producer: &'a ProducerSlot) -> Self {
        self.producer = Some(producer);
        self
    }

    /// A copy of the record, for code that runs on another thread than the
    /// consumer's (a synchronous handler on the blocking pool).
    pub(crate) fn to_owned_record(&self) -> OwnedRecord {
        let timestamp = self
            .timestamp
            .map_or(Timestamp::NotAvailable, Timestamp::CreateTime);
        OwnedRecord {
            message: OwnedMessage::new(
                self.payload.map(<[u8]>::to_vec),
                self.key.map(<[u8]>::to_vec),
                self.topic.to_owned(),
                timestamp,
                self.partition,
                self.offset,
                self.headers.to_owned(),
            ),
            producer: self.producer.cloned(),
        }
    }

    /// The producer of the consumer this record came from.
    pub(crate) fn producer(&self) -> Result<&'a TracedProducer, String> {
        match self.producer {
            Some(slot) => slot
                .get()
                .map_err(|problem| format!("the consumer's producer could not be created: {problem}")),
            None => Err("this record did not come from a kafka-handler consumer, so there is no \
                         producer to hand the handler; keep a `TracedProducer` in its state instead"
                .to_owned()),
        }
    }

    /// A view over an in-memory record: for unit tests of handlers and for
    /// benchmarks. `headers` are the record's headers, in order.
    pub fn new(
        topic: &'a str,
        partition: i32,
        offset: i64,
        key: Option<&'a [u8]>,
        payload: Option<&'a [u8]>,
        headers: Option<&'a OwnedHeaders>,
    ) -> Self {
        Self {
            topic,
            partition,
            offset,
            timestamp: None,
            key,
            payload,
            headers: RecordHeaders::owned(headers),
            meta: OnceLock::new(),
            producer: None,
        }
    }

    /// Sets the record's timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset within its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the Unix epoch, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The record's key, if it has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The record's payload; `None` for a tombstone (null payload).
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.payload
    }

    /// The record's headers.
    pub fn headers(&self) -> RecordHeaders<'a> {
        self.headers
    }

    /// An owned snapshot of the record's metadata, built on first use.
    pub fn meta(&self) -> &RecordMeta {
        self.meta.get_or_init(|| {
            Box::new(RecordMeta {
                topic: self.topic.to_owned(),
                partition: self.partition,
                offset: self.offset,
                timestamp: self.timestamp,
                key: self.key.map(<[u8]>::to_vec),
                headers: self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                    .collect(),
            })
        })
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key_len", &self.key.map(<[u8]>::len))
            .field("payload_len", &self.payload.map(<[u8]>::len))
            .finish_non_exhaustive()
    }
}

/// A [`Record`] copied out of the consumer: see [`Record::to_owned_record`].
pub(crate) struct OwnedRecord {
    message: OwnedMessage,
    producer: Option<ProducerSlot>,
}

impl OwnedRecord {
    /// The record, borrowed from the copy.
    pub(crate) fn record(&self) -> Record<'_> {
        let record = Record::from_owned(&self.message);
        match &self.producer {
            Some(producer) => record.with_producer(producer),
            None => record,
        }
    }
}

/// The headers of a [`Record`], in the order the producer wrote them.
///
/// Keys may repeat. [`get`](Self::get) returns the **last** value for a key,
/// the rule Kafka's own Java client (`Headers::lastHeader`) and the
/// OpenTelemetry Java instrumentation follow.
///
/// A header whose name is not UTF-8 is skipped: [`get_at`](Self::get_at)
/// returns `None` for it, and [`iter`](Self::iter), [`get`](Self::get),
/// trace-context extraction, [`RecordMeta::headers`] and dead-letter copies
/// leave it out ([`len`](Self::len) still counts it). Kafka header names are
/// strings, but the protocol carries bytes, and producers whose strings are
/// bytes (Go, C) can write any.
#[derive(Clone, Copy)]
pub struct RecordHeaders<'a> {
    inner: HeadersRef<'a>,
}

#[derive(Clone, Copy)]
enum HeadersRef<'a> {
    None,
    Borrowed(&'a BorrowedHeaders),
    Owned(&'a OwnedHeaders),
}

impl<'a> RecordHeaders<'a> {
    fn borrowed(headers: Option<&'a BorrowedHeaders>) -> Self {
        let inner = headers.map_or(HeadersRef::None, HeadersRef::Borrowed);
        Self { inner }
    }

    fn owned(headers: Option<&'a OwnedHeaders>) -> Self {
        let inner = headers.map_or(HeadersRef::None, HeadersRef::Owned);
        Self { inner }
    }

    fn to_owned(self) -> Option<OwnedHeaders> {
        match self.inner {
            HeadersRef::None => None,
            HeadersRef::Borrowed(h) => Some(h.detach()),
            HeadersRef::Owned(h) => Some(h.clone()),
        }
    }

    /// How many headers the record carries.
    pub fn len(&self) -> usize {
        match self.inner {
            HeadersRef::None => 0,
            HeadersRef::Borrowed(h) => h.count(),
            HeadersRef::Owned(h) => h.count(),
        }
    }

    /// Whether the record carries no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The header at `idx`, as (key, value); the value is `None` for a null
    /// header. `None` when there is no header `idx`, or its name is not UTF-8.
    pub fn get_at(&self, idx: usize) -> Option<(&'a str, Option<&'a [u8]>)> {
        let (name, value) = match self.inner {
            HeadersRef::None => None,
            HeadersRef::Borrowed(h) => header_at(h, idx),
            HeadersRef::Owned(h) => header_at(h.as_borrowed(), idx),
        }?;
        Some((std::str::from_utf8(name).ok()?, value))
    }

    /// The value of the last header named `key` (keys compare exactly);
    /// `None` when there is none or that last header is null.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        (0..self.len())
            .rev()
            .filter_map(|idx| self.get_at(idx))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
    }

    /// Every header in order, as (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + '_ {
        (0..self.len()).filter_map(|idx| self.get_at(idx))
    }
}

/// The name and value of header `idx` of `headers`, the name as raw bytes.
///
/// rdkafka's `Headers::try_get` (and `get`, `iter`) unwraps the name's
/// conversion to `&str`, so a record whose header name is not UTF-8 (which
/// librdkafka and the broker pass on as sent) would panic the consumer; this
/// reads the header through librdkafka directly instead.
#[allow(unsafe_code)]
fn header_at(headers: &BorrowedHeaders, idx: usize) -> Option<(&[u8], Option<&[u8]>)> {
    use rdkafka::bindings::{rd_kafka_header_get_all, rd_kafka_headers_t};
    use rdkafka::types::RDKafkaRespErr;
    use std::ffi::CStr;

    // rdkafka's view of native headers: the reference's address is the
    // native `rd_kafka_headers_t` (rdkafka's own `as_native_ptr` is this
    // cast; `BorrowedHeaders` is a zero-sized stand-in).
    let native = std::ptr::from_ref(headers).cast::<rd_kafka_headers_t>();
    let mut name = std::ptr::null();
    let mut value = std::ptr::null();
    let mut size = 0;
    // SAFETY: `native` is a live `rd_kafka_headers_t` for as long as
    // `headers` is borrowed; librdkafka bounds-checks `idx` and only writes
    // the three out-pointers.
    let err = unsafe { rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: on success librdkafka points `name` at the header's
    // NUL-terminated name and `value` at `size` bytes (or null for a null
    // value), both owned by the headers, which outlive `headers`' borrow and
    // are not changed while it lasts (only an owner with `&mut` or by value
    // can add headers).
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value = (!value.is_null()).then(|| {
        if size == 0 {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
        }
    });
    Some((name, value))
}

impl fmt::Debug for RecordHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, v.map(String::from_utf8_lossy))),
            )
            .finish()
    }
}

/// An owned snapshot of a record's metadata: topic, partition, offset,
/// timestamp, key and headers.
///
/// Take it as `&RecordMeta` in a handler. It is built on first request, so
/// handlers that don't ask for it pay nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl RecordMeta {
    /// The topic the record was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the Unix epoch, if any.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The record's key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The record's headers in order, as (key, value).
    pub fn headers(&self) -> &[(String, Option<Vec<u8>>)] {
        &self.headers
    }

    /// The value of the last header named `key`; `None` when there is none
    /// or that last header is null.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry::Context;
    use rdkafka::message::OwnedHeaders;

    use super::Record;
    use crate::propagation::{extract_parent_context, HeaderExtractor, Propagation};
    use crate::testing::with_raw_header;

    const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Regression: rdkafka's `Headers::try_get` unwraps a header name's
    /// UTF-8 conversion, so such a record panicked the consumer when its
    /// headers were first read (trace-context extraction).
    #[test]
    fn a_header_name_that_is_not_utf8_is_skipped_not_a_panic() {
        let mut headers = OwnedHeaders::new();
        for (name, value) in [
            (&b"trace\xffparent"[..], Some(&b"x"[..])),
            (b"traceparent", Some(TRACEPARENT)),
            (b"\xc3\x28", None),
            (b"tenant", Some(b"acme")),
            (b"\xfe\xff", Some(b"")),
        ] {
            headers = with_raw_header(headers, name, value);
        }
        let record = Record::new("orders", 0, 0, None, None, Some(&headers));
        let view = record.headers();
        assert_eq!(view.len(), 5);
        assert_eq!(view.get_at(0), None);
        assert_eq!(view.get_at(1), Some(("traceparent", Some(TRACEPARENT))));
        assert_eq!(view.get_at(2), None);
        assert_eq!(view.get_at(5), None);
        let names: Vec<&str> = view.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["traceparent", "tenant"]);
        assert_eq!(view.get("tenant"), Some(&b"acme"[..]));
        let meta: Vec<&str> = record
            .meta()
            .headers()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(meta, ["traceparent", "tenant"]);
        assert!(!format!("{record:?}").is_empty());

        // Extraction reads the good traceparent, through either path.
        let cx = Propagation::default()
            .propagator()
            .extract_with_context(&Context::new(), &HeaderExtractor(view));
        assert!(cx.span().span_context().is_valid());
        let _ = extract_parent_context(view);
        // The copy a synchronous handler gets keeps every header.
        let owned = record.to_owned_record();
        assert_eq!(owned.record().headers().len(), 5);
        assert_eq!(owned.record().headers().iter().count(), 2);
    }
}
