//! Reading trace context out of record headers, and choosing the formats it
//! is read and written in.
//!
//! # Formats
//!
//! [`Propagation`] is an ordered list of [`Format`]s, configured in code or
//! from the standard `OTEL_PROPAGATORS` variable ([`Propagation::from_env`]),
//! and installed as the global text-map propagator
//! ([`Propagation::install`]), which the consumer reads every record's
//! headers through and producers write through. The default is
//! `tracecontext,baggage`.
//!
//! | name | headers | carries |
//! |---|---|---|
//! | `tracecontext` | `traceparent`, `tracestate` | the span context (W3C Trace Context) |
//! | `baggage` | `baggage` | baggage (W3C Baggage) |
//! | `b3` | `b3` | the span context (B3 single header) |
//! | `b3multi` | `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled` | the span context (B3 multiple headers) |
//! | `none` | | nothing: no propagation |
//!
//! # Extraction: the first valid span context wins
//!
//! The trace-context formats (`tracecontext`, `b3`, `b3multi`) are tried in
//! the configured order, and the **first one that yields a valid span
//! context wins**: later formats are not consulted for the span context,
//! even when their headers are present and valid. A format whose headers are
//! absent, malformed or over a limit yields nothing, and the next one is
//! tried. When none yields one, the record starts a new trace. So with
//! `b3,tracecontext` a record carrying both a valid `b3` and a valid
//! `traceparent` continues the B3 trace; with an invalid `b3` it continues
//! the `traceparent`'s; with `tracecontext` alone a `b3` header is ignored,
//! and with `b3` alone a `traceparent` is. (OpenTelemetry's own
//! `TextMapCompositePropagator` differs: each later propagator overwrites
//! the span context of an earlier one.)
//!
//! `baggage`, when configured, is extracted whatever the span context's
//! format, and added to the resulting context.
//!
//! Injection writes **every** configured format, in order; the propagator's
//! `fields()` are the union of the formats' header names (`b3multi` adds
//! `x-b3-flags`, which it never writes: debug is sent as sampled). B3 is
//! written in lower case, as OpenTelemetry's Rust, Go, Python and JavaScript
//! SDKs write it, never with `x-b3-parentspanid`, and not at all for a
//! context without a valid span (no bare `b3: 0`).
//!
//! # What each format accepts
//!
//! Every header is read through [`HeaderExtractor`]: the last header of a
//! name decides, and a value that is null, not UTF-8 or longer than
//! [`MAX_TRACE_HEADER_BYTES`] reads as absent.
//!
//! - `tracecontext`: a `traceparent` that passes [`is_valid_traceparent`].
//!   The sampled flag is kept and every other flag bit cleared, so flags
//!   `00` continue the trace unsampled, `01` and `03` sampled. Flag bits
//!   other than `sampled` (`01`) and `random` (`02`) are not an error: the
//!   trace continues with them dropped (`09` continues it sampled, `fe`
//!   unsampled), as the OpenTelemetry Java, Go and JavaScript propagators
//!   read them. A `tracestate` that is not a valid W3C list is dropped as a
//!   whole (the trace still continues); a valid one is kept in order,
//!   within the limits below.
//! - `b3` and `b3multi` extract alike (the OpenTelemetry B3 rule: both read
//!   the single header first, then the multiple headers) and differ only in
//!   what they write. A single header is
//!   `{trace id}-{span id}[-{sampling}[-{parent span id}]]`; the multiple
//!   headers are read as `x-b3-traceid` and so on, or, when that name is
//!   absent, as `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`,
//!   `X-B3-ParentSpanId`, `X-B3-Flags` (Kafka header names are
//!   case-sensitive, and OpenTelemetry Java and Brave write these). Ids are
//!   lower-case hex, not all zero: a trace id of 16 digits is left-padded
//!   with zeros to 32, a span id has 16. Sampling `1` (or `true` in
//!   `X-B3-Sampled`) continues the trace sampled; `d` (single header) or
//!   `X-B3-Flags: 1` (debug) also continues it sampled (debug implies
//!   accept); `0` (or `false`) continues it unsampled; no sampling state
//!   (deferred) continues it with the sampled flag unset, as OpenTelemetry
//!   Java and Go read it, so a parent-based sampler does not record it. A
//!   single header of a sampling state alone (`b3: 0`, `b3: 1`, `b3: d`)
//!   carries no ids: nothing is continued, and the record starts a new trace
//!   that the local sampler decides on (an OpenTelemetry span context cannot
//!   carry a decision without ids). Anything else, including a `+` sign,
//!   upper-case digits, a trailing `-`, or ids of other lengths, reads as
//!   absent.
//! - `baggage`: list members `key=value;property...`, percent-decoded, as
//!   OpenTelemetry's `BaggagePropagator` reads them, within the limits
//!   below.
//!
//! # Limits
//!
//! - Any trace header longer than [`MAX_TRACE_HEADER_BYTES`] (8 KiB) is
//!   ignored, not parsed.
//! - `tracestate`: at most [`MAX_TRACESTATE_MEMBERS`] (32) list members, the
//!   first ones (OpenTelemetry's parser drops the rest). When the list,
//!   written out (`key=value` entries joined by commas), is longer than
//!   [`MAX_TRACESTATE_CHARS`] (512), whole entries are dropped until it
//!   fits, as W3C Trace Context says: first entries longer than 128
//!   characters (the rightmost first), then entries from the end of the
//!   list. The rest keep their order.
//! - `baggage`: at most [`MAX_BAGGAGE_MEMBERS`] (64) list members, the first
//!   ones, and at most [`MAX_BAGGAGE_BYTES`] (8192) bytes: a longer header
//!   is ignored as a whole. These are W3C Baggage's limits, which
//!   OpenTelemetry's `BaggagePropagator` applies.

