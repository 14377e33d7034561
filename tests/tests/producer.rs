//! The traced producer: `send` spans that end at the broker's answer, trace
//! headers replaced (never appended), consume-transform-produce chains that
//! stay one trace, and baggage that flows from record to record.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{
    attribute, error_type, header_values, new_topic, only_span, read_all, retarget, send,
    start_consumer, stop_consumer, telemetry, traced, wait_until, Mode, Telemetry,
};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, HandlerError, Record, TracedProducer};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SpanData;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(30);

/// The test telemetry, with W3C trace context plus W3C baggage.
fn telemetry_() -> &'static Telemetry {
    let telemetry = telemetry(Mode::OtelOnly);
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    telemetry
}

/// A traced producer on `broker`.
fn producer(broker: &EmbeddedBroker) -> TracedProducer {
    TracedProducer::from_config(
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("client.id", "tests-producer")
            .set("message.timeout.ms", "10000"),
    )
    .expect("a producer")
}

/// Where each hop forwards to, by the topic it consumes.
static ROUTES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
/// (topic, baggage `tenant`) seen by the last hop.
static ARRIVED: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());

/// One hop: forwards the payload to the next topic through the consumer's
/// producer, or, at the end of the chain, notes its arrival.
#[kafka_handler(topics = ["hop"], group = "hop")]
async fn hop(
    payload: &[u8],
    record: &Record<'_>,
    producer: &TracedProducer,
) -> Result<(), HandlerError> {
    let next = ROUTES
        .lock()
        .unwrap()
        .iter()
        .find(|(from, _)| from == record.topic())
        .map(|(_, to)| to.clone());
    let Some(next) = next else {
        let tenant = Context::current()
            .baggage()
            .get("tenant")
            .map(|v| v.to_string());
        ARRIVED
            .lock()
            .unwrap()
            .push((record.topic().to_owned(), tenant));
        return Ok(());
    };
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&next).payload(payload),
            Duration::from_secs(5),
        )
        .await
        .map(drop)
        .map_err(|(err, _)| HandlerError::transient(err))
}

/// Issue tests 1 and 4: A → B → C across three topics, all kafka-handler:
/// one trace, `send` and `process` spans alternating, each the parent of the
/// next; baggage set at the producer is visible in the last handler and on
/// the records in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_hop_chain_is_one_trace_and_carries_baggage() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (a, group_a) = new_topic(&broker, "chain-a", 1).await;
    let (b, group_b) = new_topic(&broker, "chain-b", 1).await;
    let (c, group_c) = new_topic(&broker, "chain-c", 1).await;
    ROUTES
        .lock()
        .unwrap()
        .extend([(a.clone(), b.clone()), (b.clone(), c.clone())]);

    let (origin, mut record) = traced(TestRecord::new(&a, b"order-1").partition(0));
    record
        .headers
        .push(("baggage", Some(b"tenant=acme".to_vec())));
    send(&broker, record).await;

    let mut handlers = retarget(handlers![hop], &a, &group_a);
    handlers.extend(retarget(handlers![hop], &b, &group_b));
    handlers.extend(retarget(handlers![hop], &c, &group_c));
    let (shutdown, running) = start_consumer(&broker, handlers);
    wait_until(WAIT, "the record reaching C", || {
        ARRIVED.lock().unwrap().iter().any(|(t, _)| *t == c)
    })
    .await;
    stop_consumer(shutdown, running).await;

    let arrived = ARRIVED.lock().unwrap().clone();
    assert_eq!(
        arrived.iter().find(|(t, _)| *t == c).unwrap().1.as_deref(),
        Some("acme"),
        "baggage set at the producer is current in the last handler"
    );
    for topic in [&b, &c] {
        let records = read_all(&broker, topic).await;
        assert_eq!(records.len(), 1);
        assert_eq!(header_values(&records[0], "traceparent").len(), 1);
        assert_eq!(
            header_values(&records[0], "baggage"),
            ["tenant=acme"],
            "baggage flows onto the produced record"
        );
    }

    let spans: Vec<SpanData> = telemetry
        .exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == origin.trace_id())
        .collect();
    let chain = [
        only_span(&spans, &format!("process {a}")),
        only_span(&spans, &format!("send {b}")),
        only_span(&spans, &format!("process {b}")),
        only_span(&spans, &format!("send {c}")),
        only_span(&spans, &format!("process {c}")),
    ];
    assert_eq!(chain[0].parent_span_id, origin.span_id());
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].parent_span_id,
            pair[0].span_context.span_id(),
            "{} is the parent of {}",
            pair[0].name,
            pair[1].name
        );
    }
    for send in [&chain[1], &chain[3]] {
        assert_eq!(send.span_kind, SpanKind::Producer);
        assert_eq!(
            attribute(send, "messaging.operation.type"),
            Some(Value::from("send"))
        );
        assert_eq!(
            attribute(send, "messaging.kafka.offset"),
            Some(Value::I64(0)),
            "the offset the broker acknowledged"
        );
        assert!(
            send.end_time >= chain[0].start_time,
            "ended at the acknowledgement"
        );
    }
}

/// Issue test 2: a record that already carries two `traceparent` headers and
/// a `b3` is produced with exactly one `traceparent` (the send span's), no
/// stale `b3`, and its other headers in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_are_replaced_not_appended() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, _) = new_topic(&broker, "replace", 1).await;
    let stale = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some(stale),
        })
        .insert(Header {
            key: "tenant",
            value: Some("acme"),
        })
        .insert(Header {
            key: "traceparent",
            value: Some("00-11111111111111111111111111111111-2222222222222222-01"),
        })
        .insert(Header {
            key: "b3",
            value: Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        })
        .insert(Header {
            key: "region",
            value: Some("eu"),
        });
    producer(&broker)
        .send(
            FutureRecord::<str, str>::to(&topic)
                .payload("{}")
                .key("order-9")
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .expect("delivered");

    let records = read_all(&broker, &topic).await;
    let keys: Vec<String> = records[0]
        .headers()
        .map(|h| {
            use rdkafka::message::Headers as _;
            h.iter().map(|h| h.key.to_owned()).collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, ["tenant", "region", "traceparent"]);
    let send = only_span(
        &telemetry.spans_named(&format!("send {topic}")),
        &format!("send {topic}"),
    );
    assert_eq!(
        header_values(&records[0], "traceparent"),
        [common::traceparent_of(&send)],
        "the send span's context, once"
    );
    assert_eq!(
        send.parent_span_id,
        SpanId::INVALID,
        "outside a handler with nothing current, a root"
    );
    assert_eq!(
        attribute(&send, "messaging.kafka.message.key"),
        Some(Value::from("order-9"))
    );
    assert_eq!(
        attribute(&send, "messaging.client.id"),
        Some(Value::from("tests-producer"))
    );
}

/// A send the broker refuses ends its span with the error, when the broker
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_ends_its_span_with_the_error() {
    let telemetry = telemetry_();
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, _) = new_topic(&broker, "refused", 1).await;
    broker
        .fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED])
        .unwrap();
    let result = producer(&broker)
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(b"{}"),
            Duration::from_secs(5),
        )
        .await;
    assert!(result.is_err(), "the broker refused it");
    let send = only_span(
        &telemetry.spans_named(&format!("send {topic}")),
        &format!("send {topic}"),
    );
    assert_eq!(
        error_type(&send),
        Some(Value::from("TopicAuthorizationFailed"))
    );
    assert_eq!(attribute(&send, "messaging.kafka.offset"), None);
}
