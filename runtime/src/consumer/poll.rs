//! The poll loop of one group: takes records from librdkafka, routes each
//! to its handler's lanes (or batch), starts what the scheduler lets start,
//! drives everything in flight on the group's task, commits on time, pauses
//! partitions it holds too much of, and drains at shutdown.
//!
//! Everything of a group runs on its one task: the loop polls librdkafka
//! (which serves rebalances and group membership while handlers run) and
//! every record in flight, each under its own record's context on every
//! poll (see `attach.rs`). A unit is polled once as soon as it starts, so a
//! handler that finishes without waiting costs no more than a call.
//! Synchronous handlers that block move to Tokio's blocking pool (see
//! `process.rs`); the loop awaits them like any other record.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use rdkafka::consumer::stream_consumer::MessageStream;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::TopicPartitionList;
use tokio::time::{Instant, Sleep};

use crate::error::Error;
use crate::lock;
use crate::resolve::Resolution;

use super::gather::{Batch, Gathering};
use super::group::RunningGroup;
use super::offsets::{PartitionId, Seq};
use super::rebalance::GroupContext;
use super::schedule::{Scheduler, Unit};
use super::work::{UnitMeta, Work};

/// How long a final commit refused during a rebalance is tried again.
const FINAL_COMMIT_RETRY: Duration = Duration::from_secs(5);

/// Records taken per poll of the loop before it yields to other tasks.
const BUDGET: usize = 256;

/// The fewest records of one partition the loop holds (waiting, in flight,
/// or ended above the watermark) before it pauses the partition; it resumes
/// it at half. See [`window`].
const MIN_WINDOW: usize = 1024;

/// How many records of one partition a handler may hold before the
/// partition is paused: room for twice its `max_in_flight` (and two full
/// batches), at least [`MIN_WINDOW`].
fn window(max_in_flight: usize, max_records: usize) -> usize {
    MIN_WINDOW
        .max(max_in_flight.saturating_mul(2))
        .max(max_records.saturating_mul(2))
}

/// A unit in flight, abortable when its partition is revoked.
type Running<'s> = Abortable<BoxFuture<'s, (UnitMeta, Resolution)>>;

impl RunningGroup<'_> {
    /// Subscribes, then runs the poll loop until shutdown or a stopping
    /// error; then commits what ended.
    pub(super) async fn run(&self) -> Result<(), Error> {
        let group = &self.group.group;
        let topics: Vec<&str> = self
            .group
            .handlers
            .iter()
            .flat_map(|h| h.topics())
            .map(String::as_str)
            .collect();
        self.consumer.subscribe(&topics).map_err(|err| {
            Error::kafka(format!("subscribing group `{group}` to {topics:?}"), err)
        })?;
        tracing::info!(target: "kafka_handler", group = %group, ?topics, "consumer started");
        self.group.health.started();

        let mut state = Loop::new(self);
        std::future::poll_fn(|cx| state.poll(cx)).await;
        let stopped_by = state.stopped();
        let committed = state.commit_final().await;
        drop(state);
        match stopped_by {
            Some(error) => {
                if let Err(err) = committed {
                    tracing::warn!(target: "kafka_handler", group = %group, error = %err, "final commit failed");
                }
                Err(error)
            }
            None => committed,
        }
    }
}

/// The loop's state; see the module documentation.
struct Loop<'s> {
    group: &'s RunningGroup<'s>,
    stream: MessageStream<'s, GroupContext>,
    scheduler: Scheduler<Work<'s>>,
    gathering: Gathering<'s>,
    /// Per handler: its batch options, and its partitions' window.
    batches: Vec<Option<(usize, Duration)>>,
    windows: Vec<usize>,
    running: FuturesUnordered<Running<'s>>,
    /// Each unit in `running`, by its partition and first record: its
    /// abort handle, and when it started.
    aborts: HashMap<(PartitionId, Seq), (UnitMeta, AbortHandle, Instant)>,
    /// Partitions paused because the loop holds a full window of them, and
    /// the handler whose window it is.
    paused: Vec<(PartitionId, usize)>,
    /// Commits and liveness: wakes the loop at the next commit, or after
    /// half `max.poll.interval.ms` at the latest.
    tick: Pin<Box<Sleep>>,
    next_commit: Instant,
    /// The next open batch's `max_wait`.
    batch_timer: Pin<Box<Sleep>>,
    batch_due: Option<Instant>,
    shutdown: BoxFuture<'s, ()>,
    /// Set once the loop stops taking records: until when what runs may
    /// finish.
    stopping: Option<Pin<Box<Sleep>>>,
    stopped_by: Option<Error>,
    /// The time of this turn.
    now: Instant,
}

