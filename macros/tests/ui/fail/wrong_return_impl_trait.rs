//! An `impl Trait` return type that is not an outcome is reported on the return type.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle(_payload: &[u8]) -> impl std::fmt::Debug {
    0
}

fn main() {}
