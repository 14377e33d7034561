//! `batch(..)` makes a batch handler, sync or async, with its options.
use std::time::Duration;

use kafka_handler::{kafka_handler, Batch, BatchOptions, HandlerFactory, Json, RecordMeta};

#[derive(serde::Deserialize)]
struct Click {
    #[allow(dead_code)]
    page: String,
}

#[kafka_handler(topics = ["clicks"], group = "analytics",
                batch(max_records = 200, max_wait = "20ms"), dlq = "clicks.dlq", timeout = "5s")]
async fn store(batch: Batch<'_, Json<Click>>) -> Result<(), std::io::Error> {
    for click in &batch {
        click.process_async(|c| async move { assert!(!c.page.is_empty()) }).await;
    }
    Ok(())
}

#[kafka_handler(topics = ["clicks"], group = "counting", batch)]
fn count(batch: Batch<'_, &RecordMeta>) {
    for record in &batch {
        record.process(|meta| assert!(meta.offset() >= 0));
    }
}

#[kafka_handler(topics = ["clicks"], group = "bytes", batch(max_wait = "1s"))]
fn sizes<'a>(batch: Batch<'a, Option<&'a [u8]>>) {
    let _total: usize = batch.values().map(|v| v.map_or(0, <[u8]>::len)).sum();
}

fn main() {
    let handler = <store as HandlerFactory>::handler();
    assert!(handler.is_batch() && handler.is_async());
    let options = handler.options();
    assert_eq!(options.batch, Some(BatchOptions::new(200, Duration::from_millis(20))));
    assert_eq!(options.dlq.as_deref(), Some("clicks.dlq"));
    assert_eq!(options.timeout, Some(Duration::from_secs(5)));

    let handler = <count as HandlerFactory>::handler();
    assert!(handler.is_batch() && !handler.is_async());
    assert_eq!(handler.options().batch, Some(BatchOptions::default()));

    let handler = <sizes as HandlerFactory>::handler();
    assert_eq!(
        handler.options().batch,
        Some(BatchOptions::new(BatchOptions::DEFAULT_MAX_RECORDS, Duration::from_secs(1)))
    );
}