impl<'s> Loop<'s> {
    fn new(group: &'s RunningGroup<'s>) -> Self {
        let handlers = &group.group.handlers;
        let scheduler = Scheduler::new(handlers.iter().map(|handler| {
            let options = handler.options();
            (options.ordering, handler.max_in_flight())
        }));
        let batches: Vec<_> = handlers
            .iter()
            .map(|handler| {
                handler
                    .batch_options()
                    .map(|options| (options.max_records(), options.max_wait()))
            })
            .collect();
        let windows = handlers
            .iter()
            .zip(&batches)
            .map(|(handler, batch)| {
                window(
                    handler.max_in_flight(),
                    batch.map_or(1, |(max_records, _)| max_records),
                )
            })
            .collect();
        let now = Instant::now();
        let next_commit = now + group.group.timings.commit_interval;
        let shutdown = group.shutdown.clone();
        Self {
            group,
            // One long-lived stream: `recv()` would register and unregister
            // a waker (two mutex locks) per message.
            stream: group.consumer.stream(),
            scheduler,
            gathering: Gathering::default(),
            batches,
            windows,
            running: FuturesUnordered::new(),
            aborts: HashMap::new(),
            paused: Vec::new(),
            tick: Box::pin(tokio::time::sleep_until(
                next_commit.min(now + heartbeat(group)),
            )),
            next_commit,
            batch_timer: Box::pin(tokio::time::sleep_until(now)),
            batch_due: None,
            shutdown: Box::pin(async move { shutdown.triggered().await }),
            stopping: None,
            stopped_by: None,
            now,
        }
    }

