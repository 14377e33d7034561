//! Runnable kafka-handler examples live in this crate's `examples` targets.