use std::fmt;
use std::str::FromStr;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{global, Context};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::record::RecordHeaders;

/// Header values longer than this are ignored, not parsed. A W3C
/// `traceparent` is 55 bytes and a `tracestate` at most 32 members of
/// 256 characters; 8 KiB covers every honest trace header with room to spare
/// and keeps a hostile header from costing more than a length check.
pub const MAX_TRACE_HEADER_BYTES: usize = 8 * 1024;

/// The most `tracestate` list members kept (W3C Trace Context).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A `tracestate` entry longer than this (in characters of `key=value`) is
/// the first to go when the list is over [`MAX_TRACESTATE_CHARS`] (W3C).
const LONG_TRACESTATE_ENTRY: usize = 128;

/// The longest `tracestate` kept, in characters of its `key=value,...`
/// form: W3C asks to propagate at least this much; beyond it whole entries
/// are dropped, first those longer than 128 characters, then from the end
/// of the list.
pub const MAX_TRACESTATE_CHARS: usize = 512;

/// The most `baggage` list members kept (W3C Baggage); later ones are
/// dropped.
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// The longest `baggage` header read (W3C Baggage); a longer one is ignored
/// as a whole.
pub const MAX_BAGGAGE_BYTES: usize = 8192;

/// The variable [`Propagation::from_env`] reads.
pub const PROPAGATORS_ENV: &str = "OTEL_PROPAGATORS";

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// What the `b3` format writes.
const B3_SINGLE_FIELDS: [&str; 1] = ["b3"];
/// What the `b3multi` format writes (never `x-b3-parentspanid`, as the
/// OpenTelemetry B3 rules say).
const B3_MULTI_FIELDS: [&str; 4] = ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"];

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
        readable(key, self.0.get(key)?)
    }

    fn keys(&self) -> Vec<&str> {
        header_names(self.0)
    }
}

/// The value of the last header named `key`, as [`HeaderExtractor`] reads
/// it: absent when it is over [`MAX_TRACE_HEADER_BYTES`], not UTF-8, or an
/// invalid `traceparent`.
fn readable<'a>(key: &str, value: &'a [u8]) -> Option<&'a str> {
    if value.len() > MAX_TRACE_HEADER_BYTES {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    if key == TRACEPARENT && !is_valid_traceparent(value) {
        return None;
    }
    Some(value)
}

/// The W3C headers every record is asked for, found in one pass.
const SCANNED: [&str; 3] = [TRACEPARENT, TRACESTATE, "baggage"];

/// [`HeaderExtractor`]'s answers from one pass over the headers: the
/// propagators ask for `traceparent`, `tracestate` and `baggage` on every
/// record, and each lookup would walk the headers again. Other names are
/// looked up as [`HeaderExtractor`] does.
struct ScannedHeaders<'a> {
    headers: RecordHeaders<'a>,
    /// The value of the last header of each name in [`SCANNED`] (`None`
    /// inside when it is null).
    last: [Option<Option<&'a [u8]>>; 3],
}