    /// One turn; `Ready` once the loop has stopped and what ran has ended
    /// (or its time is up).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        self.group.group.health.turned(now.into_std());
        if self.stopping.is_none() && self.shutdown.as_mut().poll(cx).is_ready() {
            self.stop(now);
        }
        self.tick(now, cx);
        self.cut_due_batches(now, cx);
        self.now = now;
        let mut budget = BUDGET;
        loop {
            while let Poll::Ready(Some(ended)) = self.running.poll_next_unpin(cx) {
                // Aborted: its partition was revoked, and already accounted.
                if let Ok((meta, resolution)) = ended {
                    self.ended(meta, resolution, cx);
                }
            }
            if let Some(deadline) = &mut self.stopping {
                if self.running.is_empty() || deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            budget -= 1;
            let polled = self.stream.poll_next_unpin(cx);
            // Rebalance callbacks run inside the poll: forget what this
            // member no longer owns before anything else.
            self.forget_revoked();
            match polled {
                Poll::Ready(Some(Ok(message))) => self.take(message, cx),
                Poll::Ready(Some(Err(err))) => match self.group.stopping_error(&err) {
                    Some(error) => {
                        self.stopped_by = Some(error);
                        self.stop(now);
                    }
                    // A broker out of reach: librdkafka logged it already
                    // (at WARN) and reconnects on its own.
                    None if matches!(
                        err.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::BrokerTransportFailure
                                | RDKafkaErrorCode::AllBrokersDown
                        )
                    ) =>
                    {
                        tracing::debug!(target: "kafka_handler", group = %self.group.group.group, error = %err, "consumer error");
                    }
                    None => {
                        tracing::warn!(target: "kafka_handler", group = %self.group.group.group, error = %err, "consumer error");
                    }
                },
                Poll::Ready(None) => {
                    self.stop(now);
                    return Poll::Ready(());
                }
                Poll::Pending => break,
            }
        }
        self.arm_batch_timer(cx);
        Poll::Pending
    }

    /// Commits when due, and re-arms the tick.
    fn tick(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.tick.as_mut().poll(cx).is_pending() {
            return;
        }
        if now >= self.next_commit {
            self.next_commit = now + self.group.group.timings.commit_interval;
            self.group.commit_async();
        }
        // For liveness, which looks at a scale of `max.poll.interval.ms`: once
        // a tick is enough.
        let oldest = self.aborts.values().map(|(_, _, started)| *started).min();
        self.group
            .group
            .health
            .running_since(oldest.map(Instant::into_std));
        let next = self.next_commit.min(now + heartbeat(self.group));
        self.tick.as_mut().reset(next);
        let _ = self.tick.as_mut().poll(cx);
    }

    /// Sends the batches whose `max_wait` has passed.
    fn cut_due_batches(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.gathering.is_empty() || self.stopping.is_some() {
            return;
        }
        while let Some(batch) = self.gathering.take_due(now) {
            self.admit_batch(batch, cx);
        }
    }

    /// Wakes the loop when the next open batch is due.
    fn arm_batch_timer(&mut self, cx: &mut Context<'_>) {
        let due = self.gathering.next_deadline();
        if due.is_none() || self.stopping.is_some() {
            return;
        }
        if due != self.batch_due {
            self.batch_due = due;
            if let Some(due) = due {
                self.batch_timer.as_mut().reset(due);
            }
        }
        if self.batch_timer.as_mut().poll(cx).is_ready() {
            // Already due: take it on the next turn.
            cx.waker().wake_by_ref();
        }
    }

    /// Takes one record: registers it with its partition's offsets, then
    /// hands it to its handler's lanes, or to its open batch.
    fn take(&mut self, message: BorrowedMessage<'s>, cx: &mut Context<'_>) {
        // Triggered by a handler of this very turn: nothing starts after it.
        if self.stopping.is_none() && self.group.shutdown.is_triggered() {
            self.stop(self.now);
        }
        if self.stopping.is_some() {
            // Stopping: not started, not committed; fetched again later.
            return;
        }
        // rdkafka measures and checks the topic name on every call.
        let topic = message.topic();
        let Some(handler) = self.group.route(topic) else {
            tracing::warn!(
                target: "kafka_handler",
                topic,
                "record from a topic no handler consumes; skipped"
            );
            let mut offsets = lock(&self.group.offsets);
            let partition = offsets.partition(topic, message.partition());
            let seq = offsets.taken(partition, message.offset());
            offsets.ended(partition, seq, 1);
            return;
        };
        let (partition, seq, held) = {
            let mut offsets = lock(&self.group.offsets);
            let partition = offsets.partition(topic, message.partition());
            let seq = offsets.taken(partition, message.offset());
            (partition, seq, offsets.outstanding(partition))
        };
        if held >= self.windows[handler] {
            self.pause(partition, handler);
        }
        if let Some(options) = self.batches[handler] {
            if let Some(batch) = self
                .gathering
                .push(handler, partition, seq, options, message)
            {
                self.admit_batch(batch, cx);
            }
            return;
        }
        let unit = Unit {
            lane: self.scheduler.lane(handler, partition, message.key()),
            partition,
            records: 1,
            work: Work::Record { seq, message },
        };
        self.admit(handler, unit, cx);
    }

    fn admit_batch(&mut self, batch: Batch<'s>, cx: &mut Context<'_>) {
        let (handler, partition) = (batch.handler, batch.partition);
        let unit = Unit {
            lane: self.scheduler.lane(handler, partition, None),
            partition,
            records: batch.messages.len(),
            work: Work::Batch(batch),
        };
        self.admit(handler, unit, cx);
    }

    /// Hands `unit` to the scheduler, and starts it if it may start now.
    fn admit(&mut self, handler: usize, unit: Unit<Work<'s>>, cx: &mut Context<'_>) {
        if let Some(unit) = self.scheduler.admit(handler, unit) {
            self.start(handler, unit, false, cx);
            self.start_ready(handler, cx);
        }
    }

    /// Starts every unit of `handler` the scheduler lets start.
    fn start_ready(&mut self, handler: usize, cx: &mut Context<'_>) {
        while self.stopping.is_none() && !self.group.shutdown.is_triggered() {
            let Some(unit) = self.scheduler.next(handler) else {
                return;
            };
            self.start(handler, unit, true, cx);
        }
    }

    /// Starts `unit`: polls it once right away; if it has to wait, it joins
    /// what runs.
    /// `lane_taken`: whether the scheduler already counts the unit's lane
    /// busy (a unit that waited); one admitted at once takes it only if it
    /// runs on.
    fn start(
        &mut self,
        handler: usize,
        unit: Unit<Work<'s>>,
        lane_taken: bool,
        cx: &mut Context<'_>,
    ) {
        let meta = UnitMeta {
            handler,
            lane: unit.lane,
            partition: unit.partition,
            first: unit.work.first(),
            records: unit.records,
        };
        let mut future = self.group.run_unit(meta, unit.work);
        match future.as_mut().poll(cx) {
            Poll::Ready((meta, resolution)) if lane_taken => self.settle(meta, resolution),
            Poll::Ready((meta, resolution)) => {
                self.mark(meta, resolution);
                self.scheduler.ended_at_once(handler, meta.records);
            }
            Poll::Pending => {
                if !lane_taken {
                    self.scheduler.occupy(handler, meta.lane);
                }
                let (abort, registration) = AbortHandle::new_pair();
                self.aborts
                    .insert((meta.partition, meta.first), (meta, abort, self.now));
                self.running.push(Abortable::new(future, registration));
            }
        }
    }

    /// A unit that ran ended: settles it, starts what may start now, and
    /// resumes its partition if it was paused and has room again.
    fn ended(&mut self, meta: UnitMeta, resolution: Resolution, cx: &mut Context<'_>) {
        self.aborts.remove(&(meta.partition, meta.first));
        self.settle(meta, resolution);
        self.start_ready(meta.handler, cx);
        self.resume_drained();
    }

    /// Marks an ended unit's records for the watermark (unless abandoned),
    /// and frees its lane.
    fn settle(&mut self, meta: UnitMeta, resolution: Resolution) {
        self.mark(meta, resolution);
        self.scheduler.ended(meta.handler, meta.lane, meta.records);
    }

    /// Marks an ended unit's records for the watermark, unless abandoned.
    fn mark(&self, meta: UnitMeta, resolution: Resolution) {
        if resolution == Resolution::Ended {
            lock(&self.group.offsets).ended(meta.partition, meta.first, meta.records);
        }
    }

    /// Pauses `partition`: the loop holds a full window of it.
    fn pause(&mut self, partition: PartitionId, handler: usize) {
        if self.paused.iter().any(|(p, _)| *p == partition) {
            return;
        }
        if self.pause_or_resume(partition, true) {
            self.paused.push((partition, handler));
        }
    }

    /// Resumes the paused partitions the loop holds half a window of or
    /// less.
    fn resume_drained(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let drained: Vec<PartitionId> = {
            let offsets = lock(&self.group.offsets);
            self.paused
                .iter()
                .filter(|(p, handler)| offsets.outstanding(*p) <= self.windows[*handler] / 2)
                .map(|(p, _)| *p)
                .collect()
        };
        for partition in drained {
            self.paused.retain(|(p, _)| *p != partition);
            self.pause_or_resume(partition, false);
        }
    }

    /// Pauses (or resumes) fetching `partition`; whether librdkafka took it.
    fn pause_or_resume(&self, partition: PartitionId, pause: bool) -> bool {
        let Some((topic, number)) = lock(&self.group.offsets)
            .name(partition)
            .map(|(topic, number)| (topic.to_owned(), number))
        else {
            return false;
        };
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, number);
        let result = if pause {
            self.group.consumer.pause(&list)
        } else {
            let resumed = self.group.consumer.resume(&list);
            // librdkafka resumes the partition on its main thread, and the
            // broker thread that fetches it only sees that when it next
            // wakes: at once when a fetch of it was in flight, but up to a
            // second later when none was (its prefetch had reached the end
            // of the log). A request to the partition's leader wakes that
            // thread now; nothing waits for its answer.
            let _ = self
                .group
                .consumer
                .fetch_watermarks(&topic, number, Duration::ZERO);
            resumed
        };
        match result {
            Ok(()) => {
                tracing::debug!(target: "kafka_handler", group = %self.group.group.group, topic, partition = number, pause, "partition flow changed");
                true
            }
            Err(err) => {
                tracing::warn!(target: "kafka_handler", group = %self.group.group.group, topic, partition = number, pause, error = %err, "pausing or resuming a partition failed");
                false
            }
        }
    }

    /// Drops what waits for, and abandons what runs of, the partitions
    /// revoked since the last poll: their new owner handles those records,
    /// which stay above the watermark committed on revoke.
    fn forget_revoked(&mut self) {
        let revoked = self.group.consumer.context().take_revoked();
        for partition in revoked {
            self.scheduler.forget(partition);
            self.gathering.forget(partition);
            self.paused.retain(|(p, _)| *p != partition);
            let mut abandoned = Vec::new();
            self.aborts.retain(|_, (meta, abort, _)| {
                if meta.partition != partition {
                    return true;
                }
                abort.abort();
                abandoned.push(*meta);
                false
            });
            for meta in &abandoned {
                self.scheduler.ended(meta.handler, meta.lane, meta.records);
            }
            let abandoned: usize = abandoned.iter().map(|meta| meta.records).sum();
            if abandoned > 0 {
                tracing::info!(
                    target: "kafka_handler",
                    group = %self.group.group.group,
                    records = abandoned,
                    "partition revoked while records of it were in flight; they are cancelled, \
                     stay uncommitted, and its new owner handles them again"
                );
            }
        }
    }

    /// Stops taking records: what runs may finish within the shutdown
    /// timeout; fetching stops.
    fn stop(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        let timeout = self.group.group.timings.shutdown_timeout;
        self.stopping = Some(Box::pin(tokio::time::sleep_until(now + timeout)));
        if let Ok(assignment) = self.group.consumer.assignment() {
            let _ = self.group.consumer.pause(&assignment);
        }
        tracing::debug!(
            target: "kafka_handler",
            group = %self.group.group.group,
            running = self.running.len(),
            "stopping: no new records; waiting for those in flight"
        );
    }

    /// Commits every watermark at the end. A commit refused because the
    /// group is rebalancing, or because the coordinator is not reachable
    /// yet (after a broker outage), is tried again while the member keeps
    /// serving rebalances (taking no record), for up to
    /// [`FINAL_COMMIT_RETRY`].
    ///
    /// A member the coordinator no longer knows (its session expired) has
    /// lost its partitions to other members: their new owners take the
    /// records up from the group's committed offsets, as after a crash. That
    /// is a warning, not a failed stop; a commit that fails for any other
    /// reason (the broker is gone) fails the stop.
    async fn commit_final(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + FINAL_COMMIT_RETRY;
        loop {
            let refused = match self.group.commit_unconfirmed() {
                // Done, unless a revoke served meanwhile left watermarks to
                // commit once its rebalance settles.
                Ok(()) if !lock(&self.group.offsets).has_orphans() => return Ok(()),
                Ok(()) => None,
                Err(err) => Some(err),
            };
            let group = &self.group.group.group;
            let retry = refused
                .as_ref()
                .map(|err| final_commit_retry(err.rdkafka_error_code()));
            if retry == Some(Retry::No) {
                return Err(self.group.final_commit_failed(refused.expect("refused")));
            }
            if Instant::now() >= deadline {
                // What is left: a refused commit, or watermarks whose commit
                // on revoke was refused and whose rebalance did not settle.
                let left = refused.or_else(|| self.group.consumer.context().revoke_refused());
                return self.gave_up(left);
            }
            tracing::debug!(target: "kafka_handler", group = %group, error = ?refused, "final commit waits for the group to settle");
            let until = (Instant::now() + Duration::from_millis(100)).min(deadline);
            while let Ok(Some(_ignored)) = tokio::time::timeout_at(until, self.stream.next()).await
            {
                self.forget_revoked();
            }
            self.forget_revoked();
        }
    }

    /// The final commit's time is up, and `left` refused the last commit.
    /// A group that did not settle, or that no longer counts this member,
    /// hands the partitions to other members, who take the records up from
    /// the committed offsets: a warning. A coordinator still out of reach
    /// fails the stop.
    fn gave_up(&self, left: Option<KafkaError>) -> Result<(), Error> {
        let group = &self.group.group.group;
        match left
            .as_ref()
            .map(|err| final_commit_retry(err.rdkafka_error_code()))
        {
            Some(Retry::Lost) => {
                let err = left.expect("refused");
                self.group.group.health.commit_failed(&err);
                tracing::warn!(target: "kafka_handler", group = %group, error = %err, "this member left the group before its final commit (its session expired); the partitions' new owners handle its last records again");
                Ok(())
            }
            None | Some(Retry::Rebalancing) => {
                tracing::warn!(target: "kafka_handler", group = %group, "the rebalance in progress did not settle in time to commit the offsets of the partitions it revoked; their new owners handle those records again");
                Ok(())
            }
            Some(Retry::Coordinator | Retry::No) => {
                Err(self.group.final_commit_failed(left.expect("refused")))
            }
        }
    }

    /// The loop has stopped: cancels what still runs (its time is up), says
    /// what stays uncommitted, and why the loop stopped.
    fn stopped(&mut self) -> Option<Error> {
        let group = &self.group.group.group;
        let cancelled: usize = self.aborts.values().map(|(meta, ..)| meta.records).sum();
        if cancelled > 0 {
            tracing::warn!(
                target: "kafka_handler",
                group = %group,
                records = cancelled,
                "handlers cancelled at shutdown after the shutdown timeout; their records stay \
                 uncommitted and are handled again after a restart"
            );
        }
        if !self.gathering.is_empty() {
            tracing::info!(
                target: "kafka_handler",
                group = %group,
                records = self.gathering.records(),
                "stopping with records waiting for their batch; they stay uncommitted and are \
                 handled after a restart"
            );
        }
        let waiting = self.scheduler.waiting();
        if waiting > 0 {
            tracing::debug!(target: "kafka_handler", group = %group, units = waiting, "stopping with records not started; they stay uncommitted");
        }
        // Cancel what still runs, and let go of every record.
        self.aborts.clear();
        self.running = FuturesUnordered::new();
        self.scheduler = Scheduler::new([]);
        self.gathering = Gathering::default();
        self.stopped_by.take()
    }
}

