//! An argument type that is not an extractor is reported on that argument.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle(_payload: &[u8], _count: u32) {}

fn main() {}
