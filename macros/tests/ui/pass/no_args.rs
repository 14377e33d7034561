//! A handler may take no arguments at all.
use kafka_handler::{handlers, kafka_handler};

#[kafka_handler(topics = ["heartbeat"], group = "monitor")]
fn tick() {}

#[kafka_handler(topics = ["heartbeat"], group = "monitor-async")]
async fn tick_async() {}

fn main() {
    let _ = handlers![tick, tick_async];
}