impl<'a> ScannedHeaders<'a> {
    fn scan(headers: RecordHeaders<'a>) -> Self {
        let mut last = [None; 3];
        for (key, value) in headers.iter() {
            if let Some(index) = SCANNED.iter().position(|name| *name == key) {
                last[index] = Some(value);
            }
        }
        Self { headers, last }
    }
}

impl Extractor for ScannedHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match SCANNED.iter().position(|name| *name == key) {
            Some(index) => self.last[index]??,
            None => self.headers.get(key)?,
        };
        readable(key, value)
    }

    fn keys(&self) -> Vec<&str> {
        header_names(self.headers)
    }
}

/// Every header name of `headers`, sorted, once each.
fn header_names(headers: RecordHeaders<'_>) -> Vec<&str> {
    let mut keys: Vec<&str> = headers.iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
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
    let headers = ScannedHeaders::scan(headers);
    global::get_text_map_propagator(|propagator| {
        propagator.extract_with_context(&Context::new(), &headers)
    })
}

/// One propagation format, named as in `OTEL_PROPAGATORS`. See the
/// [module documentation](self) for what each reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `tracecontext`: W3C Trace Context, `traceparent` and `tracestate`.
    TraceContext,
    /// `baggage`: W3C Baggage, `baggage`.
    Baggage,
    /// `b3`: B3, written as the single header `b3`.
    B3,
    /// `b3multi`: B3, written as the multiple `x-b3-*` headers.
    B3Multi,
}

impl Format {
    /// Every format, in the order the names are listed in errors.
    pub const ALL: [Format; 4] = [
        Format::TraceContext,
        Format::Baggage,
        Format::B3,
        Format::B3Multi,
    ];

    /// The format's name in `OTEL_PROPAGATORS`.
    pub fn name(self) -> &'static str {
        match self {
            Format::TraceContext => "tracecontext",
            Format::Baggage => "baggage",
            Format::B3 => "b3",
            Format::B3Multi => "b3multi",
        }
    }

    /// Whether the format carries a span context (every format but
    /// `baggage`): these take part in the first-valid-wins rule.
    pub fn carries_span_context(self) -> bool {
        !matches!(self, Format::Baggage)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = PropagationError;

    /// A format by name, ignoring ASCII case and surrounding whitespace.
    /// `none` is not a format: see [`Propagation::none`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let trimmed = name.trim();
        Format::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| PropagationError::unknown(trimmed))
    }
}

/// Which formats trace context is read from and written in: an ordered list
/// of [`Format`]s, without duplicates; empty means no propagation (`none`).
///
/// The default is `tracecontext,baggage`, OpenTelemetry's. The order decides
/// extraction: the first trace-context format that yields a valid span
/// context wins (see the [module documentation](self)).
///
/// ```
/// use kafka_handler::propagation::{Format, Propagation};
///
/// // What OTEL_PROPAGATORS says, or the default when it is unset or empty.
/// let propagation = Propagation::from_env()?;
/// propagation.install();
///
/// // Or in code: read B3 first, then W3C; write both, and baggage.
/// let propagation = Propagation::new([Format::B3, Format::TraceContext, Format::Baggage]);
/// assert_eq!(propagation.to_string(), "b3,tracecontext,baggage");
/// assert_eq!("B3, tracecontext ,baggage".parse::<Propagation>()?, propagation);
/// # Ok::<(), kafka_handler::propagation::PropagationError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Propagation {
    formats: Vec<Format>,
}

impl Default for Propagation {
    /// `tracecontext,baggage`.
    fn default() -> Self {
        Self::new([Format::TraceContext, Format::Baggage])
    }
}

impl Propagation {
    /// `formats` in order; a format listed twice counts where it is first
    /// listed.
    pub fn new(formats: impl IntoIterator<Item = Format>) -> Self {
        let mut unique: Vec<Format> = Vec::new();
        for format in formats {
            if !unique.contains(&format) {
                unique.push(format);
            }
        }
        Self { formats: unique }
    }

    /// No propagation (`OTEL_PROPAGATORS=none`): nothing is extracted, so
    /// every record starts a new trace, and nothing is injected.
    pub fn none() -> Self {
        Self {
            formats: Vec::new(),
        }
    }

