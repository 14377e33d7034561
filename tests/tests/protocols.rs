//! Rebalancing protocols: the eager assignors, the cooperative one (the
//! default) and KIP-848's consumer protocol (`group.protocol=consumer`),
//! each end to end on the embedded broker: records handled once, offsets
//! committed, members stopped while the group rebalances without hanging or
//! losing a commit.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{committed, new_topic, send, telemetry, wait_for_commits, wait_until, Mode};
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{Consumer, Handler, Record, Shutdown};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 4;

/// How a member joins its group.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Eager,
    Cooperative,
    Kip848,
}

impl Protocol {
    /// The consumer properties of this protocol, with the embedded broker's
    /// fast group timings where the protocol allows them (KIP-848 rejects
    /// `session.timeout.ms` and `heartbeat.interval.ms`: the broker owns
    /// them).
    fn properties(self, broker: &EmbeddedBroker) -> Vec<(String, String)> {
        let mut properties = match self {
            Protocol::Kip848 => Vec::new(),
            _ => broker.consumer_properties(),
        };
        let own = match self {
            Protocol::Eager => ("partition.assignment.strategy", "range,roundrobin"),
            // The default: nothing to set.
            Protocol::Cooperative => return properties,
            Protocol::Kip848 => ("group.protocol", "consumer"),
        };
        properties.push((own.0.to_owned(), own.1.to_owned()));
        properties
    }
}

type Handled = Arc<Mutex<BTreeMap<(i32, i64), usize>>>;

/// A member of `group` on `topic` whose handler counts each record.
fn member(
    broker: &EmbeddedBroker,
    protocol: Protocol,
    topic: &str,
    group: &str,
    handled: &Handled,
) -> (Shutdown, JoinHandle<Result<(), kafka_handler::Error>>) {
    let handled = handled.clone();
    let handler = Handler::sync(
        "tests::protocols",
        [topic],
        group,
        move |record: &Record<'_>| {
            *handled
                .lock()
                .unwrap()
                .entry((record.partition(), record.offset()))
                .or_default() += 1;
            Ok(())
        },
    );
    let mut builder = Consumer::builder()
        .brokers(broker.bootstrap_servers())
        .handler(handler)
        .commit_interval(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_secs(5));
    for (key, value) in protocol.properties(broker) {
        builder = builder.set(key, value);
    }
    let consumer = builder.build().expect("a valid configuration");
    let shutdown = Shutdown::new();
    (shutdown.clone(), tokio::spawn(consumer.run(shutdown)))
}

/// Stops a member, which must exit cleanly within the shutdown timeout plus
/// the documented bounds (a commit refused during a rebalance retried for
/// up to 5 s, closing for up to 10 s).
async fn stop(shutdown: Shutdown, running: JoinHandle<Result<(), kafka_handler::Error>>) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5 + 5 + 10 + 5), running)
        .await
        .expect("the member stops within its bound")
        .expect("the member's task does not panic")
        .expect("the member stops without error");
}

/// Three members take turns: while records arrive, each is stopped during
/// the rebalance its predecessor's arrival started, and restarted. Nothing
/// hangs, nothing is lost, and after the last clean stop every offset is
/// committed: a fresh member finds nothing to handle again.
async fn members_stopped_while_the_group_rebalances(protocol: Protocol) {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "protocol", PARTITIONS).await;
    let handled: Handled = Arc::default();
    let mut produced = 0usize;
    let mut produce = |count: usize| {
        let records: Vec<_> = (0..count)
            .map(|i| (produced + i) as i32 % PARTITIONS)
            .collect();
        produced += count;
        records
    };

    let mut members = vec![member(&broker, protocol, &topic, &group, &handled)];
    for round in 0..4 {
        for partition in produce(20) {
            send(&broker, TestRecord::new(&topic, b"x").partition(partition)).await;
        }
        // A member joins (the group rebalances) and the oldest one stops at
        // once, in the middle of that rebalance.
        members.push(member(&broker, protocol, &topic, &group, &handled));
        let (shutdown, running) = members.remove(0);
        stop(shutdown, running).await;
        eprintln!("{protocol:?}: round {round} stopped a member mid-rebalance");
    }
    let total = produced;
    wait_until(WAIT, "every record handled", || {
        handled.lock().unwrap().len() == total
    })
    .await;
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|p| (0..total).filter(|i| *i as i32 % PARTITIONS == p).count() as i64)
        .collect();
    wait_for_commits(WAIT, &broker, &group, &topic, &ends).await;
    for (shutdown, running) in members {
        stop(shutdown, running).await;
    }
    assert_eq!(
        committed(&broker, &group, &topic, PARTITIONS).await,
        ends.iter().copied().map(Some).collect::<Vec<_>>(),
        "{protocol:?}: after the clean stops every offset is committed"
    );
    let again: usize = handled.lock().unwrap().values().map(|n| n - 1).sum();
    eprintln!("{protocol:?}: {total} records, {again} handled again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_members_stopped_while_the_group_rebalances() {
    members_stopped_while_the_group_rebalances(Protocol::Eager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_stopped_while_the_group_rebalances() {
    members_stopped_while_the_group_rebalances(Protocol::Cooperative).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_members_stopped_while_the_group_rebalances() {
    members_stopped_while_the_group_rebalances(Protocol::Kip848).await;
}

/// Static membership passes through: a member with `group.instance.id`
/// handles records and commits; restarted with the same id, it takes up
/// where it left off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_where_it_left_off() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "static", 1).await;
    let handled: Handled = Arc::default();
    let start = |instance: &str| {
        let handled = handled.clone();
        let handler = Handler::sync(
            "tests::static",
            [&topic],
            &group,
            move |record: &Record<'_>| {
                *handled
                    .lock()
                    .unwrap()
                    .entry((record.partition(), record.offset()))
                    .or_default() += 1;
                Ok(())
            },
        );
        let mut builder = Consumer::builder()
            .brokers(broker.bootstrap_servers())
            .handler(handler)
            .commit_interval(Duration::from_millis(200))
            .set("group.instance.id", instance);
        for (key, value) in broker.consumer_properties() {
            builder = builder.set(key, value);
        }
        let consumer = builder.build().expect("a valid configuration");
        let shutdown = Shutdown::new();
        (shutdown.clone(), tokio::spawn(consumer.run(shutdown)))
    };
    for _ in 0..5 {
        send(&broker, TestRecord::new(&topic, b"x")).await;
    }
    let (shutdown, running) = start("pod-0");
    wait_until(WAIT, "the first five records", || {
        handled.lock().unwrap().len() == 5
    })
    .await;
    stop(shutdown, running).await;
    for _ in 0..5 {
        send(&broker, TestRecord::new(&topic, b"x")).await;
    }
    let (shutdown, running) = start("pod-0");
    wait_until(WAIT, "the next five records", || {
        handled.lock().unwrap().len() == 10
    })
    .await;
    stop(shutdown, running).await;
    assert!(
        handled.lock().unwrap().values().all(|n| *n == 1),
        "each record handled once: {:?}",
        handled.lock().unwrap()
    );
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(10)]);
}
