//! Offsets and the commit watermark.
//!
//! Records of one partition may end out of order: different keys run side
//! by side, and a retried record holds its lane while others flow. So a
//! partition's committable offset is its **watermark**: one past the longest
//! run of ended records (handled, dead-lettered, or skipped) from the start,
//! in offset order. A commit never passes a record that has not ended, so a
//! restart, clean or not, resumes at the first such record and loses
//! nothing.
//!
//! Offsets are committed:
//!
//! - periodically, asynchronously. librdkafka does not report the result of
//!   an async manual commit back through rdkafka, so an async commit is never
//!   taken as confirmed: it is sent again at the next synchronous commit;
//! - synchronously when partitions are revoked, before another member can
//!   take them over;
//! - synchronously on shutdown, once the records in flight have ended.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::health::GroupHealth;

/// One assignment of a partition to this member. A partition revoked and
/// assigned again gets a new id, so what was in flight for the old one
/// never marks an offset of the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PartitionId {
    slot: u32,
    generation: u32,
}

/// A record's position in its partition's delivery order.
pub(crate) type Seq = u64;

/// Where each partition this member consumes stands.
#[derive(Debug, Default)]
pub(crate) struct Offsets {
    slots: Vec<Option<PartitionOffsets>>,
    generation: u32,
    /// The slot of the last lookup: records arrive in runs of one partition.
    last: usize,
    /// Watermarks of revoked partitions whose commit on revoke failed (the
    /// broker refuses commits while the group rebalances): committed once
    /// the rebalance has settled, unless the partition comes back first.
    orphans: Vec<(Arc<str>, i32, i64)>,
}

#[derive(Debug)]
struct PartitionOffsets {
    id: PartitionId,
    topic: Arc<str>,
    partition: i32,
    /// The records taken and not yet below the watermark, in offset order:
    /// each offset, and whether it ended.
    window: VecDeque<(i64, bool)>,
    /// The sequence number of `window[0]`.
    base: Seq,
    /// The watermark: the offset to commit, one past the last record of the
    /// ended run; -1 before the first.
    next: i64,
    /// The last offset sent in an async commit.
    sent: i64,
    /// The last offset a synchronous commit confirmed.
    confirmed: i64,
}

