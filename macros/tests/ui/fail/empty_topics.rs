//! `topics` must name at least one topic.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = [], group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
