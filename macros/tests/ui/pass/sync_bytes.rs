//! A sync handler taking the payload as bytes, returning `()`.
use kafka_handler::{handlers, kafka_handler, Handler};

#[kafka_handler(topics = ["orders", "orders.priority", "Orders_EU-2"], group = "billing")]
fn handle(payload: &[u8]) {
    let _ = payload.len();
}

fn main() {
    let handlers: Vec<Handler> = handlers![handle];
    assert_eq!(handlers.len(), 1);
    let handler = &handlers[0];
    assert!(!handler.is_async());
    assert_eq!(handler.name(), concat!(module_path!(), "::handle"));
    assert_eq!(
        handler.topics(),
        ["orders", "orders.priority", "Orders_EU-2"]
    );
    assert_eq!(handler.group(), "billing");
    assert!(handler.options().record_key);
}
