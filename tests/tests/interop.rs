//! Trace headers as other SDKs write them, read through the propagator of a
//! `Propagation` (not the global one: tests of one binary run in parallel).
//! Each case asserts what the specs say: whether the trace continues (trace
//! id, parent span id) and whether it is sampled.

use std::collections::HashMap;

use kafka_handler::propagation::{
    Format, HeaderExtractor, Propagation, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS,
    MAX_TRACESTATE_CHARS, MAX_TRACE_HEADER_BYTES,
};
use kafka_handler::Record;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use rdkafka::message::{Header, OwnedHeaders};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";
const B3_PARENT: &str = "05e3ac9a4f6e3b90";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{SPAN}-{flags}")
}

/// The context `propagation` extracts from a record carrying `headers`, in
/// order, through [`HeaderExtractor`] as the consumer reads them.
fn extract(propagation: &str, headers: &[(&str, &str)]) -> Context {
    let propagation: Propagation = propagation.parse().expect("a valid propagation");
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let record = Record::new("orders", 0, 0, None, None, Some(&owned));
    propagation
        .propagator()
        .extract_with_context(&Context::new(), &HeaderExtractor(record.headers()))
}

fn span_context(cx: &Context) -> SpanContext {
    cx.span().span_context().clone()
}

/// Asserts that `cx` continues trace `trace` as a child of `parent`, with the
/// sampled flag `sampled` (and no other flag bit).
#[track_caller]
fn assert_continues(cx: &Context, trace: &str, parent: &str, sampled: bool, what: &str) {
    let sc = span_context(cx);
    assert!(sc.is_valid(), "{what}: continues a trace");
    assert!(sc.is_remote(), "{what}: a remote parent");
    assert_eq!(
        sc.trace_id(),
        TraceId::from_hex(trace).unwrap(),
        "{what}: trace id"
    );
    assert_eq!(
        sc.span_id(),
        SpanId::from_hex(parent).unwrap(),
        "{what}: parent span id"
    );
    assert_eq!(
        sc.trace_flags(),
        TraceFlags::default().with_sampled(sampled),
        "{what}: flags"
    );
}

/// Asserts that `cx` carries no span context: the record starts a new trace.
#[track_caller]
fn assert_new_trace(cx: &Context, what: &str) {
    let sc = span_context(cx);
    assert!(!sc.is_valid(), "{what}: a new trace, got {sc:?}");
}

// --- W3C Trace Context ---------------------------------------------------

#[test]
fn traceparent_flags_decide_sampling_and_the_trace_continues_either_way() {
    for (flags, sampled) in [("00", false), ("01", true), ("03", true), ("02", false)] {
        let cx = extract("tracecontext", &[("traceparent", &traceparent(flags))]);
        assert_continues(&cx, TRACE, SPAN, sampled, &format!("flags {flags}"));
    }
}

#[test]
fn unknown_traceparent_flag_bits_are_dropped_and_the_trace_continues() {
    // As the OpenTelemetry Java, Go and JavaScript propagators read them:
    // only `sampled` decides, whatever else is set.
    for (flags, sampled) in [
        ("09", true),
        ("05", true),
        ("ff", true),
        ("04", false),
        ("80", false),
        ("fe", false),
    ] {
        let cx = extract("tracecontext", &[("traceparent", &traceparent(flags))]);
        assert_continues(&cx, TRACE, SPAN, sampled, &format!("flags {flags}"));
    }
    // Upper-case flags are still not W3C hex.
    let cx = extract("tracecontext", &[("traceparent", &traceparent("0F"))]);
    assert_new_trace(&cx, "upper-case flags");
}

#[test]
fn a_malformed_traceparent_starts_a_new_trace() {
    let valid = traceparent("01");
    for (why, value) in [
        ("upper case", valid.to_uppercase()),
        ("plus sign", valid.replace("-00f0", "-+0f0")),
        ("short trace id", valid.replace("4bf92f", "4bf92")),
        ("trailing data on version 00", format!("{valid}-00")),
        ("version ff", valid.replacen("00", "ff", 1)),
        ("all-zero trace id", valid.replace(TRACE, &"0".repeat(32))),
    ] {
        let cx = extract("tracecontext", &[("traceparent", &value)]);
        assert_new_trace(&cx, why);
    }
}

