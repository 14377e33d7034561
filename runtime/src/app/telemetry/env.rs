//! The `OTEL_*` environment variables, read strictly: a value this binary
//! cannot honour is an error that names the variable and the fix, never
//! silently ignored.
//!
//! The reading is pure: every reader takes an [`Env`] lookup, so tests
//! need not touch the process environment.

use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{Sampler, SpanLimits};

/// Reads one environment variable: `Some` when it is set.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment; values that are not UTF-8 are read lossily
/// (and then fail to parse, with a message naming the variable).
pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Environment variables, read through a [`Lookup`].
#[derive(Clone, Copy)]
pub(super) struct Env<'a> {
    lookup: Lookup<'a>,
}

impl<'a> Env<'a> {
    /// Variables read through `lookup`.
    pub(super) fn new(lookup: Lookup<'a>) -> Self {
        Self { lookup }
    }

    /// The value, trimmed; `None` when unset or blank (the specification
    /// reads an empty value as unset).
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// The first of `names` that is set, with its name.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names
            .iter()
            .find_map(|name| self.get(name).map(|value| (*name, value)))
    }

    /// A whole number, or an error naming the variable.
    fn count<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, String> {
        self.get(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| format!("{name}={value}: expected a whole number"))
            })
            .transpose()
    }

    /// A positive number of milliseconds, or an error naming the variable.
    fn millis(&self, name: &'static str) -> Result<Option<Duration>, String> {
        self.get(name).map(|value| millis(name, &value)).transpose()
    }
}

/// `value` of `name` as a positive number of milliseconds.
fn millis(name: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(0) => Err(format!("{name}={value}: must be above 0 milliseconds")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(format!(
            "{name}={value}: expected a number of milliseconds, e.g. 10000"
        )),
    }
}

/// `true` turns every exporter off.
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `service.name`, over the one in [`RESOURCE_ATTRIBUTES`].
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// More resource attributes, `k=v,k=v`, values percent-encoded.
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The sampler's name.
const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// The ratio of the `*traceidratio` samplers.
const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The collector's base URL, for both signals.
pub(super) const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `http/protobuf` or `grpc`, for both signals.
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Milliseconds per export, for both signals.
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Headers sent with every export, `k=v,k=v`.
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `true`: `http://` for a gRPC endpoint given without a scheme.
const INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
/// Export compression; only `none` is compiled in.
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// Spans the batch processor holds before dropping.
const BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Milliseconds between the batch processor's exports.
const BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// Spans per export.
const BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Milliseconds an export of spans may take (caps the OTLP timeout).
const BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// Milliseconds between metric exports.
const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Milliseconds a metric export may take (caps the OTLP timeout).
const METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// `cumulative`, `delta` or `lowmemory`, for OTLP metrics.
const METRICS_TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";

/// The batch span processor's queue unless `OTEL_BSP_MAX_QUEUE_SIZE` says
/// otherwise: the SDK's 2048 drops spans at full consumer speed.
const DEFAULT_SPAN_QUEUE: usize = 65_536;
/// The OTLP exporters' timeout per export (the specification's default).
pub(super) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// The variables of one signal (traces or metrics).
#[derive(Debug)]
pub(super) struct Signal {
    /// `OTEL_TRACES_EXPORTER`.
    pub(super) exporter: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    endpoint: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`.
    protocol: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`.
    timeout: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
    headers: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_INSECURE`.
    insecure: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`.
    compression: &'static str,
    /// Appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for OTLP/HTTP.
    path: &'static str,
    /// What is exported, for messages: `spans`.
    pub(super) noun: &'static str,
}

/// The trace signal's variables.
pub(super) const TRACES: Signal = Signal {
    exporter: "OTEL_TRACES_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    insecure: "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    path: "/v1/traces",
    noun: "spans",
};

/// The metric signal's variables.
pub(super) const METRICS: Signal = Signal {
    exporter: "OTEL_METRICS_EXPORTER",
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    insecure: "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    path: "/v1/metrics",
    noun: "metrics",
};

/// Everything read from the environment.
#[derive(Debug)]
pub(super) struct Config {
    /// The tracer provider's settings.
    pub(super) traces: TraceSettings,
    /// The meter provider's settings.
    pub(super) metrics: MetricSettings,
    /// `OTEL_RESOURCE_ATTRIBUTES` (decoded) and `service.name`, last.
    pub(super) resource: Vec<KeyValue>,
}

