//! Commits are a watermark.

use super::*;

/// Unordered, one partition: offset K stays in flight while the 100 records
/// after it are handled. The committed offset stays at K through three
/// more commit rounds, each observed (a record of a second topic the same
/// consumer commits). Then the consumer crashes (its task aborted: no
/// clean stop, no final commit), and a new one in the group starts at K,
/// handles K.. again, loses nothing, and commits past the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_never_pass_a_record_in_flight_and_a_crashed_consumer_loses_nothing() {
    telemetry(Mode::OtelOnly);
    /// The record that stays in flight.
    const K: i64 = 5;
    /// Records after it, all handled while it runs.
    const AFTER: i64 = 100;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "watermark", 1).await;
    // A second topic consumed in the same group by the same consumer: each
    // record sent to it is committed by a commit round that also carries
    // every watermark of `topic` that moved.
    let (clock, _) = new_topic(&broker, "watermark-clock", 1).await;
    send_to(&broker, &topic, 0, (K + AFTER + 1) as usize).await;

    let log: Log = Timeline::new();
    // Never opened by the test: K stays in flight until its consumer dies
    // (the deadline only keeps a failing test from hanging).
    let hold = Gate::new(1, 4 * WAIT);
    let first = {
        let hold = hold.clone();
        logged("first", &topic, &group, &log, move |at| {
            let hold = hold.clone();
            async move {
                if at.offset == K {
                    hold.wait().await;
                }
                Ok(())
            }
            .boxed()
        })
        .with_ordering(ProcessingOrder::Unordered)
    };
    let ticks = Handler::asynchronous("tests::clock", [&clock], &group, |_| {
        Box::pin(async { Ok(()) })
    });
    let (shutdown, running) = start_consumer(&broker, vec![first, ticks]);
    let others: BTreeSet<i64> = (0..=K + AFTER).filter(|o| *o != K).collect();
    wait_until(WAIT, "every record but K handled, K in flight", || {
        let runs = runs(&log);
        let done: BTreeSet<i64> = handled(&runs, Some("first")).keys().map(|p| p.1).collect();
        done == others
            && runs
                .iter()
                .any(|run| run.at.offset == K && run.end.is_none())
    })
    .await;
    wait_for_commits(WAIT, &broker, &group, &topic, &[K]).await;
    // Three more commit rounds, each seen to happen: the watermark stays.
    for tick in 1..=3 {
        send(&broker, TestRecord::new(&clock, b"tick")).await;
        wait_for_commits(WAIT, &broker, &group, &clock, &[tick]).await;
        assert_eq!(
            committed(&broker, &group, &topic, 1).await,
            [Some(K)],
            "after commit round {tick}: the commit stays at the record in flight, though the \
             {AFTER} records after it were handled"
        );
    }

    // A crash: no clean stop, no final commit.
    running.abort();
    let crashed = tokio::time::timeout(WAIT, running)
        .await
        .expect("the aborted consumer task ends");
    assert!(
        crashed.expect_err("aborted, not finished").is_cancelled(),
        "the consumer task was cancelled"
    );
    drop(shutdown);
    wait_until(WAIT, "K's handler dropped with its consumer", || {
        runs(&log)
            .iter()
            .any(|run| run.at.offset == K && matches!(run.end, Some((_, What::Cancelled))))
    })
    .await;

    let second = logged("second", &topic, &group, &log, |_| async { Ok(()) }.boxed())
        .with_ordering(ProcessingOrder::Unordered);
    let (shutdown, running) = start_consumer(&broker, vec![second]);
    let again: BTreeSet<i64> = (K..=K + AFTER).collect();
    wait_until(
        WAIT,
        "the new consumer handles K and every record after it",
        || {
            let done: BTreeSet<i64> = handled(&runs(&log), Some("second"))
                .keys()
                .map(|p| p.1)
                .collect();
            done == again
        },
    )
    .await;
    wait_for_commits(WAIT, &broker, &group, &topic, &[K + AFTER + 1]).await;
    stop_consumer(shutdown, running).await;

    let runs = runs(&log);
    let by_first: Vec<&Run> = runs.iter().filter(|run| run.by == "first").collect();
    assert!(
        !by_first
            .iter()
            .any(|run| run.at.offset == K && run.succeeded()),
        "K never finished in the crashed consumer"
    );
    let by_second: Vec<&Run> = runs.iter().filter(|run| run.by == "second").collect();
    assert_eq!(
        by_second.first().map(|run| run.at.offset),
        Some(K),
        "the new consumer starts at K, the record that was in flight"
    );
    let started: BTreeSet<i64> = by_second.iter().map(|run| run.at.offset).collect();
    assert_eq!(
        started, again,
        "the new consumer handles K..=K+{AFTER} (again), nothing before K"
    );
    let all: BTreeSet<i64> = handled(&runs, None).keys().map(|p| p.1).collect();
    assert_eq!(
        all,
        (0..=K + AFTER).collect::<BTreeSet<i64>>(),
        "nothing lost"
    );
}
