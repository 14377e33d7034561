//! Records in flight side by side: the order each lane keeps, commits as a
//! watermark, retries that hold only their lane, memory bounded by
//! `max_in_flight` and the partition window, and what happens to records in
//! flight at shutdown and when their partition is revoked.
//!
//! Handlers log their calls in a [`Timeline`]: every event takes a number
//! from one counter, so "B started after A ended" is a comparison of two
//! numbers, never of clocks.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::concurrency::{mix, Gate, Timeline, GATE};
use common::{
    assert_child_of, attribute, committed, header, int_attribute, new_topic, new_topic_with_dlq,
    only_copy, run_until, send, start_consumer, start_consumer_with, start_consumer_with_health,
    stop_consumer, telemetry, traced, traceparent_of, wait_for_acknowledged_copy, wait_for_commits,
    wait_until, Mode,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{
    Backoff, ConsumerBuilder, Handler, HandlerError, Outcome, ProcessingOrder, Record,
};
use rdkafka::message::Message as _;

const WAIT: Duration = Duration::from_secs(30);

/// The `session.timeout.ms` the tests' consumers use
/// (`EmbeddedBroker::consumer_properties`).
const SESSION_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where a record is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct At {
    partition: i32,
    offset: i64,
    key: Option<String>,
}

impl At {
    fn of(record: &Record<'_>) -> Self {
        Self {
            partition: record.partition(),
            offset: record.offset(),
            key: record
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
        }
    }

    fn position(&self) -> (i32, i64) {
        (self.partition, self.offset)
    }
}

/// What happened to a handler call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Started,
    /// Returned `Ok`.
    Succeeded,
    /// Returned an error.
    Failed,
    /// Dropped before it returned: cancelled.
    Cancelled,
}

/// One event of one handler call.
#[derive(Clone, Debug)]
struct Event {
    what: What,
    /// Which consumer's handler.
    by: &'static str,
    /// The call's own number: a record can be called again while an
    /// earlier, cancelled call of it is still being dropped.
    call: u64,
    at: At,
}

type Log = Arc<Timeline<Event>>;

/// A handler call in progress: logs its start, then how it ended; if it is
/// dropped before that, `Cancelled`.
struct Call {
    log: Log,
    by: &'static str,
    call: u64,
    at: Option<At>,
}

impl Call {
    fn start(log: &Log, by: &'static str, at: At) -> Self {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let call = CALLS.fetch_add(1, Ordering::SeqCst);
        log.log(Event {
            what: What::Started,
            by,
            call,
            at: at.clone(),
        });
        Self {
            log: log.clone(),
            by,
            call,
            at: Some(at),
        }
    }

    fn end(mut self, outcome: &Outcome) {
        let at = self.at.take().expect("ends once");
        self.log.log(Event {
            what: if outcome.is_ok() {
                What::Succeeded
            } else {
                What::Failed
            },
            by: self.by,
            call: self.call,
            at,
        });
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(at) = self.at.take() {
            self.log.log(Event {
                what: What::Cancelled,
                by: self.by,
                call: self.call,
                at,
            });
        }
    }
}

/// An async handler of `topic` in `group`, named after `by`, that logs each
/// call in `log` and does what `behave` makes of the record.
fn logged<F>(by: &'static str, topic: &str, group: &str, log: &Log, behave: F) -> Handler
where
    F: Fn(At) -> BoxFuture<'static, Outcome> + Send + Sync + 'static,
{
    let log = log.clone();
    let behave = Arc::new(behave);
    Handler::asynchronous(format!("tests::{by}"), [topic], group, move |record| {
        let at = At::of(record);
        let (log, behave) = (log.clone(), behave.clone());
        Box::pin(async move {
            let call = Call::start(&log, by, at.clone());
            let outcome = behave(at).await;
            call.end(&outcome);
            outcome
        })
    })
}

/// One handler call as the timeline tells it.
#[derive(Clone, Debug)]
struct Run {
    by: &'static str,
    at: At,
    start: u64,
    /// When and how it ended; `None` while it runs.
    end: Option<(u64, What)>,
}

impl Run {
    fn succeeded(&self) -> bool {
        matches!(self.end, Some((_, What::Succeeded)))
    }

    fn end_seq(&self) -> u64 {
        self.end
            .unwrap_or_else(|| panic!("{:?} has not ended", self.at))
            .0
    }

    /// Whether `other` started while this one ran.
    fn overlaps_start_of(&self, other: &Run) -> bool {
        self.start < other.start && self.end.is_none_or(|(end, _)| other.start < end)
    }
}

/// The calls in `log`, in the order they started.
fn runs(log: &Log) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut index: BTreeMap<u64, usize> = BTreeMap::new();
    for (seq, event) in log.events() {
        match event.what {
            What::Started => {
                index.insert(event.call, runs.len());
                runs.push(Run {
                    by: event.by,
                    at: event.at,
                    start: seq,
                    end: None,
                });
            }
            what => {
                let run = &mut runs[index[&event.call]];
                assert!(run.end.is_none(), "{:?} ended twice", run.at);
                run.end = Some((seq, what));
            }
        }
    }
    runs
}

