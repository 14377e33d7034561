//! The tracing contract with the OpenTelemetry SDK alone, no `tracing`
//! subscriber (the runtime starts each process span on the tracer).

mod common;

use common::{scenarios, Mode};

const MODE: Mode = Mode::OtelOnly;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_continues_its_producers_trace() {
    scenarios::continuity(MODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_headers_is_a_new_root() {
    scenarios::no_leaks_between_records(MODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_stays_current_after_a_record() {
    scenarios::nothing_current_after_a_record(MODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_traceparents_start_new_traces() {
    scenarios::malformed_headers(MODE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_after_the_last_handled_record() {
    scenarios::resumes_after_the_last_handled_record(MODE).await;
}
