//! A multi-segment path as an argument name is rejected.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", kafka::topics = ["x"])]
fn handle(_payload: &[u8]) {}

fn main() {}
