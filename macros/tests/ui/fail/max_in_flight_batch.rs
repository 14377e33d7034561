//! A batch counts its records: a batch handler's `max_in_flight` below its
//! `max_records` (500 when left out) would never let a full batch start.
use kafka_handler::{kafka_handler, Batch};

#[kafka_handler(topics = ["clicks"], group = "analytics", batch(max_records = 100), max_in_flight = 99)]
fn below(_batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "analytics", max_in_flight = 64, batch)]
fn below_default(_batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "analytics", batch(max_wait = "1s"), max_in_flight = 499,
                ordering = "key")]
async fn both(_batch: Batch<'_, &[u8]>) {}

fn main() {}
