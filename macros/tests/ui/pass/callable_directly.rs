//! The annotated function stays a normal function, callable directly.
use kafka_handler::{kafka_handler, Json, Key};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn parse(payload: &[u8], key: Key<'_>) -> Result<(), std::str::Utf8Error> {
    std::str::from_utf8(payload)?;
    let _ = key.as_bytes();
    Ok(())
}

#[kafka_handler(topics = ["orders"], group = "audit")]
async fn audit(order: Json<u64>) -> Result<(), String> {
    if *order == 0 {
        return Err("empty order".to_owned());
    }
    Ok(())
}

fn main() {
    assert!(parse(b"ok", Key(None)).is_ok());
    assert!(parse(&[0xff], Key(Some(b"k"))).is_err());
    // Building the future is enough to show it is an ordinary `async fn`.
    let _future = audit(Json(1));
}