/// Whether a final commit refused with `code` is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// The group rebalances.
    Rebalancing,
    /// The coordinator is not reachable (yet).
    Coordinator,
    /// The coordinator does not know this member (any more): tried again in
    /// case the member rejoins, and a warning when time is up.
    Lost,
    /// Final: the stop fails.
    No,
}

fn final_commit_retry(code: Option<RDKafkaErrorCode>) -> Retry {
    match code {
        Some(RDKafkaErrorCode::RebalanceInProgress) => Retry::Rebalancing,
        Some(
            RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::NotCoordinator,
        ) => Retry::Coordinator,
        Some(
            RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::FencedMemberEpoch
            | RDKafkaErrorCode::StaleMemberEpoch,
        ) => Retry::Lost,
        _ => Retry::No,
    }
}

/// How long the loop may sleep: half `max.poll.interval.ms`, so an idle
/// group still reports itself live.
fn heartbeat(group: &RunningGroup<'_>) -> Duration {
    group.group.health.max_poll_interval() / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_commit_waits_for_the_group_fails_without_a_broker_and_warns_when_fenced() {
        use RDKafkaErrorCode as Code;
        assert_eq!(
            final_commit_retry(Some(Code::RebalanceInProgress)),
            Retry::Rebalancing
        );
        for code in [
            Code::WaitingForCoordinator,
            Code::CoordinatorNotAvailable,
            Code::CoordinatorLoadInProgress,
            Code::NotCoordinator,
        ] {
            assert_eq!(
                final_commit_retry(Some(code)),
                Retry::Coordinator,
                "{code:?}"
            );
        }
        for code in [
            Code::IllegalGeneration,
            Code::UnknownMemberId,
            Code::FencedMemberEpoch,
            Code::StaleMemberEpoch,
        ] {
            assert_eq!(final_commit_retry(Some(code)), Retry::Lost, "{code:?}");
        }
        for code in [
            Some(Code::BrokerTransportFailure),
            Some(Code::AllBrokersDown),
            Some(Code::GroupAuthorizationFailed),
            None,
        ] {
            assert_eq!(final_commit_retry(code), Retry::No, "{code:?}");
        }
    }
}
