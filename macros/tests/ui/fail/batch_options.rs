use kafka_handler::{kafka_handler, Batch};

#[kafka_handler(topics = ["a"], group = "g", batch(max_records = 0, max_wait = "0ms"))]
fn zero(batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["a"], group = "g", batch(max_records = 100001, max_wait = "1.5s"))]
fn too_big(batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["a"], group = "g", batch(size = 5, max_records = "5", max_wait = 50))]
fn wrong_kinds(batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["a"], group = "g", batch = 500)]
fn name_value(batch: Batch<&[u8]>) {}

#[kafka_handler(topics = ["a"], group = "g", batch(max_wait = "1s", max_wait = "2s", max_records))]
fn duplicate(batch: Batch<&[u8]>) {}

fn main() {}
