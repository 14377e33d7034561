//! The dead-letter topic cannot be a topic the handler consumes.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders", "payments"], group = "billing", dlq = "payments")]
fn handle(_payload: &[u8]) {}

fn main() {}
