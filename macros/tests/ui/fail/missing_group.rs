//! `group` is required.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"])]
fn handle(_payload: &[u8]) {}

fn main() {}
