//! A synchronous handler cannot be cancelled, so it cannot have a timeout.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", timeout = "30s")]
fn handle(_payload: &[u8]) {}

fn main() {}
