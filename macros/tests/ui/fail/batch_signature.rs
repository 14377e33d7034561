use kafka_handler::{kafka_handler, Batch, Json};

#[kafka_handler(topics = ["clicks"], group = "analytics", batch)]
async fn two(batch: Batch<'_, Json<u32>>, other: &[u8]) {}

#[kafka_handler(topics = ["clicks"], group = "analytics", batch)]
async fn none() {}

#[kafka_handler(topics = ["clicks"], group = "analytics", batch)]
async fn not_a_batch(click: Json<u32>) {}

#[kafka_handler(topics = ["clicks"], group = "analytics")]
async fn batch_without_key(batch: Batch<'_, Json<u32>>) {}

fn main() {}
