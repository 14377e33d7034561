//! A return type that cannot be published is reported on the type.
use kafka_handler::kafka_handler;

struct Invoice;

#[kafka_handler(topics = ["orders"], group = "billing", publish = "invoices")]
async fn bill(_payload: &[u8]) -> Result<Invoice, std::io::Error> {
    Ok(Invoice)
}

#[kafka_handler(topics = ["orders"], group = "counting", publish = "counts")]
fn count(payload: &[u8]) -> usize {
    payload.len()
}

fn main() {}
