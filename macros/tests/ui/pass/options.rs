//! `record_key = false`, an explicit `crate` path and a trailing comma.
use kafka_handler::{handlers, kafka_handler};

#[kafka_handler(topics = ["users"], group = "profile", record_key = false)]
fn private_keys(_payload: &[u8]) {}

#[kafka_handler(topics = ["users"], group = "audit", record_key = true, crate = "::kafka_handler")]
fn explicit(_payload: &[u8]) {}

#[kafka_handler(topics = ["users",], group = "trailing",)]
fn trailing(_payload: &[u8]) {}

fn main() {
    let handlers = handlers![private_keys, explicit, trailing];
    assert!(!handlers[0].options().record_key);
    assert!(handlers[1].options().record_key);
    assert!(handlers[2].options().record_key);
    assert_eq!(handlers[2].topics(), ["users"]);
}
