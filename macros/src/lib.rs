//! The `#[kafka_handler]` attribute. Use it through the `kafka-handler`
//! crate, which re-exports it and provides the runtime it expands into.

mod args;
mod expand;

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
/// - `record_key = false`: don't record the record key on the span (keys
///   can carry personal data). Default `true`.
/// - `crate = "path"`: where the `kafka_handler` crate is, when it is
///   renamed or re-exported.
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
