//! Reading trace context out of record headers.

use opentelemetry::propagation::Extractor;
use opentelemetry::{global, Context};

use crate::record::RecordHeaders;

/// Header values longer than this are ignored, not parsed. A W3C
/// `traceparent` is 55 bytes and a `tracestate` at most 32 members of
/// 256 characters; 8 KiB covers every honest trace header with room to spare
/// and keeps a hostile header from costing more than a length check.
pub const MAX_TRACE_HEADER_BYTES: usize = 8 * 1024;

/// An OpenTelemetry [`Extractor`] over a record's headers.
///
/// When a key repeats, the **last** header decides (Kafka's `lastHeader`
/// rule). That header reads as absent when its value is null, not UTF-8, or
/// longer than [`MAX_TRACE_HEADER_BYTES`]: a record whose trace header cannot
/// be read starts a new trace rather than guessing from an earlier copy.
#[derive(Clone, Copy, Debug)]
pub struct HeaderExtractor<'a>(pub RecordHeaders<'a>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let headers = self.0;
        let value = (0..headers.len())
            .rev()
            .filter_map(|idx| headers.get_at(idx))
            .find(|(k, _)| *k == key)?
            .1?;
        if value.len() > MAX_TRACE_HEADER_BYTES {
            return None;
        }
        std::str::from_utf8(value).ok()
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// The producer's context from a record's headers, through the globally
/// installed text-map propagator.
///
/// Extraction starts from an empty context, not the caller's: a record
/// without a valid trace header is a new root, never a child of whatever
/// happened to be current on the polling thread.
pub fn extract_parent_context(headers: RecordHeaders<'_>) -> Context {
    if headers.is_empty() {
        return Context::new();
    }
    global::get_text_map_propagator(|propagator| {
        propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers))
    })
}
