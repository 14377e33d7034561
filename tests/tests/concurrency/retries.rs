//! Retries and dead letters hold only their lane.

use super::*;

/// Key order, one partition: the first record of key "bad" fails three
/// times before it succeeds. Records of other keys end between its
/// attempts; the later "bad" records start only after it succeeded, in
/// offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_record_holds_only_its_key() {
    telemetry(Mode::OtelOnly);
    const FAILURES: usize = 3;
    const RECORDS: i64 = 25;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "retry-key", 1).await;
    // "bad" at 0, 6, 12, 18, 24; good-0..2 in between.
    let key_of = |offset: i64| match offset % 6 {
        0 => "bad".to_owned(),
        _ => format!("good-{}", offset % 3),
    };
    for offset in 0..RECORDS {
        let key = key_of(offset);
        let record = TestRecord::new(&topic, b"x")
            .partition(0)
            .key(key.as_bytes());
        assert_eq!(send(&broker, record).await, (0, offset));
    }

    let log: Log = Timeline::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let handler = logged("retry_key", &topic, &group, &log, move |at| {
        let failures = failures.clone();
        async move {
            if at.offset == 0 && failures.fetch_add(1, Ordering::SeqCst) < FAILURES {
                return Err(HandlerError::transient("not ready yet"));
            }
            tokio::task::yield_now().await;
            Ok(())
        }
        .boxed()
    })
    .with_ordering(ProcessingOrder::Key)
    .with_retries(FAILURES as u32 + 2)
    .with_backoff(Backoff::constant(Duration::from_millis(100)));
    let all_handled = wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= RECORDS as usize
    });
    run_until(&broker, vec![handler], all_handled).await;
    assert_eq!(committed(&broker, &group, &topic, 1).await, [Some(RECORDS)]);

    let runs = runs(&log);
    let attempts: Vec<&Run> = runs.iter().filter(|run| run.at.offset == 0).collect();
    let ends: Vec<What> = attempts.iter().map(|run| run.end.unwrap().1).collect();
    let mut expected = vec![What::Failed; FAILURES];
    expected.push(What::Succeeded);
    assert_eq!(ends, expected, "the failing record's attempts");
    assert_eq!(
        runs.len(),
        RECORDS as usize + FAILURES,
        "every other record called once"
    );

    // The failing key: its later records wait until it succeeded, then run
    // in order.
    let bad: Vec<&Run> = runs
        .iter()
        .filter(|run| run.at.key.as_deref() == Some("bad"))
        .collect();
    let mut offsets = vec![0; FAILURES + 1];
    offsets.extend((1..RECORDS).filter(|o| o % 6 == 0));
    assert_lane("key bad", &bad, &offsets);
    for good in 0..3 {
        let key = format!("good-{good}");
        let lane: Vec<&Run> = runs
            .iter()
            .filter(|run| run.at.key.as_deref() == Some(key.as_str()))
            .collect();
        let offsets: Vec<i64> = (0..RECORDS).filter(|o| key_of(*o) == key).collect();
        assert_lane(&format!("key {key}"), &lane, &offsets);
    }

    // Other keys flowed during the retries: some of their records ended
    // between two attempts of the failing one.
    let between = attempts
        .windows(2)
        .map(|pair| {
            let (failed, next) = (pair[0].end_seq(), pair[1].start);
            runs.iter()
                .filter(|run| run.at.key.as_deref() != Some("bad") && run.succeeded())
                .filter(|run| (failed..next).contains(&run.end_seq()))
                .count()
        })
        .sum::<usize>();
    assert!(
        between > 0,
        "no record of another key ended while the failing record waited for a retry: the retry \
         held more than its key"
    );
}

