//! The HTTP endpoints (`--health-addr`, `--metrics-addr`) and the metrics
//! on stdout (`OTEL_METRICS_EXPORTER=console`).

use super::*;

/// The `addr` of the log line announcing the listener that serves `path`.
async fn served_at(consumer: &mut ChildProcess, path: &str) -> String {
    let log = consumer
        .wait_for_log(START, &format!("the address serving {path}"), |log| {
            log["addr"].is_string()
                && log["paths"]
                    .as_str()
                    .is_some_and(|paths| paths.contains(path))
        })
        .await;
    log["addr"].as_str().unwrap().to_owned()
}

/// The sum of the samples of `metric` (exact name, any labels) in
/// Prometheus text.
fn sample_sum(text: &str, metric: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..name_end] != metric {
            continue;
        }
        let value = line.rsplit(' ').next()?.parse::<f64>().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() {
    let broker = DevBroker::start(&["orders"], 4).await;
    // Two listeners: `127.0.0.1:0` twice would be one address serving both.
    let metrics_addr = format!("127.0.0.1:{}", closed_port());
    let mut command = orders_consumer(&["--brokers", broker.brokers()]);
    command.args(FAST_GROUP_FLAGS).args([
        "--only",
        "audit",
        "--health-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        &metrics_addr,
    ]);
    let mut consumer = ChildProcess::spawn("orders_consumer", command);
    let health = served_at(&mut consumer, "/readyz").await;
    let metrics = served_at(&mut consumer, "/metrics").await;
    assert_eq!(metrics, metrics_addr);
    assert_ne!(health, metrics);

    let live = http::get(&health, "/livez").expect("/livez answers");
    assert_eq!(live.status, 200, "{live:?}");

    // Not ready until the group has its partitions; a 503 says why.
    let mut not_ready = Vec::new();
    let ready = wait_for(
        START,
        "/readyz to answer 200",
        || match http::get(&health, "/readyz") {
            Ok(response) if response.status == 200 => Some(response),
            Ok(response) => {
                not_ready.push(response);
                None
            }
            Err(_) => None,
        },
        || consumer.dump(),
    )
    .await;
    assert!(!ready.body.trim().is_empty(), "{ready:?}");
    for response in &not_ready {
        assert_eq!(response.status, 503, "{response:?}");
        assert!(
            response.body.contains("audit"),
            "a 503 names the group that is not ready: {response:?}"
        );
    }

    let producer = kafka::producer(broker.brokers());
    for id in 1..=20 {
        send_order(&producer, "orders", id, 100, None).await;
    }
    const CONSUMED: &str = "messaging_client_consumed_messages_total";
    const PROCESSED: &str = "messaging_process_duration_seconds_count";
    const LAG: &str = "kafka_handler_consumer_lag";
    const HELD: &str = "kafka_handler_consumer_held";
    let text = wait_for(
        START,
        "/metrics to count 20 consumed messages and 20 process durations, with lag and held",
        || {
            let response = http::get(&metrics, "/metrics").ok()?;
            let consumed = sample_sum(&response.body, CONSUMED)?;
            let processed = sample_sum(&response.body, PROCESSED)?;
            // The lag comes with librdkafka's statistics, every 5 s.
            sample_sum(&response.body, LAG)?;
            sample_sum(&response.body, HELD)?;
            (consumed >= 20.0 && processed >= 20.0).then_some(response)
        },
        || {
            format!(
                "{:?}\n{}",
                http::get(&metrics, "/metrics").map(|r| r.body),
                consumer.dump()
            )
        },
    )
    .await;
    // Each record counted once.
    assert_eq!(
        sample_sum(&text.body, CONSUMED),
        Some(20.0),
        "{}",
        text.body
    );
    assert_eq!(
        sample_sum(&text.body, PROCESSED),
        Some(20.0),
        "{}",
        text.body
    );
    assert!(
        text.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "{text:?}"
    );
    assert!(
        text.body
            .contains("messaging_process_duration_seconds_bucket{"),
        "{}",
        text.body
    );
    // The names and types users scrape, and no label beyond the
    // attributes (no `otel_scope_*` on every series).
    for (family, kind) in [
        ("target_info", "gauge"),
        (CONSUMED, "counter"),
        ("messaging_process_duration_seconds", "histogram"),
        (LAG, "gauge"),
        (HELD, "gauge"),
    ] {
        let declared = format!("# TYPE {family} {kind}");
        assert!(
            text.body.lines().any(|line| line == declared),
            "no `{declared}`:\n{}",
            text.body
        );
    }
    assert!(!text.body.contains("otel_scope_"), "{}", text.body);

    for (addr, path) in [
        (&health, "/nosuch"),
        (&health, "/metrics"),
        (&metrics, "/livez"),
    ] {
        let response = http::get(addr, path).expect("an answer");
        assert_eq!(response.status, 404, "{path} on {addr}: {response:?}");
    }
    let live = http::get(&health, "/livez").expect("/livez answers");
    assert_eq!(live.status, 200, "{live:?}");

    // HEAD: GET's status and headers, no body.
    let head = http::request(&health, "HEAD", "/livez").expect("HEAD /livez answers");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.body, "", "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(live.body.len().to_string().as_str()),
        "{head:?} after {live:?}"
    );
    // Another method: 405 with the methods allowed; an unknown path: 404.
    let post = http::request(&metrics, "POST", "/metrics").expect("POST /metrics answers");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"), "{post:?}");
    let delete = http::request(&health, "DELETE", "/nosuch").expect("DELETE /nosuch answers");
    assert_eq!(delete.status, 404, "{delete:?}");
    assert_eq!(delete.header("allow"), None, "{delete:?}");

    consumer.stop(Signal::Term, EXIT).await;
}

/// `OTEL_METRICS_EXPORTER=console` prints the text `/metrics` would serve.
/// With an interval longer than the test, the one print is the last export
/// at shutdown, which still sees every record handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_metrics_print_the_prometheus_text_a_last_time_at_shutdown() {
    let broker = DevBroker::start(&["orders"], 4).await;
    let partitions = broker.partitions();
    let mut command = orders_consumer(&["--brokers", broker.brokers()]);
    command
        .env("OTEL_METRICS_EXPORTER", "console")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
        .args(FAST_GROUP_FLAGS)
        .args(["--only", "audit", "--commit-interval", "100ms"]);
    let mut consumer = ChildProcess::spawn("orders_consumer", command);
    let producer = kafka::producer(broker.brokers());
    for id in 1..=5 {
        send_order(&producer, "orders", id, 100, None).await;
    }
    wait_for(
        START,
        "group audit to commit the 5 orders",
        || {
            let offsets =
                committed_offsets(broker.brokers(), "audit", "orders", partitions).ok()?;
            (offsets.into_iter().flatten().sum::<i64>() == 5).then_some(())
        },
        || consumer.dump(),
    )
    .await;
    consumer.stop(Signal::Term, EXIT).await;

    let stdout = consumer.stdout();
    let prints = stdout
        .lines()
        .filter(|line| line.starts_with("# metrics at "))
        .count();
    assert_eq!(prints, 1, "one print, at shutdown:\n{}", consumer.dump());
    assert_eq!(
        sample_sum(&stdout, "messaging_client_consumed_messages_total"),
        Some(5.0),
        "{}",
        consumer.dump()
    );
    assert!(
        stdout
            .lines()
            .any(|line| line == "# TYPE target_info gauge"),
        "{stdout}"
    );
}
