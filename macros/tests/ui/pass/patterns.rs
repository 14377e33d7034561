//! `_` and `mut` argument patterns are accepted.
use kafka_handler::{handlers, kafka_handler, Json};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn ignored(_: &[u8], _: Json<u64>) {}

#[kafka_handler(topics = ["orders"], group = "audit")]
async fn mutable(mut count: Json<u64>, mut text: String) {
    *count += 1;
    text.push('!');
}

fn main() {
    let _ = handlers![ignored, mutable];
}
