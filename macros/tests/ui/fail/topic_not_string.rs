//! Each topic must be a string literal; the bad element is pointed at.
use kafka_handler::kafka_handler;

const ORDERS: &str = "orders";

#[kafka_handler(topics = ["audit", ORDERS, 42, concat!("or", "ders")], group = "billing")]
fn handle(_payload: &[u8]) {}

fn main() {}
