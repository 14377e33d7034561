//! The generated binary against secured listeners, for real: `orders_consumer`
//! (OpenSSL inside librdkafka) talks TLS to a rustls terminator in front of
//! the mock cluster, which advertises the terminator's address so that no
//! connection bypasses it. The CA and certificates are made per test.
//!
//! - TLS: records flow and traces continue; `--check` passes with the
//!   cluster's CA and fails, in one line naming `ssl.ca.location`, with
//!   another CA (so a client that does not verify fails the test).
//! - A TLS client against a plaintext listener, and a plaintext client
//!   against a TLS one, fail with the cause and the fix (so a client that
//!   silently falls back to plaintext fails the test).
//! - Mutual TLS: a client certificate passes, none fails naming the flags.
//! - SASL/PLAIN over TLS (answered by the terminator; the mock has no SASL):
//!   a password from `--set-file` or `--set-env` passes, a wrong one fails,
//!   and the password never appears in any output.
//!
//! Needs `cargo build --workspace --examples` (done by `cargo test
//! --workspace`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use kafka_handler::testing::EmbeddedBroker;
use kafka_handler::{Consumer, Handler, Record};
use kafka_handler_tests::kafka::{producer_with, send_order, TraceParent, FAST_GROUP_FLAGS};
use kafka_handler_tests::pki::TestPki;
use kafka_handler_tests::process::Stream;
use kafka_handler_tests::sasl::{Mechanism, SaslUser};
use kafka_handler_tests::tls::TlsProxy;
use kafka_handler_tests::{example_command, wait_until, ChildProcess, OtlpReceiver, Signal};

/// Generous: two cores build and run several binaries at once.
const EXIT: Duration = Duration::from_secs(60);
const FLOW: Duration = Duration::from_secs(90);

/// The topics `orders_consumer` consumes and dead-letters to.
const TOPICS: [&str; 3] = ["orders", "invoices", "orders.dlq"];

/// A password that must never be printed.
const PASSWORD: &str = "pw-7f3a9c1e-never-printed";

/// A mock cluster reachable only through a TLS terminator.
struct SecuredCluster {
    broker: EmbeddedBroker,
    pki: TestPki,
    proxy: TlsProxy,
}

impl SecuredCluster {
    async fn start(name: &str, proxy: impl FnOnce(&str, &TestPki) -> TlsProxy) -> Self {
        let broker = EmbeddedBroker::mock().expect("a mock cluster");
        for topic in TOPICS {
            broker
                .create_topic(topic, 2)
                .await
                .expect("creating a topic");
        }
        let pki = TestPki::named(name);
        let proxy = proxy(broker.bootstrap_servers(), &pki);
        broker
            .advertise_broker(1, "127.0.0.1", proxy.port())
            .expect("advertising the terminator");
        Self { broker, pki, proxy }
    }

    async fn tls(name: &str) -> Self {
        Self::start(name, TlsProxy::start).await
    }

    /// `--set` flags for TLS with the cluster's CA.
    fn tls_flags(&self) -> Vec<String> {
        flags(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &self.pki.ca_file().display().to_string()),
        ])
    }

    fn dump(&self) -> String {
        self.proxy.dump()
    }
}

/// `--set key=value` for each pair.
fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(key, value)| ["--set".to_owned(), format!("{key}={value}")])
        .collect()
}

/// `orders_consumer --check --brokers brokers` with `args`.
fn check(brokers: &str, args: &[String]) -> Command {
    let mut command = example_command("orders_consumer", &["--check", "--brokers", brokers]);
    command.args(args);
    command
}