    /// The formats, in order.
    pub fn formats(&self) -> &[Format] {
        &self.formats
    }

    /// Whether there is no format (`none`).
    pub fn is_none(&self) -> bool {
        self.formats.is_empty()
    }

    /// The propagation `OTEL_PROPAGATORS` names, as [`Propagation::parse`]
    /// reads it; the [default](Propagation::default) when the variable is
    /// unset or empty.
    ///
    /// An unknown name is an error that names the valid ones, as is a value
    /// that is not UTF-8. (The OpenTelemetry specification lets an SDK warn
    /// and ignore an unknown value instead; a consumer that silently cannot
    /// read its producers' format would break every trace, so this fails.)
    pub fn from_env() -> Result<Self, PropagationError> {
        match std::env::var(PROPAGATORS_ENV) {
            Ok(value) => Self::parse(&value).map_err(PropagationError::in_env),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(PropagationError {
                kind: ErrorKind::NotUnicode,
                in_env: true,
            }),
        }
    }

    /// Reads an `OTEL_PROPAGATORS` value: format names separated by commas,
    /// in order, following the OpenTelemetry rules for the variable.
    ///
    /// - An empty value (or only whitespace) means the default.
    /// - Names ignore ASCII case and surrounding whitespace; empty items
    ///   (`a,,b`, a trailing comma) are skipped.
    /// - A name listed twice counts where it is first listed.
    /// - `none` means no propagation; listed beside a format it is an error.
    /// - Any other name is an error naming the valid ones; so are the names
    ///   OpenTelemetry knows but this crate does not implement (`jaeger`,
    ///   `xray`, `ottrace`).
    pub fn parse(value: &str) -> Result<Self, PropagationError> {
        if value.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut formats = Vec::new();
        let mut none = false;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.eq_ignore_ascii_case("none") {
                none = true;
            } else {
                formats.push(name.parse::<Format>()?);
            }
        }
        if none && !formats.is_empty() {
            return Err(PropagationError {
                kind: ErrorKind::NoneWithOthers,
                in_env: false,
            });
        }
        Ok(Self::new(formats))
    }

    /// The text-map propagator for these formats.
    pub fn propagator(&self) -> CompositePropagator {
        CompositePropagator::new(self.formats.clone())
    }

    /// Installs [`Self::propagator`] as the global text-map propagator
    /// (`opentelemetry::global::set_text_map_propagator`), which consumers
    /// extract through and producers inject through. Install it before
    /// starting consumers; it replaces whatever was installed.
    pub fn install(&self) {
        global::set_text_map_propagator(self.propagator());
    }
}

impl FromIterator<Format> for Propagation {
    fn from_iter<I: IntoIterator<Item = Format>>(formats: I) -> Self {
        Self::new(formats)
    }
}

impl FromStr for Propagation {
    type Err = PropagationError;

    /// As [`Propagation::parse`].
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for Propagation {
    /// The `OTEL_PROPAGATORS` value: `tracecontext,baggage`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.formats.is_empty() {
            return f.write_str("none");
        }
        for (i, format) in self.formats.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(format.name())?;
        }
        Ok(())
    }
}

/// A propagation setting that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropagationError {
    kind: ErrorKind,
    /// Whether the value came from `OTEL_PROPAGATORS`.
    in_env: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ErrorKind {
    Unknown(String),
    NoneWithOthers,
    NotUnicode,
}

impl PropagationError {
    fn unknown(name: &str) -> Self {
        Self {
            kind: ErrorKind::Unknown(name.to_owned()),
            in_env: false,
        }
    }

    fn in_env(mut self) -> Self {
        self.in_env = true;
        self
    }

    /// The unknown name, when that is what went wrong.
    pub fn unknown_name(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Unknown(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for PropagationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_env {
            write!(f, "{PROPAGATORS_ENV}: ")?;
        }
        match &self.kind {
            ErrorKind::Unknown(name) => {
                let unsupported = ["jaeger", "xray", "ottrace"]
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(name));
                if unsupported {
                    write!(f, "propagator {name:?} is not supported by kafka-handler")?;
                } else {
                    write!(f, "unknown propagator {name:?}")?;
                }
                f.write_str("; valid names: tracecontext, baggage, b3, b3multi, none")
            }
            ErrorKind::NoneWithOthers => {
                f.write_str("\"none\" cannot be combined with other propagators")
            }
            ErrorKind::NotUnicode => f.write_str("the value is not valid UTF-8"),
        }
    }
}

