//! `retries` takes an integer literal, not a string.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", retries = "3")]
fn handle(_payload: &[u8]) {}

fn main() {}
