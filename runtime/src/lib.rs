//! Trace-correct Kafka consumers.
//!
//! Annotate a function with [`#[kafka_handler]`](macro@kafka_handler) and
//! every record it handles runs under its producer's trace: the runtime
//! extracts the W3C context from the record's headers, makes it current,
//! opens a `process {topic}` consumer span with the OpenTelemetry messaging
//! attributes, runs the handler, ends the span and detaches, whatever
//! happens (error, panic, cancellation).
//!
//! ```no_run
//! use kafka_handler::{handlers, kafka_handler, Consumer, Json, RecordMeta, Shutdown};
//!
//! #[derive(serde::Deserialize)]
//! struct Order {
//!     id: u64,
//! }
//!
//! #[kafka_handler(topics = ["orders"], group = "billing")]
//! async fn bill(order: Json<Order>, meta: &RecordMeta) -> Result<(), std::io::Error> {
//!     tracing::info!(id = order.id, partition = meta.partition(), "billing");
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), kafka_handler::Error> {
//! let consumer = Consumer::builder()
//!     .brokers("localhost:9092")
//!     .handlers(handlers![bill])
//!     .build()?;
//! consumer.run(Shutdown::new()).await
//! # }
//! ```
//!
//! A batch handler (`batch(max_records = 500, max_wait = "50ms")`) takes one
//! [`Batch`] argument: one batch span per delivery, linked to every record's
//! producer, and each record's code under its own context and span (see
//! [`BatchRecord::process`]).
//!
//! The tracing contract (span names, attributes, what happens to malformed
//! headers) is in the README.

#[cfg(feature = "main")]
pub mod app;
mod attach;
mod attributes;
mod backoff;
mod batch;
mod consumer;
pub mod context;
pub mod dead_letter;
mod error;
mod extract;
mod handler;
mod health;
pub mod metrics;
mod outcome;
mod process;
mod producer;
pub mod propagation;
mod publish;
mod record;
mod redact;
mod resolve;
mod shutdown;
mod span;
pub mod testing;

pub use backoff::Backoff;
pub use batch::{Batch, BatchInput, BatchOptions, BatchRecord, FromBatch, Processed};
pub use consumer::{Consumer, ConsumerBuilder, BROKERS_ENV};
pub use error::Error;
pub use extract::{FromRecord, Json, Key};
pub use handler::{Handler, HandlerFactory, HandlerFuture, HandlerOptions, ProcessingOrder};
pub use health::{Health, Probe};
pub use kafka_handler_macros::kafka_handler;
pub use outcome::{ErrorKind, HandlerError, IntoOutcome, Outcome};
pub use process::Processor;
pub use producer::TracedProducer;
pub use publish::{IntoOutputs, IntoPayload, Output, Publish};
pub use record::{Record, RecordHeaders, RecordMeta};
pub use shutdown::Shutdown;

/// Locks `mutex`. A poisoned lock still holds consistent state (the
/// tracker's updates and the revoked list's are single writes or whole
/// pushes), so keep going.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What `#[kafka_handler]` expands to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::backoff::Backoff;
    pub use crate::batch::{BatchInput, BatchOptions, FromBatch};
    pub use crate::extract::FromRecord;
    pub use crate::handler::{
        Handler, HandlerFactory, HandlerFuture, HandlerOptions, ProcessingOrder,
    };
    pub use crate::outcome::{IntoOutcome, Outcome};
    pub use crate::publish::{publish, Publish};
    pub use crate::record::Record;
    pub use std::boxed::Box;
    pub use std::time::Duration;
}
