//! A duration starts with its number.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", timeout = "ms")]
async fn handle(_payload: &[u8]) {}

fn main() {}