impl Config {
    /// Reads every variable; `OTEL_SDK_DISABLED=true` turns both exporters
    /// off (the other variables are still checked).
    pub(super) fn read(
        env: Env<'_>,
        max_batch_records: usize,
        binary: &str,
    ) -> Result<Self, String> {
        let disabled = sdk_disabled(env)?;
        let mut traces = TraceSettings::read(env, max_batch_records)?;
        let mut metrics = MetricSettings::read(env)?;
        if disabled {
            traces.exporter = Exporter::None;
            metrics.exporter = Exporter::None;
        }
        Ok(Self {
            traces,
            metrics,
            resource: resource_attributes(env, binary)?,
        })
    }
}

/// `OTEL_SDK_DISABLED`: `true` or `false` (any case), default `false`.
fn sdk_disabled(env: Env<'_>) -> Result<bool, String> {
    match env.get(SDK_DISABLED) {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
        Some(value) => Err(format!("{SDK_DISABLED}={value}: expected true or false")),
    }
}

/// Where a signal goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Exporter {
    /// Nowhere (`none`).
    None,
    /// To stdout, one line per span (`console`).
    Console,
    /// To an OTLP endpoint (`otlp`, the default).
    Otlp(OtlpTarget),
}

impl fmt::Display for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exporter::None => f.write_str("none"),
            Exporter::Console => f.write_str("console"),
            Exporter::Otlp(target) => write!(
                f,
                "otlp {} {}",
                target.protocol.as_str(),
                target.endpoint.url
            ),
        }
    }
}

/// An exporter name from `OTEL_*_EXPORTER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExporterKind {
    Otlp,
    Console,
    None,
}

/// The signal's exporter, with its OTLP target when it is `otlp`.
fn exporter(env: Env<'_>, signal: &Signal) -> Result<Exporter, String> {
    Ok(match exporter_kind(env, signal)? {
        ExporterKind::None => Exporter::None,
        ExporterKind::Console => Exporter::Console,
        ExporterKind::Otlp => Exporter::Otlp(otlp_target(env, signal)?),
    })
}

/// `OTEL_{TRACES,METRICS}_EXPORTER`: `otlp` (default), `console` or `none`.
/// The variable is a list, but this binary exports each signal one way:
/// one name (repeats allowed), or `none` alone.
fn exporter_kind(env: Env<'_>, signal: &Signal) -> Result<ExporterKind, String> {
    let var = signal.exporter;
    let Some(value) = env.get(var) else {
        return Ok(ExporterKind::Otlp);
    };
    let mut chosen: Vec<ExporterKind> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = match name.to_ascii_lowercase().as_str() {
            "otlp" => ExporterKind::Otlp,
            "console" => ExporterKind::Console,
            "none" => ExporterKind::None,
            other => return Err(unknown_exporter(signal, &value, other)),
        };
        if !chosen.contains(&kind) {
            chosen.push(kind);
        }
    }
    match chosen.as_slice() {
        [] => Ok(ExporterKind::Otlp),
        [one] => Ok(*one),
        several if several.contains(&ExporterKind::None) => Err(format!(
            "{var}={value}: `none` cannot be combined with another exporter; \
             set {var}=none to export no {}, or name one exporter",
            signal.noun
        )),
        _ => Err(format!(
            "{var}={value}: one exporter at a time; set {var} to otlp, console or none"
        )),
    }
}

/// The error for an exporter name this binary does not know, with a hint
/// for the names the specification defines.
fn unknown_exporter(signal: &Signal, value: &str, name: &str) -> String {
    let hint = match name {
        "zipkin" => "; to reach Zipkin, export OTLP to a collector that forwards to it",
        "jaeger" => "; Jaeger accepts OTLP: keep otlp and point OTEL_EXPORTER_OTLP_ENDPOINT at it",
        "logging" => "; `logging` is now called `console`",
        "prometheus" if signal.exporter == METRICS.exporter => {
            "; for Prometheus scraping, pass --metrics-addr (and set \
             OTEL_METRICS_EXPORTER=none when there is no OTLP collector)"
        }
        _ => "",
    };
    format!(
        "{}={value}: exporter {name:?} is unknown or unsupported; valid: otlp, console, none{hint}",
        signal.exporter
    )
}

/// The OTLP wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `http/protobuf`, the default.
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

impl Protocol {
    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` value.
    fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Where and how one signal is exported over OTLP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct OtlpTarget {
    /// The wire protocol.
    pub(super) protocol: Protocol,
    /// Where the exports go.
    pub(super) endpoint: Endpoint,
    /// Per export, all retries included.
    pub(super) timeout: Duration,
}

/// An endpoint URL and the variable it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The full URL exports go to (`http://localhost:4318/v1/traces`).
    pub(super) url: String,
    /// The variable that set it; `None` for the default.
    pub(super) source: Option<&'static str>,
}

