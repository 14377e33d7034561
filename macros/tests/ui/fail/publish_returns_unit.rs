//! `publish` needs something to publish: a handler returning `()` or
//! `Result<(), E>` is rejected on the attribute's value.
use kafka_handler::{kafka_handler, HandlerError};

#[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices")]
fn nothing(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "audit", publish = "audits")]
async fn still_nothing(_payload: &[u8]) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
