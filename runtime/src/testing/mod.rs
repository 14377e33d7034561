//! Testing with a real broker: [`TestApp`] runs your handlers for a test;
//! [`EmbeddedBroker`] is the broker underneath, for tests, examples and
//! benchmarks.
//!
//! [`EmbeddedBroker::start`] uses the cluster named by `KAFKA_BROKERS` when
//! it is set. Otherwise it starts librdkafka's mock cluster in-process: a real
//! Kafka wire-protocol broker on loopback TCP, with consumer groups and
//! offset commits. Other processes can reach it at
//! [`bootstrap_servers`](EmbeddedBroker::bootstrap_servers).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;

use crate::consumer::BROKERS_ENV;
use crate::error::Error;

mod app;
mod outcome;

pub use app::{counter_total, TestApp};
pub use outcome::{RecordOutcome, Sent, Trace};

/// A broker to test against: the `KAFKA_BROKERS` cluster or an in-process mock.
pub struct EmbeddedBroker {
    bootstrap_servers: String,
    /// Owns the mock cluster, when there is one, and produces test records.
    producer: FutureProducer,
    mock: bool,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("mock", &self.mock)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Connects to `KAFKA_BROKERS` or starts a one-broker mock cluster.
    pub fn start() -> Result<Self, Error> {
        match std::env::var(BROKERS_ENV) {
            Ok(brokers) if !brokers.is_empty() => Self::connect(&brokers),
            _ => Self::mock(),
        }
    }

    /// Starts a one-broker mock cluster, ignoring `KAFKA_BROKERS`.
    pub fn mock() -> Result<Self, Error> {
        let producer: FutureProducer = producer_config()
            .set("test.mock.num.brokers", "1")
            .create()
            .map_err(|err| Error::kafka("starting the mock cluster", err))?;
        let mock = producer
            .client()
            .mock_cluster()
            .ok_or_else(|| Error::Config("librdkafka did not create a mock cluster".into()))?;
        let bootstrap_servers = mock.bootstrap_servers();
        drop(mock);
        disable_initial_rebalance_delay(producer.client());
        Ok(Self {
            bootstrap_servers,
            producer,
            mock: true,
        })
    }

    fn connect(brokers: &str) -> Result<Self, Error> {
        let producer: FutureProducer = producer_config()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(|err| Error::kafka(format!("connecting to {brokers}"), err))?;
        Ok(Self {
            bootstrap_servers: brokers.to_owned(),
            producer,
            mock: false,
        })
    }

    /// The bootstrap servers, `host:port[,host:port]`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Whether this is the in-process mock cluster.
    pub fn is_mock(&self) -> bool {
        self.mock
    }

