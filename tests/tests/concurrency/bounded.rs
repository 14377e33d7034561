//! Bounded memory and group membership with a stuck handler.

use super::*;

/// Unordered, `max_in_flight` 8, a handler that never returns, a backlog of
/// 5,000 records on one partition and more arriving: the handler is called
/// exactly 8 times; the consumer holds one window of the partition (the
/// `held` gauge), not the backlog; over four session timeouts (with
/// `max.poll.interval.ms` at its minimum) the member stays ready, and a
/// member joining afterwards revokes it (so it was still in the group);
/// at shutdown the calls are cancelled and nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_handler_holds_max_in_flight_records_and_one_window_and_keeps_its_membership() {
    let telemetry = telemetry(Mode::OtelOnly);
    const MAX_IN_FLIGHT: usize = 8;
    const BACKLOG: usize = 5_000;
    /// The window of a handler with `max_in_flight` 8: the minimum.
    const WINDOW: i64 = 1_024;
    /// The window, and the records fetched before the pause took effect.
    const HELD_AT_MOST: i64 = 1_200;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "stuck", 1).await;
    send_many(&broker, &topic, 0, BACKLOG).await;
    assert!(
        BACKLOG as i64 >= 4 * WINDOW,
        "the backlog dwarfs the window"
    );

    // Calls of the handler, and calls dropped (it never returns: every
    // drop is a cancellation).
    let entered = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    struct Stuck(Arc<AtomicUsize>);
    impl Drop for Stuck {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let handler = {
        let (entered, cancelled) = (entered.clone(), cancelled.clone());
        Handler::asynchronous("tests::stuck", [&topic], &group, move |_| {
            let (entered, cancelled) = (entered.clone(), cancelled.clone());
            Box::pin(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _stuck = Stuck(cancelled);
                std::future::pending::<()>().await;
                Ok(())
            })
        })
        .with_ordering(ProcessingOrder::Unordered)
        .with_max_in_flight(MAX_IN_FLIGHT)
    };
    let configure = |b: ConsumerBuilder| {
        // The poll loop must keep calling into librdkafka while every
        // handler is stuck and the partition is paused, or librdkafka
        // leaves the group (the lowest value it accepts).
        b.set(
            "max.poll.interval.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        // The eager assignor: the joining member below revokes the one
        // partition from the stuck member (a cooperative assignor would
        // rightly leave it where it is).
        .set("partition.assignment.strategy", "range")
        .shutdown_timeout(Duration::from_secs(1))
    };
    let (shutdown, running, health) =
        start_consumer_with_health(&broker, vec![handler.clone()], configure);
    let filter = [
        ("messaging.consumer.group.name", group.as_str()),
        ("messaging.destination.name", topic.as_str()),
        ("messaging.destination.partition.id", "0"),
    ];
    let held = || telemetry.gauge("kafka_handler.consumer.held", &filter);
    wait_until(WAIT, "max_in_flight handlers entered", || {
        entered.load(Ordering::SeqCst) >= MAX_IN_FLIGHT
    })
    .await;
    wait_until(WAIT, "a full window held", || {
        held().first().is_some_and(|held| *held >= WINDOW)
    })
    .await;

    // Watch over several session timeouts while records keep arriving: a
    // member that lost the group and got its partition again would call
    // the handler again; one that kept fetching would hold more.
    let watch = 4 * SESSION_TIMEOUT;
    let until = tokio::time::Instant::now() + watch;
    let mut rounds = 0;
    let mut most = 0;
    while tokio::time::Instant::now() < until {
        send_to(&broker, &topic, 0, 20).await;
        assert_eq!(
            (
                entered.load(Ordering::SeqCst),
                cancelled.load(Ordering::SeqCst)
            ),
            (MAX_IN_FLIGHT, 0),
            "round {rounds}: (calls, cancelled calls): max_in_flight calls, all still running"
        );
        let now = held();
        assert_eq!(now.len(), 1, "one gauge point for the partition: {now:?}");
        assert!(
            now[0] <= HELD_AT_MOST,
            "round {rounds}: the consumer holds {} records of the partition (window {WINDOW})",
            now[0]
        );
        most = most.max(now[0]);
        let readiness = health.readiness();
        assert!(
            readiness.is_healthy(),
            "round {rounds}: the member lost its partitions: {}",
            readiness.report()
        );
        rounds += 1;
    }
    assert!(rounds >= 10, "only {rounds} checks in {watch:?}");
    let liveness = health.liveness();
    assert!(
        !liveness.is_healthy() && liveness.report().contains("a record in flight for"),
        "liveness reports the records stuck past max.poll.interval.ms: {}",
        liveness.report()
    );
    eprintln!("{rounds} checks; held at most {most}");

    // Membership seen from outside the member: a second member joins, and
    // the rebalance reaches the stuck one, which is revoked (its calls
    // cancelled). A member that had left the group, or no longer served
    // librdkafka, would never see that revoke.
    let (stop_other, other) = start_consumer_with(&broker, vec![handler], configure);
    wait_until(
        WAIT,
        "the stuck member's calls cancelled by the rebalance a joining member starts",
        || cancelled.load(Ordering::SeqCst) >= MAX_IN_FLIGHT,
    )
    .await;
    stop_consumer(stop_other, other).await;
    stop_consumer(shutdown, running).await;
    assert_eq!(
        entered.load(Ordering::SeqCst),
        cancelled.load(Ordering::SeqCst),
        "every call was cancelled at the end"
    );
    let committed = committed(&broker, &group, &topic, 1).await;
    assert!(
        matches!(committed[..], [None] | [Some(0)]),
        "nothing committed past offset 0: {committed:?}"
    );
}
