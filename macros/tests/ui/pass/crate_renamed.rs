//! `crate = ".."` points the expansion at a re-export of kafka_handler.
mod reexport {
    pub use ::kafka_handler as kh;
}

use kafka_handler::{handlers, kafka_handler};

#[kafka_handler(topics = ["orders"], group = "billing", crate = "crate::reexport::kh")]
async fn handle(_payload: &[u8]) {}

fn main() {
    let _ = handlers![handle];
}