/// The signal's protocol, endpoint and timeout; also checks its headers
/// variable (which the OTLP crate reads itself).
fn otlp_target(env: Env<'_>, signal: &Signal) -> Result<OtlpTarget, String> {
    let protocol = protocol(env, signal)?;
    let endpoint = endpoint(env, signal, protocol)?;
    let timeout = match env.first(&[signal.timeout, TIMEOUT]) {
        Some((var, value)) => millis(var, &value)?,
        None => DEFAULT_OTLP_TIMEOUT,
    };
    check_headers(env, signal)?;
    check_compression(env, signal)?;
    Ok(OtlpTarget {
        protocol,
        endpoint,
        timeout,
    })
}

/// `OTEL_EXPORTER_OTLP_{TRACES_,}PROTOCOL`: `http/protobuf` (default) or
/// `grpc` (any case). `http/json` is valid OpenTelemetry but not compiled in.
fn protocol(env: Env<'_>, signal: &Signal) -> Result<Protocol, String> {
    let Some((var, value)) = env.first(&[signal.protocol, PROTOCOL]) else {
        return Ok(Protocol::HttpProtobuf);
    };
    match value.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "grpc" => Ok(Protocol::Grpc),
        "http/json" => Err(format!(
            "{var}=http/json: OTLP/JSON is not compiled into this binary; \
             use http/protobuf (the default) or grpc"
        )),
        _ => Err(format!(
            "{var}={value}: unknown protocol; valid: http/protobuf, grpc"
        )),
    }
}

/// The signal's endpoint, as the OTLP exporter specification resolves it:
/// the signal's variable as is; else `OTEL_EXPORTER_OTLP_ENDPOINT`, plus
/// `/v1/{signal}` for OTLP/HTTP; else `http://localhost:4318/v1/{signal}`
/// or, for gRPC, `http://localhost:4317`. A gRPC endpoint without a scheme
/// gets `http://` when `OTEL_EXPORTER_OTLP_{TRACES_,}INSECURE=true`, else
/// `https://`.
fn endpoint(env: Env<'_>, signal: &Signal, protocol: Protocol) -> Result<Endpoint, String> {
    let (source, value) = match env.first(&[signal.endpoint, ENDPOINT]) {
        Some(found) => found,
        None => {
            let url = match protocol {
                Protocol::HttpProtobuf => format!("http://localhost:4318{}", signal.path),
                Protocol::Grpc => "http://localhost:4317".to_owned(),
            };
            return Ok(Endpoint { url, source: None });
        }
    };
    let url = if protocol == Protocol::Grpc && !value.contains("://") {
        let insecure = env
            .first(&[signal.insecure, INSECURE])
            .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
        format!("{}://{value}", if insecure { "http" } else { "https" })
    } else {
        value.clone()
    };
    // The base URL is checked before the signal's path is appended to it.
    check_endpoint(&url, protocol).map_err(|reason| format!("{source}={value}: {reason}"))?;
    let url = if source == ENDPOINT && protocol == Protocol::HttpProtobuf {
        join_path(&url, signal.path)
    } else {
        url
    };
    Ok(Endpoint {
        url,
        source: Some(source),
    })
}

/// `base` + `path`, without doubling the `/` between them.
fn join_path(base: &str, path: &str) -> String {
    match base.strip_suffix('/') {
        Some(base) => format!("{base}{path}"),
        None => format!("{base}{path}"),
    }
}

/// Checks that `url` is an `http://host[:port][/path]` URL this binary can
/// export to (no TLS is compiled in).
fn check_endpoint(url: &str, protocol: Protocol) -> Result<(), String> {
    let default_port = match protocol {
        Protocol::HttpProtobuf => 4318,
        Protocol::Grpc => 4317,
    };
    let example = format!("http://collector:{default_port}");
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(format!(
            "not a URL: give the scheme and host, e.g. {example}"
        ));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "https is not supported: this binary has no TLS; \
             export over http:// to a collector or sidecar, e.g. {example}"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "unsupported scheme {scheme:?}; use http://, e.g. {example}"
        ));
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|err| format!("not a valid URL ({err}); e.g. {example}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host; e.g. {example}"));
    }
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    if port_text(authority).is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(format!("the port is not a number; e.g. {example}"));
    }
    Ok(())
}

/// The text after the port's `:` in `authority` (`user@host:port`,
/// `[::1]:port`), if it has one.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let after_host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(_, rest)| rest),
        None => host_port,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

/// Checks `OTEL_EXPORTER_OTLP_{TRACES_,}HEADERS` (the OTLP crate reads it
/// and would silently drop a malformed entry). The message gives the
/// entry's position, not its text, which may hold a secret.
fn check_headers(env: Env<'_>, signal: &Signal) -> Result<(), String> {
    let Some((var, value)) = env.first(&[signal.headers, HEADERS]) else {
        return Ok(());
    };
    let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
    for (index, entry) in entries.enumerate() {
        let well_formed = entry
            .split_once('=')
            .is_some_and(|(key, value)| !key.trim().is_empty() && !value.trim().is_empty());
        if !well_formed {
            return Err(format!(
                "{var}: entry {} is not key=value; expected k1=v1,k2=v2 \
                 (values percent-encoded)",
                index + 1
            ));
        }
    }
    Ok(())
}