/// Partition order, two partitions: partition 0's first record fails every
/// attempt and is dead-lettered. Partition 1 flows between its attempts;
/// partition 0's next record starts only after the copy was acknowledged;
/// the attempts and the copy stay in the producer's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_then_dead_lettered_record_holds_only_its_partition_and_keeps_its_trace() {
    let telemetry = telemetry(Mode::OtelOnly);
    const RETRIES: u32 = 2;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group, dlq) = new_topic_with_dlq(&broker, "retry-partition", 2).await;
    let (producer, record) = traced(
        TestRecord::new(&topic, b"doomed")
            .partition(0)
            .key(b"doomed-key"),
    );
    assert_eq!(send(&broker, record).await, (0, 0));
    send_to(&broker, &topic, 0, 9).await;
    send_to(&broker, &topic, 1, 20).await;

    let log: Log = Timeline::new();
    // Whether the copy was acknowledged when the record after the doomed
    // one started.
    let copied_before_next = Arc::new(Mutex::new(None));
    let handler = {
        let (copied, to) = (copied_before_next.clone(), dlq.clone());
        logged("retry_partition", &topic, &group, &log, move |at| {
            let (copied, dlq) = (copied.clone(), to.clone());
            async move {
                match at.position() {
                    (0, 0) => return Err(HandlerError::transient("never works")),
                    (0, 1) => {
                        let acked = !telemetry.dead_letter_sends(&dlq).1.is_empty();
                        *copied.lock().unwrap() = Some(acked);
                    }
                    _ => {}
                }
                tokio::task::yield_now().await;
                Ok(())
            }
            .boxed()
        })
        .with_retries(RETRIES)
        .with_backoff(Backoff::constant(Duration::from_millis(100)))
        .with_dlq(&dlq)
    };
    let done = async {
        wait_until(WAIT, "every other record handled", || {
            handled(&runs(&log), None).len() >= 29
        })
        .await;
        wait_for_acknowledged_copy(telemetry, &dlq, WAIT).await;
    };
    run_until(&broker, vec![handler], done).await;
    assert_eq!(
        committed(&broker, &group, &topic, 2).await,
        [Some(10), Some(20)],
        "the dead-lettered record ended: committed past it"
    );

    let runs = runs(&log);
    let attempts: Vec<&Run> = runs
        .iter()
        .filter(|run| run.at.position() == (0, 0))
        .collect();
    assert_eq!(attempts.len(), RETRIES as usize + 1);
    assert!(attempts
        .iter()
        .all(|run| matches!(run.end, Some((_, What::Failed)))));
    assert_eq!(runs.len(), 29 + RETRIES as usize + 1, "others called once");

    // Its partition waited for it.
    let partition_0: Vec<&Run> = runs.iter().filter(|run| run.at.partition == 0).collect();
    let mut offsets = vec![0; RETRIES as usize + 1];
    offsets.extend(1..10);
    assert_lane("partition 0", &partition_0, &offsets);
    assert_eq!(
        *copied_before_next.lock().unwrap(),
        Some(true),
        "the next record of partition 0 started only after the copy was acknowledged"
    );
    let partition_1: Vec<&Run> = runs.iter().filter(|run| run.at.partition == 1).collect();
    assert_lane("partition 1", &partition_1, &(0..20).collect::<Vec<_>>());
    // The other partition flowed during the retries.
    let between = attempts
        .windows(2)
        .map(|pair| {
            let (failed, next) = (pair[0].end_seq(), pair[1].start);
            partition_1
                .iter()
                .filter(|run| (failed..next).contains(&run.end_seq()))
                .count()
        })
        .sum::<usize>();
    assert!(
        between > 0,
        "no record of partition 1 ended while partition 0's record waited for a retry"
    );

    // The trace: producer → each attempt; the last attempt → send {dlq} →
    // the copy's traceparent.
    let spans: Vec<_> = telemetry
        .process_spans(&topic)
        .into_iter()
        .filter(|span| {
            attribute(span, "messaging.destination.partition.id") == Some("0".into())
                && int_attribute(span, "messaging.kafka.offset") == 0
        })
        .collect();
    assert_eq!(spans.len(), RETRIES as usize + 1, "one span per attempt");
    for span in &spans {
        assert_child_of(span, &producer, "an attempt");
    }
    let (failed_sends, sends) = telemetry.dead_letter_sends(&dlq);
    assert!(failed_sends.is_empty());
    assert_eq!(sends.len(), 1);
    assert_child_of(
        &sends[0],
        &spans[RETRIES as usize].span_context,
        "the dead-letter send",
    );
    let copy = only_copy(&broker, &dlq).await;
    assert_eq!(copy.key(), Some(&b"doomed-key"[..]));
    assert_eq!(copy.payload(), Some(&b"doomed"[..]));
    assert_eq!(
        header(&copy, "traceparent"),
        Some(traceparent_of(&sends[0])),
        "the copy carries the send span's context"
    );
}
