//! librdkafka's callbacks for one group: logs and errors into `tracing`,
//! statistics into the lag metric and readiness, and rebalances: offsets
//! committed on revoke, while this member still owns the partitions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use crate::health::GroupHealth;
use crate::lock;
use crate::metrics::PartitionLag;

use super::offsets::{self, Offsets, PartitionId};

/// How long reading the group's committed offsets before a late commit may
/// take (in a rebalance callback, so the rebalance waits for it).
const ORPHAN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the group hands partitions over, known from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Every rebalance revokes the whole assignment, then assigns anew
    /// (`range`, `roundrobin`).
    Eager,
    /// Rebalances revoke and assign only the partitions that move
    /// (`cooperative-sticky`, or `group.protocol=consumer`).
    Cooperative,
}

/// The context of one group's Kafka consumer.
pub(crate) struct GroupContext {
    pub(crate) group: String,
    protocol: Protocol,
    pub(crate) offsets: Arc<Mutex<Offsets>>,
    /// Partitions revoked since the poll loop last looked.
    revoked: Mutex<Vec<PartitionId>>,
    any_revoked: AtomicBool,
    pub(crate) health: Arc<GroupHealth>,
    /// Each assigned partition's lag, from the last statistics.
    lags: Arc<Mutex<Vec<PartitionLag>>>,
    /// The last error librdkafka reported, with its text, for the poll loop.
    last_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// Why the last commit on revoke was refused, for the final commit.
    revoke_refused: Mutex<Option<KafkaError>>,
}

impl GroupContext {
    pub(crate) fn new(
        group: String,
        protocol: Protocol,
        offsets: Arc<Mutex<Offsets>>,
        health: Arc<GroupHealth>,
        lags: Arc<Mutex<Vec<PartitionLag>>>,
    ) -> Self {
        Self {
            group,
            protocol,
            offsets,
            revoked: Mutex::default(),
            any_revoked: AtomicBool::new(false),
            health,
            lags,
            last_error: Mutex::default(),
            revoke_refused: Mutex::default(),
        }
    }

