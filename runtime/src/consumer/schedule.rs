//! Which record may start: lanes, and the in-flight limit.
//!
//! Every handler has its lanes, after its [`ProcessingOrder`]: one per
//! partition, one per key within a partition, or none. A lane runs one unit
//! (a record, or a batch) at a time, in the order the units arrived; a unit
//! without a lane may start at once. On top of that, at most
//! `max_in_flight` records of the handler run at once (a batch counts its
//! records; a batch larger than the room left waits until nothing else of
//! the handler runs). Units that may start but find no room wait in arrival
//! order, so no lane starves.
//!
//! The scheduler only decides. The poll loop starts what it hands out and
//! reports what ended.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher as _;

use crate::handler::ProcessingOrder;

use super::offsets::PartitionId;

/// A lane: one partition, or one key of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lane {
    partition: PartitionId,
    /// The key's hash in key order (two keys that share a hash share a
    /// lane: more order, never less); 0 otherwise.
    key: u64,
}

/// Something to run: a record or a batch, `records` long, in its lane.
#[derive(Debug)]
pub(crate) struct Unit<W> {
    pub(crate) lane: Option<Lane>,
    pub(crate) partition: PartitionId,
    pub(crate) records: usize,
    pub(crate) work: W,
}

/// The lanes of every handler of one group.
pub(crate) struct Scheduler<W> {
    handlers: Vec<Lanes<W>>,
    keys: RandomState,
}

struct Lanes<W> {
    ordering: ProcessingOrder,
    max_in_flight: usize,
    /// Records running now.
    in_flight: usize,
    /// Units that may start, waiting for room, in the order they became
    /// startable. Their lanes are busy.
    ready: VecDeque<Unit<W>>,
    /// The busy lanes, each with the units queued behind the one that runs
    /// (or is ready).
    busy: HashMap<Lane, VecDeque<Unit<W>>>,
}

impl<W> Scheduler<W> {
    /// The lanes of handlers with these orderings and `max_in_flight`s, in
    /// the order of their indexes.
    pub(crate) fn new(handlers: impl IntoIterator<Item = (ProcessingOrder, usize)>) -> Self {
        Self {
            handlers: handlers
                .into_iter()
                .map(|(ordering, max_in_flight)| Lanes {
                    ordering,
                    max_in_flight: max_in_flight.max(1),
                    in_flight: 0,
                    ready: VecDeque::new(),
                    busy: HashMap::new(),
                })
                .collect(),
            keys: RandomState::new(),
        }
    }

    /// The lane of a record of `partition` with `key`, for `handler`.
    pub(crate) fn lane(
        &self,
        handler: usize,
        partition: PartitionId,
        key: Option<&[u8]>,
    ) -> Option<Lane> {
        match self.handlers[handler].ordering {
            ProcessingOrder::Partition => Some(Lane { partition, key: 0 }),
            ProcessingOrder::Key => Some(Lane {
                partition,
                // Records without a key share one lane.
                key: key.map_or(0, |key| self.keys.hash_one(key) | 1),
            }),
            _ => None,
        }
    }

    /// Takes `unit` in. Returns it when it may start right away: its records
    /// are then counted in flight, but its lane is not taken yet; the caller
    /// starts it, then reports that it [`ended_at_once`](Self::ended_at_once)
    /// or that it runs on ([`occupy`](Self::occupy)). Otherwise it waits, and
    /// comes out of [`next`](Self::next) once it may.
    pub(crate) fn admit(&mut self, handler: usize, unit: Unit<W>) -> Option<Unit<W>> {
        let lanes = &mut self.handlers[handler];
        let lane_busy = match unit.lane {
            // No lane busy at all: no lookup.
            Some(lane) if !lanes.busy.is_empty() => lanes.busy.contains_key(&lane),
            _ => false,
        };
        if !lane_busy && lanes.ready.is_empty() && lanes.has_room(unit.records) {
            lanes.in_flight += unit.records;
            return Some(unit);
        }
        match unit.lane {
            Some(lane) if lane_busy => {
                if let Some(queued) = lanes.busy.get_mut(&lane) {
                    queued.push_back(unit);
                }
            }
            Some(lane) => {
                lanes.busy.insert(lane, VecDeque::new());
                lanes.ready.push_back(unit);
            }
            None => lanes.ready.push_back(unit),
        }
        None
    }

