//! `topics` is required.
use kafka_handler::kafka_handler;

#[kafka_handler(group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
