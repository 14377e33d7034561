//! A harness for tests that run kafka-handler's example binaries the way an
//! operator would: as child processes, against a broker in another process,
//! exporting telemetry over the network.
//!
//! - [`otlp`]: an OTLP receiver (HTTP and gRPC, plain or TLS, gzip or not)
//!   that keeps the spans, metric names and log records a process exports.
//! - [`pki`]: a CA and server and client certificates made per test, for
//!   the receiver's TLS and a child's `OTEL_EXPORTER_OTLP_*CERTIFICATE`.
//! - [`process`]: the built example binaries, a [`ChildProcess`] wrapper
//!   that captures its output, and the [`DevBroker`] (the `dev_broker`
//!   example) as a child.
//! - [`kafka`]: producing traced records and reading committed offsets.
//! - [`http`]: a tiny HTTP/1.1 GET for health and metrics endpoints.
//! - [`tls`]: a certificate authority per test and a TLS terminator in front
//!   of the mock cluster; [`sasl`]: SASL/PLAIN in that terminator.
//!
//! Every wait is bounded and fails with a message that says what it waited
//! for, with whatever diagnostics the caller passes (typically a child's
//! captured output).
//!
//! The end-to-end tests of the library itself (in-process consumers) live
//! in `tests/` and do not use this crate.

pub mod http;
pub mod kafka;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod sasl;
pub mod tls;

use std::time::Duration;

pub use otlp::{AttributeValue, OtlpReceiver, ReceivedLog, ReceivedSpan};
pub use process::{example_binary, example_command, ChildProcess, DevBroker, Signal};

/// Polls `poll` every 20 ms until it returns `Some`, and returns that value.
/// Panics after `limit` with `what` and the text `diagnostics` returns then
/// (for example [`ChildProcess::dump`]).
pub async fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut poll: impl FnMut() -> Option<T>,
    diagnostics: impl FnOnce() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                diagnostics()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_for`] with a yes/no condition.
pub async fn wait_until(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
    diagnostics: impl FnOnce() -> String,
) {
    wait_for(limit, what, || condition().then_some(()), diagnostics).await;
}

/// A port on 127.0.0.1 that nothing listens on: bound, then released. Good
/// for "the broker is down" and "the collector is unreachable".
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let port = listener.local_addr().expect("a bound address").port();
    drop(listener);
    port
}
