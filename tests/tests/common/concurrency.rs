//! The tracing contract with many records in flight at once (TRACING.md,
//! "Concurrency"), run by each telemetry mode's test binary; and the tools
//! the concurrency tests share: a gate that holds handlers until enough of
//! them arrived, a log of events in one global order, and per-record
//! randomness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_handler::testing::{EmbeddedBroker, TestRecord};
use kafka_handler::{Handler, ProcessingOrder};
use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::trace::SpanData;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    assert_child_of, attribute, current_span_contexts, int_attribute, new_topic, send,
    start_consumer, stop_consumer, telemetry, traced, wait_until, Current, Mode,
};

const WAIT: Duration = Duration::from_secs(30);

/// How long a [`Gate`] waits at most in the tests: well within [`WAIT`], so
/// a gate that could not open fails a test's assertions, not its waits.
pub const GATE: Duration = Duration::from_secs(10);

/// A point where handlers wait until `needed` of them arrived, or until
/// its deadline passes (so a test whose runtime cannot get them there
/// fails on its assertions instead of hanging).
#[derive(Debug)]
pub struct Gate {
    arrived: watch::Sender<usize>,
    needed: usize,
    deadline: Instant,
}

impl Gate {
    /// A gate for `needed` arrivals, open by itself after `limit`.
    pub fn new(needed: usize, limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            arrived: watch::Sender::new(0),
            needed,
            deadline: Instant::now() + limit,
        })
    }

    /// Counts one arrival, then waits until the gate opens: whether it
    /// opened because `needed` arrived (`false`: its deadline passed).
    pub async fn arrive(&self) -> bool {
        self.arrived.send_modify(|arrived| *arrived += 1);
        self.wait().await
    }

    /// Waits until `needed` arrived, or the deadline: whether they did.
    pub async fn wait(&self) -> bool {
        let mut arrivals = self.arrived.subscribe();
        let needed = self.needed;
        let opened = tokio::time::timeout_at(self.deadline, arrivals.wait_for(|n| *n >= needed))
            .await
            .is_ok();
        opened
    }

    /// Whether `needed` arrived.
    pub fn is_open(&self) -> bool {
        *self.arrived.borrow() >= self.needed
    }
}

/// Events in one global order: each gets a number from one counter when it
/// happens, so "A ended before B started" is `seq(A) < seq(B)`, whatever
/// threads they ran on. No clock is read.
#[derive(Debug)]
pub struct Timeline<E> {
    next: AtomicU64,
    events: Mutex<Vec<(u64, E)>>,
}

impl<E: Clone> Timeline<E> {
    /// An empty timeline.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            next: AtomicU64::new(0),
            events: Mutex::new(Vec::new()),
        })
    }

    /// Logs `event`; its sequence number.
    pub fn log(&self, event: E) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.events.lock().unwrap().push((seq, event));
        seq
    }

    /// Every event so far, in the order they happened.
    pub fn events(&self) -> Vec<(u64, E)> {
        let mut events = self.events.lock().unwrap().clone();
        events.sort_by_key(|(seq, _)| *seq);
        events
    }
}

