//! OTLP export to a collector behind TLS, as SaaS backends and collectors
//! behind a load balancer serve it: `orders_consumer` exports over
//! `https://`, by OTLP/HTTP and by gRPC, to the harness's receiver, which
//! serves a certificate from a CA made for the test, requires a client
//! certificate in the mutual-TLS case and decodes gzip bodies.
//!
//! - With the CA, a client certificate and gzip, spans and log records
//!   arrive, every body compressed, and the log line a handler writes
//!   carries its record's trace and span ids.
//! - A collector whose certificate another CA signed gets nothing: the
//!   handshake fails, the consumer warns and keeps consuming.
//! - Without a client certificate, a collector that requires one gets
//!   nothing.
//!
//! Needs `cargo build --workspace --examples` when run alone (`cargo test
//! --workspace` builds the examples first).

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use kafka_handler_tests::kafka::{self, send_order, TraceParent, FAST_GROUP_FLAGS};
use kafka_handler_tests::pki::{ClientAuth, TestPki};
use kafka_handler_tests::process::orders_consumer;
use kafka_handler_tests::{ChildProcess, DevBroker, OtlpReceiver, Signal};

/// Generous: two cores build and run several binaries at once.
const START: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(60);

/// `orders_consumer`'s billing handler against `broker`, exporting spans
/// (every 100 ms) and log records to `receiver` over `protocol`, with the
/// TLS variables `tls`.
fn exporting_consumer(
    broker: &DevBroker,
    receiver: &OtlpReceiver,
    protocol: &str,
    tls: &[(&str, &OsStr)],
) -> Command {
    let mut command = orders_consumer(&["--brokers", broker.brokers(), "--only", "bill"]);
    command
        .args(FAST_GROUP_FLAGS)
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_LOGS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "orders-tls");
    for (name, value) in tls {
        command.env(name, value);
    }
    command
}

