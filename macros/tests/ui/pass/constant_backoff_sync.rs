//! A constant backoff (and `retries`, `dlq`) on a synchronous handler.
use std::time::Duration;

use kafka_handler::{kafka_handler, HandlerFactory};

#[kafka_handler(topics = ["orders"], group = "billing", backoff = "250ms", retries = 10, dlq = "orders-dlq")]
fn bill(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "eager", backoff = "0ms")]
fn eager(_payload: &[u8]) {}

fn main() {
    let handler = <bill as HandlerFactory>::handler();
    let options = handler.options();
    assert!(!handler.is_async());
    assert_eq!(options.backoff.min(), Duration::from_millis(250));
    assert_eq!(options.backoff.max(), Duration::from_millis(250));
    assert_eq!(options.retries, 10);
    assert_eq!(options.dlq.as_deref(), Some("orders-dlq"));
    assert_eq!(options.timeout, None);

    let options = <eager as HandlerFactory>::handler().options().clone();
    assert_eq!(options.backoff.min(), Duration::ZERO);
    assert_eq!(options.backoff.max(), Duration::ZERO);
}