impl std::error::Error for PropagationError {}

/// The text-map propagator of a [`Propagation`]: extraction takes the span
/// context from the first trace-context format that yields a valid one and
/// baggage from `baggage`; injection writes every format. See the
/// [module documentation](self) for the rules and limits.
#[derive(Clone, Debug)]
pub struct CompositePropagator {
    formats: Box<[Format]>,
    fields: Box<[String]>,
    /// Extracts both B3 encodings (single header first); `d` is accepted
    /// only by an instance whose encoding includes the single header.
    b3_extract: B3Propagator,
    b3_single: B3Propagator,
    b3_multi: B3Propagator,
}

impl CompositePropagator {
    fn new(formats: Vec<Format>) -> Self {
        let b3_single = B3Propagator::with_encoding(B3Encoding::SingleHeader);
        let b3_multi = B3Propagator::with_encoding(B3Encoding::MultipleHeader);
        let mut fields: Vec<String> = Vec::new();
        for format in &formats {
            let names: Vec<String> = match format {
                Format::TraceContext => TraceContextPropagator::new()
                    .fields()
                    .map(str::to_owned)
                    .collect(),
                Format::Baggage => BaggagePropagator::new()
                    .fields()
                    .map(str::to_owned)
                    .collect(),
                Format::B3 => B3_SINGLE_FIELDS.map(str::to_owned).to_vec(),
                Format::B3Multi => B3_MULTI_FIELDS.map(str::to_owned).to_vec(),
            };
            for name in names {
                if !fields.contains(&name) {
                    fields.push(name);
                }
            }
        }
        Self {
            formats: formats.into_boxed_slice(),
            fields: fields.into_boxed_slice(),
            b3_extract: B3Propagator::with_encoding(B3Encoding::SingleAndMultiHeader),
            b3_single,
            b3_multi,
        }
    }

    /// The formats, in order.
    pub fn formats(&self) -> &[Format] {
        &self.formats
    }

    /// The span context `format` yields from `extractor`, when valid.
    fn span_context(&self, format: Format, extractor: &dyn Extractor) -> Option<SpanContext> {
        match format {
            Format::TraceContext => extract_trace_context(extractor),
            Format::B3 | Format::B3Multi => {
                let headers = B3Headers(extractor);
                // Without a valid single header or trace id there is nothing
                // to parse: skip the propagator's allocations.
                if headers.get("b3").is_none() && headers.get("x-b3-traceid").is_none() {
                    return None;
                }
                let cx = self
                    .b3_extract
                    .extract_with_context(&Context::new(), &headers);
                let span = cx.span();
                let extracted = span.span_context();
                extracted.is_valid().then(|| w3c_flags(extracted))
            }
            Format::Baggage => None,
        }
    }
}