/// A number from `parts` that looks random (SplitMix64), for varying
/// records without a random-number crate.
pub fn mix(parts: &[u64]) -> u64 {
    let mut z: u64 = 0x9e37_79b9_7f4a_7c15;
    for part in parts {
        z = z.wrapping_add(*part).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    z
}

/// How many records of one handler are running now, and the most there
/// ever were.
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    /// One more runs until the guard drops (also when its handler is
    /// cancelled).
    pub fn enter(self: &Arc<Self>) -> Flying {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        Flying(self.clone())
    }

    /// How many run now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most that ran at once.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A running record, counted in its [`InFlight`].
#[derive(Debug)]
pub struct Flying(Arc<InFlight>);

impl Drop for Flying {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Partitions of the scenario's topic.
const PARTITIONS: i32 = 4;
/// Records per partition.
const PER_PARTITION: usize = 64;
/// How many records must be in flight at once for the scenario to prove
/// anything.
const AT_ONCE: usize = 64;
/// The handler's `max_in_flight`: more than [`AT_ONCE`], so the runtime,
/// not the limit, is what is tested.
const MAX_IN_FLIGHT: usize = 128;
/// Suspensions per record, after the first (at the gate).
const SUSPENSIONS: usize = 6;

/// Suspends the way `kind` says: yielding, sleeping a few milliseconds
/// (from `seed`), or until woken from a thread outside the runtime or from
/// another task, so the group's task resumes on whichever worker picks it
/// up.
async fn suspend(kind: u64, seed: u64) {
    match kind % 4 {
        0 => tokio::task::yield_now().await,
        1 => tokio::time::sleep(Duration::from_millis(seed % 4)).await,
        2 => {
            let (done, wait) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || done.send(()));
            wait.await.unwrap();
        }
        _ => {
            let (done, wait) = tokio::sync::oneshot::channel();
            tokio::spawn(async move { done.send(()) });
            wait.await.unwrap();
        }
    }
}

/// What a bystander task saw: how often it looked, how often records were
/// in flight when it looked, and what it found current that should not
/// have been.
#[derive(Debug, Default)]
struct Bystanding {
    checks: usize,
    during_flight: usize,
    leaks: Vec<String>,
}

/// A task that keeps yielding (and now and then sleeping) on the runtime
/// the records run on, and checks each time it runs that nothing is
/// current on its worker: no OpenTelemetry span in `Context::current()`,
/// no `tracing` span entered.
async fn bystander(stop: Arc<AtomicBool>, flight: Arc<InFlight>) -> Bystanding {
    let mut seen = Bystanding::default();
    let mut turn: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        turn += 1;
        if turn.is_multiple_of(16) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let in_flight = flight.now() > 0;
        let (otel, traced) = current_span_contexts();
        let entered = tracing::Span::current().id();
        if otel.is_valid() || traced.is_valid() || entered.is_some() {
            seen.leaks.push(format!(
                "on {:?}: Context::current() {otel:?}, tracing span {entered:?} ({traced:?})",
                std::thread::current().id()
            ));
        }
        seen.checks += 1;
        seen.during_flight += usize::from(in_flight);
    }
    seen
}