    /// Consumer properties that make group joins and rebalances fast (the
    /// mock otherwise waits seconds). Pass them to
    /// [`ConsumerBuilder::set`](crate::ConsumerBuilder::set).
    pub fn consumer_properties(&self) -> Vec<(String, String)> {
        [
            ("session.timeout.ms", "1500"),
            ("heartbeat.interval.ms", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Takes mock broker `id` (1-based) down: its connections close and it
    /// refuses new ones until [`broker_up`](Self::broker_up). Only for the
    /// mock cluster.
    pub fn broker_down(&self, id: i32) -> Result<(), Error> {
        with_mock(self.producer.client(), |mock| mock.broker_down(id))
    }

    /// Brings mock broker `id` back up.
    pub fn broker_up(&self, id: i32) -> Result<(), Error> {
        with_mock(self.producer.client(), |mock| mock.broker_up(id))
    }

    /// Makes mock broker `id` (1-based) advertise `host:port` in metadata
    /// instead of its own listener, so that clients, once bootstrapped,
    /// connect there: to a TLS terminator in front of it, for example, which
    /// the mock cluster (plaintext only) lacks. The bootstrap address and
    /// the listener stay. This broker's own [`send`](Self::send) follows the
    /// new address too, in plaintext: produce through the terminator
    /// instead. Only for the mock cluster.
    pub fn advertise_broker(&self, id: i32, host: &str, port: u16) -> Result<(), Error> {
        advertise_broker(self.producer.client(), id, host, port)
    }

    /// Sets the group timing the mock cluster imposes on groups of the
    /// KIP-848 protocol (`group.protocol=consumer`), which the broker owns:
    /// `group.consumer.session.timeout.ms` (30 s on the mock: a member that
    /// dies keeps its partitions that long) and
    /// `group.consumer.heartbeat.interval.ms` (3 s: how often members learn
    /// of a new assignment). The classic protocols take theirs from each
    /// member's `session.timeout.ms` and `heartbeat.interval.ms`. Only for
    /// the mock cluster.
    pub fn set_consumer_group_timing(
        &self,
        session_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Result<(), Error> {
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        set_consumer_group_timing(
            self.producer.client(),
            millis(session_timeout),
            millis(heartbeat_interval),
        )
    }

    /// Makes the next `errors.len()` Produce requests to the mock cluster,
    /// from any client, fail with those errors in turn (for example
    /// `RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED`). Only for the mock.
    pub fn fail_produce_requests(
        &self,
        errors: &[rdkafka::types::RDKafkaRespErr],
    ) -> Result<(), Error> {
        with_mock(self.producer.client(), |mock| {
            mock.request_errors(rdkafka::types::RDKafkaApiKey::Produce, errors);
            Ok(())
        })
    }

    /// Makes the next `errors.len()` requests of kind `api` to the mock
    /// cluster, from any client, fail with those errors in turn (for
    /// example `OffsetCommit` requests). Only for the mock.
    pub fn fail_requests(
        &self,
        api: rdkafka::types::RDKafkaApiKey,
        errors: &[rdkafka::types::RDKafkaRespErr],
    ) -> Result<(), Error> {
        with_mock(self.producer.client(), |mock| {
            mock.request_errors(api, errors);
            Ok(())
        })
    }

    /// Makes the mock cluster answer every metadata request about `topic`
    /// with `error` (for example `RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED`,
    /// as a broker does for a principal without access); `RD_KAFKA_RESP_ERR_NO_ERROR`
    /// clears it. Only for the mock.
    pub fn topic_error(
        &self,
        topic: &str,
        error: rdkafka::types::RDKafkaRespErr,
    ) -> Result<(), Error> {
        with_mock(self.producer.client(), |mock| {
            mock.topic_error(topic, error)
        })
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if self.mock {
            let mock = self
                .producer
                .client()
                .mock_cluster()
                .ok_or_else(|| Error::Config("the mock cluster is gone".into()))?;
            return mock
                .create_topic(topic, partitions, 1)
                .map_err(|err| Error::kafka(format!("creating topic {topic}"), err));
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .create()
            .map_err(|err| Error::kafka("creating an admin client", err))?;
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|err| Error::kafka(format!("creating topic {topic}"), err))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(Error::Config(format!(
                    "creating topic {name} failed: {code}"
                )));
            }
        }
        Ok(())
    }

    /// Produces one record and waits for the broker's acknowledgement.
    /// Returns its (partition, offset).
    pub async fn send(&self, record: TestRecord<'_>) -> Result<(i32, i64), Error> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut future_record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(record.topic).headers(headers);
        if let Some(partition) = record.partition {
            future_record = future_record.partition(partition);
        }
        if let Some(key) = record.key {
            future_record = future_record.key(key);
        }
        if let Some(payload) = record.payload {
            future_record = future_record.payload(payload);
        }
        let delivery = self
            .producer
            .send(future_record, Duration::from_secs(30))
            .await
            .map_err(|(err, _)| Error::kafka(format!("producing to {}", record.topic), err))?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// A record to produce with [`EmbeddedBroker::send`].
#[derive(Clone, Debug, Default)]
pub struct TestRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition; `None` lets the partitioner choose (by key).
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// The payload; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Headers in order; a `None` value is a null header.
    pub headers: Vec<(&'a str, Option<Vec<u8>>)>,
}

impl<'a> TestRecord<'a> {
    /// A record with a payload and nothing else.
    pub fn new(topic: &'a str, payload: &'a [u8]) -> Self {
        Self {
            topic,
            payload: Some(payload),
            ..Self::default()
        }
    }

    /// Sends it to `partition`.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Appends a header.
    pub fn header(mut self, key: &'a str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key, Some(value.into())));
        self
    }
}

/// `headers` with one more header, named by raw bytes: for tests of records
/// whose header names are not UTF-8, which Kafka's protocol and librdkafka
/// carry as sent (a Go or C producer can write any bytes) but rdkafka's
/// `Header`, whose key is a `&str`, cannot express. A `None` value is a null
/// header. Produce the result as a record's headers, or read it through
/// [`Record::new`](crate::Record::new).
///
/// ```
/// use kafka_handler::testing::with_raw_header;
/// use kafka_handler::Record;
/// use rdkafka::message::OwnedHeaders;
///
/// let headers = with_raw_header(OwnedHeaders::new(), b"trace\xffparent", Some(b"x"));
/// let headers = with_raw_header(headers, b"tenant", Some(b"acme"));
/// let record = Record::new("orders", 0, 0, None, None, Some(&headers));
/// assert_eq!(record.headers().len(), 2);
/// // A name that is not UTF-8 is skipped.
/// assert_eq!(record.headers().iter().count(), 1);
/// ```
#[allow(unsafe_code)]
pub fn with_raw_header(headers: OwnedHeaders, name: &[u8], value: Option<&[u8]>) -> OwnedHeaders {
    use rdkafka::bindings::{rd_kafka_header_add, rd_kafka_headers_t};

    // rdkafka's view of native headers: the reference's address is the
    // native `rd_kafka_headers_t` (`BorrowedHeaders` is a zero-sized
    // stand-in; rdkafka's own `OwnedHeaders::insert` adds through the same
    // pointer).
    let native = std::ptr::from_ref(headers.as_borrowed())
        .cast::<rd_kafka_headers_t>()
        .cast_mut();
    let (value_ptr, value_len) = match value {
        Some(value) => (value.as_ptr().cast(), value.len() as isize),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `headers` is owned here, so nothing else reads the native
    // headers while this adds to them; librdkafka copies `name.len()` bytes
    // of the name and `value_len` bytes of the value (none for a null
    // value), both of which outlive the call.
    let err = unsafe {
        rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            name.len() as isize,
            value_ptr,
            value_len,
        )
    };
    // Only read-only (a consumed message's) headers refuse, as in rdkafka's
    // `insert`.
    assert_eq!(
        err,
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    headers
}

/// A topic name no other test uses: `{prefix}-{random hex}`.
pub fn unique_topic(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{prefix}-{:016x}", hasher.finish())
}

fn producer_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "1")
        // Large test records (a 1 MiB payload plus headers).
        .set("message.max.bytes", "16777216");
    config
}

/// Runs a fault injection on the mock cluster `client` owns.
fn with_mock<C: ClientContext>(
    client: &Client<C>,
    inject: impl FnOnce(&rdkafka::mocking::MockCluster<'_, C>) -> rdkafka::error::KafkaResult<()>,
) -> Result<(), Error> {
    let mock = client.mock_cluster().ok_or_else(|| {
        Error::Config("fault injection needs the mock cluster, not KAFKA_BROKERS".into())
    })?;
    inject(&mock).map_err(|err| Error::kafka("injecting a fault into the mock cluster", err))
}

/// Sets the mock cluster's KIP-848 group timing, in milliseconds. rdkafka
/// has no safe wrapper for these knobs, so this calls librdkafka directly.
#[allow(unsafe_code)]
fn set_consumer_group_timing<C: ClientContext>(
    client: &Client<C>,
    session_timeout_ms: i32,
    heartbeat_interval_ms: i32,
) -> Result<(), Error> {
    // SAFETY: `client` is a live librdkafka handle for the whole call.
    // `rd_kafka_handle_mock_cluster` returns the mock cluster it owns (or
    // null, checked), which stays alive as long as the handle does; the
    // setters only write fields of that cluster (under its lock).
    unsafe {
        let mock = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.native_ptr());
        if mock.is_null() {
            return Err(Error::Config(
                "the group timing of the mock cluster needs the mock cluster, not KAFKA_BROKERS"
                    .into(),
            ));
        }
        rdkafka::bindings::rd_kafka_mock_set_group_consumer_session_timeout_ms(
            mock,
            session_timeout_ms,
        );
        rdkafka::bindings::rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(
            mock,
            heartbeat_interval_ms,
        );
    }
    Ok(())
}

/// Sets the address mock broker `id` advertises. rdkafka has no safe
/// wrapper for it, so this calls librdkafka directly.
#[allow(unsafe_code)]
fn advertise_broker<C: ClientContext>(
    client: &Client<C>,
    id: i32,
    host: &str,
    port: u16,
) -> Result<(), Error> {
    let host = std::ffi::CString::new(host)
        .map_err(|_| Error::Config(format!("{host:?} has a NUL byte")))?;
    // SAFETY: `client` is a live librdkafka handle for the whole call.
    // `rd_kafka_handle_mock_cluster` returns the mock cluster it owns (or
    // null, checked), which stays alive as long as the handle does. The
    // setter copies `host` (a NUL-terminated string that outlives the call)
    // into the broker's fields under the cluster's lock, and ignores an
    // unknown id.
    unsafe {
        let mock = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.native_ptr());
        if mock.is_null() {
            return Err(Error::Config(
                "advertising another address needs the mock cluster, not KAFKA_BROKERS".into(),
            ));
        }
        rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
            mock,
            id,
            host.as_ptr(),
            i32::from(port),
        );
    }
    Ok(())
}

/// The mock cluster delays a group's first join by 3 s (as real brokers do
/// with `group.initial.rebalance.delay.ms`). rdkafka has no safe wrapper for
/// the knob, so this calls librdkafka directly.
#[allow(unsafe_code)]
fn disable_initial_rebalance_delay<C: ClientContext>(client: &Client<C>) {
    // SAFETY: `client` is a live librdkafka handle for the whole call.
    // `rd_kafka_handle_mock_cluster` returns the mock cluster it owns (or
    // null, checked), which stays alive as long as the handle does;
    // setting the delay only writes a field of that cluster.
    unsafe {
        let mock = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.native_ptr());
        if !mock.is_null() {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mock, 0);
        }
    }
}
