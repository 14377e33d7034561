//! Liveness and readiness of a running consumer, and the errors that stop it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    new_topic, new_topic_with_dlq, send, start_consumer_with_health, stop_consumer, telemetry,
    wait_for_commits, wait_until, Mode,
};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{Backoff, Handler, HandlerError, Outcome, Record};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

/// A handler of `topic` in `group` that accepts every record.
fn accepting(topic: &str, group: &str) -> Handler {
    Handler::sync("tests::accepting", [topic], group, |_: &Record<'_>| Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_assigned_partitions() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "ready", 2).await;
    // Not ready before `run` (checked by the helper), then ready once the
    // group has its partitions.
    let (shutdown, running, health) =
        start_consumer_with_health(&broker, vec![accepting(&topic, &group)], |b| b);
    wait_until(WAIT, "ready", || health.readiness().is_healthy()).await;
    assert_eq!(health.readiness().report(), format!("group {group}: ok\n"));
    assert_eq!(health.liveness().report(), format!("group {group}: ok\n"));
    assert!(health.liveness().is_healthy());

    stop_consumer(shutdown, running).await;
    let readiness = health.readiness();
    assert!(!readiness.is_healthy(), "a stopped consumer is not ready");
    assert_eq!(readiness.report(), format!("group {group}: stopped\n"));
    assert!(
        health.liveness().is_healthy(),
        "stopped cleanly: still live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_dead_letter_sends_make_the_group_unready_until_one_succeeds() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "dlq-health", 1).await;
    let handler = Handler::sync(
        "tests::doomed",
        [&topic],
        &group,
        |_: &Record<'_>| -> Outcome { Err(HandlerError::permanent("never works")) },
    )
    .with_dlq(&dlq)
    // Each failed send waits this long before the next: time to look.
    .with_backoff(Backoff::constant(Duration::from_millis(300)));
    send(&broker, TestRecord::new(&topic, b"doomed")).await;
    // After the test's own record: the next Produce requests are the
    // dead-letter producer's.
    broker
        .fail_produce_requests(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4])
        .unwrap();
    let (shutdown, running, health) = start_consumer_with_health(&broker, vec![handler], |b| b);
    let seen = Arc::new(Mutex::new(String::new()));
    wait_until(WAIT, "unready for the failing dead-letter sends", || {
        let readiness = health.readiness();
        *seen.lock().unwrap() = readiness.report().to_owned();
        !readiness.is_healthy() && readiness.report().contains("dead-letter")
    })
    .await;
    let report = seen.lock().unwrap().clone();
    assert!(
        report.starts_with(&format!(
            "group {group}: dead-letter sends to {dlq} failing for "
        )),
        "{report}"
    );
    assert!(
        report.contains("authorization"),
        "the error is named: {report}"
    );
    assert!(
        health.liveness().is_healthy(),
        "failing sends do not fail liveness"
    );

    wait_until(WAIT, "ready again once a send succeeds", || {
        health.readiness().is_healthy()
    })
    .await;
    stop_consumer(shutdown, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_stuck_past_max_poll_interval_fails_liveness_while_the_group_keeps_polling() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "stall", 1).await;
    // The handler waits until the test lets it go (bounded, so a failing
    // test does not hang).
    let release = Arc::new(Notify::new());
    let released = release.clone();
    let blocked = Arc::new(AtomicBool::new(false));
    let entered = blocked.clone();
    let handler = Handler::asynchronous("tests::stall", [&topic], &group, move |_| {
        let (released, entered) = (released.clone(), entered.clone());
        Box::pin(async move {
            entered.store(true, Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_secs(60), released.notified()).await;
            Ok(())
        })
    });
    let (shutdown, running, health) = start_consumer_with_health(&broker, vec![handler], |b| {
        // librdkafka wants it at least `session.timeout.ms` (1500 in tests).
        b.set("max.poll.interval.ms", "1500")
    });
    wait_until(WAIT, "ready", || health.readiness().is_healthy()).await;
    send(&broker, TestRecord::new(&topic, b"slow")).await;
    wait_until(WAIT, "the handler blocking", || {
        blocked.load(Ordering::SeqCst)
    })
    .await;

    let seen = Arc::new(Mutex::new(String::new()));
    wait_until(WAIT, "liveness failing", || {
        let liveness = health.liveness();
        *seen.lock().unwrap() = liveness.report().to_owned();
        !liveness.is_healthy()
    })
    .await;
    let report = seen.lock().unwrap().clone();
    assert!(
        report.starts_with(&format!("group {group}: a record in flight for ")),
        "{report}"
    );
    assert!(
        report.ends_with(" (max.poll.interval.ms=1500): its handler may be stuck\n"),
        "{report}"
    );
    // The loop keeps polling beside the stuck handler, so the member keeps
    // its partition.
    assert!(
        health.readiness().is_healthy(),
        "still a member with its partition: {}",
        health.readiness().report()
    );

    release.notify_one();
    wait_until(WAIT, "live again once the handler returns", || {
        health.liveness().is_healthy()
    })
    .await;
    stop_consumer(shutdown, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_topic_stops_the_consumer_with_the_fix() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (forbidden, group) = new_topic(&broker, "forbidden", 1).await;
    let (allowed, other_group) = new_topic(&broker, "allowed", 1).await;
    broker
        .topic_error(
            &forbidden,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let (_shutdown, running, health) = start_consumer_with_health(
        &broker,
        vec![
            accepting(&forbidden, &group),
            accepting(&allowed, &other_group),
        ],
        |b| b,
    );
    let error = tokio::time::timeout(WAIT, running)
        .await
        .expect("the consumer stops by itself")
        .expect("the consumer task does not panic")
        .expect_err("the consumer stops with an error");
    let message = error.to_string();
    assert!(
        matches!(error, kafka_handler::Error::Authorization { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!(
            "group `{group}` is not authorized to read topic `{forbidden}`"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "kafka-acls --bootstrap-server <brokers> --add --allow-principal User:<principal> \
             --operation Read --topic {forbidden} --group {group}"
        )),
        "the fix: {message}"
    );

    // The failing group is dead; the other one stopped cleanly.
    let liveness = health.liveness();
    assert!(!liveness.is_healthy());
    assert!(
        liveness.report().contains(&format!(
            "group {group}: stopped: group `{group}` is not authorized"
        )),
        "{}",
        liveness.report()
    );
    assert!(
        liveness
            .report()
            .contains(&format!("group {other_group}: stopped\n")),
        "{}",
        liveness.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_offset_commits_make_the_group_unready_until_one_goes_through() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let (topic, group) = new_topic(&broker, "commits", 1).await;
    let (shutdown, running, health) =
        start_consumer_with_health(&broker, vec![accepting(&topic, &group)], |b| {
            b.set("statistics.interval.ms", "100")
        });
    send(&broker, TestRecord::new(&topic, b"first")).await;
    wait_for_commits(WAIT, &broker, &group, &topic, &[1]).await;
    wait_until(WAIT, "ready", || health.readiness().is_healthy()).await;

    // The next async commit fails: librdkafka only logs it (COMMITFAIL).
    broker
        .fail_requests(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        )
        .unwrap();
    send(&broker, TestRecord::new(&topic, b"second")).await;
    let seen = Arc::new(Mutex::new(String::new()));
    wait_until(WAIT, "unready for the failing commit", || {
        let readiness = health.readiness();
        *seen.lock().unwrap() = readiness.report().to_owned();
        !readiness.is_healthy()
    })
    .await;
    let report = seen.lock().unwrap().clone();
    assert!(
        report.starts_with(&format!("group {group}: offset commits failing for ")),
        "{report}"
    );

    // The next record's commit goes through: the statistics show it.
    send(&broker, TestRecord::new(&topic, b"third")).await;
    wait_for_commits(WAIT, &broker, &group, &topic, &[3]).await;
    wait_until(WAIT, "ready again once a commit goes through", || {
        health.readiness().is_healthy()
    })
    .await;
    stop_consumer(shutdown, running).await;
}