/// [`AT_ONCE`] or more traced records in flight at once, over four
/// partitions, on a runtime with four workers, with an async handler that
/// notes what is current at each of its steps and suspends between them in
/// varied ways (a gate that holds the first records until [`AT_ONCE`] are
/// in, yields, short sleeps, wake-ups from another thread or task). Proves:
///
/// - real concurrency: at least [`AT_ONCE`] records ran at once;
/// - at every step of every record, `Context::current()` and (with the
///   layer) `tracing::Span::current()` are that record's own `process`
///   span, the child of its own producer span, never a neighbour's;
/// - the cross-thread case happened: some step resumed on another thread;
/// - between polls nothing of any record stays current on a worker: two
///   bystander tasks on the same runtime, checking each time they run,
///   never see a span (and they ran many times while records were in
///   flight).
pub async fn records_in_flight_keep_their_own_context(mode: Mode) {
    let telemetry = telemetry(mode);
    let broker = EmbeddedBroker::start().unwrap();
    let (topic, group) = new_topic(&broker, "interleave", PARTITIONS).await;
    let mut producers: HashMap<(i32, i64), SpanContext> = HashMap::new();
    let records: Vec<(SpanContext, TestRecord<'_>)> = (0..PER_PARTITION * PARTITIONS as usize)
        .map(|i| traced(TestRecord::new(&topic, b"x").partition(i as i32 % PARTITIONS)))
        .collect();
    let sent = futures_util::future::join_all(records.iter().map(|(producer, record)| async {
        (producer.clone(), send(&broker, record.clone()).await)
    }))
    .await;
    for (producer, at) in sent {
        producers.insert(at, producer);
    }
    let total = producers.len();
    assert_eq!(total, PER_PARTITION * PARTITIONS as usize);

    let flight = Arc::new(InFlight::default());
    let gate = Gate::new(AT_ONCE, GATE);
    type Steps = Vec<((i32, i64), Vec<Current>)>;
    let seen: Arc<Mutex<Steps>> = Arc::default();
    let handler = {
        let (flight, gate, seen) = (flight.clone(), gate.clone(), seen.clone());
        Handler::asynchronous("tests::interleave", [&topic], &group, move |record| {
            let (flight, gate, seen) = (flight.clone(), gate.clone(), seen.clone());
            let at = (record.partition(), record.offset());
            Box::pin(async move {
                let _flying = flight.enter();
                let mut steps = Vec::with_capacity(SUSPENSIONS + 2);
                // Woken by the record whose arrival opens the gate.
                steps.push(Current::now());
                gate.arrive().await;
                for step in 0..SUSPENSIONS as u64 {
                    steps.push(Current::now());
                    let seed = mix(&[at.0 as u64, at.1 as u64, step]);
                    suspend(step + at.1 as u64, seed).await;
                }
                steps.push(Current::now());
                seen.lock().unwrap().push((at, steps));
                Ok(())
            })
        })
        .with_ordering(ProcessingOrder::Unordered)
        .with_max_in_flight(MAX_IN_FLIGHT)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let bystanders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(bystander(stop.clone(), flight.clone())))
        .collect();
    let (shutdown, running) = start_consumer(&broker, vec![handler]);
    wait_until(WAIT, "every record handled", || {
        seen.lock().unwrap().len() >= total
    })
    .await;
    stop_consumer(shutdown, running).await;
    stop.store(true, Ordering::SeqCst);
    let mut watched = Vec::new();
    for bystander in bystanders {
        watched.push(bystander.await.expect("the bystander does not panic"));
    }

    assert!(
        flight.max() >= AT_ONCE,
        "at most {} records ran at once, not {AT_ONCE}: the scenario did not test concurrency \
         (gate opened: {})",
        flight.max(),
        gate.is_open()
    );
    let processes: HashMap<(i32, i64), SpanData> = {
        let spans = telemetry.process_spans(&topic);
        assert_eq!(spans.len(), total, "one process span per record");
        spans
            .into_iter()
            .map(|span| {
                let partition = attribute(&span, "messaging.destination.partition.id")
                    .expect("a partition attribute")
                    .as_str()
                    .parse::<i32>()
                    .expect("the partition as a string");
                let offset = int_attribute(&span, "messaging.kafka.offset");
                ((partition, offset), span)
            })
            .collect()
    };
    assert_eq!(processes.len(), total, "each record has its own span");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), total, "each record handled once");
    let mut resumed_elsewhere = 0;
    for (at, steps) in &seen {
        let what = format!("partition {}, offset {}", at.0, at.1);
        let process = processes
            .get(at)
            .unwrap_or_else(|| panic!("{what}: no process span"));
        assert_child_of(
            process,
            &producers[at],
            &format!("{what}: the process span"),
        );
        let own = &process.span_context;
        assert_eq!(steps.len(), SUSPENSIONS + 2);
        for (step, current) in steps.iter().enumerate() {
            assert_eq!(
                &current.otel, own,
                "{what}, step {step}: Context::current() is the record's own process span"
            );
            if mode == Mode::TracingLayer {
                assert_eq!(
                    &current.traced, own,
                    "{what}, step {step}: tracing::Span::current() is the record's own process \
                     span"
                );
            }
        }
        resumed_elsewhere += steps
            .windows(2)
            .filter(|pair| pair[0].thread != pair[1].thread)
            .count();
    }
    assert!(
        resumed_elsewhere > 0,
        "no step of {total} records resumed on another thread than the previous step: the \
         cross-thread case was not exercised"
    );

    let checks: usize = watched.iter().map(|b| b.checks).sum();
    let during: usize = watched.iter().map(|b| b.during_flight).sum();
    let leaks: Vec<&String> = watched.iter().flat_map(|b| &b.leaks).collect();
    assert!(
        leaks.is_empty(),
        "{} of {checks} bystander checks found a record's context current between polls, e.g. {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );
    assert!(
        during >= 100,
        "the bystanders looked only {during} times while records were in flight ({checks} in all)"
    );
    eprintln!(
        "max {} in flight; {resumed_elsewhere} of {} steps resumed on another thread; \
         bystanders checked {checks} times, {during} with records in flight",
        flight.max(),
        total * (SUSPENSIONS + 1)
    );
}
