//! `impl Trait` arguments are rejected.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing")]
fn handle(_payload: impl AsRef<[u8]>) {}

fn main() {}
