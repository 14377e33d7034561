//! What the fuzz targets run, shared by the libFuzzer targets in
//! `fuzz/fuzz_targets/` and by the property test
//! `tests/tests/fuzz_headers.rs` (which includes this file): each case
//! decodes arbitrary bytes into a record, runs the crate on it, and panics
//! only when an invariant breaks.
//!
//! The bytes are read front to back, as choices: a header name from the
//! names the propagators ask for (or raw bytes, not always UTF-8), a value
//! that is null, raw bytes, a valid header mutated a little, a generated
//! list (`tracestate`, `baggage`) or a chunk repeated past the limits. So a
//! fuzzer, or a plain pseudo-random generator, reaches the parsers' deep
//! paths, not only their first length check.

#![allow(unreachable_pub, dead_code)]

use std::collections::HashMap;
use std::sync::Once;

use kafka_handler::propagation::{
    extract_parent_context, is_valid_traceparent, Format, HeaderExtractor, Propagation,
    MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS, MAX_TRACESTATE_CHARS, MAX_TRACESTATE_MEMBERS,
    MAX_TRACE_HEADER_BYTES,
};
use kafka_handler::testing::with_raw_header;
use kafka_handler::{
    ErrorKind, FromRecord, HandlerError, Json, Key, Record, RecordHeaders, RecordMeta,
    TracedProducer,
};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceState};
use opentelemetry::Context;
use rdkafka::message::OwnedHeaders;
use serde::Deserialize;

/// The bytes of a case, read front to back; past the end, zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes: fewer at the end.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The header names extraction reads (the last header of each).
pub const READ_NAMES: &[&str] = &[
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-b3-parentspanid",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-Sampled",
    "X-B3-Flags",
    "X-B3-ParentSpanId",
];

/// Header names the propagators ask for, in both B3 spellings, a few near
/// misses, and one other.
pub const NAMES: [&str; 20] = [
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-b3-parentspanid",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-Sampled",
    "X-B3-Flags",
    "X-B3-ParentSpanId",
    "Traceparent",
    "TRACESTATE",
    "B3",
    "x-b3-TraceId",
    "traceparent ",
    "tenant",
];

/// Valid (or nearly valid) values of those headers, to mutate.
const TRACEPARENTS: &[&str] = &[
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe",
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
];
const TRACESTATES: &[&str] = &[
    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    "dd=s:1;o:rum,tenant@vendor=x,a*b/c_d-e=v~ !",
    "k=v,k=w",
    "",
];
const B3_SINGLE: &[&str] = &[
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
    "64fe8b2a57d3eff7-e457b5a2e4d86bd1",
    "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0-",
    "0",
];
const B3_TRACE_IDS: &[&str] = &["80f198ee56343ba864fe8b2a57d3eff7", "64fe8b2a57d3eff7"];
const B3_SPAN_IDS: &[&str] = &["e457b5a2e4d86bd1", "05e3ac9a4f6e3b90"];
const B3_SAMPLED: &[&str] = &["1", "true", "0", "false", "d"];
const BAGGAGES: &[&str] = &[
    "userId=alice;prop=1;flag,serverNode=DF%2028,isProduction=false",
    "k=%ZZ,=v,k2=,;;,%E2%82%AC=%F0%9F%98%80",
];
const TEMPLATES: [&[&str]; 7] = [
    TRACEPARENTS,
    TRACESTATES,
    B3_SINGLE,
    B3_TRACE_IDS,
    B3_SPAN_IDS,
    B3_SAMPLED,
    BAGGAGES,
];

/// The templates of a header name (in any spelling).
fn templates_for(name: &[u8]) -> Option<&'static [&'static str]> {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    Some(match name.as_str() {
        "traceparent" => TRACEPARENTS,
        "tracestate" => TRACESTATES,
        "b3" => B3_SINGLE,
        "x-b3-traceid" => B3_TRACE_IDS,
        "x-b3-spanid" | "x-b3-parentspanid" => B3_SPAN_IDS,
        "x-b3-sampled" | "x-b3-flags" => B3_SAMPLED,
        "baggage" => BAGGAGES,
        _ => return None,
    })
}

/// Characters of generated `tracestate` and `baggage` keys and values.
const KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_-*/@";
const VALUE_CHARS: &[u8] = b"!\"#$%&'()*+-./0123456789:;<>?@ABCXYZ[\\]^_`abcxyz{|}~ ";
const ANY_VALUE_CHARS: &[u8] = b"%=,;\t \xe2\x82\xac\xffab";