#[test]
fn tracestate_of_several_vendors_is_kept_in_order() {
    let tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,dd=s:1;o:rum,tenant@vendor=x";
    let cx = extract(
        "tracecontext",
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", tracestate),
        ],
    );
    assert_continues(&cx, TRACE, SPAN, true, "with tracestate");
    assert_eq!(span_context(&cx).trace_state().header(), tracestate);
}

#[test]
fn an_invalid_tracestate_is_dropped_and_the_trace_continues() {
    let cx = extract(
        "tracecontext",
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", "congo=t61rcWkgMzE,UPPER=x"),
        ],
    );
    assert_continues(&cx, TRACE, SPAN, true, "invalid tracestate");
    assert_eq!(span_context(&cx).trace_state(), &TraceState::default());
}

#[test]
fn tracestate_keeps_its_first_32_members() {
    let members: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
    let cx = extract(
        "tracecontext",
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", &members.join(",")),
        ],
    );
    let kept = span_context(&cx).trace_state().header();
    assert_eq!(kept, members[..32].join(","));
}

/// A `tracestate` entry `key=vvv...` of `len` characters.
fn entry(key: &str, len: usize) -> String {
    format!("{key}={}", "v".repeat(len - key.len() - 1))
}

/// The `tracestate` a record carrying a valid `traceparent` and `tracestate`
/// continues with.
fn kept_trace_state(tracestate: &str) -> String {
    let cx = extract(
        "tracecontext",
        &[
            ("traceparent", &traceparent("01")),
            ("tracestate", tracestate),
        ],
    );
    assert_continues(&cx, TRACE, SPAN, true, "long tracestate");
    let kept = span_context(&cx).trace_state().header();
    assert!(kept.len() <= MAX_TRACESTATE_CHARS, "{}", kept.len());
    kept
}

#[test]
fn tracestate_over_512_characters_drops_entries_over_128_first() {
    // A 200-character entry in the middle of short ones: 5 * 70 + 200 and
    // 5 commas = 555 characters. It goes, and nothing else does.
    let entries = [
        entry("a", 70),
        entry("b", 70),
        entry("c", 70),
        entry("big", 200),
        entry("d", 70),
        entry("e", 70),
    ];
    let header = entries.join(",");
    assert_eq!(header.len(), 555);
    let expected = [0, 1, 2, 4, 5].map(|i| entries[i].as_str()).join(",");
    assert_eq!(kept_trace_state(&header), expected);

    // 4 entries of 100 characters, one of 200 and one of 150, in between
    // short ones: 4 * 100 + 200 + 150 + 2 * 5 + 7 commas = 767 characters.
    // Dropping `mid` (the rightmost long one) leaves 616, then `big` 415:
    // the rest, in order.
    let entries = [
        entry("a", 100),
        entry("big", 200),
        entry("b", 100),
        "s1=xy".to_owned(),
        entry("mid", 150),
        entry("c", 100),
        "s2=xy".to_owned(),
        entry("d", 100),
    ];
    let header = entries.join(",");
    assert_eq!(header.len(), 767);
    let expected = [0, 2, 3, 5, 6, 7].map(|i| entries[i].as_str()).join(",");
    assert_eq!(kept_trace_state(&header), expected);
}

#[test]
fn tracestate_over_512_characters_then_drops_entries_from_the_end() {
    // Short entries, the longest first: 30 entries of 12 to 41 characters,
    // 824 in all with the commas. Dropping the longest would keep the short
    // tail; W3C drops from the end, so the first ones stay, in order.
    let entries: Vec<String> = (0..30)
        .map(|i| entry(&format!("k{i:02}"), 41 - i))
        .collect();
    let header = entries.join(",");
    assert_eq!(header.len(), 824);
    let kept = kept_trace_state(&header);
    let fits = (1..=entries.len())
        .rev()
        .map(|n| entries[..n].join(","))
        .find(|prefix| prefix.len() <= MAX_TRACESTATE_CHARS)
        .unwrap();
    assert_eq!(kept, fits);
    assert_eq!(kept.split(',').count(), 14);

    // Of equally long entries the last goes; exactly 512 stays.
    let same: Vec<String> = (0..6).map(|i| entry(&format!("e{i}"), 100)).collect();
    assert_eq!(kept_trace_state(&same.join(",")), same[..5].join(","));
    let exact = format!("{},{}", same[..4].join(","), entry("f", 108));
    assert_eq!(exact.len(), 512);
    assert_eq!(kept_trace_state(&exact), exact);
}

