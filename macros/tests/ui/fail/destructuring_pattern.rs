//! Arguments must be plain names, not patterns.
use kafka_handler::kafka_handler;
use kafka_handler::Json;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle(Json(_order): Json<u64>) {}

fn main() {}