impl Offsets {
    /// The id of `topic`/`partition`, which is new on its first record after
    /// an assignment.
    pub(crate) fn partition(&mut self, topic: &str, partition: i32) -> PartitionId {
        if let Some(Some(entry)) = self.slots.get(self.last) {
            if entry.partition == partition && *entry.topic == *topic {
                return entry.id;
            }
        }
        if let Some(index) = self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|entry| entry.partition == partition && *entry.topic == *topic)
        }) {
            self.last = index;
            return self.slots[index].as_ref().map(|entry| entry.id).unwrap();
        }
        let index = match self.slots.iter().position(Option::is_none) {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        // Back before its watermark could be committed: it is taken up again
        // from the committed offset, and the new watermark supersedes it.
        self.orphans
            .retain(|(t, p, _)| !(*p == partition && **t == *topic));
        self.generation = self.generation.wrapping_add(1);
        let id = PartitionId {
            slot: index as u32,
            generation: self.generation,
        };
        self.slots[index] = Some(PartitionOffsets {
            id,
            topic: topic.into(),
            partition,
            window: VecDeque::new(),
            base: 0,
            next: -1,
            sent: -1,
            confirmed: -1,
        });
        self.last = index;
        id
    }

    fn entry(&mut self, id: PartitionId) -> Option<&mut PartitionOffsets> {
        self.slots
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|entry| entry.id == id)
    }

    /// The topic and partition of `id`, while it is assigned.
    pub(crate) fn name(&self, id: PartitionId) -> Option<(&str, i32)> {
        let entry = self.slots.get(id.slot as usize)?.as_ref()?;
        (entry.id == id).then(|| (&*entry.topic, entry.partition))
    }

    /// Registers a record taken from partition `id` at `offset`: its
    /// sequence number, for [`ended`](Self::ended).
    pub(crate) fn taken(&mut self, id: PartitionId, offset: i64) -> Seq {
        let Some(entry) = self.entry(id) else {
            return 0;
        };
        entry.window.push_back((offset, false));
        entry.base + entry.window.len() as Seq - 1
    }

    /// Records that `count` records from `first` on, of partition `id`,
    /// ended; the watermark moves past every ended record at its front.
    /// Ignored when `id` was revoked since.
    pub(crate) fn ended(&mut self, id: PartitionId, first: Seq, count: usize) {
        let Some(entry) = self.entry(id) else {
            return;
        };
        // Records already below the watermark are not in the window.
        let end = (first + count as Seq).saturating_sub(entry.base) as usize;
        let start = first.saturating_sub(entry.base) as usize;
        for slot in entry
            .window
            .range_mut(start.min(end)..end.min(entry.window.len()))
        {
            slot.1 = true;
        }
        while let Some(&(offset, true)) = entry.window.front() {
            entry.next = offset + 1;
            entry.window.pop_front();
            entry.base += 1;
        }
    }

    /// How many records of partition `id` were taken and are not below its
    /// watermark yet: what the consumer holds of it.
    pub(crate) fn outstanding(&self, id: PartitionId) -> usize {
        self.slots
            .get(id.slot as usize)
            .and_then(Option::as_ref)
            .filter(|entry| entry.id == id)
            .map_or(0, |entry| entry.window.len())
    }

    /// Each assigned partition, and how many of its records are held.
    pub(crate) fn held(&self) -> Vec<(Arc<str>, i32, usize)> {
        self.assigned()
            .map(|entry| (entry.topic.clone(), entry.partition, entry.window.len()))
            .collect()
    }

    fn assigned(&self) -> impl Iterator<Item = &PartitionOffsets> {
        self.slots.iter().flatten()
    }

    /// The watermarks that moved since the last async commit, marked as sent.
    pub(crate) fn take_unsent(&mut self) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for entry in self.slots.iter_mut().flatten() {
            if entry.next > entry.sent {
                add(&mut list, &entry.topic, entry.partition, entry.next);
                entry.sent = entry.next;
            }
        }
        (list.count() > 0).then_some(list)
    }

    /// The watermarks not yet confirmed by a synchronous commit, for the
    /// partitions `filter` keeps.
    pub(crate) fn unconfirmed(
        &self,
        filter: impl Fn(&str, i32) -> bool,
    ) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for entry in self
            .assigned()
            .filter(|p| p.next > p.confirmed && filter(&p.topic, p.partition))
        {
            add(&mut list, &entry.topic, entry.partition, entry.next);
        }
        (list.count() > 0).then_some(list)
    }

    /// Whether watermarks of revoked partitions wait for the rebalance to
    /// settle.
    pub(crate) fn has_orphans(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// Takes the watermarks of revoked partitions whose commit on revoke
    /// failed, for one more try once the rebalance has settled (see
    /// [`ahead_of`]). Never kept longer: the partitions' new owners commit
    /// from then on.
    pub(crate) fn take_orphans(&mut self) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in self.orphans.drain(..) {
            add(&mut list, &topic, partition, next);
        }
        (list.count() > 0).then_some(list)
    }

    /// Marks `list` as confirmed by a synchronous commit.
    pub(crate) fn confirm(&mut self, list: &TopicPartitionList) {
        for elem in list.elements() {
            let Offset::Offset(offset) = elem.offset() else {
                continue;
            };
            if let Some(entry) = self
                .slots
                .iter_mut()
                .flatten()
                .find(|p| p.partition == elem.partition() && *p.topic == *elem.topic())
            {
                entry.confirmed = entry.confirmed.max(offset);
                entry.sent = entry.sent.max(offset);
            }
        }
    }

    /// Forgets the partitions this member no longer owns; their ids. When
    /// `committed` is false (the commit on revoke failed), their watermarks
    /// are kept as orphans, to be committed once the rebalance settles.
    pub(crate) fn forget(
        &mut self,
        revoked: &TopicPartitionList,
        committed: bool,
    ) -> Vec<PartitionId> {
        let mut forgotten = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|entry| {
                revoked
                    .find_partition(&entry.topic, entry.partition)
                    .is_some()
            }) {
                if let Some(entry) = slot.take() {
                    forgotten.push(entry.id);
                    if !committed && entry.next > entry.confirmed {
                        self.orphans
                            .push((entry.topic, entry.partition, entry.next));
                    }
                }
            }
        }
        forgotten
    }
}

