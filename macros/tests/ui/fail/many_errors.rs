//! Every problem is reported in one build: arguments and signature together.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["bad topic", "orders", "orders"], group = "", retry = 3)]
unsafe fn handle<T>(_payload: impl AsRef<[u8]>, (_a, _b): (u8, u8)) {}

fn main() {}
