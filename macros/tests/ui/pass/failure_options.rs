//! `retries`, `backoff`, `dlq` and `timeout` on an async fn reach the handler.
use std::time::Duration;

use kafka_handler::{kafka_handler, HandlerFactory, HandlerOptions};

#[kafka_handler(
    topics = ["orders"],
    group = "billing",
    retries = 5,
    backoff = "200ms..2m",
    dlq = "orders.dlq",
    timeout = "2500ms",
    record_key = false,
)]
async fn bill(_payload: &[u8]) -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topics = ["orders"], group = "audit", retries = 0, timeout = "1h")]
async fn audit(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "defaults")]
async fn defaults(_payload: &[u8]) {}

fn main() {
    let handler = <bill as HandlerFactory>::handler();
    let options = handler.options();
    assert_eq!(options.retries, 5);
    assert_eq!(options.backoff.min(), Duration::from_millis(200));
    assert_eq!(options.backoff.max(), Duration::from_secs(120));
    assert_eq!(options.dlq.as_deref(), Some("orders.dlq"));
    assert_eq!(options.timeout, Some(Duration::from_millis(2500)));
    assert!(!options.record_key);

    let handler = <audit as HandlerFactory>::handler();
    let options = handler.options();
    assert_eq!(options.retries, 0);
    assert_eq!(options.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(options.dlq, None);
    assert!(options.record_key);

    // Keys left out keep the runtime's defaults.
    let handler = <defaults as HandlerFactory>::handler();
    assert_eq!(*handler.options(), HandlerOptions::default());
}
