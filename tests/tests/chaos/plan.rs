//! The faults of a scenario, drawn from a seeded generator so a failure
//! can be replayed with `CHAOS_SEED`.

/// SplitMix64: small, good enough to pick victims and moments, and the same
/// sequence for the same seed everywhere.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// SIGKILL the member in `slot`; start its successor once
    /// `restart_after` more orders were acknowledged (0: at once).
    Kill { slot: usize, restart_after: u64 },
    /// SIGTERM each member in turn, wait for its exit, start its successor
    /// and wait until that one has partitions, then the next.
    RollingStop,
    /// The broker down (connections closed and refused) for
    /// [`OUTAGE`](super::OUTAGE), members running.
    Outage,
}

/// A fault and when: once `at` orders were acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) at: u64,
    pub(crate) fault: Fault,
}

/// How many of each fault, for `members` members and `total` orders
/// produced at `rate` a second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Faults {
    pub(crate) kills: usize,
    pub(crate) rolling_stops: usize,
    pub(crate) outages: usize,
}

/// The steps, in order: each fault at a random moment between 5 % and
/// 85 % of the production; a killed member's successor after up to two
/// seconds' worth of orders.
pub(crate) fn plan(
    rng: &mut Rng,
    faults: Faults,
    members: usize,
    total: u64,
    rate: u64,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let (from, span) = (total / 20, (total * 17 / 20 - total / 20).max(1));
    for _ in 0..faults.kills {
        let slot = rng.below(members as u64) as usize;
        let restart_after = rng.below(2 * rate + 1);
        steps.push(Step {
            at: from + rng.below(span),
            fault: Fault::Kill {
                slot,
                restart_after,
            },
        });
    }
    for _ in 0..faults.rolling_stops {
        steps.push(Step {
            at: from + rng.below(span),
            fault: Fault::RollingStop,
        });
    }
    for _ in 0..faults.outages {
        steps.push(Step {
            at: from + rng.below(span),
            fault: Fault::Outage,
        });
    }
    steps.sort_by_key(|step| step.at);
    steps
}

#[test]
fn the_same_seed_makes_the_same_plan_and_another_seed_another() {
    let faults = Faults {
        kills: 5,
        rolling_stops: 2,
        outages: 1,
    };
    let a = plan(&mut Rng::new(7), faults, 3, 10_000, 300);
    assert_eq!(a, plan(&mut Rng::new(7), faults, 3, 10_000, 300));
    assert_ne!(a, plan(&mut Rng::new(8), faults, 3, 10_000, 300));
    assert_eq!(a.len(), 8);
    assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "{a:?}");
    assert!(a.iter().all(|s| (500..8_500).contains(&s.at)), "{a:?}");
    assert!(a.iter().all(|s| match s.fault {
        Fault::Kill {
            slot,
            restart_after,
        } => slot < 3 && restart_after <= 600,
        _ => true,
    }));
}
