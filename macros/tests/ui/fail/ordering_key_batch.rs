//! A batch holds records of many keys: `ordering = "key"` is for handlers
//! of one record.
use kafka_handler::{kafka_handler, Batch};

#[kafka_handler(topics = ["clicks"], group = "analytics", batch, ordering = "key")]
fn bare(_batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "analytics", ordering = "key",
                batch(max_records = 100, max_wait = "10ms"))]
async fn with_options(_batch: Batch<'_, &[u8]>) {}

fn main() {}
