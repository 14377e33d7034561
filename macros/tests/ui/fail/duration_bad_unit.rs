//! A duration unit must be one of `ns`, `us`, `ms`, `s`, `m`, `h`.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "100ms..10 secs")]
fn handle(_payload: &[u8]) {}

fn main() {}
