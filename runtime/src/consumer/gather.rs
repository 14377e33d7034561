//! Cutting batches for batch handlers: records wait, per partition, until
//! `max_records` of them have arrived or `max_wait` has passed since the
//! first one arrived.
//!
//! Records are kept as rdkafka delivered them (no copy). A batch waiting
//! here is not in flight: a revoke drops it and shutdown leaves it, and as
//! none of its records is committed, whoever consumes the partition next
//! handles them.

use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use tokio::time::Instant;

use super::offsets::{PartitionId, Seq};

/// The open batches of one group, one per partition at most.
#[derive(Default)]
pub(crate) struct Gathering<'m> {
    open: Vec<OpenBatch<'m>>,
}

struct OpenBatch<'m> {
    batch: Batch<'m>,
    max_records: usize,
    deadline: Instant,
}

/// A batch cut for delivery: records of one partition, in order, for one
/// handler.
pub(crate) struct Batch<'m> {
    pub(crate) handler: usize,
    pub(crate) partition: PartitionId,
    /// The sequence number of the first record; the others follow it.
    pub(crate) first: Seq,
    pub(crate) messages: Vec<BorrowedMessage<'m>>,
}

impl<'m> Gathering<'m> {
    /// Adds `message` (sequence number `seq` of `partition`) to its
    /// partition's batch for `handler`, opening one if needed; returns the
    /// batch once it holds `max_records`.
    pub(crate) fn push(
        &mut self,
        handler: usize,
        partition: PartitionId,
        seq: Seq,
        (max_records, max_wait): (usize, Duration),
        message: BorrowedMessage<'m>,
    ) -> Option<Batch<'m>> {
        let index = match self
            .open
            .iter()
            .position(|open| open.batch.partition == partition)
        {
            Some(index) => {
                self.open[index].batch.messages.push(message);
                index
            }
            None => {
                let mut messages = Vec::with_capacity(max_records.min(1024));
                messages.push(message);
                self.open.push(OpenBatch {
                    batch: Batch {
                        handler,
                        partition,
                        first: seq,
                        messages,
                    },
                    max_records,
                    deadline: Instant::now() + max_wait,
                });
                self.open.len() - 1
            }
        };
        let open = &self.open[index];
        (open.batch.messages.len() >= open.max_records).then(|| self.open.swap_remove(index).batch)
    }

    /// Whether no batch is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// When the next open batch is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|open| open.deadline).min()
    }

    /// Removes an open batch whose `max_wait` has passed at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Batch<'m>> {
        let index = self.open.iter().position(|open| open.deadline <= now)?;
        Some(self.open.swap_remove(index).batch)
    }

    /// Drops the open batch of `partition`, which this member no longer
    /// owns: its records are handled by the partition's new owner.
    pub(crate) fn forget(&mut self, partition: PartitionId) {
        self.open.retain(|open| open.batch.partition != partition);
    }

    /// How many records wait in open batches.
    pub(crate) fn records(&self) -> usize {
        self.open.iter().map(|open| open.batch.messages.len()).sum()
    }
}
