//! `record_key` takes `true` or `false`.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", record_key = "no")]
fn handle(_payload: &[u8]) {}

fn main() {}
