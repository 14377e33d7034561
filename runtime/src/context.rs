//! Carrying the record's trace into tasks and threads a handler starts.
//!
//! Inside a handler, [`opentelemetry::Context::current()`] and
//! [`tracing::Span::current()`] are the record's `process {topic}` span. Both
//! live in thread-locals, so neither follows work onto another task or
//! thread by itself: a plain `tokio::spawn`, `spawn_blocking` or
//! `std::thread::spawn` starts with nothing current, and the spans it creates
//! become roots of traces of their own.
//!
//! The one-liners here capture **both** at the call and make them current
//! again wherever the work runs, so that spans it creates, from the global
//! OpenTelemetry tracer or with `tracing::info_span!` and the
//! tracing-opentelemetry layer, are children of the record's span:
//!
//! | instead of | write |
//! |---|---|
//! | `tokio::spawn(fut)` | [`context::spawn(fut)`](spawn) |
//! | `tokio::task::spawn_blocking(f)` | [`context::spawn_blocking(f)`](spawn_blocking) |
//! | `std::thread::spawn(f)` | [`context::spawn_thread(f)`](spawn_thread) |
//! | any other executor, `fut` | [`fut.in_current_context()`](InCurrentContext::in_current_context) |
//! | any other thread pool or scope, `f` | [`in_current_context(f)`](in_current_context) |
//!
//! ```no_run
//! use kafka_handler::{context, kafka_handler};
//!
//! #[kafka_handler(topics = ["orders"], group = "billing")]
//! async fn bill(payload: &[u8]) {
//!     // Both are children of this record's `process orders` span.
//!     let audit = context::spawn(async { tracing::info!("auditing") });
//!     let digest = context::spawn_blocking(|| {
//!         tracing::info_span!("digest").in_scope(|| { /* CPU-bound work */ })
//!     });
//!     let _ = tokio::join!(audit, digest);
//! }
//! ```
//!
//! The work may outlive the handler. Its spans are still children of the
//! record's span, but that span ends when the handler returns, and the
//! record's offset may be committed before the work finishes: await the
//! handle inside the handler when the work is part of handling the record.

use std::future::Future;

use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::Context;
use tracing::instrument::{Instrument as _, Instrumented};

/// A future that runs under a captured OpenTelemetry context and `tracing`
/// span: both are current on every poll (and the span while it is dropped),
/// on whatever thread polls it. Made by
/// [`InCurrentContext::in_current_context`].
pub type InContext<F> = Instrumented<WithContext<F>>;

/// Runs futures under the context and span current where they are created.
///
/// Implemented for every [`Future`]. Use it to hand a future to something
/// other than [`spawn`]: your own `tokio::spawn`, a `JoinSet`, a
/// `LocalSet`, another executor.
///
/// ```no_run
/// use kafka_handler::context::InCurrentContext as _;
///
/// # async fn handler() {
/// let mut tasks = tokio::task::JoinSet::new();
/// for shard in 0..4 {
///     tasks.spawn(async move { tracing::info!(shard, "shard done") }.in_current_context());
/// }
/// tasks.join_all().await;
/// # }
/// ```
pub trait InCurrentContext: Future + Sized {
    /// Captures [`Context::current()`] and [`tracing::Span::current()`] now,
    /// and makes both current on every poll of `self`.
    ///
    /// Equivalent to `self.with_context(Context::current())
    /// .instrument(tracing::Span::current())`.
    fn in_current_context(self) -> InContext<Self> {
        self.with_context(Context::current())
            .instrument(tracing::Span::current())
    }
}

impl<F: Future> InCurrentContext for F {}

/// Wraps `f` so that it runs under the OpenTelemetry context and `tracing`
/// span current now, on whatever thread calls it.
///
/// For thread pools and scopes [`spawn_blocking`] and [`spawn_thread`] do not
/// cover: `std::thread::Builder::spawn`, `std::thread::scope`, rayon. The
/// wrapper is `Send` when `f` is.
///
/// ```no_run
/// use kafka_handler::context::in_current_context;
///
/// # fn handler(chunks: &[Vec<u8>]) {
/// std::thread::scope(|scope| {
///     for chunk in chunks {
///         scope.spawn(in_current_context(move || {
///             tracing::info_span!("checksum", len = chunk.len()).in_scope(|| { /* .. */ })
///         }));
///     }
/// });
/// # }
/// ```
pub fn in_current_context<F, R>(f: F) -> impl FnOnce() -> R
where
    F: FnOnce() -> R,
{
    let cx = Context::current();
    let span = tracing::Span::current();
    move || crate::attach::in_scope(&cx, &span, f)
}

/// [`tokio::spawn`], with the OpenTelemetry context and `tracing` span
/// current at the call current on every poll of `future`.
///
/// Must be called from within a Tokio runtime, as `tokio::spawn`.
///
/// ```no_run
/// # async fn handler() {
/// let handle = kafka_handler::context::spawn(async {
///     tracing::info!("in the record's trace");
/// });
/// handle.await.unwrap();
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.in_current_context())
}

/// [`tokio::task::spawn_blocking`], with the OpenTelemetry context and
/// `tracing` span current at the call current while `f` runs.
///
/// Must be called from within a Tokio runtime, as `spawn_blocking`.
///
/// ```no_run
/// # async fn handler(payload: Vec<u8>) {
/// let size = kafka_handler::context::spawn_blocking(move || {
///     let _span = tracing::info_span!("compress").entered();
///     payload.len()
/// })
/// .await
/// .unwrap();
/// # }
/// ```
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(in_current_context(f))
}

/// [`std::thread::spawn`], with the OpenTelemetry context and `tracing` span
/// current at the call current while `f` runs.
///
/// ```no_run
/// let worker = kafka_handler::context::spawn_thread(|| {
///     tracing::info!("in the record's trace, on a thread of its own");
/// });
/// worker.join().unwrap();
/// ```
pub fn spawn_thread<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(in_current_context(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Marker(u32);

    fn marker() -> Option<u32> {
        Context::current().get::<Marker>().map(|m| m.0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_helper_carries_the_context_and_a_plain_spawn_does_not() {
        let _attached = Context::current_with_value(Marker(7)).attach();
        assert_eq!(spawn(async { marker() }).await.unwrap(), Some(7));
        assert_eq!(
            tokio::spawn(async { marker() }.in_current_context())
                .await
                .unwrap(),
            Some(7)
        );
        assert_eq!(spawn_blocking(marker).await.unwrap(), Some(7));
        assert_eq!(spawn_thread(marker).join().unwrap(), Some(7));
        assert_eq!(
            std::thread::spawn(in_current_context(marker))
                .join()
                .unwrap(),
            Some(7)
        );
        assert_eq!(tokio::spawn(async { marker() }).await.unwrap(), None);
        assert_eq!(std::thread::spawn(marker).join().unwrap(), None);
    }

    #[test]
    fn the_wrapped_closure_leaves_nothing_attached() {
        let wrapped = {
            let _attached = Context::current_with_value(Marker(3)).attach();
            in_current_context(marker)
        };
        assert_eq!(marker(), None);
        assert_eq!(wrapped(), Some(3));
        assert_eq!(marker(), None, "detached after the call");
    }
}
