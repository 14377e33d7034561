//! Handlers cannot be generic over consts.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle<const N: usize>(_payload: &[u8]) {}

fn main() {}
