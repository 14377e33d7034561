//! The order handlers the examples share: the quickstart runs them on the
//! embedded broker, `orders_consumer` turns them into a deployable binary.
//!
//! Billing charges each order and produces its invoice; order amounts of 0
//! make the payment gateway fail, so those orders are retried and then
//! dead-lettered to `orders.dlq`, where `review` picks them up in the same
//! trace. Audit sees every record, the warehouse packs orders in batches,
//! and the mailer handles the invoices.

use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_handler::{kafka_handler, Batch, HandlerError, Json, Key, RecordHeaders, RecordMeta};
use serde::{Deserialize, Serialize};

/// An order, as checkout produces it.
#[derive(Debug, Deserialize)]
pub struct Order {
    /// The order number.
    pub id: u64,
    /// The amount; 0 makes the payment gateway fail.
    pub cents: u64,
}

/// The payment gateway refused an order.
#[derive(Debug)]
pub struct GatewayDown(u64);

impl std::error::Error for GatewayDown {}

impl std::fmt::Display for GatewayDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment gateway unavailable for order {}", self.0)
    }
}

/// Orders billed.
pub static BILLED: AtomicUsize = AtomicUsize::new(0);
/// Records audited.
pub static AUDITED: AtomicUsize = AtomicUsize::new(0);
/// Dead-lettered orders reviewed.
pub static REVIEWED: AtomicUsize = AtomicUsize::new(0);
/// Orders packed.
pub static PACKED: AtomicUsize = AtomicUsize::new(0);
/// Invoices mailed.
pub static MAILED: AtomicUsize = AtomicUsize::new(0);

/// An invoice, as billing publishes it.
#[derive(Debug, Serialize)]
pub struct Invoice {
    /// The order billed.
    pub order: u64,
    /// The amount charged.
    pub cents: u64,
}

/// Bills an order and returns its invoice. Runs inside the order's trace:
/// the span below is a child of this record's `process orders` span. A
/// failure is retried twice with backoff, each attempt its own span in the
/// same trace; then the record is copied to `orders.dlq` and committed.
///
/// Consume, transform, produce: the invoice it returns is published to
/// `invoices` (under the order's key) in a `send invoices` span, a child of
/// this record's `process orders` span, so the mailer below continues the
/// order's trace. The order is committed once the invoice is acknowledged.
#[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices",
                retries = 2, backoff = "50ms..200ms", dlq = "orders.dlq")]
pub async fn bill(order: Json<Order>, meta: &RecordMeta) -> Result<Json<Invoice>, HandlerError> {
    tracing::info_span!("charge card", order.id = order.id, cents = order.cents).in_scope(
        || {
            tracing::info!(order.id = order.id, partition = meta.partition(), "billing");
            if order.cents == 0 {
                return Err(HandlerError::transient(GatewayDown(order.id)));
            }
            Ok(())
        },
    )?;
    BILLED.fetch_add(1, Ordering::Relaxed);
    Ok(Json(Invoice {
        order: order.id,
        cents: order.cents,
    }))
}

/// Mails each invoice: the third hop of the order's trace.
#[kafka_handler(topics = ["invoices"], group = "mailer")]
pub fn mail(invoice: &str) {
    tracing::info!(invoice, "mailing");
    MAILED.fetch_add(1, Ordering::Relaxed);
}

/// Audits every record, whatever its payload, in a second group.
#[kafka_handler(topics = ["orders"], group = "audit")]
pub fn audit(payload: &str, key: Key<'_>) {
    AUDITED.fetch_add(1, Ordering::Relaxed);
    tracing::info!(key = key.as_str(), bytes = payload.len(), "audited");
}

/// Packs orders in batches, in a third group so it sees every order: up to
/// 100 orders of one partition per call, cut 50 ms after the first arrived.
/// The call runs under one `process orders` batch span, linked to each
/// order's producer; each `order.process(..)` runs under that order's own
/// `process orders` span, a child of its producer's span (so the `pack box`
/// span below lands in the order's trace). A failure inside `process` would
/// fail that order alone; returning `Err` would fail the whole batch.
#[kafka_handler(topics = ["orders"], group = "warehouse",
                batch(max_records = 100, max_wait = "50ms"))]
pub async fn pack(batch: Batch<'_, Json<Order>>) -> Result<(), HandlerError> {
    tracing::info!(
        orders = batch.len(),
        partition = batch.partition(),
        "packing a batch"
    );
    for order in &batch {
        order.process(|order| {
            let _box = tracing::info_span!("pack box", order.id = order.id).entered();
            tracing::info!(order.id = order.id, "packed");
            PACKED.fetch_add(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

/// Reviews dead-lettered orders: its span lands in the order's own trace,
/// under the `send orders.dlq` span.
#[kafka_handler(topics = ["orders.dlq"], group = "billing-review")]
pub fn review(key: Key<'_>, headers: RecordHeaders<'_>) {
    let header = |name| String::from_utf8_lossy(headers.get(name).unwrap_or_default()).into_owned();
    tracing::warn!(
        key = key.as_str(),
        attempts = header("dlq.attempts"),
        error = header("dlq.error.message"),
        "order needs a human"
    );
    REVIEWED.fetch_add(1, Ordering::Relaxed);
}
