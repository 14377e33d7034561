//! An exponential backoff from zero never grows; immediate retries are `"0ms"`.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "0ms..10s")]
fn handle(_payload: &[u8]) {}

fn main() {}
