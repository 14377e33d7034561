//! Handlers may return `Result<(), E>` for a std `Error` or any `Display` type.
use std::fmt;

use kafka_handler::{handlers, kafka_handler};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn io_error(_payload: &[u8]) -> Result<(), std::io::Error> {
    Ok(())
}

struct Rejected(u32);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected order {}", self.0)
    }
}

#[kafka_handler(topics = ["orders"], group = "audit")]
async fn display_only(_payload: &[u8]) -> Result<(), Rejected> {
    Err(Rejected(7))
}

#[kafka_handler(topics = ["orders"], group = "text")]
fn string_error(_payload: &str) -> Result<(), String> {
    Err("nope".to_owned())
}

type HandlerResult<E = std::io::Error> = Result<(), E>;

#[kafka_handler(topics = ["orders"], group = "alias")]
async fn alias(_payload: &[u8]) -> HandlerResult {
    Ok(())
}

fn main() {
    let _ = handlers![io_error, display_only, string_error, alias];
}
