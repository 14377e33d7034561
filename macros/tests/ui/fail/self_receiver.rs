//! Methods are rejected on their `self` receiver.
use kafka_handler::kafka_handler;

struct Billing;

impl Billing {
    #[kafka_handler(topics = ["orders"], group = "billing")]
    fn handle(&self, _payload: &[u8]) {}
}

fn main() {}
