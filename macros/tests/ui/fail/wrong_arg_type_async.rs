//! In an async handler too, a non-extractor argument is reported on that argument.
use kafka_handler::{kafka_handler, Json};

struct Order;

#[kafka_handler(topics = ["orders"], group = "billing")]
async fn handle(_order: Json<u64>, _raw: Vec<Order>) {}

fn main() {}
