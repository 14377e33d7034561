//! A key given twice is rejected on its second occurrence.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", group = "audit")]
fn handle(_payload: &[u8]) {}

fn main() {}
