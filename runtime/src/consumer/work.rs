//! What runs once the scheduler lets a unit start: a record's attempts, or a
//! batch's delivery and then its failed records' attempts, all under their
//! records' traces. The unit ends when every record of it is resolved.

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use rdkafka::message::BorrowedMessage;

use crate::record::Record;
use crate::resolve::Resolution;

use super::gather::Batch;
use super::group::RunningGroup;
use super::offsets::{PartitionId, Seq};
use super::schedule::Lane;

/// The records of a unit, as rdkafka delivered them.
pub(super) enum Work<'c> {
    Record {
        seq: Seq,
        message: BorrowedMessage<'c>,
    },
    Batch(Batch<'c>),
}

impl Work<'_> {
    /// The sequence number of the unit's first record.
    pub(super) fn first(&self) -> Seq {
        match self {
            Self::Record { seq, .. } => *seq,
            Self::Batch(batch) => batch.first,
        }
    }
}

/// Where a running unit belongs: what the poll loop needs when it ends or
/// is abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UnitMeta {
    pub(super) handler: usize,
    pub(super) lane: Option<Lane>,
    pub(super) partition: PartitionId,
    pub(super) first: Seq,
    pub(super) records: usize,
}

impl<'s> RunningGroup<'s> {
    /// The future of a unit of handler `meta.handler`: it ends when every
    /// record of `work` is resolved, or abandoned at shutdown.
    pub(super) fn run_unit(
        &'s self,
        meta: UnitMeta,
        work: Work<'s>,
    ) -> BoxFuture<'s, (UnitMeta, Resolution)> {
        let processor = &self.processors[meta.handler];
        let resolver = self.resolver();
        let producer = &self.group.producer;
        async move {
            let resolution = match work {
                Work::Record { message, .. } => {
                    let record = Record::from_message(&message).with_producer(producer);
                    resolver.resolve(processor, &record, None).await
                }
                Work::Batch(batch) => Box::pin(self.run_batch(meta, batch)).await,
            };
            (meta, resolution)
        }
        .boxed()
    }

    /// A batch: delivered, then each failed record resolved alone, in offset
    /// order; its other records end as soon as the delivery returns.
    async fn run_batch(&'s self, meta: UnitMeta, batch: Batch<'s>) -> Resolution {
        let processor = &self.processors[meta.handler];
        let producer = &self.group.producer;
        let records: Vec<Record<'_>> = batch
            .messages
            .iter()
            .map(|message| Record::from_message(message).with_producer(producer))
            .collect();
        let failures = processor.deliver(&records).await;
        // The records that did not fail ended: the watermark moves up to the
        // first failed one.
        let failed = failures.iter().map(|(index, _)| *index);
        let mut from = 0;
        for end in failed.chain(std::iter::once(records.len())) {
            self.ended(meta.partition, meta.first + from as Seq, end - from);
            from = end + 1;
        }
        // Then each failed record alone, in offset order.
        let resolver = self.resolver();
        for (index, failure) in failures {
            let resolution = resolver
                .resolve(processor, &records[index], Some(failure))
                .await;
            if resolution == Resolution::Abandoned {
                return resolution;
            }
            self.ended(meta.partition, meta.first + index as Seq, 1);
        }
        Resolution::Ended
    }

    /// Records that `count` records of `partition` from `first` on ended.
    fn ended(&self, partition: PartitionId, first: Seq, count: usize) {
        if count > 0 {
            crate::lock(&self.offsets).ended(partition, first, count);
        }
    }
}
