//! `topics` takes an array, even for a single topic.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = "orders", group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
