//! A bare attribute reports both required keys.
use kafka_handler::kafka_handler;

#[kafka_handler]
fn handle(_payload: &[u8]) {}

fn main() {}
