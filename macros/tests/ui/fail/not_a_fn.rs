//! The attribute only applies to functions.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
struct Handler {
    payload: Vec<u8>,
}

fn main() {}