impl TextMapPropagator for CompositePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        for format in self.formats.iter() {
            match format {
                Format::TraceContext => TraceContextPropagator::new().inject_context(cx, injector),
                Format::Baggage => BaggagePropagator::new().inject_context(cx, injector),
                Format::B3 => inject_b3(&self.b3_single, &B3_SINGLE_FIELDS, cx, injector),
                Format::B3Multi => inject_b3(&self.b3_multi, &B3_MULTI_FIELDS, cx, injector),
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let span_context = self
            .formats
            .iter()
            .filter(|format| format.carries_span_context())
            .find_map(|format| self.span_context(*format, extractor));
        let cx = match span_context {
            Some(span_context) => cx.with_remote_span_context(span_context),
            None => cx.clone(),
        };
        if self.formats.contains(&Format::Baggage) {
            // The SDK's propagator applies the baggage bounds itself.
            BaggagePropagator::new().extract_with_context(&cx, extractor)
        } else {
            cx
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// The W3C span context in `extractor`, when its `traceparent` is valid,
/// with its `tracestate` within the limits.
fn extract_trace_context(extractor: &dyn Extractor) -> Option<SpanContext> {
    // Checked here too, so the rule holds for every carrier, not only
    // `HeaderExtractor`.
    let (trace_id, span_id, flags) = parse_traceparent(extractor.get(TRACEPARENT)?)?;
    let (trace_id, span_id) = (TraceId::from(trace_id), SpanId::from(span_id));
    let trace_state = extractor
        .get(TRACESTATE)
        .map(bounded_trace_state)
        .unwrap_or_default();
    let span_context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        trace_state,
    );
    span_context.is_valid().then_some(span_context)
}

/// `header` as a `TraceState` within [`MAX_TRACESTATE_MEMBERS`] and
/// [`MAX_TRACESTATE_CHARS`]; empty when it is not a valid W3C list.
fn bounded_trace_state(header: &str) -> TraceState {
    // The SDK keeps the first 32 members and rejects the whole list when a
    // member is invalid.
    let Ok(trace_state) = header.parse::<TraceState>() else {
        return TraceState::default();
    };
    if header.len() <= MAX_TRACESTATE_CHARS {
        // What is kept is never longer than the header it came from.
        return trace_state;
    }
    // Each entry with its length as `key=value`.
    let entries: Vec<(&str, &str, usize)> = trace_state
        .into_iter()
        .map(|(k, v)| (k, v, k.len() + 1 + v.len()))
        .collect();
    // Written out: the entries and a comma between each two.
    let mut length = entries.iter().map(|e| e.2).sum::<usize>() + entries.len().saturating_sub(1);
    // W3C: first the entries longer than 128 characters (here the rightmost
    // first), then entries from the end of the list.
    let long = (0..entries.len())
        .rev()
        .filter(|&i| entries[i].2 > LONG_TRACESTATE_ENTRY);
    let from_end = (0..entries.len()).rev();
    let mut dropped = vec![false; entries.len()];
    for index in long.chain(from_end) {
        if length <= MAX_TRACESTATE_CHARS {
            break;
        }
        if !std::mem::replace(&mut dropped[index], true) {
            // The entry, and the comma before or after it (none for the last).
            length = length.saturating_sub(entries[index].2 + 1);
        }
    }
    let kept = entries
        .into_iter()
        .zip(dropped)
        .filter(|(_, dropped)| !dropped)
        .map(|((k, v, _), _)| (k, v));
    TraceState::from_key_value(kept).unwrap_or_default()
}

/// `span_context` with W3C trace flags: the B3 propagator marks debug
/// (`0x04`) and deferred (`0x02`, W3C's `random` bit) in flag bits of its
/// own. Debug implies sampled; both bits are cleared.
fn w3c_flags(span_context: &SpanContext) -> SpanContext {
    const DEBUG: TraceFlags = TraceFlags::new(0x04);
    let flags = span_context.trace_flags();
    let sampled = flags.is_sampled() || flags & DEBUG == DEBUG;
    SpanContext::new(
        span_context.trace_id(),
        span_context.span_id(),
        TraceFlags::default().with_sampled(sampled),
        true,
        span_context.trace_state().clone(),
    )
}

/// Injects `cx`'s span context with a B3 propagator: nothing for an invalid
/// one (the crate would write a bare `0`, which B3 reads as "do not
/// sample"), only the sampled bit of its flags (the crate reads other bits
/// as B3's deferred and debug states), and only the headers of the
/// propagator's own encoding (the crate's single-header encoding writes the
/// multiple headers too).
fn inject_b3(
    propagator: &B3Propagator,
    fields: &[&str],
    cx: &Context,
    injector: &mut dyn Injector,
) {
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    let mut own = OwnFields { fields, injector };
    let flags = span_context.trace_flags();
    if flags & TraceFlags::SAMPLED == flags {
        propagator.inject_context(cx, &mut own);
    } else {
        let sampled_only = SpanContext::new(
            span_context.trace_id(),
            span_context.span_id(),
            flags & TraceFlags::SAMPLED,
            span_context.is_remote(),
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sampled_only);
        propagator.inject_context(&cx, &mut own);
    }
}

/// An injector that passes on only the headers in `fields`.
struct OwnFields<'a, 'b> {
    fields: &'a [&'a str],
    injector: &'b mut dyn Injector,
}

impl Injector for OwnFields<'_, '_> {
    fn set(&mut self, key: &str, value: String) {
        if self.fields.contains(&key) {
            self.injector.set(key, value);
        }
    }
}

/// B3 headers as the B3 propagator asks for them (`b3`, `x-b3-*`), read
/// strictly: a value that breaks the B3 rules reads as absent (the crate
/// parses ids with `from_str_radix`, which accepts a `+`, and splits the
/// single header leniently). Multiple-header names are also read in their
/// `X-B3-*` spelling, and `true`/`false` in `X-B3-Sampled` as `1`/`0`.
struct B3Headers<'a>(&'a dyn Extractor);

