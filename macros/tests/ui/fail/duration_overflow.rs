//! A duration must fit `Duration::from_nanos` (a u64 of nanoseconds, about 584 years).
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "100ms..6000000h")]
fn handle(_payload: &[u8]) {}

fn main() {}
