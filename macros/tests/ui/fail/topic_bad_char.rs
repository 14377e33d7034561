//! Topic names are limited to `[a-zA-Z0-9._-]`.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["my orders", "orders/eu"], group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