    /// The partitions revoked since the last call. One atomic load when
    /// there are none.
    pub(crate) fn take_revoked(&self) -> Vec<PartitionId> {
        if !self.any_revoked.load(Ordering::Acquire)
            || !self.any_revoked.swap(false, Ordering::AcqRel)
        {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.revoked))
    }

    /// Why the last commit on revoke was refused, if one was.
    pub(crate) fn revoke_refused(&self) -> Option<KafkaError> {
        lock(&self.revoke_refused).clone()
    }

    /// librdkafka's text for `code`, when its error callback just reported it.
    pub(crate) fn take_error_reason(&self, code: Option<RDKafkaErrorCode>) -> Option<String> {
        lock(&self.last_error)
            .take()
            .filter(|(last, _)| code == Some(*last))
            .map(|(_, reason)| reason)
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "COMMITFAIL" {
            // The only trace of a failed async commit.
            self.health.commit_failed(&message);
        }
        match level {
            // A broker connection that failed (refused, reset, timed out):
            // librdkafka reconnects on its own, and a failure that lasts
            // shows in readiness and stops the group where it must.
            RDKafkaLogLevel::Error if facility == "FAIL" => {
                tracing::warn!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", group = %self.group, facility, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", group = %self.group, error = %error, "{reason}");
        if let Some(code) = error.rdkafka_error_code() {
            *lock(&self.last_error) = Some((code, reason.to_owned()));
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lags = lock(&self.lags);
        let previous = std::mem::take(&mut *lags);
        let mut committed = false;
        for (topic, stats) in &statistics.topics {
            for (&partition, stats) in &stats.partitions {
                // -1 is librdkafka's internal unassigned partition; a
                // partition this member does not own is not desired.
                if partition < 0 || !stats.desired {
                    continue;
                }
                committed |= previous.iter().any(|lag| {
                    lag.partition == partition
                        && lag.topic == *topic
                        && stats.committed_offset > lag.committed
                });
                lags.push(PartitionLag::new(
                    &self.group,
                    topic,
                    partition,
                    stats.committed_offset,
                    stats.consumer_lag,
                ));
            }
        }
        if committed {
            self.health.commits_succeeded();
        }
    }
}

impl GroupContext {
    /// Commits the watermarks the broker refused on revoke. Called when the
    /// rebalance has settled (this member has its new assignment) and
    /// before the assignment takes effect, so a partition that comes back
    /// to this member is fetched from its watermark, not from the older
    /// commit. A partition that came back already dropped its orphan.
    ///
    /// Only watermarks ahead of the group's committed offsets are committed:
    /// when this member was out of the group for a while (its session
    /// expired in a broker outage), other members owned these partitions
    /// and committed further, and a late commit would move them back.
    fn commit_orphans(&self, consumer: &BaseConsumer<Self>) {
        let Some(orphans) = lock(&self.offsets).take_orphans() else {
            return;
        };
        let list = match consumer.committed_offsets(orphans.clone(), ORPHAN_CHECK_TIMEOUT) {
            Ok(committed) => offsets::ahead_of(&orphans, &committed),
            Err(err) => {
                tracing::warn!(
                    target: "kafka_handler",
                    group = %self.group,
                    error = %err,
                    "reading the committed offsets of revoked partitions failed; their new owner \
                     handles their last records again"
                );
                return;
            }
        };
        let Some(list) = list else {
            tracing::debug!(target: "kafka_handler", group = %self.group, "offsets of revoked partitions already committed past this member's");
            return;
        };
        match offsets::commit_sync(consumer, &self.offsets, &list) {
            Ok(()) => {
                self.health.commits_succeeded();
                tracing::debug!(target: "kafka_handler", group = %self.group, "offsets of revoked partitions committed after the rebalance");
            }
            Err(err) => {
                self.health.commit_failed(&err);
                tracing::warn!(
                    target: "kafka_handler",
                    group = %self.group,
                    error = %err,
                    "committing the offsets of revoked partitions failed; their new owner \
                     handles those records again"
                );
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    /// rdkafka's own `rebalance` asks librdkafka for the protocol in every
    /// callback (`rd_kafka_rebalance_protocol`), which can wait forever when
    /// the callback runs while the consumer closes (librdkafka #4041,
    /// rust-rdkafka #509). The protocol is known from the configuration.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => {
                let code = RDKafkaErrorCode::from(other);
                tracing::warn!(target: "kafka_handler", group = %self.group, error = %code, "rebalance failed");
                Rebalance::Error(KafkaError::Rebalance(code))
            }
        };
        self.pre_rebalance(consumer, &rebalance);
        let applied = match (&rebalance, self.protocol) {
            (Rebalance::Assign(tpl), Protocol::Cooperative) => consumer.incremental_assign(tpl),
            (Rebalance::Assign(tpl), Protocol::Eager) => consumer.assign(tpl),
            (_, Protocol::Cooperative) => consumer.incremental_unassign(tpl),
            (_, Protocol::Eager) => consumer.unassign(),
        };
        if let Err(err) = applied {
            tracing::warn!(target: "kafka_handler", group = %self.group, error = %err, "applying a rebalance failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked = match rebalance {
            Rebalance::Revoke(revoked) => revoked,
            Rebalance::Assign(_) => {
                self.commit_orphans(consumer);
                return;
            }
            Rebalance::Error(_) => return,
        };
        // The callback runs inside the poll loop's poll, and records' ends
        // are recorded only by the loop: the watermarks are exact. Records
        // of these partitions still in flight are above them; the loop
        // abandons them right after this poll.
        let pending = lock(&self.offsets)
            .unconfirmed(|topic, partition| revoked.find_partition(topic, partition).is_some());
        let committed = match pending {
            None => true,
            Some(list) => match offsets::commit_sync(consumer, &self.offsets, &list) {
                Ok(()) => {
                    self.health.commits_succeeded();
                    tracing::debug!(target: "kafka_handler", group = %self.group, "offsets committed on revoke");
                    true
                }
                Err(err) => {
                    tracing::debug!(
                        target: "kafka_handler",
                        group = %self.group,
                        error = %err,
                        "commit on revoke refused; committing once the rebalance settles"
                    );
                    *lock(&self.revoke_refused) = Some(err);
                    false
                }
            },
        };
        let forgotten = lock(&self.offsets).forget(revoked, committed);
        if !forgotten.is_empty() {
            lock(&self.revoked).extend(forgotten);
            self.any_revoked.store(true, Ordering::Release);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps a partition's pause flag across a revoke and a
        // later assign; one revoked while paused must not come back paused.
        if let Rebalance::Assign(assigned) = rebalance {
            if let Err(err) = consumer.resume(assigned) {
                tracing::warn!(target: "kafka_handler", group = %self.group, error = %err, "resuming assigned partitions failed");
            }
        }
        // Whole or incremental, the assignment as it is now.
        let count = consumer.assignment().map_or(0, |list| list.count());
        self.health.assigned(count);
    }
}
