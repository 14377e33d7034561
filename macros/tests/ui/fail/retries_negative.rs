//! `retries` cannot be negative.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", retries = -1)]
fn handle(_payload: &[u8]) {}

fn main() {}