/// `len` characters of `alphabet`, from a seed: one input byte makes a
/// whole key or value.
fn fill(alphabet: &[u8], seed: u8, step: u8, len: usize) -> impl Iterator<Item = u8> + '_ {
    let (seed, step) = (usize::from(seed), usize::from(step) | 1);
    (0..len).map(move |i| alphabet[(seed + i * step) % alphabet.len()])
}

fn name(input: &mut Input<'_>) -> Vec<u8> {
    let choice = input.byte();
    if choice < 96 {
        // The W3C names and `b3` most often.
        NAMES[usize::from(choice) % 4].as_bytes().to_vec()
    } else if choice < 224 {
        NAMES[usize::from(choice) % NAMES.len()].as_bytes().to_vec()
    } else {
        // Raw: maybe empty, not UTF-8, or with a NUL.
        input.bytes(usize::from(choice % 16)).to_vec()
    }
}

fn value(input: &mut Input<'_>, name: &[u8]) -> Option<Vec<u8>> {
    Some(match input.byte() % 8 {
        0 => return None,
        1 => {
            let len = usize::from(input.u16()) % 600;
            input.bytes(len).to_vec()
        }
        2..=4 => {
            // A template of the header's own name, or of any.
            let choice = usize::from(input.byte());
            let templates = match templates_for(name) {
                Some(own) if choice < 192 => own,
                _ => TEMPLATES[choice % TEMPLATES.len()],
            };
            let template = templates[usize::from(input.byte()) % templates.len()];
            let mut value = template.as_bytes().to_vec();
            // Half the time as it is, or up to 4 edits.
            for _ in 0..input.byte().saturating_sub(127) % 5 {
                let (op, at) = (input.byte(), usize::from(input.byte()));
                match op % 4 {
                    0 if !value.is_empty() => {
                        let at = at % value.len();
                        value[at] = input.byte();
                    }
                    1 => value.insert(at % (value.len() + 1), input.byte()),
                    2 if !value.is_empty() => {
                        value.remove(at % value.len());
                    }
                    _ => value.truncate(at % (value.len() + 1)),
                }
            }
            value
        }
        5 | 6 => {
            // A list of generated members `key=value`, mostly valid W3C
            // ones (a key starts with a letter or digit; a value has no `,`
            // or `=`), some long; noisy ones with baggage properties and
            // characters no list allows.
            let members = usize::from(input.byte() % 80);
            // A quarter of the lists may break the rules anywhere.
            let style = input.byte();
            let noisy = style & 3 == 0;
            let separator: &[u8] = match style >> 5 {
                0 => b", ",
                1 => b" ,\t",
                2 if noisy => b";",
                _ => b",",
            };
            let mut list = Vec::new();
            for i in 0..members {
                if i > 0 {
                    list.extend_from_slice(separator);
                }
                let (shape, seed) = (input.byte(), input.byte());
                list.extend(fill(&KEY_CHARS[..36], seed, 7, 1));
                list.extend(fill(KEY_CHARS, seed, shape, usize::from(shape % 12)));
                if shape % 7 == 0 {
                    list.extend_from_slice(b"@vendor");
                }
                list.push(b'=');
                // Values up to 256 characters, W3C's most: entries of
                // either side of the 128 that goes first.
                let value_len = match shape >> 5 {
                    0 => 0,
                    1..=4 => usize::from(seed % 32) + 1,
                    5 | 6 => usize::from(seed % 64) + 96,
                    _ => usize::from(seed % 128) + 129,
                };
                let alphabet = match shape & 0x30 {
                    0x00 | 0x10 => &KEY_CHARS[..36],
                    0x30 if noisy => ANY_VALUE_CHARS,
                    _ => VALUE_CHARS,
                };
                list.extend(fill(alphabet, seed, seed >> 3, value_len));
                if noisy && shape & 0x0f == 0x0f {
                    list.extend_from_slice(b";p=1;q");
                }
            }
            list
        }
        _ => {
            // A chunk repeated: up to 35 KiB, past every limit.
            let len = usize::from(input.byte() % 32) + 1;
            let chunk = input.bytes(len);
            let times = usize::from(input.u16()) % 1100;
            chunk.repeat(times)
        }
    })
}

/// A record's headers decoded from a case, and the propagation order it
/// picked.
pub struct HeaderCase {
    pub headers: OwnedHeaders,
    /// What was written, in order: (name, value).
    pub written: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Which formats, in which order, the second extraction uses.
    pub formats: Vec<Format>,
}

