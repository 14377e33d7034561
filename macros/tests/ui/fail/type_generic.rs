//! Handlers cannot be generic over types.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle<T: AsRef<[u8]>>(_payload: &[u8]) {}

fn main() {}