#[test]
fn a_trace_header_over_8_kib_is_ignored() {
    let long = format!("{}-{}", "a".repeat(MAX_TRACE_HEADER_BYTES), B3_SPAN);
    let cx = extract(
        "tracecontext",
        &[
            ("traceparent", &traceparent("01")),
            (
                "tracestate",
                &format!("k={}", "v".repeat(MAX_TRACE_HEADER_BYTES)),
            ),
        ],
    );
    assert_continues(&cx, TRACE, SPAN, true, "over-long tracestate");
    assert_eq!(span_context(&cx).trace_state(), &TraceState::default());
    let cx = extract("b3", &[("b3", &long)]);
    assert_new_trace(&cx, "over-long b3");
}

// --- B3 single header ----------------------------------------------------

#[test]
fn b3_single_header_shapes() {
    let cases = [
        // Deferred: the trace continues, the sampled flag unset.
        (format!("{B3_TRACE}-{B3_SPAN}"), false),
        (format!("{B3_TRACE}-{B3_SPAN}-1"), true),
        (format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}"), true),
        (format!("{B3_TRACE}-{B3_SPAN}-0"), false),
        (format!("{B3_TRACE}-{B3_SPAN}-0-{B3_PARENT}"), false),
        // Debug implies sampled.
        (format!("{B3_TRACE}-{B3_SPAN}-d"), true),
        (format!("{B3_TRACE}-{B3_SPAN}-d-{B3_PARENT}"), true),
    ];
    for format in ["b3", "b3multi"] {
        for (value, sampled) in &cases {
            let cx = extract(format, &[("b3", value)]);
            // The parent is the sender's span, never its parent.
            assert_continues(
                &cx,
                B3_TRACE,
                B3_SPAN,
                *sampled,
                &format!("{format}: b3: {value}"),
            );
        }
    }
}

#[test]
fn b3_single_header_with_a_64_bit_trace_id_is_left_padded() {
    let cx = extract("b3", &[("b3", &format!("{}-{B3_SPAN}-1", &B3_TRACE[16..]))]);
    let padded = format!("{}{}", "0".repeat(16), &B3_TRACE[16..]);
    assert_continues(&cx, &padded, B3_SPAN, true, "64-bit trace id");
}

#[test]
fn b3_sampling_state_alone_starts_a_new_trace() {
    for value in ["0", "1", "d"] {
        let cx = extract("b3", &[("b3", value)]);
        assert_new_trace(&cx, &format!("b3: {value}"));
    }
}

#[test]
fn a_malformed_b3_single_header_starts_a_new_trace() {
    let cases = [
        (
            "upper case",
            format!("{}-{B3_SPAN}-1", B3_TRACE.to_uppercase()),
        ),
        ("plus sign", format!("+{}-{B3_SPAN}-1", &B3_TRACE[1..])),
        ("short span id", format!("{B3_TRACE}-{}-1", &B3_SPAN[1..])),
        (
            "24-digit trace id",
            format!("{}-{B3_SPAN}-1", &B3_TRACE[8..]),
        ),
        (
            "all-zero trace id",
            format!("{}-{B3_SPAN}-1", "0".repeat(32)),
        ),
        (
            "all-zero span id",
            format!("{B3_TRACE}-{}-1", "0".repeat(16)),
        ),
        ("bad sampling state", format!("{B3_TRACE}-{B3_SPAN}-2")),
        (
            "true as sampling state",
            format!("{B3_TRACE}-{B3_SPAN}-true"),
        ),
        ("trailing dash", format!("{B3_TRACE}-{B3_SPAN}-")),
        (
            "bad parent",
            format!("{B3_TRACE}-{B3_SPAN}-1-{}", &B3_PARENT[1..]),
        ),
        (
            "extra field",
            format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}-x"),
        ),
        ("trace id only", B3_TRACE.to_owned()),
    ];
    for (why, value) in cases {
        let cx = extract("b3", &[("b3", &value)]);
        assert_new_trace(&cx, why);
    }
}

