//! `publish` names a valid topic that the handler does not consume.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", publish = "in voices")]
fn spaced(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

#[kafka_handler(topics = ["orders"], group = "loop", publish = "orders")]
fn looping(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

#[kafka_handler(topics = ["orders"], group = "batch", publish = 7)]
fn numbered(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

#[kafka_handler(topics = ["orders"], group = "packing", batch, publish = "orders")]
async fn pack(_orders: kafka_handler::Batch<'_, &[u8]>) {}

fn main() {}
