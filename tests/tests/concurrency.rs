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

#[path = "concurrency/bounded.rs"]
mod bounded;
#[path = "concurrency/lifecycle.rs"]
mod lifecycle;
#[path = "concurrency/ordering.rs"]
mod ordering;
#[path = "concurrency/placement.rs"]
mod placement;
#[path = "concurrency/retries.rs"]
mod retries;
#[path = "concurrency/watermark.rs"]
mod watermark;