impl B3Headers<'_> {
    fn multi(&self, key: &str, spelling: &str) -> Option<&str> {
        self.0.get(key).or_else(|| self.0.get(spelling))
    }
}

impl Extractor for B3Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "b3" => self.0.get(key).filter(|v| is_valid_b3_single(v)),
            "x-b3-traceid" => self
                .multi(key, "X-B3-TraceId")
                .filter(|v| is_b3_trace_id(v.as_bytes())),
            "x-b3-spanid" => self
                .multi(key, "X-B3-SpanId")
                .filter(|v| is_b3_span_id(v.as_bytes())),
            "x-b3-parentspanid" => self
                .multi(key, "X-B3-ParentSpanId")
                .filter(|v| is_b3_span_id(v.as_bytes())),
            // Any other value is passed on as one the propagator rejects: a
            // bad sampling state invalidates the headers.
            "x-b3-sampled" => self.multi(key, "X-B3-Sampled").map(|v| match v {
                "1" | "true" => "1",
                "0" | "false" => "0",
                _ => "invalid",
            }),
            "x-b3-flags" => self.multi(key, "X-B3-Flags").filter(|v| *v == "1"),
            _ => self.0.get(key),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}

/// Whether `value` is a B3 single header carrying ids:
/// `{trace id}-{span id}[-{0|1|d}[-{parent span id}]]`.
fn is_valid_b3_single(value: &str) -> bool {
    let mut parts = value.split('-');
    let (Some(trace_id), Some(span_id)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_b3_trace_id(trace_id.as_bytes()) || !is_b3_span_id(span_id.as_bytes()) {
        return false;
    }
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => true,
        (Some(sampling), parent, None) => {
            matches!(sampling, "0" | "1" | "d")
                && parent.is_none_or(|parent| is_b3_span_id(parent.as_bytes()))
        }
        _ => false,
    }
}

fn is_b3_trace_id(id: &[u8]) -> bool {
    (id.len() == 16 || id.len() == 32) && lower_hex_id(id) == Some(true)
}

fn is_b3_span_id(id: &[u8]) -> bool {
    id.len() == 16 && lower_hex_id(id) == Some(true)
}

/// Whether `value` is a `traceparent` the W3C Trace Context rules accept.
///
/// Version `00`: exactly `00-{32 hex}-{16 hex}-{2 hex}`, lower-case, ids not
/// all zero. Any flags are valid: bits other than `sampled` (`01`) and
/// `random` (`02`) are dropped when the trace is continued, not rejected, as
/// the OpenTelemetry Java, Go and JavaScript propagators do. A later version
/// (`01` to `fe`) must start with the same shape and may only continue after
/// a `-`. Version `ff` is invalid.
pub fn is_valid_traceparent(value: &str) -> bool {
    parse_traceparent(value).is_some()
}