    /// A unit [`admit`](Self::admit) let start ended within its start: its
    /// lane was never taken.
    pub(crate) fn ended_at_once(&mut self, handler: usize, records: usize) {
        let lanes = &mut self.handlers[handler];
        lanes.in_flight = lanes.in_flight.saturating_sub(records);
    }

    /// A unit [`admit`](Self::admit) let start runs on: its lane is busy
    /// until it [`ended`](Self::ended).
    pub(crate) fn occupy(&mut self, handler: usize, lane: Option<Lane>) {
        if let Some(lane) = lane {
            self.handlers[handler].busy.insert(lane, VecDeque::new());
        }
    }

    /// The next unit of `handler` that may start now, counted in flight.
    pub(crate) fn next(&mut self, handler: usize) -> Option<Unit<W>> {
        let lanes = &mut self.handlers[handler];
        let records = lanes.ready.front()?.records;
        if !lanes.has_room(records) {
            return None;
        }
        lanes.in_flight += records;
        lanes.ready.pop_front()
    }

    /// A unit of `handler` in `lane`, `records` long, ended (or was
    /// abandoned): the next unit of its lane becomes startable.
    pub(crate) fn ended(&mut self, handler: usize, lane: Option<Lane>, records: usize) {
        let lanes = &mut self.handlers[handler];
        lanes.in_flight = lanes.in_flight.saturating_sub(records);
        let Some(lane) = lane else { return };
        let Entry::Occupied(mut queued) = lanes.busy.entry(lane) else {
            return;
        };
        match queued.get_mut().pop_front() {
            Some(next) => lanes.ready.push_back(next),
            None => {
                queued.remove();
            }
        }
    }

    /// Drops every unit of `partition` that has not started (revoked, or
    /// stopping): they stay uncommitted.
    pub(crate) fn forget(&mut self, partition: PartitionId) {
        for lanes in &mut self.handlers {
            lanes.busy.retain(|lane, _| lane.partition != partition);
            lanes.ready.retain(|unit| unit.partition != partition);
        }
    }

    /// How many units wait (ready or queued in a lane), over all handlers.
    pub(crate) fn waiting(&self) -> usize {
        self.handlers
            .iter()
            .map(|lanes| lanes.ready.len() + lanes.busy.values().map(VecDeque::len).sum::<usize>())
            .sum()
    }

    /// How many records of `handler` run now.
    #[cfg(test)]
    fn in_flight(&self, handler: usize) -> usize {
        self.handlers[handler].in_flight
    }
}

