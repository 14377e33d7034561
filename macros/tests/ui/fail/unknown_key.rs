//! An argument the attribute does not know is rejected on its name.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", retry = 3)]
fn handle(_payload: &[u8]) {}

fn main() {}
