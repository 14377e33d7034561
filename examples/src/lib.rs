//! Runnable kafka-handler examples live in this crate's `examples` targets;
//! the handlers they share live here.

pub mod orders;
