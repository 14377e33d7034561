//! A zero timeout would cancel every attempt.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", timeout = "0s")]
async fn handle(_payload: &[u8]) {}

fn main() {}
