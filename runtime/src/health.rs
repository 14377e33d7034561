//! Liveness and readiness of a running consumer, for health probes.
//!
//! Each group shares one [`GroupHealth`] with its poll loop, its Kafka
//! client's callbacks and its dead-letter producer. The poll loop stores a
//! coarse timestamp per turn (one relaxed atomic store); everything else is
//! written only when something changes (a rebalance, a failed commit or
//! dead-letter send, the group stopping). The probes read it.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock;

/// What a probe reports: healthy or not, and a human-readable report that
/// says why when unhealthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    healthy: bool,
    report: String,
}

impl Probe {
    /// Whether the probe passes.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// One line per group: `ok`, or what is wrong and since when.
    pub fn report(&self) -> &str {
        &self.report
    }
}

/// The health of a consumer's groups. Clone it freely; every clone sees the
/// same consumer. Get it from [`Consumer::health`](crate::Consumer::health)
/// before calling `run`.
///
/// - [`liveness`](Self::liveness) fails when a group's poll loop has not
///   turned within its `max.poll.interval.ms`, when one of its records has
///   been in flight longer than that (a handler stuck), or when a group
///   stopped with an error: restarting the process is the remedy.
/// - [`readiness`](Self::readiness) fails until every group has partitions
///   assigned, and while offset commits or dead-letter sends fail.
///
/// Before `run` starts, liveness passes and readiness does not
/// (`not started`). A `Health::default()` belongs to no consumer and
/// reports the same.
#[derive(Clone, Debug, Default)]
pub struct Health {
    groups: Arc<[Arc<GroupHealth>]>,
}

impl Health {
    pub(crate) fn new(groups: Vec<Arc<GroupHealth>>) -> Self {
        Self {
            groups: groups.into(),
        }
    }

    /// Whether every group's poll loop is alive and polling.
    pub fn liveness(&self) -> Probe {
        if self.groups.is_empty() {
            return Probe {
                healthy: true,
                report: "not started\n".into(),
            };
        }
        self.probe(GroupHealth::liveness)
    }

    /// Whether every group has partitions assigned and is not stuck with
    /// failing commits or dead-letter sends.
    pub fn readiness(&self) -> Probe {
        if self.groups.is_empty() {
            return Probe {
                healthy: false,
                report: "not started\n".into(),
            };
        }
        self.probe(GroupHealth::readiness)
    }

    fn probe(&self, check: impl Fn(&GroupHealth, Instant, &mut String) -> bool) -> Probe {
        let now = Instant::now();
        let mut report = String::new();
        let mut healthy = true;
        for group in self.groups.iter() {
            let _ = write!(report, "group {}: ", group.group);
            let start = report.len();
            healthy &= check(group, now, &mut report);
            if report.len() == start {
                report.push_str("ok");
            }
            report.push('\n');
        }
        Probe { healthy, report }
    }
}

/// Where a group's task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum State {
    NotStarted = 0,
    Running = 1,
    Stopped = 2,
}

/// One group's health, shared by its poll loop, its client's callbacks and
/// the probes.
#[derive(Debug)]
pub(crate) struct GroupHealth {
    group: String,
    max_poll_interval: Duration,
    /// The origin of [`Self::last_turn`].
    epoch: Instant,
    state: AtomicU8,
    /// When the poll loop last turned, in milliseconds since `epoch`.
    last_turn: AtomicU64,
    /// When the oldest record in flight started, in milliseconds since
    /// `epoch`, plus one; 0 when none is.
    oldest_running: AtomicU64,
    /// Partitions assigned now.
    assigned: AtomicUsize,
    /// Whether partitions were ever assigned.
    was_assigned: AtomicBool,
    /// Whether `problems` holds a commit failure: the check on success
    /// paths, without the lock.
    commits_failing: AtomicBool,
    problems: Mutex<Problems>,
}

#[derive(Debug, Default)]
struct Problems {
    /// Why the group's task stopped, when it failed.
    stopped: Option<String>,
    commits: Option<Failing>,
    /// Per dead-letter topic.
    dead_letters: Vec<(String, Failing)>,
}

/// A failure that has not cleared yet: the last error, and since when.
#[derive(Debug)]
struct Failing {
    error: String,
    since: Instant,
}

