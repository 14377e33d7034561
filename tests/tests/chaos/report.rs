//! The figures of a scenario: lost and redelivered orders, and where the
//! redeliveries came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::group::{Fate, Group};
use super::production::Landed;
use super::SENTINEL;

/// What a scenario measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) produced: usize,
    /// `audited` lines of orders (not sentinels), every member.
    pub(crate) handlings: usize,
    /// Orders acknowledged by the broker that no member handled.
    pub(crate) lost: Vec<u64>,
    /// Orders handled more than once, and the handlings past the first.
    pub(crate) redelivered: usize,
    pub(crate) extra: usize,
    pub(crate) kills: usize,
    /// Redelivered orders whose first handler was SIGKILLed before the
    /// second handling: per killed member.
    pub(crate) after_kill: BTreeMap<String, usize>,
    /// ... whose first handler had been stopped with SIGTERM.
    pub(crate) after_stop: usize,
    /// ... handled again while their first handler still ran (its
    /// partition moved in a rebalance: an outage, a member joining or
    /// leaving).
    pub(crate) while_running: usize,
    /// Orders produced before it that the fresh member handled.
    pub(crate) fresh_old: usize,
    pub(crate) slowest_exit: Duration,
    pub(crate) problems: usize,
}

impl Report {
    /// Tallies `group`'s handlings against the orders that `landed`;
    /// `fresh` is the member of the end check.
    pub(crate) fn new(group: &Group, landed: &[Landed], fresh: usize) -> Self {
        let mut report = Self {
            produced: landed.len(),
            kills: group
                .members
                .iter()
                .filter(|m| m.fate == Fate::Killed)
                .count(),
            slowest_exit: group.slowest_exit(),
            problems: group.problems.len(),
            ..Self::default()
        };
        for &(id, ..) in landed {
            if !group.handled.contains_key(&id) {
                report.lost.push(id);
            }
        }
        report.lost.sort_unstable();
        for (id, handlings) in &group.handled {
            if *id >= SENTINEL {
                continue;
            }
            report.handlings += handlings.len();
            report.fresh_old += handlings.iter().filter(|(m, _)| *m == fresh).count();
            if handlings.len() < 2 {
                continue;
            }
            report.redelivered += 1;
            report.extra += handlings.len() - 1;
            let mut handlings = handlings.clone();
            handlings.sort_by(|a, b| a.1.cmp(&b.1));
            let (first, second) = (&group.members[handlings[0].0], &handlings[1].1);
            if *second <= first.last_log {
                report.while_running += 1;
            } else if first.fate == Fate::Killed {
                *report.after_kill.entry(first.name.clone()).or_default() += 1;
            } else {
                report.after_stop += 1;
            }
        }
        report
    }

    /// Redelivered orders after kills, in all.
    pub(crate) fn after_kills(&self) -> usize {
        self.after_kill.values().sum()
    }

    /// The table: a header and one row.
    pub(crate) fn table(&self, protocol: &str, faults: &str, took: Duration) -> String {
        let per_kill = if self.kills == 0 {
            "-".to_owned()
        } else {
            let max = self.after_kill.iter().max_by_key(|(_, n)| **n);
            format!(
                "{:.0} (max {})",
                self.after_kills() as f64 / self.kills as f64,
                max.map_or("0".to_owned(), |(name, n)| format!("{n}, {name}"))
            )
        };
        let header = [
            "protocol",
            "orders",
            "handled",
            "lost",
            "redelivered",
            "extra",
            "kills",
            "after kills",
            "per kill",
            "after SIGTERM",
            "in rebalances",
            "fresh: old",
            "slowest exit",
            "problems",
            "took",
        ];
        let row = [
            protocol.to_owned(),
            self.produced.to_string(),
            self.handlings.to_string(),
            self.lost.len().to_string(),
            self.redelivered.to_string(),
            self.extra.to_string(),
            self.kills.to_string(),
            self.after_kills().to_string(),
            per_kill,
            self.after_stop.to_string(),
            self.while_running.to_string(),
            self.fresh_old.to_string(),
            format!("{:.1}s", self.slowest_exit.as_secs_f64()),
            self.problems.to_string(),
            format!("{:.0}s", took.as_secs_f64()),
        ];
        let mut text = format!("chaos {protocol} ({faults}):\n");
        let widths: Vec<usize> = header
            .iter()
            .zip(&row)
            .map(|(h, r)| h.len().max(r.len()))
            .collect();
        for cells in [header.map(str::to_owned).to_vec(), row.to_vec()] {
            let line: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:>width$}"))
                .collect();
            let _ = writeln!(text, "| {} |", line.join(" | "));
        }
        text
    }
}
