//! `unsafe fn` handlers are rejected.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
unsafe fn handle(_payload: &[u8]) {}

fn main() {}
