//! A record's headers from arbitrary bytes (trace header names in every
//! spelling, raw and non-UTF-8 names, repeated names, null, mutated,
//! generated and oversized values), through trace-context extraction with
//! every format: never a panic, never past a limit, W3C as the spec reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_handler_fuzz::extract_headers(data));