impl<W> Lanes<W> {
    /// Whether `records` more fit: always when nothing runs, so that a
    /// batch larger than `max_in_flight` still runs, alone.
    fn has_room(&self, records: usize) -> bool {
        self.in_flight == 0 || self.in_flight + records <= self.max_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::super::offsets::Offsets;
    use super::*;

    /// Admits unit `id` of `records` records in the lane of `partition` and
    /// `key`; one that may start runs on (takes its lane).
    fn admit_n(
        s: &mut Scheduler<u32>,
        partition: PartitionId,
        key: Option<&[u8]>,
        records: usize,
        id: u32,
    ) -> Option<Unit<u32>> {
        let unit = Unit {
            lane: s.lane(0, partition, key),
            partition,
            records,
            work: id,
        };
        let started = s.admit(0, unit)?;
        s.occupy(0, started.lane);
        Some(started)
    }

    fn admit(
        s: &mut Scheduler<u32>,
        partition: PartitionId,
        key: Option<&[u8]>,
        id: u32,
    ) -> Option<Unit<u32>> {
        admit_n(s, partition, key, 1, id)
    }

    fn ids(units: impl IntoIterator<Item = Unit<u32>>) -> Vec<u32> {
        units.into_iter().map(|unit| unit.work).collect()
    }

    fn drain(scheduler: &mut Scheduler<u32>) -> Vec<Unit<u32>> {
        std::iter::from_fn(|| scheduler.next(0)).collect()
    }

    #[test]
    fn partition_order_runs_one_record_per_partition_in_order() {
        let mut offsets = Offsets::default();
        let (p0, p1) = (offsets.partition("t", 0), offsets.partition("t", 1));
        let mut s = Scheduler::new([(ProcessingOrder::Partition, 64)]);
        let a = admit(&mut s, p0, None, 1).expect("an idle lane starts");
        assert!(admit(&mut s, p0, None, 2).is_none(), "behind 1");
        assert!(admit(&mut s, p0, None, 3).is_none(), "behind 2");
        let b = admit(&mut s, p1, None, 4).expect("another partition starts");
        assert!(drain(&mut s).is_empty());
        s.ended(0, a.lane, 1);
        assert_eq!(ids(drain(&mut s)), [2]);
        s.ended(0, b.lane, 1);
        assert!(drain(&mut s).is_empty());
        s.ended(0, a.lane, 1);
        assert_eq!(ids(drain(&mut s)), [3]);
        s.ended(0, a.lane, 1);
        assert_eq!(s.in_flight(0), 0);
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn a_unit_that_ends_at_once_never_takes_its_lane() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let mut s = Scheduler::new([(ProcessingOrder::Partition, 64)]);
        for id in 0..3 {
            let unit = Unit {
                lane: s.lane(0, p, None),
                partition: p,
                records: 1,
                work: id,
            };
            assert!(s.admit(0, unit).is_some(), "the lane is free again");
            s.ended_at_once(0, 1);
        }
        assert_eq!(s.in_flight(0), 0);
        assert!(s.handlers[0].busy.is_empty());
    }

    #[test]
    fn key_order_runs_keys_side_by_side_and_one_key_in_order() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let mut s = Scheduler::new([(ProcessingOrder::Key, 64)]);
        let a1 = admit(&mut s, p, Some(b"a"), 1).expect("a starts");
        let b1 = admit(&mut s, p, Some(b"b"), 2).expect("b starts beside a");
        assert!(admit(&mut s, p, Some(b"a"), 3).is_none(), "a waits for a");
        let n1 = admit(&mut s, p, None, 4).expect("keyless starts");
        assert!(admit(&mut s, p, None, 5).is_none(), "keyless share a lane");
        s.ended(0, b1.lane, 1);
        assert!(drain(&mut s).is_empty());
        s.ended(0, a1.lane, 1);
        assert_eq!(ids(drain(&mut s)), [3]);
        s.ended(0, n1.lane, 1);
        assert_eq!(ids(drain(&mut s)), [5]);
    }

    #[test]
    fn max_in_flight_holds_startable_units_in_arrival_order() {
        let mut offsets = Offsets::default();
        let p = offsets.partition("t", 0);
        let mut s = Scheduler::new([(ProcessingOrder::Unordered, 2)]);
        let first = admit(&mut s, p, None, 1).unwrap();
        admit(&mut s, p, None, 2).unwrap();
        for id in 3..6 {
            assert!(admit(&mut s, p, None, id).is_none(), "full");
        }
        assert_eq!(s.in_flight(0), 2);
        s.ended(0, first.lane, 1);
        assert_eq!(ids(drain(&mut s)), [3]);
        assert_eq!(s.in_flight(0), 2);
    }

    #[test]
    fn a_batch_larger_than_the_room_left_waits_then_runs_alone() {
        let mut offsets = Offsets::default();
        let (p0, p1) = (offsets.partition("t", 0), offsets.partition("t", 1));
        let mut s = Scheduler::new([(ProcessingOrder::Partition, 10)]);
        let small = admit_n(&mut s, p0, None, 4, 1).unwrap();
        assert!(
            admit_n(&mut s, p1, None, 50, 2).is_none(),
            "does not fit beside 4"
        );
        s.ended(0, small.lane, 4);
        assert_eq!(ids(drain(&mut s)), [2], "runs alone");
        assert_eq!(s.in_flight(0), 50);
    }

    #[test]
    fn forgetting_a_partition_drops_what_waits_for_it() {
        let mut offsets = Offsets::default();
        let (p0, p1) = (offsets.partition("t", 0), offsets.partition("t", 1));
        let mut s = Scheduler::new([(ProcessingOrder::Partition, 1)]);
        let running = admit(&mut s, p0, None, 1).unwrap();
        assert!(admit(&mut s, p0, None, 2).is_none());
        assert!(admit(&mut s, p1, None, 3).is_none(), "no room");
        s.forget(p0);
        // The running one was abandoned by its owner.
        s.ended(0, running.lane, 1);
        assert_eq!(ids(drain(&mut s)), [3]);
        assert_eq!(s.waiting(), 0);
    }
}