// --- B3 multiple headers -------------------------------------------------

fn multi<'a>(
    spelling: &[&'a str; 5],
    trace: &'a str,
    extra: &[(usize, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![(spelling[0], trace), (spelling[1], B3_SPAN)];
    headers.extend(extra.iter().map(|(i, value)| (spelling[*i], *value)));
    headers
}

const LOWER: [&str; 5] = [
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-parentspanid",
    "x-b3-flags",
];
const CANONICAL: [&str; 5] = [
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-Sampled",
    "X-B3-ParentSpanId",
    "X-B3-Flags",
];

#[test]
fn b3_multiple_headers_in_either_spelling() {
    let padded = format!("{}{}", "0".repeat(16), &B3_TRACE[16..]);
    for spelling in [&LOWER, &CANONICAL] {
        for (trace, continued) in [(B3_TRACE, B3_TRACE), (&B3_TRACE[16..], padded.as_str())] {
            let cases: [(&[(usize, &str)], bool); 8] = [
                (&[(2, "1")], true),
                (&[(2, "1"), (3, B3_PARENT)], true),
                (&[(2, "0")], false),
                (&[(2, "true")], true),
                (&[(2, "false")], false),
                // Deferred.
                (&[], false),
                // Debug implies sampled, with or without X-B3-Sampled.
                (&[(4, "1")], true),
                (&[(4, "1"), (2, "0")], true),
            ];
            for (extra, sampled) in cases {
                let headers = multi(spelling, trace, extra);
                for format in ["b3multi", "b3"] {
                    let cx = extract(format, &headers);
                    assert_continues(
                        &cx,
                        continued,
                        B3_SPAN,
                        sampled,
                        &format!("{format}: {headers:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn malformed_b3_multiple_headers_start_a_new_trace() {
    let upper = B3_TRACE.to_uppercase();
    let plus = format!("+{}", &B3_TRACE[1..]);
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "no span id",
            vec![("x-b3-traceid", B3_TRACE), ("x-b3-sampled", "1")],
        ),
        ("upper-case trace id", multi(&LOWER, &upper, &[(2, "1")])),
        ("plus sign", multi(&LOWER, &plus, &[(2, "1")])),
        ("bad sampling state", multi(&LOWER, B3_TRACE, &[(2, "yes")])),
        (
            "mixed-case name",
            vec![("X-b3-TraceId", B3_TRACE), ("x-b3-spanid", B3_SPAN)],
        ),
    ];
    for (why, headers) in cases {
        let cx = extract("b3multi", &headers);
        assert_new_trace(&cx, why);
    }
}

#[test]
fn b3_single_header_takes_precedence_over_multiple_headers() {
    let single = format!("{B3_TRACE}-{B3_SPAN}-1");
    let other_trace = "11111111111111111111111111111111";
    let other_span = "2222222222222222";
    let headers = [
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", other_span),
        ("x-b3-sampled", "0"),
        ("b3", single.as_str()),
    ];
    assert_continues(
        &extract("b3multi", &headers),
        B3_TRACE,
        B3_SPAN,
        true,
        "valid single",
    );
    // An invalid single header falls back to the multiple headers.
    let headers = [
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", other_span),
        ("x-b3-sampled", "0"),
        ("b3", "0"),
    ];
    assert_continues(
        &extract("b3", &headers),
        other_trace,
        other_span,
        false,
        "b3: 0",
    );
}

// --- Baggage -------------------------------------------------------------

#[test]
fn baggage_with_properties_and_percent_encoding() {
    let cx = extract(
        "tracecontext,baggage",
        &[
            ("traceparent", &traceparent("01")),
            (
                "baggage",
                "k=v;prop=1,greeting=hello%20world, user = alice%2Cbob ",
            ),
        ],
    );
    assert_continues(&cx, TRACE, SPAN, true, "with baggage");
    let baggage = cx.baggage();
    assert_eq!(baggage.len(), 3);
    let (value, metadata) = baggage.get_with_metadata("k").expect("k");
    assert_eq!(value.as_str(), "v");
    assert_eq!(metadata.as_str(), "prop=1");
    assert_eq!(
        baggage.get("greeting").map(|v| v.as_str()),
        Some("hello world")
    );
    assert_eq!(baggage.get("user").map(|v| v.as_str()), Some("alice,bob"));
}

#[test]
fn baggage_is_read_whichever_format_carries_the_span_context() {
    let b3 = format!("{B3_TRACE}-{B3_SPAN}-1");
    let headers = [
        ("traceparent", traceparent("01")),
        ("b3", b3),
        ("baggage", "tenant=acme".to_owned()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (propagation, trace, span) in [
        ("b3,tracecontext,baggage", B3_TRACE, B3_SPAN),
        ("baggage,tracecontext,b3", TRACE, SPAN),
    ] {
        let cx = extract(propagation, &headers);
        assert_continues(&cx, trace, span, true, propagation);
        assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str()), Some("acme"));
    }
    // Without a span context.
    let cx = extract("tracecontext,baggage", &[("baggage", "tenant=acme")]);
    assert_new_trace(&cx, "baggage only");
    assert_eq!(cx.baggage().get("tenant").map(|v| v.as_str()), Some("acme"));
    // Not configured: not read.
    let cx = extract("tracecontext", &headers);
    assert_eq!(cx.baggage().len(), 0, "baggage not configured");
}

#[test]
fn baggage_keeps_its_first_64_members_and_ignores_a_header_over_8192_bytes() {
    let members: Vec<String> = (0..80).map(|i| format!("k{i}=v{i}")).collect();
    let cx = extract("baggage", &[("baggage", &members.join(","))]);
    let baggage = cx.baggage();
    assert_eq!(baggage.len(), MAX_BAGGAGE_MEMBERS);
    assert_eq!(baggage.get("k63").map(|v| v.as_str()), Some("v63"));
    assert_eq!(baggage.get("k64"), None);

    // 8192 bytes is read, 8193 is not.
    let fits = format!("k={}", "v".repeat(MAX_BAGGAGE_BYTES - 2));
    let cx = extract("baggage", &[("baggage", &fits)]);
    assert_eq!(cx.baggage().len(), 1, "8192 bytes");
    let over = format!("a=b,k={}", "v".repeat(MAX_BAGGAGE_BYTES - 5));
    assert_eq!(over.len(), MAX_BAGGAGE_BYTES + 1);
    let cx = extract("baggage", &[("baggage", &over)]);
    assert_eq!(cx.baggage().len(), 0, "8193 bytes: ignored as a whole");
}

// --- Order: the first valid span context wins ----------------------------

fn both(b3: &str) -> Vec<(&'static str, String)> {
    vec![("traceparent", traceparent("01")), ("b3", b3.to_owned())]
}

fn extract_owned(propagation: &str, headers: &[(&'static str, String)]) -> Context {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extract(propagation, &headers)
}

#[test]
fn with_b3_first_a_valid_b3_wins_over_traceparent() {
    let headers = both(&format!("{B3_TRACE}-{B3_SPAN}-0"));
    let cx = extract_owned("b3,tracecontext", &headers);
    // The B3 context, unsampled, though the traceparent says sampled.
    assert_continues(&cx, B3_TRACE, B3_SPAN, false, "b3 first");
    assert_eq!(span_context(&cx).trace_state(), &TraceState::default());
    let cx = extract_owned("b3multi,tracecontext", &headers);
    assert_continues(&cx, B3_TRACE, B3_SPAN, false, "b3multi first");
}

#[test]
fn with_tracecontext_first_a_valid_traceparent_wins_over_b3() {
    let headers = both(&format!("{B3_TRACE}-{B3_SPAN}-1"));
    let cx = extract_owned("tracecontext,b3", &headers);
    assert_continues(&cx, TRACE, SPAN, true, "tracecontext first");
}

#[test]
fn an_invalid_b3_gives_way_to_a_valid_traceparent() {
    for b3 in [
        "0".to_owned(),
        format!("{}-{B3_SPAN}-1", B3_TRACE.to_uppercase()),
        "garbage".to_owned(),
    ] {
        let cx = extract_owned("b3,tracecontext", &both(&b3));
        assert_continues(&cx, TRACE, SPAN, true, &format!("b3: {b3}"));
    }
    // And the other way round.
    let headers = vec![
        ("traceparent", traceparent("01").to_uppercase()),
        ("b3", format!("{B3_TRACE}-{B3_SPAN}-1")),
    ];
    let cx = extract_owned("tracecontext,b3", &headers);
    assert_continues(&cx, B3_TRACE, B3_SPAN, true, "invalid traceparent");
}

#[test]
fn a_format_not_configured_is_ignored() {
    let headers = both(&format!("{B3_TRACE}-{B3_SPAN}-1"));
    let cx = extract_owned("tracecontext", &headers);
    assert_continues(&cx, TRACE, SPAN, true, "tracecontext only");
    let cx = extract_owned("b3", &headers);
    assert_continues(&cx, B3_TRACE, B3_SPAN, true, "b3 only");

    let cx = extract(
        "tracecontext,baggage",
        &[("b3", &format!("{B3_TRACE}-{B3_SPAN}-1"))],
    );
    assert_new_trace(&cx, "b3 header, tracecontext only");
    let cx = extract("b3multi,baggage", &[("traceparent", &traceparent("01"))]);
    assert_new_trace(&cx, "traceparent, b3multi only");
    let cx = extract_owned("none", &headers);
    assert_new_trace(&cx, "none");
}

// --- Injection -----------------------------------------------------------

fn injected(propagation: &str, sc: SpanContext) -> HashMap<String, String> {
    let propagation: Propagation = propagation.parse().unwrap();
    let cx = Context::new()
        .with_remote_span_context(sc)
        .with_baggage([opentelemetry::KeyValue::new("tenant", "acme")]);
    let mut carrier = HashMap::new();
    propagation.propagator().inject_context(&cx, &mut carrier);
    carrier
}

fn producer(sampled: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        TraceFlags::default().with_sampled(sampled),
        false,
        TraceState::from_key_value([("vendor", "x")]).unwrap(),
    )
}

#[test]
fn injection_writes_every_configured_format() {
    let carrier = injected("b3,tracecontext,baggage,b3multi", producer(true));
    let expected: HashMap<String, String> = [
        ("b3", format!("{TRACE}-{SPAN}-1")),
        ("traceparent", traceparent("01")),
        ("tracestate", "vendor=x".to_owned()),
        ("baggage", "tenant=acme".to_owned()),
        ("x-b3-traceid", TRACE.to_owned()),
        ("x-b3-spanid", SPAN.to_owned()),
        ("x-b3-sampled", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(carrier, expected);

    let carrier = injected("b3", producer(false));
    assert_eq!(carrier.len(), 1);
    assert_eq!(carrier["b3"], format!("{TRACE}-{SPAN}-0"));

    // Flag bits beyond sampled (W3C's random) are not B3's deferred state.
    let random = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        TraceFlags::new(0x03),
        false,
        TraceState::default(),
    );
    assert_eq!(
        injected("b3", random.clone())["b3"],
        format!("{TRACE}-{SPAN}-1")
    );
    assert_eq!(injected("b3multi", random)["x-b3-sampled"], "1");

    // No span: no trace header (B3 would otherwise write a "do not sample").
    let carrier = injected("b3,b3multi,tracecontext", SpanContext::empty_context());
    assert!(carrier.is_empty(), "{carrier:?}");
    assert!(injected("none", producer(true)).is_empty());
}

#[test]
fn fields_are_the_union_in_order() {
    let fields = |propagation: &str| -> Vec<String> {
        let propagation: Propagation = propagation.parse().unwrap();
        propagation
            .propagator()
            .fields()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(fields(""), ["traceparent", "tracestate", "baggage"]);
    assert_eq!(
        fields("b3multi,b3,tracecontext"),
        [
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "x-b3-flags",
            "b3",
            "traceparent",
            "tracestate"
        ]
    );
    assert!(fields("none").is_empty());
}

#[test]
fn what_is_injected_in_one_format_is_extracted_from_it() {
    for format in ["tracecontext", "b3", "b3multi"] {
        for sampled in [true, false] {
            let carrier = injected(format, producer(sampled));
            let headers: Vec<(&str, &str)> = carrier
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let cx = extract(format, &headers);
            assert_continues(&cx, TRACE, SPAN, sampled, &format!("{format} round trip"));
        }
    }
}

// --- Configuration -------------------------------------------------------

fn parse(value: &str) -> Vec<Format> {
    value
        .parse::<Propagation>()
        .unwrap_or_else(|e| panic!("{value:?}: {e}"))
        .formats()
        .to_vec()
}

#[test]
fn propagators_parse_in_order() {
    use Format::*;
    let default = [TraceContext, Baggage];
    assert_eq!(Propagation::default().formats(), default);
    assert_eq!(parse(""), default, "empty");
    assert_eq!(parse("  "), default, "blank");
    assert_eq!(parse("b3"), [B3]);
    assert_eq!(parse("b3multi,tracecontext"), [B3Multi, TraceContext]);
    assert_eq!(
        parse(" b3 , Baggage,TRACECONTEXT "),
        [B3, Baggage, TraceContext]
    );
    assert_eq!(
        parse("b3,tracecontext,b3,baggage,tracecontext"),
        [B3, TraceContext, Baggage]
    );
    assert_eq!(parse("tracecontext,,baggage,"), [TraceContext, Baggage]);
    assert_eq!(parse("none"), []);
    assert_eq!(parse(" None ,none"), []);
    assert!("none".parse::<Propagation>().unwrap().is_none());
    assert_eq!(Propagation::none().to_string(), "none");
    assert_eq!(Propagation::default().to_string(), "tracecontext,baggage");
    assert_eq!(
        Propagation::new([B3, TraceContext, B3]).to_string(),
        "b3,tracecontext"
    );
    let round_trip: Propagation = Propagation::new([B3Multi, Baggage])
        .to_string()
        .parse()
        .unwrap();
    assert_eq!(round_trip.formats(), [B3Multi, Baggage]);
}

#[test]
fn unknown_propagators_are_an_error_naming_the_valid_ones() {
    let error = "tracecontext,zipkin".parse::<Propagation>().unwrap_err();
    assert_eq!(error.unknown_name(), Some("zipkin"));
    assert_eq!(
        error.to_string(),
        "unknown propagator \"zipkin\"; valid names: tracecontext, baggage, b3, b3multi, none"
    );
    let error = " xray ".parse::<Propagation>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "propagator \"xray\" is not supported by kafka-handler; valid names: tracecontext, \
         baggage, b3, b3multi, none"
    );
    let error = "b3,none".parse::<Propagation>().unwrap_err();
    assert_eq!(error.unknown_name(), None);
    assert_eq!(
        error.to_string(),
        "\"none\" cannot be combined with other propagators"
    );
    assert!("b3 multi".parse::<Propagation>().is_err());
}

#[test]
fn the_traceparent_rules_hold_for_any_carrier() {
    // Not only through `HeaderExtractor`: the propagator checks too.
    let propagator = Propagation::default().propagator();
    let valid = traceparent("01");
    for (value, continues) in [
        (valid.clone(), true),
        (valid.replace("-00f0", "-+0f0"), false),
        (valid.replace("4bf92f", "4bf92"), false),
        (traceparent("09"), true),
        (traceparent("0A"), false),
    ] {
        let carrier: HashMap<String, String> = [("traceparent".to_owned(), value.clone())].into();
        let cx = propagator.extract_with_context(&Context::new(), &carrier);
        assert_eq!(span_context(&cx).is_valid(), continues, "{value}");
    }
}
