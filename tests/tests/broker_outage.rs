//! A broker that goes away: the consumer rides out the outage, handles what
//! was produced across it once, and commits so a restart re-handles nothing.

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

fn assert_each_once(count: usize) {
    let handled = handled();
    let mut unique = handled.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        handled.len(),
        "a record was handled twice: {handled:?}"
    );
    assert_eq!(handled.len(), count, "records handled: {handled:?}");
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

    wait_until(
        Duration::from_secs(60),
        "the 10 records sent across the outage handled",
        || handled().len() >= 20,
    )
    .await;
    assert!(
        !running.is_finished(),
        "the consumer kept running through the outage"
    );
    stop_consumer(shutdown, running).await;
    assert_each_once(20);

    // The shutdown commit went through: a restarted consumer only sees the new record.
    send(&broker, record(20)).await;
    let (shutdown, running) = start_consumer(&broker, handler(&topic, &group));
    wait_until(
        Duration::from_secs(30),
        "the record sent after the restart handled",
        || handled().len() >= 21,
    )
    .await;
    stop_consumer(shutdown, running).await;
    assert_each_once(21);
}
