//! The records of a scenario: orders `1..=total` (key `order-{id}`),
//! produced through the harness's producer at a steady rate on a task of
//! their own, many in flight at once so an outage queues them rather than
//! stopping the clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use kafka_handler_tests::kafka::{self, send_order};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Sends not yet acknowledged, at most: past it the producer falls behind
/// its rate rather than queueing without bound.
const MAX_IN_FLIGHT: usize = 20_000;

/// Where each acknowledged order landed: `(id, partition, offset)`.
pub(crate) type Landed = (u64, i32, i64);

#[derive(Default)]
struct Shared {
    acked: AtomicU64,
    landed: Mutex<Vec<Landed>>,
}

/// The producer task of a scenario.
pub(crate) struct Production {
    total: u64,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Production {
    /// Starts producing orders `1..=total` to `topic` at `rate` per second.
    pub(crate) fn start(brokers: &str, topic: &str, total: u64, rate: u64) -> Self {
        let shared = Arc::new(Shared::default());
        // Every order must get through the outages: librdkafka's reconnect
        // backoff grows to `reconnect.backoff.max.ms` (10 s by default), so
        // after a 3 s outage an order could wait longer than the harness's
        // 10 s `message.timeout.ms`.
        let producer = kafka::producer_with(
            brokers,
            &[
                ("message.timeout.ms", "60000"),
                ("reconnect.backoff.max.ms", "1000"),
            ],
        );
        let topic = topic.to_owned();
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let started = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut in_flight = FuturesUnordered::new();
                let mut next = 1;
                let (producer, topic) = (&producer, topic.as_str());
                while next <= total || !in_flight.is_empty() {
                    tokio::select! {
                        _ = tick.tick(), if next <= total => {
                            let elapsed = started.elapsed().as_secs_f64();
                            let due = ((elapsed * rate as f64) as u64).min(total);
                            while next <= due && in_flight.len() < MAX_IN_FLIGHT {
                                let id = next;
                                in_flight.push(async move {
                                    (id, send_order(producer, topic, id, 100 + id % 900, None).await)
                                });
                                next += 1;
                            }
                        }
                        Some((id, produced)) = in_flight.next() => {
                            shared.landed.lock().unwrap().push((id, produced.partition, produced.offset));
                            shared.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Self {
            total,
            shared,
            task: Some(task),
        }
    }

    /// The orders the broker acknowledged so far.
    pub(crate) fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// How many orders there are to produce.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Panics with the producer's own panic (a send the broker did not
    /// acknowledge within its timeout) if it failed.
    pub(crate) fn check(&mut self) {
        if self.task.as_ref().is_some_and(JoinHandle::is_finished) && self.acked() < self.total {
            let task = self.task.take().expect("checked above");
            let failure = futures_util::FutureExt::now_or_never(task)
                .expect("a finished task")
                .err()
                .map(|err| match err.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default(),
                    Err(err) => err.to_string(),
                });
            panic!(
                "the producer stopped after {} of {} orders: {}",
                self.acked(),
                self.total,
                failure.unwrap_or_else(|| "no panic".to_owned())
            );
        }
    }

    /// Where every acknowledged order landed, once all are.
    pub(crate) fn landed(&self) -> Vec<Landed> {
        self.shared.landed.lock().unwrap().clone()
    }
}