/// Checks `OTEL_EXPORTER_OTLP_{TRACES_,}COMPRESSION`: only `none` is
/// compiled in (the OTLP crate would ignore `gzip` silently).
fn check_compression(env: Env<'_>, signal: &Signal) -> Result<(), String> {
    match env.first(&[signal.compression, COMPRESSION]) {
        None => Ok(()),
        Some((_, value)) if value.eq_ignore_ascii_case("none") => Ok(()),
        Some((var, value))
            if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("zstd") =>
        {
            Err(format!(
                "{var}={value}: compression is not compiled into this binary; unset it or set none"
            ))
        }
        Some((var, value)) => Err(format!("{var}={value}: unknown compression; valid: none")),
    }
}

/// The tracer provider's settings.
#[derive(Debug)]
pub(super) struct TraceSettings {
    /// Where spans go.
    pub(super) exporter: Exporter,
    /// `OTEL_TRACES_SAMPLER` (and its argument).
    pub(super) sampler: Sampler,
    /// The `OTEL_*_LIMIT` variables.
    pub(super) limits: SpanLimits,
    /// The batch span processor's `OTEL_BSP_*` variables.
    pub(super) batch: BatchSettings,
}

impl TraceSettings {
    /// Reads the variables, or says which one is wrong.
    fn read(env: Env<'_>, max_batch_records: usize) -> Result<Self, String> {
        Ok(Self {
            exporter: exporter(env, &TRACES)?,
            sampler: sampler(env)?,
            limits: span_limits(env, max_batch_records)?,
            batch: BatchSettings::read(env)?,
        })
    }

    /// The OTLP timeout, capped by `OTEL_BSP_EXPORT_TIMEOUT` (which the
    /// SDK's thread-based processor does not apply itself).
    pub(super) fn export_timeout(&self, target: &OtlpTarget) -> Duration {
        capped(target.timeout, self.batch.export_timeout)
    }
}

/// `timeout`, or `cap` when that is shorter.
pub(super) fn capped(timeout: Duration, cap: Option<Duration>) -> Duration {
    cap.map_or(timeout, |cap| timeout.min(cap))
}

/// The sampler names, for messages.
const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                        parentbased_always_off, parentbased_traceidratio";

/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; default
/// `parentbased_always_on`. The SDK reads them too, but falls back to the
/// default on a bad name or ratio; here either is an error.
fn sampler(env: Env<'_>) -> Result<Sampler, String> {
    let Some(name) = env.get(SAMPLER) else {
        return Ok(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    Ok(match name.to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(sampler_ratio(env)?),
        "parentbased_always_on" => parent_based(Sampler::AlwaysOn),
        "parentbased_always_off" => parent_based(Sampler::AlwaysOff),
        "parentbased_traceidratio" => parent_based(Sampler::TraceIdRatioBased(sampler_ratio(env)?)),
        "jaeger_remote" | "parentbased_jaeger_remote" | "xray" => {
            return Err(format!(
                "{SAMPLER}={name}: not supported by this binary; valid: {SAMPLERS}"
            ))
        }
        _ => {
            return Err(format!(
                "{SAMPLER}={name}: unknown sampler; valid: {SAMPLERS}"
            ))
        }
    })
}

/// `OTEL_TRACES_SAMPLER_ARG` for the ratio samplers: 0 to 1, default 1.
fn sampler_ratio(env: Env<'_>) -> Result<f64, String> {
    let Some(value) = env.get(SAMPLER_ARG) else {
        return Ok(1.0);
    };
    match value.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!(
            "{SAMPLER_ARG}={value}: expected a sampling ratio from 0 to 1, e.g. 0.25"
        )),
    }
}

