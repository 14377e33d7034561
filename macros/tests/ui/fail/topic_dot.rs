//! `.` and `..` are not valid topic names.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = [".", ".."], group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
