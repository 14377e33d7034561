//! At-least-once offset bookkeeping and commits.
//!
//! A record's offset becomes committable only once its handler has finished
//! and, since a partition's records are handled in order, every earlier
//! record of that partition has too. Offsets are committed:
//!
//! - periodically, asynchronously. librdkafka does not report the result of
//!   an async manual commit back through rdkafka, so an async commit is never
//!   taken as confirmed: it is sent again at the next synchronous commit;
//! - synchronously when partitions are revoked, before another member can
//!   take them over;
//! - synchronously on shutdown.

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

/// Where each assigned partition stands.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: Vec<PartitionOffsets>,
}

#[derive(Debug)]
struct PartitionOffsets {
    topic: Arc<str>,
    partition: i32,
    /// The offset to commit: one past the last handled record.
    next: i64,
    /// The last offset sent in an async commit.
    sent: i64,
    /// The last offset a synchronous commit confirmed.
    confirmed: i64,
}

impl OffsetTracker {
    /// Records that the record at `offset` is done.
    pub(crate) fn mark_done(&mut self, topic: &str, partition: i32, offset: i64) {
        let next = offset + 1;
        match self
            .partitions
            .iter_mut()
            .find(|p| p.partition == partition && &*p.topic == topic)
        {
            Some(entry) => entry.next = entry.next.max(next),
            None => self.partitions.push(PartitionOffsets {
                topic: topic.into(),
                partition,
                next,
                sent: -1,
                confirmed: -1,
            }),
        }
    }

    /// The offsets handled since the last async commit, marked as sent.
    pub(crate) fn take_unsent(&mut self) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for entry in self.partitions.iter_mut().filter(|p| p.next > p.sent) {
            add(&mut list, entry);
            entry.sent = entry.next;
        }
        (list.count() > 0).then_some(list)
    }

    /// The offsets not yet confirmed by a synchronous commit, for the
    /// partitions `filter` keeps.
    pub(crate) fn unconfirmed(
        &self,
        filter: impl Fn(&str, i32) -> bool,
    ) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for entry in self
            .partitions
            .iter()
            .filter(|p| p.next > p.confirmed && filter(&p.topic, p.partition))
        {
            add(&mut list, entry);
        }
        (list.count() > 0).then_some(list)
    }

    /// Marks `list` as confirmed by a synchronous commit.
    pub(crate) fn confirm(&mut self, list: &TopicPartitionList) {
        for elem in list.elements() {
            if let Offset::Offset(offset) = elem.offset() {
                if let Some(entry) = self
                    .partitions
                    .iter_mut()
                    .find(|p| p.partition == elem.partition() && &*p.topic == elem.topic())
                {
                    entry.confirmed = entry.confirmed.max(offset);
                    entry.sent = entry.sent.max(offset);
                }
            }
        }
    }

    /// Forgets partitions this member no longer owns.
    pub(crate) fn forget(&mut self, revoked: &TopicPartitionList) {
        self.partitions
            .retain(|p| revoked.find_partition(&p.topic, p.partition).is_none());
    }
}

fn add(list: &mut TopicPartitionList, entry: &PartitionOffsets) {
    // Adding a partition we just created cannot fail.
    let _ = list.add_partition_offset(&entry.topic, entry.partition, Offset::Offset(entry.next));
}

/// Commits `list` synchronously and, on success, marks it confirmed.
pub(crate) fn commit_sync<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    tracker: &std::sync::Mutex<OffsetTracker>,
    list: &TopicPartitionList,
) -> KafkaResult<()> {
    consumer.commit(list, CommitMode::Sync)?;
    crate::lock(tracker).confirm(list);
    Ok(())
}
