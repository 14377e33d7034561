//! `retries` must fit a u32.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", retries = 5_000_000_000)]
fn handle(_payload: &[u8]) {}

fn main() {}