/// Mutual TLS and gzip: the spans and logs arrive, compressed, and the
/// handler's log line is in its record's span.
async fn mutual_tls_with_gzip(protocol: &str) {
    let pki = TestPki::new();
    let receiver = OtlpReceiver::start_tls(pki.server_config(ClientAuth::Required));
    let broker = DevBroker::start(&["orders", "orders.dlq", "invoices"], 2).await;
    let mut consumer = ChildProcess::spawn(
        "orders_consumer",
        exporting_consumer(
            &broker,
            &receiver,
            protocol,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_file().as_os_str()),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    pki.client_certificate_file().as_os_str(),
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    pki.client_key_file().as_os_str(),
                ),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", OsStr::new("gzip")),
            ],
        ),
    );

    let producer = kafka::producer(broker.brokers());
    let parent = TraceParent::random();
    let order = send_order(&producer, "orders", 7, 700, Some(&parent)).await;
    let spans = receiver
        .wait_for_spans(
            START,
            &format!("{protocol}: billing's spans of order 7, over mutual TLS"),
            |spans| {
                let in_trace = |name: &str| {
                    spans
                        .iter()
                        .any(|s| s.trace_id == parent.trace_id && s.name == name)
                };
                in_trace("process orders") && in_trace("charge card")
            },
            || consumer.dump(),
        )
        .await;
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.trace_id == parent.trace_id && s.name == name)
            .unwrap_or_else(|| panic!("{name} in order 7's trace: {spans:#?}"))
    };
    let process = span("process orders");
    assert_eq!(
        process.record(),
        Some((order.topic.clone(), order.partition, order.offset))
    );
    assert_eq!(
        process.parent_span_id.as_deref(),
        Some(parent.span_id.as_str())
    );
    let charge = span("charge card");
    assert_eq!(
        charge.parent_span_id.as_deref(),
        Some(process.span_id.as_str())
    );

    // The handler logs `billing` inside its `charge card` span, a child of
    // the record's process span: the record carries that span's ids, the
    // ones the stderr line shows.
    let logs = receiver
        .wait_for_logs(
            START,
            &format!("{protocol}: the billing log record of order 7"),
            |logs| logs.iter().any(|l| l.body == "billing"),
            || consumer.dump(),
        )
        .await;
    let billing = logs
        .iter()
        .find(|l| l.body == "billing")
        .expect("a billing record");
    assert_eq!(
        billing.trace_id.as_deref(),
        Some(parent.trace_id.as_str()),
        "{billing:#?}"
    );
    assert_eq!(
        billing.span_id.as_deref(),
        Some(charge.span_id.as_str()),
        "{billing:#?}"
    );
    let line = consumer
        .wait_for_log(START, "the billing line on stderr", |log| {
            log["message"] == "billing"
        })
        .await;
    assert_eq!(line["span_id"].as_str(), billing.span_id.as_deref());
    assert_eq!(billing.severity_text, "INFO", "{billing:#?}");
    assert_eq!(
        billing.attributes.get("order.id").map(ToString::to_string),
        Some("7".to_owned()),
        "{billing:#?}"
    );
    assert_eq!(
        billing
            .resource
            .get("service.name")
            .map(ToString::to_string),
        Some("orders-tls".to_owned())
    );

    // Every export body came gzipped, and was accepted.
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert!(
            request.gzipped && request.content_encoding == "gzip",
            "{protocol}: an export without gzip: {request:#?}"
        );
        assert_eq!(request.error, None, "{request:#?}");
    }
    assert_eq!(receiver.tls_failures(), Vec::<String>::new());
    consumer.stop(Signal::Term, EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exports_over_mutual_tls_with_gzip() {
    mutual_tls_with_gzip("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exports_over_mutual_tls_with_gzip() {
    mutual_tls_with_gzip("grpc").await;
}

/// A consumer with `tls` exporting to a receiver that `pki` serves with
/// `client_auth`: the handshake fails, nothing arrives, the consumer warns
/// about the collector saying `why` and keeps running.
async fn refused(
    protocol: &str,
    pki: &TestPki,
    client_auth: ClientAuth,
    tls: &[(&str, &OsStr)],
    why: &str,
) {
    let receiver = OtlpReceiver::start_tls(pki.server_config(client_auth));
    let broker = DevBroker::start(&["orders", "orders.dlq", "invoices"], 2).await;
    let mut consumer = ChildProcess::spawn(
        "orders_consumer",
        exporting_consumer(&broker, &receiver, protocol, tls),
    );
    let producer = kafka::producer(broker.brokers());
    send_order(&producer, "orders", 1, 100, Some(&TraceParent::random())).await;

    let endpoint = receiver.endpoint();
    let warning = consumer
        .wait_for_log(
            START,
            &format!("{protocol}: a warning that exports do not reach {endpoint}"),
            |log| log["level"] == "WARN" && log.to_string().contains("are not reaching"),
        )
        .await;
    // It says the TLS session failed, and why, with the variables to check.
    let warning = warning["message"].as_str().unwrap_or_default().to_owned();
    for expected in [
        endpoint.as_str(),
        why,
        "check OTEL_EXPORTER_OTLP_CERTIFICATE",
    ] {
        assert!(
            warning.contains(expected),
            "{protocol}: {expected:?} in {warning}"
        );
    }
    assert!(
        !receiver.tls_failures().is_empty(),
        "{protocol}: the handshake must have failed\n{}",
        receiver.summary()
    );
    assert!(
        receiver.requests().is_empty() && receiver.spans().is_empty(),
        "{protocol}: nothing may get through\n{}",
        receiver.summary()
    );
    assert_eq!(consumer.exit_status(), None, "{}", consumer.dump());
    consumer.stop(Signal::Term, EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_signed_by_another_ca_gets_nothing() {
    let collector = TestPki::new();
    let other = TestPki::new();
    for protocol in ["http/protobuf", "grpc"] {
        refused(
            protocol,
            &collector,
            ClientAuth::Off,
            &[(
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                other.ca_file().as_os_str(),
            )],
            "TLS: invalid peer certificate",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_gets_nothing() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    for protocol in ["http/protobuf", "grpc"] {
        // No client certificate at all.
        refused(
            protocol,
            &pki,
            ClientAuth::Required,
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_file().as_os_str())],
            "TLS: received fatal alert: CertificateRequired",
        )
        .await;
    }
    // A client certificate another CA signed.
    refused(
        "http/protobuf",
        &pki,
        ClientAuth::Required,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_file().as_os_str()),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                stranger.client_certificate_file().as_os_str(),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                stranger.client_key_file().as_os_str(),
            ),
        ],
        "TLS: received fatal alert",
    )
    .await;
}

/// Bad TLS files stop the binary at start (exit 2) with the variable named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_are_configuration_errors() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let missing = pki.dir().join("missing.pem");
    let (client, client_key, other_key) = (
        pki.client_certificate_file(),
        pki.client_key_file(),
        stranger.client_key_file(),
    );
    let cases: [(&[(&str, &OsStr)], &str); 3] = [
        (
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", missing.as_os_str())],
            "OTEL_EXPORTER_OTLP_CERTIFICATE=",
        ),
        (
            // A key where a certificate belongs.
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", client_key.as_os_str())],
            "no PEM certificate",
        ),
        (
            // Another certificate's key.
            &[
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", client.as_os_str()),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", other_key.as_os_str()),
            ],
            "give the private key of the client certificate",
        ),
    ];
    for (tls, expected) in cases {
        let mut command = orders_consumer(&["--brokers", "127.0.0.1:9", "--only", "bill"]);
        command
            .env("OTEL_TRACES_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9");
        for (name, value) in tls {
            command.env(name, value);
        }
        let (child, status) = ChildProcess::run("orders_consumer", command, EXIT).await;
        assert_eq!(status.code(), Some(2), "{expected}\n{}", child.dump());
        assert!(
            child.stderr().contains(expected),
            "{expected}\n{}",
            child.dump()
        );
    }
}