/// The span limits: the SDK's defaults (128 each) and `OTEL_SPAN_*` /
/// `OTEL_{EVENT,LINK}_ATTRIBUTE_COUNT_LIMIT`, except that without
/// `OTEL_SPAN_LINK_COUNT_LIMIT` a span keeps `max(128, max_batch_records)`
/// links, so a batch span keeps one per record.
fn span_limits(env: Env<'_>, max_batch_records: usize) -> Result<SpanLimits, String> {
    let defaults = SpanLimits::default();
    let batch_links = u32::try_from(max_batch_records).unwrap_or(u32::MAX);
    Ok(SpanLimits {
        max_links_per_span: env
            .count("OTEL_SPAN_LINK_COUNT_LIMIT")?
            .unwrap_or(defaults.max_links_per_span.max(batch_links)),
        max_attributes_per_span: env
            .count("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")?
            .unwrap_or(defaults.max_attributes_per_span),
        max_events_per_span: env
            .count("OTEL_SPAN_EVENT_COUNT_LIMIT")?
            .unwrap_or(defaults.max_events_per_span),
        max_attributes_per_event: env
            .count("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT")?
            .unwrap_or(defaults.max_attributes_per_event),
        max_attributes_per_link: env
            .count("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT")?
            .unwrap_or(defaults.max_attributes_per_link),
    })
}

/// The batch span processor's settings, from `OTEL_BSP_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchSettings {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub(super) max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub(super) scheduled_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub(super) max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT`, when set.
    pub(super) export_timeout: Option<Duration>,
}

impl BatchSettings {
    /// Reads the variables, or says which one is wrong.
    fn read(env: Env<'_>) -> Result<Self, String> {
        let max_queue_size = env
            .count::<usize>(BSP_MAX_QUEUE_SIZE)?
            .unwrap_or(DEFAULT_SPAN_QUEUE);
        if max_queue_size == 0 {
            return Err(format!(
                "{BSP_MAX_QUEUE_SIZE}=0: the queue needs room for a span"
            ));
        }
        let max_export_batch_size = env
            .count::<usize>(BSP_MAX_EXPORT_BATCH_SIZE)?
            .unwrap_or(512);
        if max_export_batch_size == 0 || max_export_batch_size > max_queue_size {
            return Err(format!(
                "{BSP_MAX_EXPORT_BATCH_SIZE}={max_export_batch_size}: must be from 1 to the \
                 queue size ({max_queue_size}, {BSP_MAX_QUEUE_SIZE})"
            ));
        }
        Ok(Self {
            max_queue_size,
            scheduled_delay: env
                .millis(BSP_SCHEDULE_DELAY)?
                .unwrap_or(Duration::from_secs(5)),
            max_export_batch_size,
            export_timeout: env.millis(BSP_EXPORT_TIMEOUT)?,
        })
    }
}

/// The meter provider's push settings.
#[derive(Debug)]
pub(super) struct MetricSettings {
    /// Where metrics go.
    pub(super) exporter: Exporter,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub(super) interval: Duration,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`, when set.
    pub(super) export_timeout: Option<Duration>,
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
    pub(super) temporality: Temporality,
}

impl MetricSettings {
    /// Reads the variables, or says which one is wrong.
    fn read(env: Env<'_>) -> Result<Self, String> {
        Ok(Self {
            exporter: exporter(env, &METRICS)?,
            interval: env
                .millis(METRIC_EXPORT_INTERVAL)?
                .unwrap_or(Duration::from_secs(60)),
            export_timeout: env.millis(METRIC_EXPORT_TIMEOUT)?,
            temporality: temporality(env)?,
        })
    }
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative`
/// (default), `delta` or `lowmemory`.
fn temporality(env: Env<'_>) -> Result<Temporality, String> {
    match env.get(METRICS_TEMPORALITY) {
        None => Ok(Temporality::Cumulative),
        Some(value) => value.parse().map_err(|()| {
            format!("{METRICS_TEMPORALITY}={value}: expected cumulative, delta or lowmemory")
        }),
    }
}

/// The resource attributes added to the SDK's detected ones:
/// `OTEL_RESOURCE_ATTRIBUTES` with its values percent-decoded (the SDK
/// does not decode them, and skips malformed entries: here they are
/// errors), then `service.name`: `OTEL_SERVICE_NAME`, else the one in
/// `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<binary>`.
fn resource_attributes(env: Env<'_>, binary: &str) -> Result<Vec<KeyValue>, String> {
    let mut attributes = Vec::new();
    let mut service_name = None;
    if let Some(value) = env.get(RESOURCE_ATTRIBUTES) {
        let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let bad = |why: &str| {
                format!(
                    "{RESOURCE_ATTRIBUTES}: entry {} ({entry:?}) {why}; expected \
                     key1=value1,key2=value2 with values percent-encoded",
                    index + 1
                )
            };
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| bad("is not key=value"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(bad("has no key"));
            }
            let value =
                percent_decode(value.trim()).ok_or_else(|| bad("has a bad percent-encoding"))?;
            if key == "service.name" {
                service_name = Some(value.clone());
            }
            attributes.push(KeyValue::new(key.to_owned(), value));
        }
    }
    let service_name = env
        .get(SERVICE_NAME)
        .or(service_name)
        .unwrap_or_else(|| format!("unknown_service:{binary}"));
    attributes.push(KeyValue::new("service.name", service_name));
    Ok(attributes)
}