impl HeaderCase {
    /// At most 32 headers, and each value at most 35 KiB.
    pub fn decode(data: &[u8]) -> Self {
        let mut input = Input(data);
        let order = input.byte();
        let mut formats = Format::ALL.to_vec();
        formats.rotate_left(usize::from(order % 4));
        if order & 0x04 != 0 {
            formats.swap(0, 1);
        }
        let mut kept = order >> 3;
        formats.retain(|_| {
            kept = kept.rotate_right(1);
            kept & 0x80 == 0
        });
        let mut headers = OwnedHeaders::new();
        let mut written = Vec::new();
        while !input.is_empty() && written.len() < 32 {
            let name = name(&mut input);
            let value = value(&mut input, &name);
            headers = with_raw_header(headers, &name, value.as_deref());
            written.push((name, value));
        }
        Self {
            headers,
            written,
            formats,
        }
    }

    pub fn record(&self) -> Record<'_> {
        Record::new("fuzz", 0, 0, None, None, Some(&self.headers))
    }

    /// The largest header value, in bytes.
    pub fn largest_value(&self) -> usize {
        let values = self.written.iter().filter_map(|(_, v)| v.as_ref());
        values.map(Vec::len).max().unwrap_or(0)
    }

    /// Runs every check.
    pub fn check(&self) {
        let record = self.record();
        let headers = record.headers();
        check_headers_view(headers, &self.written);

        // The consumer's path: the global propagator, every format.
        install_every_format();
        let cx = extract_parent_context(headers);
        check_bounds(&cx);

        // The formats in the order the case picked.
        let propagator = Propagation::new(self.formats.iter().copied()).propagator();
        let cx = propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers));
        check_bounds(&cx);
        if !self.formats.contains(&Format::Baggage) {
            assert_eq!(cx.baggage().len(), 0, "baggage without the format");
        }
        if self.formats.iter().all(|f| !f.carries_span_context()) {
            assert!(!cx.span().span_context().is_valid(), "no span format");
        }

        // W3C alone, against a reference reading of the spec.
        let propagator = Propagation::new([Format::TraceContext]).propagator();
        let cx = propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers));
        self.check_trace_context(&cx);

        // Every value as a traceparent, against the reference.
        for (_, value) in &self.written {
            if let Some(Ok(text)) = value.as_deref().map(std::str::from_utf8) {
                assert_eq!(
                    is_valid_traceparent(text),
                    reference_traceparent(text),
                    "{text:?}"
                );
            }
        }
    }

    /// The last header named `name` as librdkafka reads it back: names are
    /// C strings, so a name is cut at its first NUL.
    fn last(&self, name: &str) -> Option<&Option<Vec<u8>>> {
        self.written
            .iter()
            .rev()
            .find(|(n, _)| read_back(n) == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The span context W3C alone yields is the last `traceparent`'s, when
    /// that is readable and valid; its `tracestate` is the last one's,
    /// within the limits as W3C says to fit them.
    fn check_trace_context(&self, cx: &Context) {
        let span = cx.span();
        let sc = span.span_context();
        let readable = |value: &Option<Vec<u8>>| -> Option<String> {
            let value = value.as_ref()?;
            if value.len() > MAX_TRACE_HEADER_BYTES {
                return None;
            }
            String::from_utf8(value.clone()).ok()
        };
        let traceparent = self.last("traceparent").and_then(readable);
        let expected = traceparent.filter(|t| reference_traceparent(t));
        let Some(traceparent) = expected else {
            assert!(!sc.is_valid(), "continued {sc:?} from {:?}", self.written);
            return;
        };
        assert!(sc.is_valid() && sc.is_remote(), "{traceparent}");
        assert_eq!(sc.trace_id().to_string(), traceparent[3..35]);
        assert_eq!(sc.span_id().to_string(), traceparent[36..52]);
        let flags = u8::from_str_radix(&traceparent[53..55], 16).unwrap();
        assert_eq!(sc.trace_flags(), TraceFlags::new(flags & 0x01));
        check_span_context(sc);

        let kept = entries(sc.trace_state());
        let tracestate = self.last("tracestate").and_then(readable);
        let sent = tracestate.and_then(|t| t.parse::<TraceState>().ok());
        let sent = sent.map(|s| entries(&s)).unwrap_or_default();
        assert_eq!(kept, reference_bounded(sent.clone()), "from {sent:?}");
    }
}

/// W3C's rule for a `tracestate` over 512 characters, written out plainly:
/// drop entries longer than 128 characters (here from the end), then
/// entries from the end, until it fits.
pub fn reference_bounded(mut entries: Vec<(String, String)>) -> Vec<(String, String)> {
    let entry = |(k, v): &(String, String)| k.len() + 1 + v.len();
    let length = |e: &[(String, String)]| e.iter().map(entry).sum::<usize>() + e.len().max(1) - 1;
    while length(&entries) > MAX_TRACESTATE_CHARS {
        match entries.iter().rposition(|e| entry(e) > 128) {
            Some(long) => entries.remove(long),
            None => entries.pop().expect("not empty: longer than 512"),
        };
    }
    entries
}

/// The decoded case's checks: never a panic, never past a limit.
pub fn extract_headers(data: &[u8]) {
    HeaderCase::decode(data).check();
}

/// How librdkafka reads a header name back: up to its first NUL.
fn read_back(name: &[u8]) -> &[u8] {
    name.split(|b| *b == 0).next().unwrap_or_default()
}

/// `RecordHeaders` shows the headers written, in order, but those whose
/// name is not UTF-8; `get` is the last of a name.
fn check_headers_view(headers: RecordHeaders<'_>, written: &[(Vec<u8>, Option<Vec<u8>>)]) {
    assert_eq!(headers.len(), written.len());
    let expected: Vec<(&str, Option<&[u8]>)> = written
        .iter()
        .filter_map(|(n, v)| Some((std::str::from_utf8(read_back(n)).ok()?, v.as_deref())))
        .collect();
    let seen: Vec<(&str, Option<&[u8]>)> = headers.iter().collect();
    assert_eq!(seen, expected);
    for (i, (name, value)) in written.iter().enumerate() {
        let name = std::str::from_utf8(read_back(name));
        let at = headers.get_at(i);
        assert_eq!(at, name.ok().map(|n| (n, value.as_deref())));
    }
    let mut last: HashMap<&str, Option<&[u8]>> = HashMap::new();
    for (name, value) in &expected {
        last.insert(name, *value);
    }
    for name in NAMES {
        assert_eq!(
            headers.get(name),
            last.get(name).copied().flatten(),
            "{name}"
        );
    }
}

/// What any extraction may yield: a remote span context with only the
/// sampled flag, a `tracestate` and `baggage` within their limits.
fn check_bounds(cx: &Context) {
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        check_span_context(sc);
    } else {
        assert_eq!(sc.trace_state(), &TraceState::default());
    }
    let baggage = cx.baggage();
    assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS, "{}", baggage.len());
    let bytes: usize = baggage
        .iter()
        .map(|(k, (v, m))| k.as_str().len() + v.as_str().len() + m.as_str().len())
        .sum();
    assert!(bytes <= MAX_BAGGAGE_BYTES, "{bytes} bytes of baggage");
}

