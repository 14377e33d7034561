//! `backoff` takes a string: a range or one duration.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", backoff = 100)]
fn handle(_payload: &[u8]) {}

fn main() {}
