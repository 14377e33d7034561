//! Durations are whole numbers; the error spells the same duration in a smaller unit.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", timeout = "1.5s")]
async fn handle(_payload: &[u8]) {}

fn main() {}
