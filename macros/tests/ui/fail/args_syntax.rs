//! Arguments that are not `key = value` syntax are rejected by the parser.
use kafka_handler::kafka_handler;

#[kafka_handler("orders", group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
