//! Every output form a handler with `publish` may return.
use kafka_handler::{kafka_handler, HandlerError, Json, Output};

#[derive(serde::Serialize)]
struct Invoice {
    cents: u64,
}

#[kafka_handler(topics = ["orders"], group = "a", publish = "invoices")]
async fn json(_payload: &[u8]) -> Result<Json<Invoice>, HandlerError> {
    Ok(Json(Invoice { cents: 1 }))
}

#[kafka_handler(topics = ["orders"], group = "b", publish = "out")]
fn text(payload: &str) -> String {
    payload.to_owned()
}

#[kafka_handler(topics = ["orders"], group = "c", publish = "out")]
fn borrowed(payload: &str) -> &str {
    payload
}

#[kafka_handler(topics = ["orders"], group = "d", publish = "out")]
fn maybe(payload: &[u8]) -> Option<Vec<u8>> {
    (!payload.is_empty()).then(|| payload.to_vec())
}

#[kafka_handler(topics = ["orders"], group = "e", publish = "out")]
async fn many(payload: &str) -> Result<Vec<Output<String>>, std::io::Error> {
    Ok(payload
        .split(',')
        .map(|part| Output::new(part.to_owned()).key(part).header("n", "1"))
        .collect())
}

#[kafka_handler(topics = ["orders"], group = "f", publish = "out")]
fn opaque(payload: &[u8]) -> impl kafka_handler::IntoOutputs {
    payload.to_vec()
}

#[kafka_handler(topics = ["orders"], group = "g", batch, publish = "parcels")]
async fn pack(orders: kafka_handler::Batch<'_, &[u8]>) {
    for order in &orders {
        order
            .publish(|payload| async move { Json(payload.len()) })
            .await;
    }
}

fn main() {}