fn check_span_context(sc: &SpanContext) {
    assert!(sc.is_remote());
    assert_eq!(
        sc.trace_flags() & !TraceFlags::SAMPLED,
        TraceFlags::default()
    );
    let trace_state = sc.trace_state().header();
    assert!(trace_state.len() <= MAX_TRACESTATE_CHARS, "{trace_state}");
    assert!(entries(sc.trace_state()).len() <= MAX_TRACESTATE_MEMBERS);
}

fn entries(trace_state: &TraceState) -> Vec<(String, String)> {
    let header = trace_state.header();
    header
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The W3C Trace Context rules for `traceparent`, written out plainly.
pub fn reference_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &[u8]| s.iter().all(|c| *c == b'0');
    if b.len() < 55
        || !hex(&b[0..2])
        || b[2] != b'-'
        || !hex(&b[3..35])
        || b[35] != b'-'
        || !hex(&b[36..52])
        || b[52] != b'-'
        || !hex(&b[53..55])
        || zero(&b[3..35])
        || zero(&b[36..52])
    {
        return false;
    }
    match &b[0..2] {
        b"ff" => false,
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b[55] == b'-',
    }
}

static INSTALL: Once = Once::new();

/// Installs, once, a global propagation of every format.
pub fn install_every_format() {
    INSTALL.call_once(|| {
        Propagation::new([
            Format::TraceContext,
            Format::Baggage,
            Format::B3,
            Format::B3Multi,
        ])
        .install();
    });
}

/// A payload shape a handler might ask for.
#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
    #[serde(default)]
    pub lines: Vec<Line>,
    pub note: Option<String>,
    pub status: Status,
}

#[derive(Debug, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: i32,
    pub price: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Paid { at: i64 },
    Refunded(u32),
}

