//! Problems with the failure-handling keys are all reported in one build.
use kafka_handler::kafka_handler;

#[kafka_handler(
    topics = ["orders", "bad topic"],
    group = "billing",
    dlq = "orders",
    retries = -1,
    backoff = "1.5s..10x",
    timeout = "0s",
)]
fn handle(_payload: &[u8]) {}

fn main() {}
