//! `crate` takes a path in a string literal.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", crate = ::kafka_handler)]
fn handle(_payload: &[u8]) {}

fn main() {}
