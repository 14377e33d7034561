//! Lifetime parameters are accepted, sync and async.
use kafka_handler::{handlers, kafka_handler, Key};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn sync<'a>(payload: &'a [u8], key: Key<'a>) -> Result<(), &'static str> {
    let _ = (payload, key);
    Ok(())
}

#[kafka_handler(topics = ["orders"], group = "audit")]
async fn asynchronous<'a, 'b>(payload: &'a str, key: Key<'b>) {
    let _ = (payload, key);
}

fn main() {
    let _ = handlers![sync, asynchronous];
}
