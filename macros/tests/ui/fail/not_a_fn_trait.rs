//! The attribute on other items: an `impl` block and a `mod`.
use kafka_handler::kafka_handler;

struct Billing;

#[kafka_handler(topics = ["orders"], group = "billing")]
impl Billing {
    fn handle(&self) {}
}

#[kafka_handler(topics = ["orders"], group = "billing")]
mod handlers {}

fn main() {}