/// The watermarks of `orphans` ahead of what the group has committed for
/// their partitions (`committed`, as the broker answered): the only ones
/// safe to commit late. A partition whose offset moved past the orphan's
/// (another member owned it meanwhile, say while this member's session had
/// expired) or whose committed offset is unknown is left alone, so a late
/// commit never moves a group's offset back.
pub(crate) fn ahead_of(
    orphans: &TopicPartitionList,
    committed: &TopicPartitionList,
) -> Option<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for orphan in orphans.elements() {
        let Offset::Offset(next) = orphan.offset() else {
            continue;
        };
        let ahead = committed
            .find_partition(orphan.topic(), orphan.partition())
            .filter(|elem| elem.error().is_ok())
            .is_some_and(|elem| match elem.offset() {
                Offset::Offset(offset) => offset < next,
                // Nothing committed yet.
                Offset::Invalid => true,
                _ => false,
            });
        if ahead {
            add(&mut list, orphan.topic(), orphan.partition(), next);
        }
    }
    (list.count() > 0).then_some(list)
}

fn add(list: &mut TopicPartitionList, topic: &str, partition: i32, next: i64) {
    // Adding a partition to a list we build cannot fail.
    let _ = list.add_partition_offset(topic, partition, Offset::Offset(next));
}

/// Commits `list` synchronously and, on success, marks it confirmed.
pub(crate) fn commit_sync<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &Mutex<Offsets>,
    list: &TopicPartitionList,
) -> KafkaResult<()> {
    consumer.commit(list, CommitMode::Sync)?;
    crate::lock(offsets).confirm(list);
    Ok(())
}

/// Commits the watermarks of `group` that moved, in the background.
pub(crate) fn commit_async<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &Mutex<Offsets>,
    health: &GroupHealth,
    group: &str,
) {
    let Some(list) = crate::lock(offsets).take_unsent() else {
        return;
    };
    if let Err(err) = consumer.commit(&list, CommitMode::Async) {
        health.commit_failed(&err);
        tracing::warn!(target: "kafka_handler", group, error = %err, "periodic commit failed");
    }
}

