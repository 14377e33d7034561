//! The dead-letter topic is checked against Kafka's topic-name rule.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", dlq = "orders/dlq")]
fn handle(_payload: &[u8]) {}

fn main() {}
