//! `group` must not be empty.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "")]
fn handle(_payload: &[u8]) {}

fn main() {}