/// A `traceparent` the W3C rules accept (see [`is_valid_traceparent`]), in
/// one pass: its trace id, span id and flags, every bit as sent (the
/// caller keeps the ones it knows).
fn parse_traceparent(value: &str) -> Option<(u128, u64, u8)> {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let version = hex_byte(&bytes[0..2])?;
    let flags = hex_byte(&bytes[53..55])?;
    let trace_id = hex_id(&bytes[3..35])?;
    let span_id = hex_id(&bytes[36..52])?;
    let valid = trace_id != 0
        && span_id != 0
        && match version {
            0x00 => bytes.len() == 55,
            0xff => false,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
    valid.then_some((trace_id, span_id as u64, flags))
}

/// The value of up to 32 lower-case hex digits; `None` when a byte is not
/// one. Without early exits: a well-formed id is the common case.
fn hex_id(digits: &[u8]) -> Option<u128> {
    let mut value = 0u128;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = HEX[usize::from(digit)];
        invalid |= nibble;
        value = value << 4 | u128::from(nibble & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(value)
}

/// Each byte's value as a lower-case hex digit, or `0xff`.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

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
    hex_id(pair).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_ids_decode_as_the_sdk_decodes_them() {
        use opentelemetry::trace::{SpanId, TraceId};
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..1_000 {
            let (trace, span) = (u128::from(next()) << 64 | u128::from(next()), next() | 1);
            let flags = (next() % 4) as u8;
            let header = format!("00-{trace:032x}-{span:016x}-{flags:02x}");
            let parsed = super::parse_traceparent(&header).expect("valid");
            assert_eq!(
                TraceId::from(parsed.0),
                TraceId::from_hex(&header[3..35]).unwrap()
            );
            assert_eq!(
                SpanId::from(parsed.1),
                SpanId::from_hex(&header[36..52]).unwrap()
            );
            assert_eq!(parsed.2, flags);
            // Any upper-case digit makes it invalid.
            let upper = header.replacen(|c: char| c.is_ascii_lowercase() && c != 'x', "A", 1);
            if upper != header {
                assert!(super::parse_traceparent(&upper).is_none(), "{upper}");
            }
        }
    }

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
    fn unknown_flag_bits_are_kept_for_the_caller_to_drop() {
        // Every flags byte is valid; `extract_trace_context` keeps `sampled`.
        for flags in 0..=0xffu8 {
            let value = format!("{}{flags:02x}", &VALID[..53]);
            let parsed = super::parse_traceparent(&value).expect(&value);
            assert_eq!(parsed.2, flags, "{value}");
        }
        // Upper-case flags are still not hex.
        assert!(!is_valid_traceparent(&format!("{}0A", &VALID[..53])));
        assert!(!is_valid_traceparent(&format!("{}FF", &VALID[..53])));
    }

    /// The `tracestate` `bounded_trace_state` makes of `entries`, as keys.
    fn bounded(entries: &[String]) -> Vec<String> {
        super::bounded_trace_state(&entries.join(","))
            .header()
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(|entry| entry.split('=').next().unwrap().to_owned())
            .collect()
    }

    /// An entry `key=vvv...` of `len` characters.
    fn entry(key: &str, len: usize) -> String {
        format!("{key}={}", "v".repeat(len - key.len() - 1))
    }

    #[test]
    fn tracestate_drops_long_entries_first_then_from_the_end() {
        // 100 + 200 + 100 + 100 + 50 and 4 commas: 554.
        let entries = [
            entry("a", 100),
            entry("long", 200),
            entry("b", 100),
            entry("c", 100),
            entry("d", 50),
        ];
        assert_eq!(bounded(&entries), ["a", "b", "c", "d"]);

        // No entry over 128: from the end, even the shortest. 5 * 100 + 4 * 7
        // and 8 commas: 536; without the last three, 512.
        let mut entries: Vec<String> = (0..5).map(|i| entry(&format!("x{i}"), 100)).collect();
        entries.extend((0..4).map(|i| entry(&format!("y{i}"), 7)));
        assert_eq!(bounded(&entries), ["x0", "x1", "x2", "x3", "x4", "y0"]);

        // Only as many long entries as needed go, the rightmost first.
        let entries = [
            entry("l1", 129),
            entry("l2", 129),
            entry("s", 100),
            entry("l3", 129),
            entry("t", 100),
        ];
        assert_eq!(bounded(&entries), ["l1", "l2", "s", "t"]);

        // Exactly 128 is not long: 3 * 128 + 129 and 3 commas: 516.
        let entries = [
            entry("e0", 128),
            entry("l", 129),
            entry("e1", 128),
            entry("e2", 128),
        ];
        assert_eq!(bounded(&entries), ["e0", "e1", "e2"]);
        let mut entries: Vec<String> = (0..4).map(|i| entry(&format!("e{i}"), 128)).collect();
        entries.push(entry("f", 3));
        assert_eq!(bounded(&entries), ["e0", "e1", "e2"]);
    }

    #[test]
    fn tracestate_within_512_characters_is_kept_whole() {
        let mut exact: Vec<String> = (0..4).map(|i| entry(&format!("e{i}"), 126)).collect();
        exact.push(entry("f", 4));
        assert_eq!(exact.join(",").len(), 512);
        assert_eq!(bounded(&exact), ["e0", "e1", "e2", "e3", "f"]);
        // A single entry over 512 characters leaves nothing.
        assert!(bounded(&[entry("big", 600)]).is_empty());
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
