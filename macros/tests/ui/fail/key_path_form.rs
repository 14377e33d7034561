//! A key without a value is rejected.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", record_key)]
fn handle(_payload: &[u8]) {}

fn main() {}
