//! `ordering` and `max_in_flight` on async, sync and batch handlers; left
//! out, the runtime's defaults apply.
use kafka_handler::{handlers, kafka_handler, Batch, HandlerOptions, ProcessingOrder};

#[kafka_handler(topics = ["orders"], group = "by-key", ordering = "key", max_in_flight = 128)]
async fn by_key(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "by-partition", ordering = "partition", max_in_flight = 1)]
async fn by_partition(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "any", ordering = "none", max_in_flight = 1_000_000)]
async fn any(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "sync-key", ordering = "key")]
fn sync_key(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "sync-none", ordering = "none", max_in_flight = 4)]
fn sync_none(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "sync-partition", max_in_flight = 16, ordering = "partition")]
fn sync_partition(_payload: &[u8]) {}

#[kafka_handler(topics = ["clicks"], group = "batch-none", batch(max_records = 100), ordering = "none",
                max_in_flight = 100)]
async fn batch_none(_batch: Batch<'_, &[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "batch-partition", batch, ordering = "partition",
                max_in_flight = 500)]
fn batch_partition(_batch: Batch<'_, &[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "batch-default", batch(max_records = 10))]
fn batch_default(_batch: Batch<'_, &[u8]>) {}

#[kafka_handler(topics = ["orders"], group = "default")]
async fn left_out(_payload: &[u8]) {}

fn main() {
    let handlers = handlers![
        by_key,
        by_partition,
        any,
        sync_key,
        sync_none,
        sync_partition,
        batch_none,
        batch_partition,
        batch_default,
        left_out,
    ];
    let expected = [
        (ProcessingOrder::Key, Some(128)),
        (ProcessingOrder::Partition, Some(1)),
        (ProcessingOrder::Unordered, Some(1_000_000)),
        (ProcessingOrder::Key, None),
        (ProcessingOrder::Unordered, Some(4)),
        (ProcessingOrder::Partition, Some(16)),
        (ProcessingOrder::Unordered, Some(100)),
        (ProcessingOrder::Partition, Some(500)),
        (ProcessingOrder::Partition, None),
        (ProcessingOrder::Partition, None),
    ];
    assert_eq!(handlers.len(), expected.len());
    for (handler, (ordering, max_in_flight)) in handlers.iter().zip(expected) {
        let options = handler.options();
        assert_eq!(options.ordering, ordering, "{}", handler.name());
        assert_eq!(options.max_in_flight, max_in_flight, "{}", handler.name());
    }
    assert!(handlers[0].is_async() && !handlers[3].is_async());
    assert!(handlers[6].is_batch() && !handlers[7].is_async());

    // What is left out is the runtime's default.
    assert_eq!(
        handlers[3].max_in_flight(),
        HandlerOptions::DEFAULT_MAX_IN_FLIGHT
    );
    assert_eq!(
        handlers[8].max_in_flight(),
        10 * HandlerOptions::DEFAULT_BATCHES_IN_FLIGHT
    );
    assert_eq!(
        handlers[9].options().ordering,
        kafka_handler::__private::ProcessingOrder::default()
    );
}
