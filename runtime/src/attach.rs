//! Making a record's trace current: the one place where a record's
//! OpenTelemetry context is attached and its `tracing` span entered.
//!
//! Both live in thread-locals, so both are set around each piece of the
//! record's code and unset right after: around a call ([`in_scope`]) and
//! around every poll of a future ([`Attached`]), on whatever thread runs it.
//! Between two polls nothing of the record stays current on the worker, so
//! records in flight side by side never see each other's context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::Context;

/// Runs `f` with `cx` attached and `span` entered; both are restored when
/// `f` returns or unwinds.
///
/// The span is entered first and the context attached second, so the
/// context, which may carry more than the span's (baggage), is the innermost
/// current one.
#[inline]
pub(crate) fn in_scope<R>(cx: &Context, span: &tracing::Span, f: impl FnOnce() -> R) -> R {
    let _entered = span.enter();
    let _attached = cx.clone().attach();
    f()
}

pin_project_lite::pin_project! {
    /// A future polled under a record's context and span: see [`in_scope`].
    pub(crate) struct Attached<'a, F> {
        #[pin]
        future: F,
        cx: &'a Context,
        span: &'a tracing::Span,
    }
}

impl<'a, F: Future> Attached<'a, F> {
    /// `future`, polled under `cx` and `span`.
    pub(crate) fn new(future: F, cx: &'a Context, span: &'a tracing::Span) -> Self {
        Self { future, cx, span }
    }
}

impl<F: Future> Future for Attached<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        in_scope(this.cx, this.span, || future.poll(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Marker(u32);

    fn marker() -> Option<u32> {
        Context::current().get::<Marker>().map(|m| m.0)
    }

    #[tokio::test]
    async fn the_context_is_current_on_every_poll_and_never_between() {
        let cx = Context::new().with_value(Marker(1));
        let span = tracing::Span::none();
        let mut seen = Vec::new();
        let future = Attached::new(
            async {
                seen.push(marker());
                tokio::task::yield_now().await;
                seen.push(marker());
            },
            &cx,
            &span,
        );
        {
            let mut future = std::pin::pin!(future);
            futures_util::future::poll_fn(|task| {
                let poll = future.as_mut().poll(task);
                assert_eq!(marker(), None, "nothing stays attached after a poll");
                poll
            })
            .await;
        }
        assert_eq!(seen, [Some(1), Some(1)]);
    }
}
