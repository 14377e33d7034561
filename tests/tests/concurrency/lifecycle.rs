//! Shutdown and rebalances with records in flight.

use super::*;

/// Four records in flight (of eight) when shutdown is triggered: they
/// finish, within the shutdown timeout, and are committed; no other record
/// starts after the trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_records_in_flight_finish_commits_them_and_starts_no_other() {
    telemetry(Mode::OtelOnly);
    const IN_FLIGHT: usize = 4;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "drain", 1).await;
    send_to(&broker, &topic, 0, 2 * IN_FLIGHT).await;

    let log: Log = Timeline::new();
    let release = Gate::new(1, WAIT);
    let triggered = Arc::new(AtomicBool::new(false));
    let late = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (release, triggered, late) = (release.clone(), triggered.clone(), late.clone());
        logged("drain", &topic, &group, &log, move |at| {
            let (release, triggered, late) = (release.clone(), triggered.clone(), late.clone());
            async move {
                if triggered.load(Ordering::SeqCst) {
                    late.lock().unwrap().push(at.offset);
                }
                release.wait().await;
                // Slow, but well within the shutdown timeout (10 s).
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            }
            .boxed()
        })
        .with_ordering(ProcessingOrder::Unordered)
        .with_max_in_flight(IN_FLIGHT)
    };
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "max_in_flight records in flight", || {
        runs(&log).len() >= IN_FLIGHT
    })
    .await;
    // Every record in flight waits for `release`: none can end, so none
    // can start, between here and the trigger.
    triggered.store(true, Ordering::SeqCst);
    shutdown.trigger();
    release.arrive().await;
    stop_consumer(shutdown, running).await;

    assert_eq!(
        *late.lock().unwrap(),
        Vec::<i64>::new(),
        "records started after shutdown was triggered"
    );
    let runs = runs(&log);
    let offsets: Vec<i64> = runs.iter().map(|run| run.at.offset).collect();
    assert_eq!(
        offsets,
        (0..IN_FLIGHT as i64).collect::<Vec<_>>(),
        "only the records in flight at the trigger ran"
    );
    assert!(
        runs.iter().all(Run::succeeded),
        "the records in flight finished: {runs:?}"
    );
    assert_eq!(
        committed(&broker, &group, &topic, 1).await,
        [Some(IN_FLIGHT as i64)],
        "what finished while stopping is committed"
    );
}

/// A record whose handler outlasts the shutdown timeout is cancelled at the
/// deadline and not committed (what ended before it is); a restarted
/// consumer handles it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_the_shutdown_timeout_is_cancelled_and_handled_after_a_restart() {
    telemetry(Mode::OtelOnly);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "overtime", 1).await;
    send_to(&broker, &topic, 0, 3).await;

    let log: Log = Timeline::new();
    // Never opened: offset 1 outlasts any shutdown timeout.
    let hold = Gate::new(1, 4 * WAIT);
    let first = {
        let hold = hold.clone();
        logged("first", &topic, &group, &log, move |at| {
            let hold = hold.clone();
            async move {
                if at.offset == 1 {
                    hold.wait().await;
                }
                Ok(())
            }
            .boxed()
        })
        .with_ordering(ProcessingOrder::Unordered)
    };
    let (shutdown, running) = start_consumer_with(&broker, vec![first], |b| {
        b.shutdown_timeout(Duration::from_secs(1))
    });
    wait_until(WAIT, "offsets 0 and 2 handled, 1 in flight", || {
        let runs = runs(&log);
        handled(&runs, None).len() == 2 && runs.iter().any(|r| r.at.offset == 1)
    })
    .await;
    stop_consumer(shutdown, running).await;
    let cut: Vec<Run> = runs(&log)
        .into_iter()
        .filter(|run| run.at.offset == 1)
        .collect();
    assert!(
        matches!(
            cut[..],
            [Run {
                end: Some((_, What::Cancelled)),
                ..
            }]
        ),
        "offset 1 was cancelled at the shutdown deadline: {cut:?}"
    );
    assert_eq!(
        committed(&broker, &group, &topic, 1).await,
        [Some(1)],
        "committed up to the cancelled record, not past it"
    );

    let second = logged("second", &topic, &group, &log, |_| async { Ok(()) }.boxed())
        .with_ordering(ProcessingOrder::Unordered);
    let again = wait_until(WAIT, "offsets 1 and 2 handled after the restart", || {
        handled(&runs(&log), Some("second")).len() >= 2
    });
    run_until(&broker, vec![second], again).await;
    let runs = runs(&log);
    let offsets: Vec<i64> = runs
        .iter()
        .filter(|run| run.by == "second")
        .map(|run| run.at.offset)
        .collect();
    assert_eq!(
        offsets,
        [1, 2],
        "the restart resumes at the cancelled record"
    );
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(3)]);
}