/// Commits every watermark of `group` not yet confirmed, and waits for the
/// answer.
pub(crate) fn commit_unconfirmed<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &Mutex<Offsets>,
    health: &GroupHealth,
    group: &str,
) -> KafkaResult<()> {
    let Some(list) = crate::lock(offsets).unconfirmed(|_, _| true) else {
        return Ok(());
    };
    commit_sync(consumer, offsets, &list)?;
    health.commits_succeeded();
    tracing::info!(target: "kafka_handler", group, "offsets committed at shutdown");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committable(offsets: &mut Offsets) -> Vec<(String, i32, i64)> {
        offsets
            .take_unsent()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| {
                        let Offset::Offset(offset) = e.offset() else {
                            panic!("an offset")
                        };
                        (e.topic().to_owned(), e.partition(), offset)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_watermark_stops_at_the_first_record_that_has_not_ended() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let seqs: Vec<Seq> = (10..20).map(|offset| offsets.taken(p, offset)).collect();
        // Every record but the first ends: nothing is committable.
        for &seq in &seqs[1..] {
            offsets.ended(p, seq, 1);
        }
        assert_eq!(committable(&mut offsets), []);
        assert_eq!(offsets.outstanding(p), 10);
        // The first ends: the watermark jumps past all ten.
        offsets.ended(p, seqs[0], 1);
        assert_eq!(committable(&mut offsets), [("t".to_owned(), 0, 20)]);
        assert_eq!(offsets.outstanding(p), 0);
    }

    #[test]
    fn gaps_in_offsets_and_ranges_of_a_batch() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 3);
        // Compacted: offsets 5, 7, 8; a batch of the three ends at once.
        let first = offsets.taken(p, 5);
        offsets.taken(p, 7);
        offsets.taken(p, 8);
        offsets.ended(p, first, 3);
        assert_eq!(committable(&mut offsets), [("t".to_owned(), 3, 9)]);
        // Sent once: nothing new until the watermark moves.
        assert_eq!(committable(&mut offsets), []);
    }

    #[test]
    fn ending_records_twice_or_below_the_watermark_changes_nothing_else() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let first = offsets.taken(p, 0);
        offsets.taken(p, 1);
        let third = offsets.taken(p, 2);
        offsets.ended(p, first, 1);
        // A range reaching below the watermark (a batch ending after some of
        // its records did) marks only its own records.
        offsets.ended(p, first, 2);
        assert_eq!(committable(&mut offsets), [("t".to_owned(), 0, 2)]);
        assert_eq!(offsets.outstanding(p), 1, "the third has not ended");
        offsets.ended(p, third, 1);
        assert_eq!(committable(&mut offsets), [("t".to_owned(), 0, 3)]);
    }

    #[test]
    fn a_watermark_whose_commit_on_revoke_failed_is_committed_later() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let seq = offsets.taken(p, 7);
        offsets.ended(p, seq, 1);
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("t", 0);
        offsets.forget(&revoked, false);
        let orphans = offsets.take_orphans().expect("kept");
        assert_eq!(orphans.elements()[0].offset(), Offset::Offset(8));
        assert!(offsets.take_orphans().is_none(), "tried once only");
        // Coming back before the commit was tried supersedes it.
        let p = offsets.partition("t", 0);
        let seq = offsets.taken(p, 8);
        offsets.ended(p, seq, 1);
        offsets.forget(&revoked, false);
        offsets.partition("t", 0);
        assert!(
            offsets.take_orphans().is_none(),
            "superseded by the new assignment"
        );
    }

    #[test]
    fn a_late_commit_never_moves_a_committed_offset_back() {
        let mut orphans = TopicPartitionList::new();
        for partition in 0..4 {
            add(&mut orphans, "t", partition, 10);
        }
        let mut committed = TopicPartitionList::new();
        add(&mut committed, "t", 0, 4); // behind: commit
        add(&mut committed, "t", 1, 10); // there already
        add(&mut committed, "t", 2, 25); // moved on by another owner
        committed
            .add_partition_offset("t", 3, Offset::Invalid) // none yet: commit
            .unwrap();
        let ahead = ahead_of(&orphans, &committed).expect("two ahead");
        let ahead: Vec<_> = ahead
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(ahead, [(0, Offset::Offset(10)), (3, Offset::Offset(10))]);
        // A partition the broker did not answer for is left alone.
        assert!(ahead_of(&orphans, &TopicPartitionList::new()).is_none());
    }

    #[test]
    fn a_revoked_partition_ignores_what_ends_late_and_a_new_assignment_starts_clean() {
        let mut offsets = Offsets::default();
        let old = offsets.partition("t", 0);
        let seq = offsets.taken(old, 0);
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("t", 0);
        assert_eq!(offsets.forget(&revoked, true), [old]);
        let new = offsets.partition("t", 0);
        assert_ne!(old, new, "a new assignment is a new id");
        offsets.ended(old, seq, 1);
        assert_eq!(committable(&mut offsets), []);
        assert_eq!(offsets.outstanding(new), 0);
        assert_eq!(offsets.name(old), None);
        assert_eq!(offsets.name(new), Some(("t", 0)));
    }
}
