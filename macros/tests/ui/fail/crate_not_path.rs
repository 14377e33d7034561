//! `crate` must hold a valid path.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", crate = "kafka handler")]
fn handle(_payload: &[u8]) {}

fn main() {}