/// Consumer A holds five records of each of four partitions in flight
/// (offsets 5..10, the later ones handled) when consumer B joins: on each
/// partition B takes, A's calls in flight are cancelled and never finish,
/// and B starts at offset 5, the watermark A committed. Every record is
/// handled at least once, and the ones handled twice were in flight or
/// above the watermark at the revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoke_cancels_records_in_flight_commits_what_ended_and_the_new_owner_takes_the_rest() {
    telemetry(Mode::OtelOnly);
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: i64 = 20;
    /// Offsets A keeps in flight in every partition until released.
    const IN_FLIGHT: std::ops::Range<i64> = 5..10;
    const HELD: usize = (IN_FLIGHT.end - IN_FLIGHT.start) as usize;
    /// The watermark while they run.
    const WATERMARK: i64 = IN_FLIGHT.start;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "revoke", PARTITIONS).await;
    for partition in 0..PARTITIONS {
        send_to(&broker, &topic, partition, PER_PARTITION as usize).await;
    }

    let log: Log = Timeline::new();
    let release = Gate::new(1, 4 * WAIT);
    let a = {
        let release = release.clone();
        logged("A", &topic, &group, &log, move |at| {
            let release = release.clone();
            async move {
                if IN_FLIGHT.contains(&at.offset) {
                    release.wait().await;
                }
                Ok(())
            }
            .boxed()
        })
        .with_ordering(ProcessingOrder::Unordered)
    };
    let (stop_a, running_a) = start_consumer(&broker, vec![a]);
    let per_partition_done = PER_PARTITION as usize - HELD;
    wait_until(
        WAIT,
        "A handled all but the held records, which are in flight",
        || {
            let runs = runs(&log);
            handled(&runs, Some("A")).len() == PARTITIONS as usize * per_partition_done
                && runs.iter().filter(|run| run.end.is_none()).count() == PARTITIONS as usize * HELD
        },
    )
    .await;
    wait_for_commits(
        WAIT,
        &broker,
        &group,
        &topic,
        &[WATERMARK; PARTITIONS as usize],
    )
    .await;

    // B joins: A loses partitions with records in flight.
    let b = logged("B", &topic, &group, &log, |_| async { Ok(()) }.boxed())
        .with_ordering(ProcessingOrder::Unordered);
    let (stop_b, running_b) = start_consumer(&broker, vec![b]);
    wait_until(WAIT, "B handles records of the partitions it took", || {
        !handled(&runs(&log), Some("B")).is_empty()
    })
    .await;
    release.arrive().await;
    let total = (PARTITIONS as i64 * PER_PARTITION) as usize;
    wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= total
    })
    .await;
    wait_for_commits(
        WAIT,
        &broker,
        &group,
        &topic,
        &[PER_PARTITION; PARTITIONS as usize],
    )
    .await;
    stop_consumer(stop_b, running_b).await;
    stop_consumer(stop_a, running_a).await;

    let runs = runs(&log);
    let taken: BTreeSet<i32> = runs
        .iter()
        .filter(|run| run.by == "B")
        .map(|run| run.at.partition)
        .collect();
    assert!(!taken.is_empty(), "B took partitions");
    for &partition in &taken {
        let of_a = |offset: i64| -> Vec<&Run> {
            runs.iter()
                .filter(|run| run.by == "A" && run.at.position() == (partition, offset))
                .collect()
        };
        for offset in IN_FLIGHT {
            let calls = of_a(offset);
            assert!(
                !calls.is_empty()
                    && calls
                        .iter()
                        .all(|run| matches!(run.end, Some((_, What::Cancelled)))),
                "partition {partition}, offset {offset}: A's call in flight at the revoke was \
                 cancelled (and never finished): {calls:?}"
            );
        }
        let first_of_b = runs
            .iter()
            .filter(|run| run.by == "B" && run.at.partition == partition)
            .map(|run| run.at.offset)
            .min();
        assert_eq!(
            first_of_b,
            Some(WATERMARK),
            "partition {partition}: B starts at the watermark A committed, the first record \
             in flight"
        );
    }
    let handled = handled(&runs, None);
    for partition in 0..PARTITIONS {
        for offset in 0..PER_PARTITION {
            let times = handled.get(&(partition, offset)).copied().unwrap_or(0);
            assert!(
                times >= 1,
                "partition {partition}, offset {offset} was lost"
            );
            if offset < WATERMARK {
                assert_eq!(
                    times, 1,
                    "partition {partition}, offset {offset}: below the watermark at the \
                     revoke, handled once"
                );
            }
        }
    }
    let twice = handled.values().filter(|times| **times > 1).count();
    eprintln!(
        "B took partitions {taken:?}; {twice} records handled twice, all in flight or above \
         the watermark at the revoke"
    );
}