/// The positions of the records `by` handled successfully (any consumer
/// when `by` is `None`), with how many times.
fn handled(runs: &[Run], by: Option<&str>) -> BTreeMap<(i32, i64), usize> {
    let mut handled = BTreeMap::new();
    for run in runs
        .iter()
        .filter(|run| run.succeeded() && by.is_none_or(|by| run.by == by))
    {
        *handled.entry(run.at.position()).or_default() += 1;
    }
    handled
}

/// Asserts that the calls of one lane (in start order) are of `offsets`,
/// in that order, and that each started only after the one before it had
/// ended.
fn assert_lane(lane: &str, runs: &[&Run], offsets: &[i64]) {
    let started: Vec<i64> = runs.iter().map(|run| run.at.offset).collect();
    assert_eq!(
        started, offsets,
        "{lane}: calls start in offset order (a retry repeats its offset)"
    );
    for pair in runs.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        assert!(
            after.start > before.end_seq(),
            "{lane}: offset {} started (event {}) before offset {} ended (event {})",
            after.at.offset,
            after.start,
            before.at.offset,
            before.end_seq()
        );
    }
}

/// How many times a call of one lane started while a call of another ran.
fn overlaps(runs: &[Run], lane: impl Fn(&Run) -> String) -> usize {
    runs.iter()
        .map(|a| {
            runs.iter()
                .filter(|b| lane(a) != lane(b) && a.overlaps_start_of(b))
                .count()
        })
        .sum()
}

/// Sends `count` records to `partition` of `topic`, one after another.
async fn send_to(broker: &EmbeddedBroker, topic: &str, partition: i32, count: usize) {
    for _ in 0..count {
        send(broker, TestRecord::new(topic, b"x").partition(partition)).await;
    }
}

/// Sends `count` records to `partition` of `topic`, many at a time.
async fn send_many(broker: &EmbeddedBroker, topic: &str, partition: i32, count: usize) {
    let mut left = count;
    while left > 0 {
        let now = left.min(500);
        futures_util::future::join_all(
            (0..now).map(|_| send(broker, TestRecord::new(topic, b"x").partition(partition))),
        )
        .await;
        left -= now;
    }
}

/// A short sleep that differs from record to record (1 to 4 ms).
async fn work_a_little(at: &At) {
    let ms = 1 + mix(&[at.partition as u64, at.offset as u64]) % 4;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Partition order, four partitions of 16 records, handlers that take a
/// few milliseconds: in each partition, calls start in offset order, each
/// after its predecessor ended; and partitions ran side by side (the first
/// record of each waits until the first of every partition started, and
/// records of one started while another's ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_order_keeps_each_partition_in_offset_order_and_runs_partitions_side_by_side() {
    telemetry(Mode::OtelOnly);
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: i64 = 16;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "by-partition", PARTITIONS).await;
    for partition in 0..PARTITIONS {
        send_to(&broker, &topic, partition, PER_PARTITION as usize).await;
    }

    let log: Log = Timeline::new();
    // The first record of each partition waits until the first of every
    // partition started: only partitions running side by side get past it
    // without its deadline.
    let gate = Gate::new(PARTITIONS as usize, GATE);
    let stuck = Arc::new(AtomicBool::new(false));
    let handler = logged("by_partition", &topic, &group, &log, {
        let stuck = stuck.clone();
        move |at| {
            let (gate, stuck) = (gate.clone(), stuck.clone());
            async move {
                if at.offset == 0 && !gate.arrive().await {
                    stuck.store(true, Ordering::SeqCst);
                }
                work_a_little(&at).await;
                Ok(())
            }
            .boxed()
        }
    });
    assert_eq!(handler.options().ordering, ProcessingOrder::Partition);
    let total = (PARTITIONS as i64 * PER_PARTITION) as usize;
    let all_handled = wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= total
    });
    run_until(&broker, vec![handler], all_handled).await;

    assert!(
        !stuck.load(Ordering::SeqCst),
        "the first records of the {PARTITIONS} partitions did not all start side by side"
    );
    let runs = runs(&log);
    assert_eq!(runs.len(), total, "each record called once");
    let offsets: Vec<i64> = (0..PER_PARTITION).collect();
    for partition in 0..PARTITIONS {
        let lane: Vec<&Run> = runs
            .iter()
            .filter(|run| run.at.partition == partition)
            .collect();
        assert_lane(&format!("partition {partition}"), &lane, &offsets);
    }
    let overlapped = overlaps(&runs, |run| run.at.partition.to_string());
    assert!(
        overlapped > 0,
        "no record started while a record of another partition ran: partitions did not run \
         side by side"
    );
    eprintln!("{overlapped} starts beside a record of another partition");
}

