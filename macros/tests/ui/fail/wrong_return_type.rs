//! A return type other than `()` or `Result<(), E: Display>` is reported on it.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle(_payload: &[u8]) -> u32 {
    0
}

#[kafka_handler(topics = ["orders"], group = "audit")]
async fn handle_async(_payload: &[u8]) -> Option<String> {
    None
}

fn main() {}
