//! A topic listed twice is rejected on the repeat.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders", "audit", "orders"], group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
