//! The record's trace across task and thread boundaries, with the
//! OpenTelemetry SDK plus a `tracing` subscriber carrying the
//! tracing-opentelemetry layer: both `Context::current()` and
//! `tracing::Span::current()` are checked.

mod common;

use common::Mode;

const MODE: Mode = Mode::TracingLayer;

/// Issue 5: spawned tasks, blocking tasks and threads started through
/// `kafka_handler::context` create children of the record's span; plain
/// spawns do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_and_threads_continue_the_records_span() {
    common::boundaries::spawned_work_is_a_child_of_the_record(MODE).await;
}

/// Issue 5: an async handler's context is current on every poll, also after
/// it resumes on another worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_async_handler_keeps_its_context_when_it_resumes_on_another_thread() {
    common::boundaries::async_handler_keeps_its_context_across_threads(MODE).await;
}