/// Runs `command` to its end; asserts its exit code and, on failure, that
/// stderr has one error line, holding every needle. Returns the process,
/// for more assertions on its output.
async fn expect_check(
    name: &str,
    command: Command,
    code: i32,
    needles: &[&str],
    why: &str,
) -> ChildProcess {
    let (child, status) = ChildProcess::run(name, command, EXIT).await;
    assert_eq!(status.code(), Some(code), "{why}\n{}", child.dump());
    let stderr = child.stderr();
    if code != 0 {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "one error line\n{}", child.dump());
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "the error lacks {needle:?}\n{}",
                child.dump()
            );
        }
    } else {
        assert!(
            child.stdout().contains("check passed"),
            "{why}\n{}",
            child.dump()
        );
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_and_traces_continue_over_tls() {
    let cluster = SecuredCluster::tls("flow").await;
    let receiver = OtlpReceiver::start();
    let mut command = example_command(
        "orders_consumer",
        &["--brokers", &cluster.proxy.address(), "--only", "audit"],
    );
    command
        .args(FAST_GROUP_FLAGS)
        .args(cluster.tls_flags())
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "orders-tls");
    let mut consumer = ChildProcess::spawn("orders_consumer over TLS", command);

    // The test's producer goes through the terminator too.
    let ca = cluster.pki.ca_file().display().to_string();
    let producer = producer_with(
        &cluster.proxy.address(),
        &[("security.protocol", "SSL"), ("ssl.ca.location", &ca)],
    );
    let parents: Vec<TraceParent> = (0..3).map(|_| TraceParent::random()).collect();
    for (id, parent) in parents.iter().enumerate() {
        send_order(&producer, "orders", id as u64, 100, Some(parent)).await;
    }
    let expected: BTreeSet<(String, String)> = parents
        .iter()
        .map(|p| (p.trace_id.clone(), p.span_id.clone()))
        .collect();
    wait_until(
        FLOW,
        "a `process orders` span of audit in each producer's trace",
        || {
            let continued: BTreeSet<(String, String)> = receiver
                .spans_named("process orders")
                .into_iter()
                .map(|s| (s.trace_id, s.parent_span_id.unwrap_or_default()))
                .collect();
            continued.is_superset(&expected)
        },
        || format!("{}\n{}", consumer.dump(), cluster.dump()),
    )
    .await;
    // Everything went through verified TLS handshakes; none failed.
    assert!(cluster.proxy.handshakes() >= 2, "{}", cluster.dump());
    assert!(
        cluster.proxy.failed_handshakes().is_empty(),
        "{}",
        cluster.dump()
    );
    consumer.signal(Signal::Term);
    let status = consumer.wait_exit(EXIT).await;
    assert!(status.success(), "{}", consumer.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_trusting_another_ca_refuses_the_brokers() {
    let cluster = SecuredCluster::tls("refuse").await;
    let other = TestPki::named("other");
    let mut command = example_command(
        "orders_consumer",
        &["--brokers", &cluster.proxy.address(), "--only", "audit"],
    );
    command.args(flags(&[
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &other.ca_file().display().to_string()),
    ]));
    let mut consumer = ChildProcess::spawn("orders_consumer trusting another CA", command);
    consumer
        .wait_for_line(
            Stream::Stderr,
            EXIT,
            "librdkafka's certificate verification failure",
            |line| line.contains("certificate verify failed"),
        )
        .await;
    assert_eq!(
        cluster.proxy.handshakes(),
        0,
        "no TLS session may be established\n{}",
        cluster.dump()
    );
    consumer.signal(Signal::Term);
    consumer.wait_exit(EXIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_the_brokers_certificate_against_the_ca() {
    let cluster = SecuredCluster::tls("ca").await;
    let brokers = cluster.proxy.address();
    expect_check(
        "check with the cluster's CA",
        check(&brokers, &cluster.tls_flags()),
        0,
        &[],
        "TLS with the cluster's CA passes",
    )
    .await;

    // A CA that did not sign the brokers' certificate: a verifying client
    // refuses the connection.
    let other = TestPki::named("other");
    let wrong_ca = flags(&[
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &other.ca_file().display().to_string()),
    ]);
    expect_check(
        "check with another CA",
        check(&brokers, &wrong_ca),
        1,
        &[
            &brokers,
            "not signed by a CA the client trusts",
            "set ssl.ca.location",
        ],
        "a certificate from an untrusted CA must fail the check",
    )
    .await;
    assert!(
        !cluster.proxy.failed_handshakes().is_empty(),
        "the client must have aborted the handshake\n{}",
        cluster.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_mismatch_between_tls_and_plaintext_listeners() {
    let cluster = SecuredCluster::tls("plaintext").await;
    // TLS asked of the mock's own, plaintext, listener.
    let plaintext = cluster.broker.bootstrap_servers().to_owned();
    expect_check(
        "TLS check against a plaintext listener",
        check(&plaintext, &cluster.tls_flags()),
        1,
        &[
            &plaintext,
            "does not speak TLS",
            "security.protocol=PLAINTEXT",
        ],
        "a TLS client must not fall back to plaintext",
    )
    .await;

    // Plaintext spoken to the TLS listener.
    let tls = cluster.proxy.address();
    expect_check(
        "plaintext check against a TLS listener",
        check(&tls, &[]),
        1,
        &[&tls, "expects TLS", "security.protocol=SSL"],
        "a plaintext client cannot use a TLS listener",
    )
    .await;
    assert_eq!(cluster.proxy.handshakes(), 0, "{}", cluster.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let cluster = SecuredCluster::start("mtls", TlsProxy::start_mutual).await;
    let brokers = cluster.proxy.address();
    let mut with_certificate = cluster.tls_flags();
    with_certificate.extend(flags(&[
        (
            "ssl.certificate.location",
            &cluster.pki.client_certificate_file().display().to_string(),
        ),
        (
            "ssl.key.location",
            &cluster.pki.client_key_file().display().to_string(),
        ),
    ]));
    expect_check(
        "check with a client certificate",
        check(&brokers, &with_certificate),
        0,
        &[],
        "mutual TLS with the client's certificate passes",
    )
    .await;
    expect_check(
        "check without a client certificate",
        check(&brokers, &cluster.tls_flags()),
        1,
        &[&brokers, "client certificate", "ssl.certificate.location"],
        "a broker that requires client certificates refuses a client without one",
    )
    .await;
}

async fn sasl_cluster(name: &str, mechanism: Mechanism) -> SecuredCluster {
    SecuredCluster::start(name, |upstream, pki| {
        TlsProxy::start_sasl(
            upstream,
            pki,
            SaslUser {
                mechanism,
                username: "orders".into(),
                password: PASSWORD.into(),
            },
        )
    })
    .await
}

/// `--set` flags for SASL_SSL with `mechanism` as user `orders`, no
/// password.
fn sasl_flags(cluster: &SecuredCluster, mechanism: Mechanism) -> Vec<String> {
    let mut args = cluster.tls_flags();
    args.extend(flags(&[
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", mechanism.name()),
        ("sasl.username", "orders"),
    ]));
    args
}

fn assert_never_printed(child: &ChildProcess, secret: &str) {
    let output = format!("{}\n{}", child.stdout(), child.stderr());
    assert!(
        !output.contains(secret),
        "the secret appears in the output\n{}",
        child.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_passwords_come_from_files_or_variables_and_are_never_printed() {
    let cluster = sasl_cluster("sasl", Mechanism::Plain).await;
    let brokers = cluster.proxy.address();
    let password_file = cluster.pki.dir().join("kafka-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();

    // From a file, with a trailing line break: passes, and `--check` shows
    // the properties with the password redacted.
    let mut command = check(&brokers, &sasl_flags(&cluster, Mechanism::Plain));
    command.args([
        "--set-file",
        &format!("sasl.password={}", password_file.display()),
    ]);
    let child = expect_check(
        "check, password from a file",
        command,
        0,
        &[],
        "the right password from a file passes",
    )
    .await;
    assert!(
        child.stdout().contains("sasl.password=[redacted]"),
        "{}",
        child.dump()
    );
    assert_never_printed(&child, PASSWORD);
    assert!(cluster.proxy.authenticated() >= 1, "{}", cluster.dump());

    // A wrong password from a variable: one line naming the cause and the
    // fix, without the password.
    let wrong = "wrong-0d1e2f-never-printed";
    let mut command = check(&brokers, &sasl_flags(&cluster, Mechanism::Plain));
    command
        .args(["--set-env", "sasl.password=KAFKA_PASSWORD"])
        .env("KAFKA_PASSWORD", wrong);
    let child = expect_check(
        "check, wrong password",
        command,
        1,
        &["refused the credentials", "sasl.password", &brokers],
        "a wrong password must fail the check",
    )
    .await;
    assert_never_printed(&child, wrong);

    // The running consumer's logs, at debug, with librdkafka's security
    // debugging on, and `--list`: no password either.
    let receiver = OtlpReceiver::start();
    let mut command = example_command(
        "orders_consumer",
        &["--brokers", &brokers, "--only", "audit", "--log", "debug"],
    );
    command
        .args(FAST_GROUP_FLAGS)
        .args(sasl_flags(&cluster, Mechanism::Plain))
        .args(["--set", "debug=security,broker,conf"])
        .env("KAFKA_SET_ENV", "sasl.password=KAFKA_PASSWORD")
        .env("KAFKA_PASSWORD", PASSWORD)
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let mut consumer = ChildProcess::spawn("orders_consumer over SASL_SSL", command);
    let ca = cluster.pki.ca_file().display().to_string();
    let producer = producer_with(
        &brokers,
        &[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", &ca),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "orders"),
            ("sasl.password", PASSWORD),
        ],
    );
    let parent = TraceParent::random();
    send_order(&producer, "orders", 1, 100, Some(&parent)).await;
    wait_until(
        FLOW,
        "the order's `process orders` span",
        || {
            receiver.spans_named("process orders").iter().any(|s| {
                s.trace_id == parent.trace_id
                    && s.parent_span_id.as_deref() == Some(parent.span_id.as_str())
            })
        },
        || format!("{}\n{}", consumer.dump(), cluster.dump()),
    )
    .await;
    consumer.signal(Signal::Term);
    let status = consumer.wait_exit(EXIT).await;
    assert!(status.success(), "{}", consumer.dump());
    assert!(
        consumer.stderr().contains("sasl.password=[redacted]"),
        "the startup log names the redacted property\n{}",
        consumer.dump()
    );
    assert_never_printed(&consumer, PASSWORD);

    let mut list = example_command("orders_consumer", &["--list"]);
    list.env("KAFKA_SET", format!("sasl.password={PASSWORD}"));
    let (child, status) = ChildProcess::run("--list", list, EXIT).await;
    assert!(status.success(), "{}", child.dump());
    assert_never_printed(&child, PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_authenticates_with_the_right_password_only() {
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        let cluster = sasl_cluster("scram", mechanism).await;
        let brokers = cluster.proxy.address();
        let scram = |password: &str| {
            let mut command = check(&brokers, &sasl_flags(&cluster, mechanism));
            command
                .args(["--set-env", "sasl.password=KAFKA_PASSWORD"])
                .env("KAFKA_PASSWORD", password);
            command
        };
        expect_check(
            mechanism.name(),
            scram(PASSWORD),
            0,
            &[],
            "SCRAM with the right password passes",
        )
        .await;
        assert!(cluster.proxy.authenticated() >= 1, "{}", cluster.dump());
        let child = expect_check(
            mechanism.name(),
            scram("wrong-5e6f-never-printed"),
            1,
            &["refused the credentials", "sasl.password"],
            "SCRAM with a wrong password fails",
        )
        .await;
        assert_never_printed(&child, "wrong-5e6f-never-printed");

        // A mechanism the cluster does not offer.
        let mut other = sasl_flags(&cluster, mechanism);
        other.extend(flags(&[("sasl.mechanisms", "PLAIN")]));
        other.extend(["--set-env".into(), "sasl.password=KAFKA_PASSWORD".into()]);
        let mut command = check(&brokers, &other);
        command.env("KAFKA_PASSWORD", PASSWORD);
        expect_check(
            "PLAIN where only SCRAM is offered",
            command,
            1,
            &["do not offer the SASL mechanism", "sasl.mechanisms"],
            "an unoffered mechanism fails",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_on_the_command_line_is_warned_about_without_its_value() {
    let cluster = sasl_cluster("argv", Mechanism::Plain).await;
    let mut command = example_command(
        "orders_consumer",
        &["--brokers", &cluster.proxy.address(), "--only", "audit"],
    );
    command
        .args(FAST_GROUP_FLAGS)
        .args(sasl_flags(&cluster, Mechanism::Plain))
        .args(["--set", &format!("sasl.password={PASSWORD}")]);
    let mut consumer = ChildProcess::spawn("orders_consumer, password in argv", command);
    consumer
        .wait_for_line(
            Stream::Stderr,
            EXIT,
            "the warning about the password",
            |line| {
                line.contains("sasl.password is on the command line") && line.contains("--set-file")
            },
        )
        .await;
    consumer.signal(Signal::Term);
    consumer.wait_exit(EXIT).await;
    assert_never_printed(&consumer, PASSWORD);
}

/// The mechanisms managed clusters use are built in: TLS, PLAIN, SCRAM and
/// OAUTHBEARER with OIDC (which needs libcurl). librdkafka rejects each at
/// client creation when it was built without it, as the first report of a
/// TLS-less build did: "librdkafka rejects security.protocol=SASL_SSL".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_the_sasl_mechanisms_of_managed_clusters_are_built_in() {
    let sasl = |mechanism: &'static str| {
        vec![
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", "orders"),
            ("sasl.password", PASSWORD),
        ]
    };
    let cases = [
        vec![("security.protocol", "SSL")],
        sasl("PLAIN"),
        sasl("SCRAM-SHA-256"),
        sasl("SCRAM-SHA-512"),
        vec![
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", "orders"),
            ("sasl.oauthbearer.client.secret", PASSWORD),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example.invalid/oauth2/token",
            ),
        ],
    ];
    for properties in cases {
        let mut builder = Consumer::builder()
            .brokers("127.0.0.1:1")
            .handler(Handler::sync(
                "tests::audit",
                ["orders"],
                "audit",
                |_: &Record<'_>| Ok(()),
            ));
        for (key, value) in &properties {
            builder = builder.set(*key, *value);
        }
        if let Err(err) = builder.build() {
            let message = err.to_string();
            assert!(!message.contains(PASSWORD), "{message}");
            panic!("{properties:?} does not build: {message}");
        }
    }
}
