//! A duration cannot be negative.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "-1s")]
fn handle(_payload: &[u8]) {}

fn main() {}
