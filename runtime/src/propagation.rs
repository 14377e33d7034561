//! Reading trace context out of record headers.

use opentelemetry::propagation::Extractor;
use opentelemetry::{global, Context};

use crate::record::RecordHeaders;

/// Header values longer than this are ignored, not parsed. A W3C
/// `traceparent` is 55 bytes and a `tracestate` at most 32 members of
/// 256 characters; 8 KiB covers every honest trace header with room to spare
/// and keeps a hostile header from costing more than a length check.
pub const MAX_TRACE_HEADER_BYTES: usize = 8 * 1024;

const TRACEPARENT: &str = "traceparent";

/// An OpenTelemetry [`Extractor`] over a record's headers.
///
/// When a key repeats, the **last** header decides (Kafka's `lastHeader`
/// rule). That header reads as absent when its value is null, not UTF-8, or
/// longer than [`MAX_TRACE_HEADER_BYTES`]: a record whose trace header cannot
/// be read starts a new trace rather than guessing from an earlier copy.
///
/// A `traceparent` that breaks the W3C rules also reads as absent (see
/// [`is_valid_traceparent`]): the SDK's propagator parses ids with
/// `from_str_radix`, which accepts short ids and a leading `+`, and such a
/// header must start a new trace, not continue a made-up one.
#[derive(Clone, Copy, Debug)]
pub struct HeaderExtractor<'a>(pub RecordHeaders<'a>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key)?;
        if value.len() > MAX_TRACE_HEADER_BYTES {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?;
        if key == TRACEPARENT && !is_valid_traceparent(value) {
            return None;
        }
        Some(value)
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

/// Whether `value` is a `traceparent` the W3C Trace Context rules accept.
///
/// Version `00`: exactly `00-{32 hex}-{16 hex}-{2 hex}`, lower-case, ids not
/// all zero, and no flag bits beyond `sampled` (`01`) and `random` (`02`,
/// which other SDKs send). A later version (`01` to `fe`) must start with
/// the same shape and may only continue after a `-`. Version `ff` is invalid.
pub fn is_valid_traceparent(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return false;
    }
    let (Some(version), Some(flags)) = (hex_byte(&bytes[0..2]), hex_byte(&bytes[53..55])) else {
        return false;
    };
    if lower_hex_id(&bytes[3..35]) != Some(true) || lower_hex_id(&bytes[36..52]) != Some(true) {
        return false;
    }
    match version {
        0x00 => bytes.len() == 55 && flags & !0x03 == 0,
        0xff => false,
        _ => bytes.len() == 55 || bytes[55] == b'-',
    }
}

/// For an id of lower-case hex digits, whether it is non-zero; `None` when a
/// byte is not a lower-case hex digit. One pass without early exits: this
/// runs on every record, and a well-formed id is the common case.
fn lower_hex_id(id: &[u8]) -> Option<bool> {
    let mut hex = true;
    let mut nonzero = false;
    for &b in id {
        hex &= b.is_ascii_digit() | (b'a'..=b'f').contains(&b);
        nonzero |= b != b'0';
    }
    hex.then_some(nonzero)
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

#[cfg(test)]
mod tests {
    use super::is_valid_traceparent;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_w3c_traceparents() {
        assert!(is_valid_traceparent(VALID));
        for flags in ["00", "01", "02", "03"] {
            let value = format!("{}{flags}", &VALID[..53]);
            assert!(is_valid_traceparent(&value), "{value}");
        }
        assert!(is_valid_traceparent(&format!(
            "cc{}-what-the-future-holds",
            &VALID[2..]
        )));
        assert!(is_valid_traceparent(&format!("cc{}", &VALID[2..])));
    }

    #[test]
    fn rejects_what_w3c_rejects() {
        let cases = [
            ("version ff", format!("ff{}", &VALID[2..])),
            ("upper-case trace id", VALID.replace("4bf92f", "4BF92F")),
            ("upper-case flags", format!("{}0A", &VALID[..53])),
            (
                "short trace id",
                VALID.replace("4bf92f3577b34da6", "4bf92f3577b34da"),
            ),
            (
                "long span id",
                VALID.replace("00f067aa0ba902b7", "00f067aa0ba902b70"),
            ),
            (
                "all-zero trace id",
                VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            ),
            (
                "all-zero span id",
                VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
            ),
            ("unknown flag bits", format!("{}09", &VALID[..53])),
            ("trailing data on version 00", format!("{VALID}-extra")),
            ("one-digit flags", VALID[..54].to_owned()),
            ("plus sign", VALID.replace("-00f0", "-+0f0")),
            ("non-hex", VALID.replace("4bf9", "4bg9")),
            ("empty", String::new()),
            (
                "later version without separator",
                format!("cc{}x", &VALID[2..]),
            ),
            ("leading space", format!(" {}", &VALID[..54])),
        ];
        for (why, value) in cases {
            assert!(!is_valid_traceparent(&value), "{why}: {value}");
        }
    }
}