impl Failing {
    /// Keeps `since` of an earlier failure that has not cleared.
    fn update(slot: &mut Option<Failing>, error: String) {
        match slot {
            Some(failing) => failing.error = error,
            None => {
                *slot = Some(Failing {
                    error,
                    since: Instant::now(),
                })
            }
        }
    }
}

impl GroupHealth {
    /// The health of `group`, whose poll loop must turn within
    /// `max_poll_interval`.
    pub(crate) fn new(group: String, max_poll_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            group,
            max_poll_interval,
            epoch: Instant::now(),
            state: AtomicU8::new(State::NotStarted as u8),
            last_turn: AtomicU64::new(0),
            oldest_running: AtomicU64::new(0),
            assigned: AtomicUsize::new(0),
            was_assigned: AtomicBool::new(false),
            commits_failing: AtomicBool::new(false),
            problems: Mutex::default(),
        })
    }

    /// How long the poll loop may go without turning.
    pub(crate) fn max_poll_interval(&self) -> Duration {
        self.max_poll_interval
    }

    /// The poll loop starts.
    pub(crate) fn started(&self) {
        self.turned(Instant::now());
        self.state.store(State::Running as u8, Ordering::Release);
    }

    /// The poll loop turned at `now`: one relaxed store.
    #[inline]
    pub(crate) fn turned(&self, now: Instant) {
        self.last_turn.store(self.millis(now), Ordering::Relaxed);
    }

    /// The oldest record in flight started at `since` (`None`: none is in
    /// flight).
    #[inline]
    pub(crate) fn running_since(&self, since: Option<Instant>) {
        let millis = since.map_or(0, |since| self.millis(since).saturating_add(1));
        self.oldest_running.store(millis, Ordering::Relaxed);
    }

    fn millis(&self, at: Instant) -> u64 {
        let millis = at.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(millis).unwrap_or(u64::MAX)
    }

    /// The group's task ended, with `error` when it failed.
    pub(crate) fn stopped(&self, error: Option<&dyn fmt::Display>) {
        if let Some(error) = error {
            lock(&self.problems).stopped = Some(error.to_string());
        }
        self.state.store(State::Stopped as u8, Ordering::Release);
    }

    /// `count` partitions are assigned now.
    pub(crate) fn assigned(&self, count: usize) {
        self.assigned.store(count, Ordering::Relaxed);
        if count > 0 {
            self.was_assigned.store(true, Ordering::Relaxed);
        }
    }

    /// An offset commit failed.
    pub(crate) fn commit_failed(&self, error: &dyn fmt::Display) {
        let mut problems = lock(&self.problems);
        Failing::update(&mut problems.commits, error.to_string());
        self.commits_failing.store(true, Ordering::Release);
    }

    /// Offsets were committed.
    pub(crate) fn commits_succeeded(&self) {
        if self.commits_failing.swap(false, Ordering::AcqRel) {
            lock(&self.problems).commits = None;
        }
    }

    /// A dead-letter send to `dlq` failed.
    pub(crate) fn dead_letter_failed(&self, dlq: &str, error: &dyn fmt::Display) {
        let mut problems = lock(&self.problems);
        let error = error.to_string();
        match problems.dead_letters.iter_mut().find(|(d, _)| d == dlq) {
            Some((_, failing)) => failing.error = error,
            None => problems.dead_letters.push((
                dlq.to_owned(),
                Failing {
                    error,
                    since: Instant::now(),
                },
            )),
        }
    }

    /// A dead-letter send to `dlq` was acknowledged.
    pub(crate) fn dead_letter_succeeded(&self, dlq: &str) {
        lock(&self.problems).dead_letters.retain(|(d, _)| d != dlq);
    }

    fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::NotStarted,
            1 => State::Running,
            _ => State::Stopped,
        }
    }

    /// Writes what is wrong with the poll loop, if anything; whether it is alive.
    fn liveness(&self, now: Instant, report: &mut String) -> bool {
        match self.state() {
            State::NotStarted => {
                report.push_str("not started");
                true
            }
            State::Stopped => self.write_stopped(report),
            State::Running => {
                let since_epoch = now.saturating_duration_since(self.epoch);
                let last = Duration::from_millis(self.last_turn.load(Ordering::Relaxed));
                let idle = since_epoch.saturating_sub(last);
                let max = self.max_poll_interval.as_millis();
                if idle > self.max_poll_interval {
                    let _ = write!(
                        report,
                        "poll loop stalled for {} (max.poll.interval.ms={max})",
                        Elapsed(idle),
                    );
                    return false;
                }
                let oldest = self.oldest_running.load(Ordering::Relaxed);
                let running = match oldest.checked_sub(1) {
                    Some(started) => since_epoch.saturating_sub(Duration::from_millis(started)),
                    None => Duration::ZERO,
                };
                if running > self.max_poll_interval {
                    let _ = write!(
                        report,
                        "a record in flight for {} (max.poll.interval.ms={max}): its handler \
                         may be stuck",
                        Elapsed(running),
                    );
                    return false;
                }
                true
            }
        }
    }

    /// Writes why the group is not ready, if it is not; whether it is.
    fn readiness(&self, now: Instant, report: &mut String) -> bool {
        match self.state() {
            State::NotStarted => {
                report.push_str("not started");
                return false;
            }
            State::Stopped => {
                self.write_stopped(report);
                return false;
            }
            State::Running => {}
        }
        let mut reasons: Vec<String> = Vec::new();
        if self.assigned.load(Ordering::Relaxed) == 0 {
            reasons.push(if self.was_assigned.load(Ordering::Relaxed) {
                "no partitions assigned".to_owned()
            } else {
                "no partitions assigned yet".to_owned()
            });
        }
        let problems = lock(&self.problems);
        if let Some(failing) = &problems.commits {
            reasons.push(format!(
                "offset commits failing for {}: {}",
                Elapsed(now.saturating_duration_since(failing.since)),
                failing.error
            ));
        }
        for (dlq, failing) in &problems.dead_letters {
            reasons.push(format!(
                "dead-letter sends to {dlq} failing for {}: {}",
                Elapsed(now.saturating_duration_since(failing.since)),
                failing.error
            ));
        }
        report.push_str(&reasons.join("; "));
        reasons.is_empty()
    }

    /// Writes `stopped` and the error it stopped with; whether it stopped
    /// without one.
    fn write_stopped(&self, report: &mut String) -> bool {
        match &lock(&self.problems).stopped {
            Some(error) => {
                let _ = write!(report, "stopped: {error}");
                false
            }
            None => {
                report.push_str("stopped");
                true
            }
        }
    }
}

