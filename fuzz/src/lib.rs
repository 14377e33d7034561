//! The logic of the fuzz targets, in `cases.rs` so that the property test
//! `tests/tests/fuzz_headers.rs` can include the same file.

mod cases;

pub use cases::{extract_headers, payload_extractors, reference_traceparent, HeaderCase};
