//! A record with arbitrary key, payload and headers, through every payload
//! extractor (`&[u8]`, `&str`, `String`, `Json<T>`, their `Option`s), `Key`,
//! `&RecordMeta`, `RecordHeaders` and `&TracedProducer`: each succeeds or
//! fails as documented, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_handler_fuzz::payload_extractors(data));
