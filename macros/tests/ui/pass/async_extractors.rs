//! An async handler using every built-in extractor.
use kafka_handler::{handlers, kafka_handler, Json, Key, Record, RecordHeaders, RecordMeta};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[kafka_handler(topics = ["orders"], group = "billing")]
async fn typed(order: Json<Order>, meta: &RecordMeta, key: Key<'_>, headers: RecordHeaders<'_>) {
    let _ = (order.id, meta.partition(), key.as_str(), headers);
}

#[kafka_handler(topics = ["text"], group = "billing")]
async fn text(borrowed: &str, owned: String) {
    let _ = (borrowed.len(), owned.len());
}

#[kafka_handler(topics = ["raw"], group = "billing")]
async fn raw(payload: Option<&[u8]>, record: &Record<'_>) {
    let _ = (payload.is_none(), record.topic());
}

fn main() {
    let handlers = handlers![typed, text, raw];
    assert!(handlers.iter().all(|handler| handler.is_async()));
}
