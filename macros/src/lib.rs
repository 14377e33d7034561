//! The `#[kafka_handler]` attribute. Use it through the `kafka-handler`
//! crate, which re-exports it and provides the runtime it expands into.

mod args;
mod duration;
mod expand;
mod topics;

use proc_macro::TokenStream;

/// Turns a function into a Kafka record handler that runs under each
/// record's trace.
///
/// ```ignore
/// #[kafka_handler(topics = ["orders", "orders-priority"], group = "billing")]
/// async fn bill(order: Json<Order>, meta: &RecordMeta) -> Result<(), BillingError> {
///     tracing::info!(id = order.id, partition = meta.partition(), "billing");
///     Ok(())
/// }
/// ```
///
/// Arguments:
///
/// - `topics = ["a", "b"]` (required): the topics to consume; each name is
///   checked against Kafka's rule at compile time.
/// - `group = "name"` (required): the consumer group.
/// - `batch(max_records = 500, max_wait = "50ms")`: a batch handler. It
///   takes one `Batch<T>` argument (`T`: any single-record argument type)
///   holding up to `max_records` records of one partition, delivered once
///   that many have arrived or `max_wait` after the first one did. Both are
///   optional (defaults `500` and `"50ms"`); `max_records` is 1 to 100,000
///   and `max_wait` above zero. `retries`, `dlq` and `timeout` apply as
///   below: a failed record is retried alone; `timeout` bounds a whole call.
/// - `retries = 3`: how many times a failed record is attempted again
///   before it is given up on, `0` to `u32::MAX`. Default `3`. A
///   permanent error (`HandlerError::permanent`) gives up at once.
/// - `backoff = "100ms..10s"`: the delay before each retry, doubling from
///   the first bound (above zero) up to the second (jittered); or one duration,
///   `backoff = "250ms"`, for the same delay before every retry (`"0ms"`
///   retries at once). Default `"100ms..10s"`.
/// - `dlq = "orders.dlq"`: the dead-letter topic. A record given up on is
///   copied there, keeping its trace, and committed. Checked like `topics`,
///   and must not be one of them. Default none: a record given up on is
///   *held* instead: it is not committed, its partition is paused (the
///   others keep flowing), and it is attempted again every backoff maximum
///   until it succeeds or the consumer restarts. No record is ever skipped.
/// - `publish = "invoices"`: produce what the handler returns to this topic
///   (checked like `topics`, and must not be one of them), under a
///   `send invoices` span that is a child of the record's `process` span.
///   The handler returns a payload (`Json<T>`, `String`, `&str`, `Vec<u8>`,
///   `&[u8]`, or a type implementing `IntoPayload`), an `Output<_>` of one
///   (to choose its key and headers; a bare payload takes the input
///   record's key), or an `Option<_>` (zero or one) or `Vec<_>` (zero or
///   more) of those, optionally inside `Result<_, E>`. The record ends, and
///   can be committed, once the broker acknowledged every output; a send
///   that fails fails the record transiently (retried, then dead-lettered),
///   and an output that cannot be encoded fails it permanently. A plain `fn`
///   works too (called inline; the sends are awaited). Not on handlers of
///   one record that return `()` or `Result<(), E>`. A batch handler
///   publishes in each record's scope with `BatchRecord::publish`, under
///   that record's span.
/// - `timeout = "30s"`: how long one attempt may run before it is
///   cancelled and counted as a transient failure (then retried like any
///   other). `async fn` only: a synchronous function cannot be cancelled.
///   Default none: no limit.
/// - `ordering = "partition"`: which of the handler's records may run
///   beside each other. `"partition"` (the default): one record in flight
///   per partition, partitions in parallel. `"key"`: one per key within a
///   partition (records without a key share one lane per partition); not
///   on a batch handler, whose batches hold records of many keys. `"none"`:
///   any beside any, for idempotent work.
/// - `max_in_flight = 64`: the most records of this handler running at once
///   in this process, 1 to 1,000,000. Default `64`; for a batch handler
///   8 × `max_records`, and a batch counts its records, so it must not be
///   below `max_records`.
/// - `record_key = false`: don't record the record key on the span (keys
///   can carry personal data). Default `true`.
/// - `crate = "path"`: where the `kafka_handler` crate is, when it is
///   renamed or re-exported.
///
/// Durations are a whole number followed by a unit, one of `ns`, `us`,
/// `ms`, `s`, `m` (minutes) or `h`, without spaces: `"250ms"`, `"30s"`,
/// `"2m"`. There are no fractions: write `"1500ms"`, not `"1.5s"`.
///
/// ```ignore
/// #[kafka_handler(
///     topics = ["orders"],
///     group = "billing",
///     retries = 5,
///     backoff = "200ms..30s",
///     dlq = "orders.dlq",
///     timeout = "10s",
/// )]
/// async fn bill(order: Json<Order>) -> Result<(), BillingError> {
///     // ...
/// }
/// ```
///
/// Every argument is checked at compile time, and all problems are
/// reported in one build, each on the value at fault.
///
/// The function stays as written, callable from tests. Its arguments are
/// extracted from the record by type (`FromRecord`), and it returns `()` or
/// `Result<(), E>` with `E: Display`. Beside it the macro generates a
/// descriptor of the same name in the type namespace; collect descriptors
/// with `kafka_handler::handlers![bill, audit]`.
#[proc_macro_attribute]
pub fn kafka_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::kafka_handler(args.into(), item.into()).into()
}