/// Key order on one partition, four keys and keyless records interleaved:
/// per key, and among the keyless, calls start in offset order, each after
/// its predecessor ended; records of different keys ran side by side, and
/// keyless records beside keyed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_order_keeps_each_key_and_the_keyless_in_offset_order_and_runs_keys_side_by_side() {
    telemetry(Mode::OtelOnly);
    const RECORDS: i64 = 60;
    /// Lanes: four keys, and the keyless records.
    const LANES: i64 = 5;
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "by-key", 1).await;
    // Interleaved: k0 k1 k2 k3 (none) k0 k1 ...
    let lane_of = |offset: i64| match offset % LANES {
        4 => None,
        key => Some(format!("k{key}")),
    };
    for offset in 0..RECORDS {
        let key = lane_of(offset);
        let mut record = TestRecord::new(&topic, b"x").partition(0);
        if let Some(key) = &key {
            record = record.key(key.as_bytes());
        }
        assert_eq!(send(&broker, record).await, (0, offset));
    }

    let log: Log = Timeline::new();
    // The first record of each lane waits until the first of every lane
    // started.
    let gate = Gate::new(LANES as usize, GATE);
    let stuck = Arc::new(AtomicBool::new(false));
    let handler = logged("by_key", &topic, &group, &log, {
        let stuck = stuck.clone();
        move |at| {
            let (gate, stuck) = (gate.clone(), stuck.clone());
            async move {
                if at.offset < LANES && !gate.arrive().await {
                    stuck.store(true, Ordering::SeqCst);
                }
                work_a_little(&at).await;
                Ok(())
            }
            .boxed()
        }
    })
    .with_ordering(ProcessingOrder::Key);
    let all_handled = wait_until(WAIT, "every record handled", || {
        handled(&runs(&log), None).len() >= RECORDS as usize
    });
    run_until(&broker, vec![handler], all_handled).await;

    assert!(
        !stuck.load(Ordering::SeqCst),
        "the first records of the {LANES} lanes did not all start side by side"
    );
    let runs = runs(&log);
    assert_eq!(runs.len(), RECORDS as usize, "each record called once");
    for lane in 0..LANES {
        let key = lane_of(lane);
        let calls: Vec<&Run> = runs.iter().filter(|run| run.at.key == key).collect();
        let offsets: Vec<i64> = (0..RECORDS).filter(|o| o % LANES == lane).collect();
        assert_lane(&format!("key {key:?}"), &calls, &offsets);
    }
    let keyed: Vec<Run> = runs
        .iter()
        .filter(|r| r.at.key.is_some())
        .cloned()
        .collect();
    let overlapped = overlaps(&keyed, |run| format!("{:?}", run.at.key));
    assert!(
        overlapped > 0,
        "no record started while a record of another key ran: keys of one partition did not \
         run side by side"
    );
    let keyless: Vec<Run> = runs
        .iter()
        .filter(|r| r.at.key.is_none())
        .cloned()
        .collect();
    let keyless_beside_keyed = runs
        .iter()
        .filter(|a| a.at.key.is_some())
        .filter(|a| {
            keyless
                .iter()
                .any(|b| a.overlaps_start_of(b) || b.overlaps_start_of(a))
        })
        .count();
    assert!(
        keyless_beside_keyed > 0,
        "keyless records never ran beside records with a key"
    );
    eprintln!(
        "{overlapped} starts beside another key; {keyless_beside_keyed} keyed beside keyless"
    );
}

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
