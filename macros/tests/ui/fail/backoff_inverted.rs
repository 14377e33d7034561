//! A backoff range goes from the smaller delay to the larger.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "10s..100ms")]
fn handle(_payload: &[u8]) {}

fn main() {}
