//! The tracing contract with the OpenTelemetry SDK plus a `tracing`
//! subscriber carrying the tracing-opentelemetry layer (the layer owns each
//! process span).

mod common;

contract_tests!(common::Mode::TracingLayer);