/// A duration as a probe reports it: `312s`, or `1.5s` under ten seconds.
struct Elapsed(Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs_f64();
        if seconds < 10.0 {
            write!(f, "{seconds:.1}s")
        } else {
            write!(f, "{}s", self.0.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_run_live_but_not_ready() {
        let health = Health::new(vec![GroupHealth::new(
            "billing".into(),
            Duration::from_secs(300),
        )]);
        assert!(health.liveness().is_healthy());
        let readiness = health.readiness();
        assert!(!readiness.is_healthy());
        assert_eq!(readiness.report(), "group billing: not started\n");
        assert!(!Health::default().readiness().is_healthy());
    }

    #[test]
    fn reports_why_and_since_when() {
        let group = GroupHealth::new("billing".into(), Duration::from_millis(50));
        let health = Health::new(vec![group.clone()]);
        group.started();
        assert_eq!(
            health.readiness().report(),
            "group billing: no partitions assigned yet\n"
        );
        group.assigned(2);
        assert!(health.readiness().is_healthy());
        assert_eq!(health.readiness().report(), "group billing: ok\n");

        group.commit_failed(&"Broker: Request timed out");
        group.dead_letter_failed("orders.dlq", &"Broker: Topic authorization failed");
        let report = health.readiness().report().to_owned();
        assert!(
            report.starts_with("group billing: offset commits failing for 0.0s: Broker: Request timed out; dead-letter sends to orders.dlq failing for "),
            "{report}"
        );
        group.commits_succeeded();
        group.dead_letter_succeeded("orders.dlq");
        assert!(health.readiness().is_healthy());

        let later = Instant::now() + Duration::from_secs(2);
        let mut report = String::new();
        assert!(!group.liveness(later, &mut report));
        assert!(report.contains("(max.poll.interval.ms=50)"), "{report}");
        group.stopped(Some(&"boom"));
        assert_eq!(health.liveness().report(), "group billing: stopped: boom\n");
        assert!(!health.liveness().is_healthy());
    }
}
