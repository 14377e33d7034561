//! Where synchronous handlers run.

use super::*;

/// A synchronous handler whose calls block (20 ms each, like a blocking
/// database driver) moves to the blocking pool after its first slow calls:
/// from then on the calls of different partitions run side by side, on
/// other threads than the consumer's, each partition still in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_synchronous_handler_moves_to_the_blocking_pool_and_runs_in_parallel() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "blocking", 4).await;
    for partition in 0..4 {
        send_to(&broker, &topic, partition, 10).await;
    }
    let flying = Arc::new(common::concurrency::InFlight::default());
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let handler = {
        let (flying, seen) = (flying.clone(), seen.clone());
        Handler::sync("tests::blocking", [&topic], &group, move |record| {
            let _running = flying.enter();
            std::thread::sleep(Duration::from_millis(20));
            seen.lock()
                .unwrap()
                .push((record.partition(), record.offset()));
            Ok(())
        })
    };
    run_until(&broker, vec![handler], async {
        wait_until(WAIT, "all 40 records handled", || {
            seen.lock().unwrap().len() >= 40
        })
        .await;
    })
    .await;
    assert!(
        flying.max() >= 2,
        "blocking calls of different partitions ran side by side (at most {} did)",
        flying.max()
    );
    let seen = seen.lock().unwrap();
    for partition in 0..4 {
        let offsets: Vec<i64> = seen
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .collect();
        assert_eq!(
            offsets,
            (0..10).collect::<Vec<_>>(),
            "partition {partition} in order"
        );
    }
}