/// Every payload extractor, the key and the metadata on a record made of
/// the case's bytes: each fails as `deserialization` or succeeds, as its
/// documentation says, and never panics.
pub fn payload_extractors(data: &[u8]) {
    let mut input = Input(data);
    let shape = input.byte();
    let key_byte = input.byte();
    let key_len = usize::from(key_byte);
    let key = (shape & 0x01 != 0).then(|| input.bytes(key_len));
    let mut headers = OwnedHeaders::new();
    let mut names = Vec::new();
    for _ in 0..(shape >> 4) % 4 {
        let name = name(&mut input);
        let len = usize::from(input.byte() % 16);
        let value = (shape & 0x08 == 0).then(|| input.bytes(len));
        headers = with_raw_header(headers, &name, value);
        names.push(name);
    }
    let payload = (shape & 0x02 == 0).then(|| input.rest());
    let mut record = Record::new("fuzz", i32::from(shape), -1, key, payload, Some(&headers));
    if shape & 0x04 != 0 {
        record = record.with_timestamp(i64::from(key_byte) - 128);
    }
    let record = &record;

    let text = payload.map(std::str::from_utf8);
    let failed = |error: HandlerError| {
        assert_eq!(error.kind(), ErrorKind::Deserialization, "{error:?}");
    };
    check(<&[u8]>::from_record(record), payload, failed);
    assert_eq!(<Option<&[u8]>>::from_record(record).ok(), Some(payload));
    let expected = text.and_then(Result::ok);
    check(<&str>::from_record(record), expected, failed);
    check(
        String::from_record(record),
        expected.map(str::to_owned),
        failed,
    );
    match <Option<&str>>::from_record(record) {
        Ok(got) => assert_eq!(got, expected),
        Err(error) => {
            assert!(matches!(text, Some(Err(_))));
            failed(error);
        }
    }
    match <Option<String>>::from_record(record) {
        Ok(got) => assert_eq!(got.as_deref(), expected),
        Err(error) => failed(error),
    }

    let json = payload.and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
    check(
        Json::<serde_json::Value>::from_record(record).map(Json::into_inner),
        json.clone(),
        failed,
    );
    match <Option<Json<serde_json::Value>>>::from_record(record) {
        Ok(got) => {
            assert_eq!(got.map(Json::into_inner), json);
            assert!(payload.is_none() || json.is_some());
        }
        Err(error) => failed(error),
    }
    for result in [
        Json::<Order>::from_record(record).map(drop),
        <Option<Json<Vec<Order>>>>::from_record(record).map(drop),
        Json::<HashMap<String, i64>>::from_record(record).map(drop),
        Json::<(u8, i128, char, bool)>::from_record(record).map(drop),
        Json::<Status>::from_record(record).map(drop),
    ] {
        if let Err(error) = result {
            failed(error);
        }
    }

    let got = Key::from_record(record).expect("a key");
    assert_eq!(got, Key(key));
    assert_eq!(got.as_str(), key.and_then(|k| std::str::from_utf8(k).ok()));
    let meta = <&RecordMeta>::from_record(record).expect("the metadata");
    assert_eq!(meta.topic(), "fuzz");
    assert_eq!(meta.partition(), i32::from(shape));
    assert_eq!(meta.offset(), -1);
    assert_eq!(meta.key(), key);
    assert_eq!(meta.timestamp(), record.timestamp());
    let utf8_names = names
        .iter()
        .filter(|n| std::str::from_utf8(read_back(n)).is_ok())
        .count();
    assert_eq!(meta.headers().len(), utf8_names);
    let view = RecordHeaders::from_record(record).expect("the headers");
    assert_eq!(view.len(), names.len());
    let same = <&Record<'_>>::from_record(record).expect("the record");
    assert_eq!(same.payload(), payload);
    // Not a consumer's record: no producer, a transient failure.
    let Err(error) = <&TracedProducer>::from_record(record) else {
        panic!("a producer for a record made by hand");
    };
    assert!(!error.is_permanent());
}

/// `result` is `Ok(expected)` when there is an expected value, or an error
/// `failed` accepts.
fn check<T: PartialEq + std::fmt::Debug>(
    result: Result<T, HandlerError>,
    expected: Option<T>,
    failed: impl Fn(HandlerError),
) {
    match (result, expected) {
        (Ok(got), Some(expected)) => assert_eq!(got, expected),
        (Err(error), None) => failed(error),
        (result, expected) => panic!("{result:?}, expected {expected:?}"),
    }
}
