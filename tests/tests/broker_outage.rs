//! A broker that goes away: the consumer rides out the outage and loses no
//! record. Records whose commit could not reach the broker may be handled
//! again (at-least-once: an outage can force a rebalance while the revoke
//! commit has nowhere to go), but a clean shutdown commits, so a restart
//! re-handles nothing.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{send, start_consumer, stop_consumer, telemetry, wait_until, Mode};
use kafka_handler::testing::{unique_topic, EmbeddedBroker, TestRecord};
use kafka_handler::{handlers, kafka_handler, Handler, Record};

static HANDLED: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());

#[kafka_handler(topics = ["outage"], group = "outage")]
fn remember(record: &Record<'_>) {
    HANDLED
        .lock()
        .unwrap()
        .push((record.partition(), record.offset()));
}

fn handler(topic: &str, group: &str) -> Vec<Handler> {
    handlers![remember]
        .into_iter()
        .map(|h| h.with_topics([topic]).with_group(group))
        .collect()
}

fn handled() -> Vec<(i32, i64)> {
    let mut handled = HANDLED.lock().unwrap().clone();
    handled.sort_unstable();
    handled
}

/// `handled` without repeats, sorted.
fn unique(handled: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let mut unique = handled.to_vec();
    unique.sort_unstable();
    unique.dedup();
    unique
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_survives_a_broker_outage_without_losing_records() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let topic = unique_topic("outage");
    let group = unique_topic("outage");
    broker.create_topic(&topic, 2).await.unwrap();
    let record = |i: i32| TestRecord::new(&topic, b"x").partition(i % 2);
    for i in 0..10 {
        send(&broker, record(i)).await;
    }

    let (shutdown, running) = start_consumer(&broker, handler(&topic, &group));
    wait_until(
        Duration::from_secs(30),
        "the first 10 records handled",
        || handled().len() >= 10,
    )
    .await;
    let before_outage = handled();

    // Hold the only broker down for a second (the fault's duration, not a
    // wait for a condition); records sent meanwhile queue in the producer.
    broker.broker_down(1).unwrap();
    let sending = async {
        for i in 10..20 {
            send(&broker, record(i)).await;
        }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        broker.broker_up(1).unwrap();
    };
    tokio::join!(sending, outage);

    let all: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..10).map(move |o| (p, o))).collect();
    wait_until(
        Duration::from_secs(60),
        "every record sent across the outage handled",
        || unique(&handled()) == all,
    )
    .await;
    assert!(
        !running.is_finished(),
        "the consumer kept running through the outage"
    );
    stop_consumer(shutdown, running).await;
    let handled_before_restart = handled();
    assert_eq!(unique(&handled_before_restart), all, "no record lost");
    for record in &handled_before_restart {
        if handled_before_restart
            .iter()
            .filter(|r| *r == record)
            .count()
            > 1
        {
            assert!(
                before_outage.contains(record),
                "only records handled before the outage may be handled again, not {record:?}"
            );
        }
    }

    // The shutdown commit went through: a restarted consumer handles only
    // the new record.
    let new_record = send(&broker, record(20)).await;
    let (shutdown, running) = start_consumer(&broker, handler(&topic, &group));
    let expected = handled_before_restart.len() + 1;
    wait_until(
        Duration::from_secs(30),
        "the record sent after the restart handled",
        || handled().len() >= expected,
    )
    .await;
    stop_consumer(shutdown, running).await;
    let mut after_restart = handled();
    for record in &handled_before_restart {
        let index = after_restart.iter().position(|r| r == record).unwrap();
        after_restart.remove(index);
    }
    assert_eq!(
        after_restart,
        [new_record],
        "the restart handles only the new record"
    );
}

/// A stop while the broker is gone cannot commit: the consumer says so in
/// one error naming the group and the failed commit, and stops within its
/// bound (the shutdown timeout, the final commit, 10 s to close) instead of
/// hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_commit_fails_with_one_clear_error_and_does_not_hang() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::mock().unwrap();
    let topic = unique_topic("gone");
    let group = unique_topic("gone");
    broker.create_topic(&topic, 1).await.unwrap();
    for _ in 0..5 {
        send(&broker, TestRecord::new(&topic, b"x")).await;
    }
    // A counter of its own: the other test of this binary shares `HANDLED`.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let handler = Handler::sync("tests::gone", [&topic], &group, move |_: &Record<'_>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(Duration::from_secs(30), "the records handled", || {
        count.load(std::sync::atomic::Ordering::SeqCst) >= 5
    })
    .await;
    broker.broker_down(1).unwrap();
    shutdown.trigger();
    // The tests' shutdown timeout (10 s), with nothing in flight, then the
    // final commit and the bounded close.
    let stopped = tokio::time::timeout(Duration::from_secs(90), running)
        .await
        .expect("the consumer stops although the broker is gone")
        .expect("the consumer task does not panic");
    broker.broker_up(1).unwrap();
    let error = stopped
        .expect_err("a stop that cannot commit is an error")
        .to_string();
    assert!(
        error.contains(&format!(
            "committing offsets of group `{group}` at shutdown"
        )),
        "{error}"
    );
    assert!(!error.contains('\n'), "one line: {error}");
}