/// `text` with `%XX` sequences decoded; `None` for a bad sequence or
/// bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment of `vars`.
    fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce(Env<'_>) -> T) -> T {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        f(Env::new(&lookup))
    }

    fn traces_exporter(vars: &[(&str, &str)]) -> Result<Exporter, String> {
        with_env(vars, |env| exporter(env, &TRACES))
    }

    fn metrics_exporter(vars: &[(&str, &str)]) -> Result<Exporter, String> {
        with_env(vars, |env| exporter(env, &METRICS))
    }

    fn otlp(protocol: Protocol, url: &str, source: Option<&'static str>) -> Exporter {
        Exporter::Otlp(OtlpTarget {
            protocol,
            endpoint: Endpoint {
                url: url.to_owned(),
                source,
            },
            timeout: DEFAULT_OTLP_TIMEOUT,
        })
    }

    fn err_of<T: fmt::Debug>(result: Result<T, String>) -> String {
        result.expect_err("must be a configuration error")
    }

    #[test]
    fn exporters_default_to_otlp_over_http_on_localhost() {
        assert_eq!(
            traces_exporter(&[]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://localhost:4318/v1/traces",
                None
            ))
        );
        assert_eq!(
            metrics_exporter(&[("OTEL_METRICS_EXPORTER", " ")]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://localhost:4318/v1/metrics",
                None
            ))
        );
    }

    #[test]
    fn exporter_names_are_one_of_otlp_console_none() {
        let traces = |value: &str| traces_exporter(&[("OTEL_TRACES_EXPORTER", value)]);
        assert_eq!(traces("console"), Ok(Exporter::Console));
        assert_eq!(traces("NONE"), Ok(Exporter::None));
        assert_eq!(traces(" console , console "), Ok(Exporter::Console));
        for bad in ["zipkin", "jaeger", "logging", "otlp,zipkin"] {
            let err = err_of(traces(bad));
            assert!(err.starts_with("OTEL_TRACES_EXPORTER="), "{err}");
            assert!(err.contains("valid: otlp, console, none"), "{err}");
        }
        assert!(err_of(traces("jaeger")).contains("Jaeger accepts OTLP"));
        assert!(err_of(traces("otlp,console")).contains("one exporter at a time"));
        assert!(err_of(traces("otlp,none")).contains("`none` cannot be combined"));
        let prometheus = err_of(metrics_exporter(&[("OTEL_METRICS_EXPORTER", "prometheus")]));
        assert!(prometheus.contains("--metrics-addr"), "{prometheus}");
    }

    #[test]
    fn protocols_are_http_protobuf_or_grpc() {
        assert_eq!(
            traces_exporter(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC")]),
            Ok(otlp(Protocol::Grpc, "http://localhost:4317", None))
        );
        assert_eq!(
            traces_exporter(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://localhost:4318/v1/traces",
                None
            ))
        );
        let json = err_of(traces_exporter(&[(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
        )]));
        assert!(json.contains("not compiled into this binary"), "{json}");
        let unknown = err_of(traces_exporter(&[(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "thrift",
        )]));
        assert_eq!(
            unknown,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift: unknown protocol; valid: http/protobuf, grpc"
        );
    }

    #[test]
    fn endpoints_resolve_as_the_exporter_specification_says() {
        let base = Some(ENDPOINT);
        assert_eq!(
            traces_exporter(&[(ENDPOINT, "http://collector:4318")]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://collector:4318/v1/traces",
                base
            ))
        );
        assert_eq!(
            metrics_exporter(&[(ENDPOINT, "http://collector:4318/otlp/")]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://collector:4318/otlp/v1/metrics",
                base
            ))
        );
        let signal = Some("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        assert_eq!(
            traces_exporter(&[
                (ENDPOINT, "http://ignored:1"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/custom"
                ),
            ]),
            Ok(otlp(
                Protocol::HttpProtobuf,
                "http://tempo:4318/custom",
                signal
            ))
        );
        assert_eq!(
            traces_exporter(&[(PROTOCOL, "grpc"), (ENDPOINT, "http://collector:4317")]),
            Ok(otlp(Protocol::Grpc, "http://collector:4317", base))
        );
        assert_eq!(
            traces_exporter(&[
                (PROTOCOL, "grpc"),
                (ENDPOINT, "collector:4317"),
                (INSECURE, "true")
            ]),
            Ok(otlp(Protocol::Grpc, "http://collector:4317", base))
        );
    }

    #[test]
    fn malformed_endpoints_are_errors_naming_the_variable() {
        let cases = [
            (
                vec![(ENDPOINT, "localhost:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4318: not a URL",
            ),
            (
                vec![(ENDPOINT, "https://collector:4318")],
                "https is not supported",
            ),
            (vec![(ENDPOINT, "ftp://collector")], "unsupported scheme"),
            (
                vec![(ENDPOINT, "http://")],
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://:",
            ),
            (
                vec![(ENDPOINT, "http://host:port")],
                "the port is not a number",
            ),
            (vec![(ENDPOINT, "http://host:4318 /x")], "not a valid URL"),
            (
                vec![(PROTOCOL, "grpc"), (ENDPOINT, "collector:4317")],
                "https is not supported",
            ),
        ];
        for (vars, expected) in cases {
            let err = err_of(traces_exporter(&vars));
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn timeouts_and_headers_are_checked() {
        let timeout = |vars: &[(&str, &str)]| match traces_exporter(vars) {
            Ok(Exporter::Otlp(target)) => Ok(target.timeout),
            Ok(other) => panic!("{other:?}"),
            Err(err) => Err(err),
        };
        assert_eq!(
            timeout(&[(TIMEOUT, "2500")]),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(
            timeout(&[
                (TIMEOUT, "2500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700")
            ]),
            Ok(Duration::from_millis(700))
        );
        assert!(err_of(timeout(&[(TIMEOUT, "10s")])).contains("expected a number of milliseconds"));
        assert!(err_of(timeout(&[(TIMEOUT, "0")])).contains("above 0"));

        assert!(traces_exporter(&[(COMPRESSION, "none")]).is_ok());
        assert!(err_of(traces_exporter(&[(COMPRESSION, "gzip")])).contains("not compiled"));
        assert!(err_of(metrics_exporter(&[(
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "br"
        )]))
        .contains("unknown compression"));

        assert!(traces_exporter(&[(HEADERS, "api-key=abc, x-tenant=acme")]).is_ok());
        let err = err_of(traces_exporter(&[(HEADERS, "api-key=abc,secret-token")]));
        assert!(err.contains("entry 2 is not key=value"), "{err}");
        assert!(
            !err.contains("secret-token"),
            "must not echo header values: {err}"
        );
    }

    fn sampler_of(vars: &[(&str, &str)]) -> Result<String, String> {
        with_env(vars, |env| sampler(env).map(|s| format!("{s:?}")))
    }

    #[test]
    fn samplers_are_read_strictly() {
        assert_eq!(sampler_of(&[]), Ok("ParentBased(AlwaysOn)".into()));
        assert_eq!(
            sampler_of(&[(SAMPLER, "always_off")]),
            Ok("AlwaysOff".into())
        );
        assert_eq!(
            sampler_of(&[(SAMPLER, "parentbased_traceidratio"), (SAMPLER_ARG, "0.25")]),
            Ok("ParentBased(TraceIdRatioBased(0.25))".into())
        );
        assert_eq!(
            sampler_of(&[(SAMPLER, "traceidratio")]),
            Ok("TraceIdRatioBased(1.0)".into())
        );
        assert_eq!(
            sampler_of(&[(SAMPLER, "always_on"), (SAMPLER_ARG, "ignored")]),
            Ok("AlwaysOn".into())
        );
        for bad in ["1.5", "-0.1", "half"] {
            let err = err_of(sampler_of(&[(SAMPLER, "traceidratio"), (SAMPLER_ARG, bad)]));
            assert!(err.contains("from 0 to 1"), "{err}");
        }
        let unknown = err_of(sampler_of(&[(SAMPLER, "sometimes")]));
        assert!(unknown.contains("unknown sampler"), "{unknown}");
        assert!(unknown.contains("parentbased_always_on"), "{unknown}");
        assert!(err_of(sampler_of(&[(SAMPLER, "xray")])).contains("not supported"));
    }

    #[test]
    fn link_limit_keeps_one_link_per_batch_record() {
        let links = |vars: &[(&str, &str)], batch: usize| {
            with_env(vars, |env| {
                span_limits(env, batch).map(|l| l.max_links_per_span)
            })
        };
        assert_eq!(links(&[], 0), Ok(128));
        assert_eq!(links(&[], 500), Ok(500));
        assert_eq!(links(&[("OTEL_SPAN_LINK_COUNT_LIMIT", "64")], 500), Ok(64));
        assert!(
            err_of(links(&[("OTEL_SPAN_LINK_COUNT_LIMIT", "many")], 0)).contains("whole number")
        );
        assert!(err_of(links(&[("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1")], 0))
            .starts_with("OTEL_SPAN_EVENT_COUNT_LIMIT=-1"));
    }

    #[test]
    fn the_span_queue_is_large_unless_configured() {
        let batch = |vars: &[(&str, &str)]| with_env(vars, BatchSettings::read);
        assert_eq!(
            batch(&[]),
            Ok(BatchSettings {
                max_queue_size: 65_536,
                scheduled_delay: Duration::from_secs(5),
                max_export_batch_size: 512,
                export_timeout: None,
            })
        );
        let custom = batch(&[
            (BSP_MAX_QUEUE_SIZE, "4096"),
            (BSP_SCHEDULE_DELAY, "200"),
            (BSP_MAX_EXPORT_BATCH_SIZE, "1024"),
            (BSP_EXPORT_TIMEOUT, "3000"),
        ])
        .expect("valid");
        assert_eq!(custom.max_queue_size, 4096);
        assert_eq!(custom.scheduled_delay, Duration::from_millis(200));
        assert_eq!(custom.max_export_batch_size, 1024);
        assert_eq!(custom.export_timeout, Some(Duration::from_secs(3)));
        assert!(err_of(batch(&[
            (BSP_MAX_QUEUE_SIZE, "100"),
            (BSP_MAX_EXPORT_BATCH_SIZE, "512")
        ]))
        .contains("queue size (100"));
        assert!(err_of(batch(&[(BSP_SCHEDULE_DELAY, "soon")]))
            .starts_with("OTEL_BSP_SCHEDULE_DELAY=soon"));
    }

    #[test]
    fn the_export_timeout_is_capped_by_the_processor_and_reader_timeouts() {
        let config = with_env(
            &[
                (TIMEOUT, "10000"),
                (BSP_EXPORT_TIMEOUT, "2000"),
                (METRIC_EXPORT_TIMEOUT, "20000"),
            ],
            |env| Config::read(env, 0, "consumer"),
        )
        .expect("valid");
        let Exporter::Otlp(target) = &config.traces.exporter else {
            panic!("otlp");
        };
        assert_eq!(config.traces.export_timeout(target), Duration::from_secs(2));
        assert_eq!(
            capped(target.timeout, config.metrics.export_timeout),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn metric_settings_read_interval_and_temporality() {
        let settings = with_env(
            &[
                (METRIC_EXPORT_INTERVAL, "15000"),
                (METRICS_TEMPORALITY, "Delta"),
            ],
            MetricSettings::read,
        )
        .expect("valid");
        assert_eq!(settings.interval, Duration::from_secs(15));
        assert_eq!(settings.temporality, Temporality::Delta);
        assert!(err_of(with_env(
            &[(METRICS_TEMPORALITY, "sometimes")],
            MetricSettings::read
        ))
        .contains("cumulative, delta or lowmemory"));
        assert!(err_of(with_env(
            &[(METRIC_EXPORT_INTERVAL, "1m")],
            MetricSettings::read
        ))
        .starts_with("OTEL_METRIC_EXPORT_INTERVAL=1m"));
    }

    #[test]
    fn sdk_disabled_turns_both_exporters_off() {
        let config =
            with_env(&[(SDK_DISABLED, "TRUE")], |env| Config::read(env, 0, "c")).expect("valid");
        assert_eq!(config.traces.exporter, Exporter::None);
        assert_eq!(config.metrics.exporter, Exporter::None);
        assert!(
            err_of(with_env(&[(SDK_DISABLED, "yes")], |env| Config::read(
                env, 0, "c"
            )))
            .contains("expected true or false")
        );
    }

    fn attributes(vars: &[(&str, &str)]) -> Result<Vec<(String, String)>, String> {
        with_env(vars, |env| resource_attributes(env, "billing-consumer")).map(|attrs| {
            attrs
                .into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect()
        })
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            attributes(&[]),
            Ok(vec![pair(
                "service.name",
                "unknown_service:billing-consumer"
            )])
        );
        assert_eq!(
            attributes(&[(
                RESOURCE_ATTRIBUTES,
                "service.name=from-attrs,team=pay%20ments"
            )]),
            Ok(vec![
                pair("service.name", "from-attrs"),
                pair("team", "pay ments"),
                pair("service.name", "from-attrs"),
            ])
        );
        assert_eq!(
            attributes(&[
                (RESOURCE_ATTRIBUTES, "service.name=from-attrs"),
                (SERVICE_NAME, "billing"),
            ])
            .map(|attrs| attrs.last().cloned()),
            Ok(Some(pair("service.name", "billing")))
        );
        assert!(err_of(attributes(&[(RESOURCE_ATTRIBUTES, "team")]))
            .contains("entry 1 (\"team\") is not key=value"));
        assert!(err_of(attributes(&[(RESOURCE_ATTRIBUTES, "a=1,=2")])).contains("entry 2"));
        assert!(err_of(attributes(&[(RESOURCE_ATTRIBUTES, "a=%zz")])).contains("percent-encoding"));
    }
}
