//! A `Result` whose error type is not `Display` is reported on the return type.
use kafka_handler::kafka_handler;

#[derive(Debug)]
struct NotDisplay;

#[kafka_handler(topics = ["orders"], group = "billing")]
async fn handle(_payload: &[u8]) -> Result<(), NotDisplay> {
    Ok(())
}

fn main() {}
