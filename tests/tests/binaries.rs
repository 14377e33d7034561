//! The example binaries run the way an operator runs them: `dev_broker` as
//! the cluster in a process of its own, `orders_consumer` (the quickstart's
//! handlers behind `kafka_handler::main!`) configured by flags and `OTEL_*`
//! variables, exporting spans over OTLP/HTTP to a receiver in this process,
//! stopped with signals.
//!
//! `cargo test --workspace` builds both binaries first; alone, this test
//! needs `cargo build --workspace --examples`. Each test starts its own
//! broker, so tests run in parallel without sharing topics or groups.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_handler_tests::kafka::{
    self, committed_offsets, send_order, Produced, TraceParent, FAST_GROUP_FLAGS,
};
use kafka_handler_tests::process::{orders_consumer, Stream};
use kafka_handler_tests::{
    closed_port, http, wait_for, wait_until, ChildProcess, DevBroker, OtlpReceiver, ReceivedSpan,
    Signal,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Message as _};

/// Generous: two cores build and run several binaries at once.
const START: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(60);

/// Every handler of `orders_consumer`, as `--list` names them.
const HANDLERS: [&str; 5] = ["bill", "audit", "pack", "review", "mail"];

/// `orders_consumer` against `broker` with fast group joins, exporting
/// spans to `receiver` every 100 ms.
fn traced_consumer(broker: &DevBroker, receiver: &OtlpReceiver, args: &[&str]) -> Command {
    let mut command = orders_consumer(&["--brokers", broker.brokers()]);
    command
        .args(FAST_GROUP_FLAGS)
        .args(args)
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "orders-test");
    command
}

/// `(topic, partition, offset)` of every single-record span named `name`
/// whose group is `group`.
fn handled(spans: &[ReceivedSpan], name: &str, group: &str) -> BTreeSet<(String, i32, i64)> {
    spans
        .iter()
        .filter(|span| span.name == name)
        .filter(|span| {
            span.attribute("messaging.consumer.group.name")
                .is_some_and(|g| g.to_string() == group)
        })
        .filter_map(ReceivedSpan::record)
        .collect()
}

fn key(produced: &Produced) -> (String, i32, i64) {
    (produced.topic.clone(), produced.partition, produced.offset)
}

