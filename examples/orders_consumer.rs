//! The quickstart's order handlers as a deployable consumer binary: one line
//! of `main`, everything else from flags and the environment.
//!
//! ```text
//! cargo run --example dev_broker -- orders orders.dlq invoices   # prints KAFKA_BROKERS=..
//! KAFKA_BROKERS=127.0.0.1:PORT OTEL_TRACES_EXPORTER=console \
//!     cargo run --example orders_consumer -- --health-addr 127.0.0.1:8080
//! cargo run --example orders_consumer -- --help
//! ```
//!
//! Billing retries a failing order twice and then dead-letters it to
//! `orders.dlq` (reviewed by `review`), the warehouse packs orders in
//! batches, audit sees every record, and the mailer handles the invoices
//! billing produces.

use kafka_handler_examples::orders::{audit, bill, mail, pack, review};

kafka_handler::main!(bill, audit, pack, review, mail);
