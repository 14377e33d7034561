//! The tracing contract with the OpenTelemetry SDK alone, no `tracing`
//! subscriber (the runtime starts each process span on the tracer).

mod common;

contract_tests!(common::Mode::OtelOnly);