/// The harness's receiver, against the OpenTelemetry SDK's own OTLP/HTTP
/// exporter: what an exporter sends is what the tests read.
#[test]
fn the_otlp_receiver_decodes_what_the_sdk_exports() {
    use opentelemetry::trace::{
        Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
        TraceId, TraceState, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};

    // kafka-handler's `main` feature builds reqwest with rustls but no
    // crypto provider of its own; a program that builds its own client
    // installs one, as the generated binaries do.
    #[allow(deprecated)] // ring: see the runtime's telemetry/tls.rs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver = OtlpReceiver::start();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", receiver.endpoint()))
        .build()
        .expect("an OTLP/HTTP exporter");
    // The simple processor exports as each span ends, on this thread (not
    // an async one: the exporter's client blocks).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("receiver-test")
                .build(),
        )
        .build();
    let tracer = provider.tracer("harness");
    let parent = TraceParent::random();
    let remote = SpanContext::new(
        TraceId::from_hex(&parent.trace_id).unwrap(),
        SpanId::from_hex(&parent.span_id).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let mut span = tracer
        .span_builder("process harness")
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.destination.name", "harness"),
            KeyValue::new("messaging.destination.partition.id", "3"),
            KeyValue::new("messaging.kafka.offset", 42_i64),
        ])
        .start_with_context(&tracer, &Context::new().with_remote_span_context(remote));
    span.set_status(Status::error("it broke"));
    let span_id = span.span_context().span_id().to_string();
    span.end();
    tracer
        .span_builder("root")
        .start_with_context(&tracer, &Context::new())
        .end();
    provider.shutdown().expect("flushing the spans");

    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{}", receiver.summary());
    let span = &spans[0];
    assert_eq!(span.name, "process harness");
    assert_eq!(span.trace_id, parent.trace_id);
    assert_eq!(span.span_id, span_id);
    assert_eq!(
        span.parent_span_id.as_deref(),
        Some(parent.span_id.as_str())
    );
    assert_eq!(span.kind, "CONSUMER");
    assert_eq!(span.status, "ERROR");
    assert_eq!(span.status_message, "it broke");
    assert_eq!(span.scope, "harness");
    assert_eq!(span.record(), Some(("harness".to_owned(), 3, 42)));
    assert_eq!(
        span.resource_attribute("service.name").as_deref(),
        Some("receiver-test")
    );
    assert_eq!(spans[1].parent_span_id, None);
    assert_eq!(spans[1].kind, "INTERNAL");
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.path == "/v1/traces" && r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_broker_prints_its_address_and_serves_other_processes() {
    let topic = "dev-broker-check";
    let mut broker = DevBroker::start(&[topic, "second-topic"], 3).await;
    let brokers = broker.brokers().to_owned();
    assert!(
        brokers.starts_with("127.0.0.1:") && brokers["127.0.0.1:".len()..].parse::<u16>().is_ok(),
        "the address is {brokers:?}"
    );
    let stdout = broker.process().lines(Stream::Stdout);
    assert_eq!(
        stdout[..3],
        [
            format!("export KAFKA_BROKERS={brokers}"),
            format!("created topic {topic} (3 partitions)"),
            "created topic second-topic (3 partitions)".to_owned(),
        ],
        "stdout: {stdout:#?}"
    );
    broker
        .process()
        .wait_for_line(Stream::Stdout, START, "the kcat hint", |line| {
            line.contains("kcat") && line.contains(&brokers)
        })
        .await;

    // Topics have the partitions asked for (the mock creates 4 on the fly).
    let metadata_client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a client");
    let metadata = metadata_client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata from the dev broker");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);

    // This process produces to it and reads back what it produced.
    let producer = kafka::producer(&brokers);
    let mut sent = BTreeMap::new();
    for id in 0..12 {
        let produced = send_order(&producer, topic, id, 100 + id, None).await;
        sent.insert((produced.partition, produced.offset), id);
    }
    assert!(
        sent.keys().map(|(p, _)| p).collect::<BTreeSet<_>>().len() > 1,
        "the keys spread over partitions: {sent:?}"
    );
    let records = kafka::read_topic(&brokers, topic, 3, Duration::from_secs(30));
    let read: BTreeMap<(i32, i64), u64> = records
        .iter()
        .map(|record| {
            let payload = std::str::from_utf8(record.payload().expect("a payload")).unwrap();
            let order: serde_json::Value = serde_json::from_str(payload).unwrap();
            (
                (record.partition(), record.offset()),
                order["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(read, sent);

    broker.process().signal(Signal::Term);
    let status = broker.process().wait_exit(EXIT).await;
    assert!(
        status.success(),
        "dev_broker exited with {status} on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_broker_stops_on_sigint() {
    let mut broker = DevBroker::start(&[], 4).await;
    broker.process().signal(Signal::Int);
    let status = broker.process().wait_exit(EXIT).await;
    assert!(
        status.success(),
        "dev_broker exited with {status} on SIGINT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_spans_continue_the_producers_traces() {
    let broker = DevBroker::start(&["orders", "orders.dlq", "invoices"], 4).await;
    let receiver = OtlpReceiver::start();
    let mut consumer = ChildProcess::spawn(
        "orders_consumer",
        traced_consumer(
            &broker,
            &receiver,
            &["--only", "audit", "--only", "bill", "--only", "mail"],
        ),
    );

    let producer = kafka::producer(broker.brokers());
    let mut orders = Vec::new();
    for id in 1..=8 {
        let parent = TraceParent::random();
        orders.push((
            id,
            send_order(&producer, "orders", id, 100 * id, Some(&parent)).await,
        ));
    }

    // Audit, billing and the mailer each see every order.
    let expected: BTreeSet<_> = orders.iter().map(|(_, p)| key(p)).collect();
    let spans = receiver
        .wait_for_spans(
            START,
            "a process span per order from audit and billing, and per invoice from the mailer",
            |spans| {
                handled(spans, "process orders", "audit").is_superset(&expected)
                    && handled(spans, "process orders", "billing").is_superset(&expected)
                    && handled(spans, "process invoices", "mailer").len() >= orders.len()
            },
            || consumer.dump(),
        )
        .await;

    for (id, order) in &orders {
        let parent = order.parent.as_ref().unwrap();
        for group in ["audit", "billing"] {
            let span = spans
                .iter()
                .find(|s| {
                    s.name == "process orders"
                        && s.record() == Some(key(order))
                        && s.attribute("messaging.consumer.group.name")
                            .map(ToString::to_string)
                            == Some(group.to_owned())
                })
                .unwrap();
            assert_eq!(
                span.trace_id, parent.trace_id,
                "{group} order {id}: {span:#?}"
            );
            assert_eq!(
                span.parent_span_id.as_deref(),
                Some(parent.span_id.as_str()),
                "{group} order {id}: {span:#?}"
            );
            assert_eq!(span.kind, "CONSUMER", "{span:#?}");
            assert_ne!(span.status, "ERROR", "{span:#?}");
            assert_eq!(span.str_attribute("messaging.system"), "kafka");
            assert_eq!(span.str_attribute("messaging.destination.name"), "orders");
            assert_eq!(span.str_attribute("messaging.operation.type"), "process");
            assert_eq!(
                span.str_attribute("messaging.destination.partition.id"),
                order.partition.to_string()
            );
            assert_eq!(span.int_attribute("messaging.kafka.offset"), order.offset);
            assert_eq!(
                span.str_attribute("messaging.kafka.message.key"),
                format!("order-{id}")
            );
            assert_eq!(
                span.resource_attribute("service.name").as_deref(),
                Some("orders-test"),
                "{span:#?}"
            );
        }

        // Billing produced the invoice in the order's trace, and the mailer
        // continued it: checkout → billing → invoices → mailer, across
        // processes and topics.
        let billing = spans
            .iter()
            .find(|s| {
                s.name == "process orders"
                    && s.record() == Some(key(order))
                    && s.attribute("messaging.consumer.group.name")
                        .map(ToString::to_string)
                        == Some("billing".to_owned())
            })
            .unwrap();
        let in_trace = |name: &str| {
            spans
                .iter()
                .filter(|s| s.name == name && s.trace_id == parent.trace_id)
                .collect::<Vec<_>>()
        };
        let sends = in_trace("send invoices");
        assert_eq!(sends.len(), 1, "order {id}: {sends:#?}");
        assert_eq!(sends[0].kind, "PRODUCER");
        assert_eq!(
            sends[0].parent_span_id.as_deref(),
            Some(billing.span_id.as_str())
        );
        let mails = in_trace("process invoices");
        assert_eq!(mails.len(), 1, "order {id}: {mails:#?}");
        assert_eq!(
            mails[0].parent_span_id.as_deref(),
            Some(sends[0].span_id.as_str())
        );
        assert_eq!(
            mails[0].str_attribute("messaging.consumer.group.name"),
            "mailer"
        );
    }

    consumer.stop(Signal::Term, EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_commits_only_exported_records_and_loses_none() {
    let broker = DevBroker::start(&["orders"], 4).await;
    let partitions = broker.partitions();
    let receiver = OtlpReceiver::start();
    let args = ["--only", "audit", "--commit-interval", "100ms"];
    let mut first = ChildProcess::spawn(
        "orders_consumer (first run)",
        traced_consumer(&broker, &receiver, &args),
    );

    // Orders keep arriving until after the consumer was told to stop.
    let produced = Arc::new(Mutex::new(Vec::<Produced>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = tokio::spawn({
        let producer = kafka::producer(broker.brokers());
        let produced = Arc::clone(&produced);
        let stop = Arc::clone(&stop);
        async move {
            let mut id = 0;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let parent = TraceParent::random();
                let record = send_order(&producer, "orders", id, 100, Some(&parent)).await;
                produced.lock().unwrap().push(record);
                if id % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    });

    receiver
        .wait_for_spans(
            START,
            "100 process spans from the first run",
            |spans| handled(spans, "process orders", "audit").len() >= 100,
            || first.dump(),
        )
        .await;
    first.signal(Signal::Term);
    first
        .wait_for_log(START, "the shutdown log line", |log| {
            log["message"]
                .as_str()
                .is_some_and(|m| m.contains("shutting down"))
        })
        .await;
    let status = first.wait_exit(EXIT).await;
    // Some more after the consumer left, for the second run.
    let at_exit = produced.lock().unwrap().len();
    wait_until(
        START,
        "20 orders produced after the first run exited",
        || produced.lock().unwrap().len() >= at_exit + 20,
        || first.dump(),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    producing.await.expect("the producer task");
    assert_eq!(
        status.code(),
        Some(0),
        "the first run exited with {status}\n{}",
        first.dump()
    );

    let produced = produced.lock().unwrap().clone();
    let first_spans = receiver.spans();
    let first_run = handled(&first_spans, "process orders", "audit");
    let committed = wait_for(
        Duration::from_secs(30),
        "the committed offsets of group audit",
        || committed_offsets(broker.brokers(), "audit", "orders", partitions).ok(),
        || format!("{}\n{}", first.dump(), broker.dump()),
    )
    .await;
    assert!(
        committed.iter().flatten().any(|&offset| offset > 0),
        "the first run committed nothing: {committed:?}\n{}",
        first.dump()
    );
    // Every record below a committed offset was handled and its span
    // exported before the process exited.
    for (partition, offset) in committed.iter().enumerate() {
        let partition = partition as i32;
        for below in 0..offset.unwrap_or(0) {
            assert!(
                first_run.contains(&("orders".to_owned(), partition, below)),
                "orders/{partition} is committed up to {offset:?}, but offset {below} has no \
                 exported process span from the first run\n{}\n{}",
                receiver.summary(),
                first.dump()
            );
        }
    }
    let produced_keys: BTreeSet<_> = produced.iter().map(key).collect();
    let left_over = produced_keys.difference(&first_run).count();
    assert!(
        left_over > 0,
        "the producer stopped after the consumer; some records must be left for the second run"
    );

    // The second run picks up from the committed offsets: together the two
    // runs handled every record produced.
    let mut second = ChildProcess::spawn(
        "orders_consumer (second run)",
        traced_consumer(&broker, &receiver, &args),
    );
    receiver
        .wait_for_spans(
            START,
            &format!(
                "a process span for each of the {} produced records (first run: {}, {left_over} \
                 left over)",
                produced_keys.len(),
                first_run.len()
            ),
            |spans| handled(spans, "process orders", "audit").is_superset(&produced_keys),
            || second.dump(),
        )
        .await;
    // The second run resumed from the commits, not from the beginning.
    // (Spans are kept in arrival order: the first run's come first.)
    let second_run: Vec<_> = receiver.spans()[first_spans.len()..]
        .iter()
        .filter(|s| s.name == "process orders")
        .filter_map(ReceivedSpan::record)
        .collect();
    assert!(!second_run.is_empty());
    for (topic, partition, offset) in &second_run {
        let floor = committed[*partition as usize].unwrap_or(0);
        assert!(
            *offset >= floor,
            "the second run handled {topic}/{partition}@{offset}, below the committed {floor}"
        );
    }
    second.stop(Signal::Int, EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_a_slow_shutdown_short() {
    let broker = DevBroker::start(&["orders"], 4).await;
    // A collector that never answers: flushing the spans on shutdown waits
    // for the export timeout (60 s).
    let collector = OtlpReceiver::hanging();
    let mut command = traced_consumer(&broker, &collector, &["--only", "audit"]);
    command.env("OTEL_EXPORTER_OTLP_TIMEOUT", "60000");
    let mut consumer = ChildProcess::spawn("orders_consumer", command);
    let producer = kafka::producer(broker.brokers());
    for id in 1..=5 {
        send_order(&producer, "orders", id, 100, Some(&TraceParent::random())).await;
    }
    consumer
        .wait_for_log(START, "an `audited` log line", |log| {
            log["message"].as_str() == Some("audited")
        })
        .await;

    consumer.signal(Signal::Term);
    consumer
        .wait_for_log(START, "the shutdown log line", |log| {
            log["message"]
                .as_str()
                .is_some_and(|m| m.contains("shutting down"))
        })
        .await;
    // The precondition: the shutdown is slow. An export is held by the
    // collector, so the flush at exit waits for its 60 s timeout.
    wait_until(
        START,
        "an export held by the collector",
        || collector.requests().iter().any(|r| r.path == "/v1/traces"),
        || consumer.dump(),
    )
    .await;
    assert_eq!(
        consumer.exit_status(),
        None,
        "the shutdown was not slow; this test needs it to be\n{}",
        consumer.dump()
    );
    let second = Instant::now();
    consumer.signal(Signal::Int);
    let status = consumer.wait_exit(Duration::from_secs(10)).await;
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "the second signal took {:?}",
        second.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(130),
        "a second SIGINT exits with 128 + 2, got {status}\n{}",
        consumer.dump()
    );
    assert!(
        consumer.json_logs().iter().any(|log| log["message"]
            .as_str()
            .is_some_and(|m| m.contains("second signal"))),
        "the second signal is logged\n{}",
        consumer.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_stopped_broker_names_it_and_the_fix() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    let (child, status) = ChildProcess::run(
        "orders_consumer --check",
        orders_consumer(&["--check", "--brokers", &brokers]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{}", child.dump());
    let stderr = child.stderr();
    for needle in [brokers.as_str(), "--brokers", "KAFKA_BROKERS"] {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            child.dump()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_with_the_topics_and_names_missing_ones() {
    let complete = DevBroker::start(&["orders", "orders.dlq", "invoices"], 4).await;
    let (child, status) = ChildProcess::run(
        "orders_consumer --check",
        orders_consumer(&["--check", "--brokers", complete.brokers()]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    let stdout = child.stdout();
    for topic in ["orders", "orders.dlq", "invoices"] {
        assert!(
            stdout.contains(&format!("topic {topic}: 4 partitions")),
            "--check does not report {topic}\n{}",
            child.dump()
        );
    }

    // The mock creates topics on the fly when a client asks for them by
    // name, but --check lists the cluster's topics: the ones never created
    // are reported.
    let partial = DevBroker::start(&["orders"], 4).await;
    for _ in 0..2 {
        let (child, status) = ChildProcess::run(
            "orders_consumer --check",
            orders_consumer(&["--check", "--brokers", partial.brokers()]),
            EXIT,
        )
        .await;
        assert_eq!(status.code(), Some(1), "{}", child.dump());
        let stderr = child.stderr();
        for missing in [
            "topic orders.dlq does not exist",
            "topic invoices does not exist",
        ] {
            assert!(
                stderr.contains(missing),
                "stderr lacks {missing:?}\n{}",
                child.dump()
            );
        }
        assert!(
            !stderr.contains("topic orders does not exist"),
            "{}",
            child.dump()
        );
    }
    // Only the handlers chosen are checked.
    let (child, status) = ChildProcess::run(
        "orders_consumer --check --only audit",
        orders_consumer(&["--check", "--only", "audit", "--brokers", partial.brokers()]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    assert!(
        child
            .stdout()
            .contains("topic orders: 4 partitions (audit)"),
        "{}",
        child.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_reported_and_consuming_goes_on() {
    let broker = DevBroker::start(&["orders"], 4).await;
    let partitions = broker.partitions();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    // Audit's records under a group of this test's own (`--group`).
    let group = kafka_handler::testing::unique_topic("collector-down");
    let mut command = orders_consumer(&["--brokers", broker.brokers()]);
    command
        .args(FAST_GROUP_FLAGS)
        .args([
            "--only",
            "audit",
            "--commit-interval",
            "100ms",
            "--group",
            &group,
        ])
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let mut consumer = ChildProcess::spawn("orders_consumer", command);

    let producer = kafka::producer(broker.brokers());
    let mut ends = vec![None; partitions as usize];
    let mut produce = async |ids: std::ops::RangeInclusive<u64>| {
        for id in ids {
            let produced =
                send_order(&producer, "orders", id, 100, Some(&TraceParent::random())).await;
            ends[produced.partition as usize] = Some(produced.offset + 1);
        }
        ends.clone()
    };
    let wait_for_commits = async |ends: Vec<Option<i64>>, consumer: &ChildProcess| {
        wait_until(
            START,
            &format!("group {group} to commit {ends:?}"),
            || {
                committed_offsets(broker.brokers(), &group, "orders", partitions).ok()
                    == Some(ends.clone())
            },
            || {
                format!(
                    "committed: {:?}\n{}",
                    committed_offsets(broker.brokers(), &group, "orders", partitions),
                    consumer.dump()
                )
            },
        )
        .await;
    };

    let before = produce(1..=10).await;
    wait_for_commits(before.clone(), &consumer).await;
    // A warning (not the start-up line that names the endpoint too).
    let port = &endpoint["http://".len()..];
    let warning = consumer
        .wait_for_log(
            START,
            &format!("a warning naming the collector {endpoint}"),
            |log| {
                matches!(log["level"].as_str(), Some("WARN" | "ERROR"))
                    && log.to_string().contains(port)
            },
        )
        .await;
    assert!(
        warning.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "the warning names the fix: {warning}"
    );
    // Still consuming after the exports failed.
    let after = produce(11..=20).await;
    assert_ne!(after, before);
    wait_for_commits(after, &consumer).await;
    assert_eq!(consumer.exit_status(), None, "{}", consumer.dump());
    consumer.stop(Signal::Term, EXIT).await;
}

/// Whether `line` begins with a log line's timestamp
/// (`2026-11-21T10:00:00.123Z`).
fn starts_with_timestamp(line: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    line.len() > shape.len()
        && line.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

/// Records whose key and payload carry a newline (with what a forged log
/// line would start with), a carriage return, ANSI escapes and a C1
/// control: audit logs the key, mail logs the invoice, billing fails to
/// decode the order and dead-letters it, review logs its key and error. In
/// the text format every event stays one line that starts with its
/// timestamp, with every control character escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_escape_what_records_carry() {
    use rdkafka::producer::FutureRecord;

    let broker = DevBroker::start(&["orders", "orders.dlq", "invoices"], 1).await;
    let mut command = orders_consumer(&["--brokers", broker.brokers()]);
    command
        .args(FAST_GROUP_FLAGS)
        .args(["--log-format", "text"])
        .env("NO_COLOR", "1");
    let mut consumer = ChildProcess::spawn("orders_consumer", command);

    const FORGED: &str =
        "\n2026-01-01T00:00:00.000Z ERROR kafka_handler: forged\r\x1b[31mred\x1b[0m\u{9b}2J";
    const ESCAPED: &str =
        r"\n2026-01-01T00:00:00.000Z ERROR kafka_handler: forged\r\u{1b}[31mred\u{1b}[0m\u{9b}2J";
    let key = format!("order-4{FORGED}");
    let order = format!("not JSON{FORGED}");
    let invoice = format!("invoice 4{FORGED}");
    let producer = kafka::producer(broker.brokers());
    for (topic, key, payload) in [
        ("orders", key.as_str(), order.as_str()),
        ("invoices", "invoice-4", invoice.as_str()),
    ] {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {topic}: {err}"));
    }

    let expected = [
        ("audited", format!("key=\"order-4{ESCAPED}\"")),
        ("mailing", format!("invoice=\"invoice 4{ESCAPED}\"")),
        (
            "record handling failed",
            "error.type=deserialization".to_owned(),
        ),
        ("order needs a human", format!("key=\"order-4{ESCAPED}\"")),
    ];
    for (message, field) in &expected {
        consumer
            .wait_for_line(
                Stream::Stderr,
                START,
                &format!("a {message:?} line with {field}"),
                |line| line.contains(&format!(": {message} ")) && line.contains(field.as_str()),
            )
            .await;
    }
    consumer.stop(Signal::Term, EXIT).await;

    let lines = consumer.lines(Stream::Stderr);
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            starts_with_timestamp(line),
            "every line is an event of its own: {line:?}\n{}",
            consumer.dump()
        );
        assert!(
            !line.chars().any(char::is_control),
            "a raw control character: {line:?}\n{}",
            consumer.dump()
        );
    }
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("forged") && !line.contains(ESCAPED)),
        "{}",
        consumer.dump()
    );
}

#[path = "binaries/cli.rs"]
mod cli;
#[path = "binaries/endpoints.rs"]
mod endpoints;
