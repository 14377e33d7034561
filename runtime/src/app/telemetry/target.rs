//! Where and how each signal is exported: the `OTEL_*_EXPORTER` choice and,
//! for OTLP, the `OTEL_EXPORTER_OTLP_*` variables (protocol, endpoint,
//! timeout, headers, compression and TLS files), generic and per signal.

use std::fmt;
use std::time::Duration;

use super::env::{timeout, Env};

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
/// `gzip` or `none`, for both signals.
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// A PEM file of the CA certificates that verify the collector (instead of
/// the system's roots).
const CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// A PEM file of the client certificate (chain) for mutual TLS.
const CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// A PEM file of the client certificate's private key.
const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// The OTLP exporters' timeout per export (the specification's default).
pub(super) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// The variables of one signal (traces, metrics or logs).
#[derive(Debug)]
pub(super) struct Signal {
    /// `OTEL_TRACES_EXPORTER`.
    pub(super) exporter: &'static str,
    /// The exporter when the variable is unset.
    default: ExporterKind,
    /// Whether `console` is offered.
    console: bool,
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
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`.
    certificate: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE`.
    client_certificate: &'static str,
    /// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY`.
    client_key: &'static str,
    /// Appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for OTLP/HTTP.
    path: &'static str,
    /// What is exported, for messages: `spans`.
    pub(super) noun: &'static str,
}

/// The trace signal's variables.
pub(super) const TRACES: Signal = Signal {
    exporter: "OTEL_TRACES_EXPORTER",
    default: ExporterKind::Otlp,
    console: true,
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    insecure: "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    path: "/v1/traces",
    noun: "spans",
};

/// The metric signal's variables.
pub(super) const METRICS: Signal = Signal {
    exporter: "OTEL_METRICS_EXPORTER",
    default: ExporterKind::Otlp,
    console: true,
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    insecure: "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    path: "/v1/metrics",
    noun: "metrics",
};

/// The log signal's variables. Logs always go to stderr; exporting them
/// over OTLP too is asked for with `OTEL_LOGS_EXPORTER=otlp` (the
/// specification's default is `otlp`: a deployment that upgrades should
/// not start shipping, and paying for, a second copy of its logs unasked).
/// `console` is not offered: stderr is the console.
pub(super) const LOGS: Signal = Signal {
    exporter: "OTEL_LOGS_EXPORTER",
    default: ExporterKind::None,
    console: false,
    endpoint: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    timeout: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    headers: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    insecure: "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
    compression: "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    path: "/v1/logs",
    noun: "logs",
};

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
pub(super) fn exporter(env: Env<'_>, signal: &Signal) -> Result<Exporter, String> {
    Ok(match exporter_kind(env, signal)? {
        ExporterKind::None => Exporter::None,
        ExporterKind::Console => Exporter::Console,
        ExporterKind::Otlp => Exporter::Otlp(otlp_target(env, signal)?),
    })
}

/// `OTEL_{TRACES,METRICS,LOGS}_EXPORTER`: `otlp`, `console` (not for
/// logs) or `none`; the signal's default when unset. The variable is a
/// list, but this binary exports each signal one way: one name (repeats
/// allowed), or `none` alone.
fn exporter_kind(env: Env<'_>, signal: &Signal) -> Result<ExporterKind, String> {
    let var = signal.exporter;
    let Some(value) = env.get(var) else {
        return Ok(signal.default);
    };
    let mut chosen: Vec<ExporterKind> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = match name.to_ascii_lowercase().as_str() {
            "otlp" => ExporterKind::Otlp,
            "console" if signal.console => ExporterKind::Console,
            "none" => ExporterKind::None,
            other => return Err(unknown_exporter(signal, &value, other)),
        };
        if !chosen.contains(&kind) {
            chosen.push(kind);
        }
    }
    match chosen.as_slice() {
        [] => Ok(signal.default),
        [one] => Ok(*one),
        several if several.contains(&ExporterKind::None) => Err(format!(
            "{var}={value}: `none` cannot be combined with another exporter; \
             set {var}=none to export no {}, or name one exporter",
            signal.noun
        )),
        _ => Err(format!(
            "{var}={value}: one exporter at a time; set {var} to {}",
            signal.valid_exporters()
        )),
    }
}

impl Signal {
    /// The exporter names this signal takes, for messages.
    fn valid_exporters(&self) -> &'static str {
        if self.console {
            "otlp, console or none"
        } else {
            "otlp or none"
        }
    }
}

/// The error for an exporter name this binary does not know, with a hint
/// for the names the specification defines.
fn unknown_exporter(signal: &Signal, value: &str, name: &str) -> String {
    let hint = match name {
        "zipkin" => "; to reach Zipkin, export OTLP to a collector that forwards to it",
        "jaeger" => "; Jaeger accepts OTLP: keep otlp and point OTEL_EXPORTER_OTLP_ENDPOINT at it",
        "console" | "logging" if !signal.console => {
            "; log lines always go to stderr (see --log-format)"
        }
        "logging" => "; `logging` is now called `console`",
        "prometheus" if signal.exporter == METRICS.exporter => {
            "; for Prometheus scraping, pass --metrics-addr (and set \
             OTEL_METRICS_EXPORTER=none when there is no OTLP collector)"
        }
        _ => "",
    };
    format!(
        "{}={value}: exporter {name:?} is unknown or unsupported; valid: {}{hint}",
        signal.exporter,
        signal.valid_exporters().replace(" or ", ", ")
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
    /// How request bodies are compressed.
    pub(super) compression: Compression,
    /// The PEM files for an `https://` endpoint.
    pub(super) tls: TlsFiles,
}

/// `OTEL_EXPORTER_OTLP_{TRACES_,}COMPRESSION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum Compression {
    /// `none`, the default.
    #[default]
    None,
    /// `gzip`: `Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip`
    /// over gRPC.
    Gzip,
}

/// The TLS files one signal's exports use, each with the variable that
/// named it. Without a CA file, the system's roots verify the collector.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(super) struct TlsFiles {
    /// `OTEL_EXPORTER_OTLP_{TRACES_,}CERTIFICATE`.
    pub(super) certificate: Option<PemFile>,
    /// The client certificate and its key, for mutual TLS.
    pub(super) client: Option<ClientIdentity>,
}

/// `OTEL_EXPORTER_OTLP_{TRACES_,}CLIENT_CERTIFICATE` and `_CLIENT_KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClientIdentity {
    /// The certificate (chain).
    pub(super) certificate: PemFile,
    /// Its private key.
    pub(super) key: PemFile,
}

/// A PEM file's path and the variable that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PemFile {
    /// The variable, for messages.
    pub(super) var: &'static str,
    /// The path, as given.
    pub(super) path: String,
}

/// An endpoint URL and the variable it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The full URL exports go to (`http://localhost:4318/v1/traces`).
    pub(super) url: String,
    /// The variable that set it; `None` for the default.
    pub(super) source: Option<&'static str>,
}

/// The signal's protocol, endpoint, timeout, compression and TLS files;
/// also checks its headers variable (which the OTLP crate reads itself).
fn otlp_target(env: Env<'_>, signal: &Signal) -> Result<OtlpTarget, String> {
    let protocol = protocol(env, signal)?;
    let endpoint = endpoint(env, signal, protocol)?;
    let timeout = match env.first(&[signal.timeout, TIMEOUT]) {
        Some((var, value)) => timeout(var, &value)?,
        None => DEFAULT_OTLP_TIMEOUT,
    };
    check_headers(env, signal)?;
    Ok(OtlpTarget {
        protocol,
        compression: compression(env, signal)?,
        tls: tls_files(env, signal, &endpoint)?,
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
    let insecure = match env.first(&[signal.insecure, INSECURE]) {
        None => false,
        Some((_, v)) if v.eq_ignore_ascii_case("true") => true,
        Some((_, v)) if v.eq_ignore_ascii_case("false") => false,
        Some((var, v)) => return Err(format!("{var}={v}: expected true or false")),
    };
    let url = if protocol == Protocol::Grpc && !value.contains("://") {
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

/// Checks that `url` is an `http://` or `https://host[:port][/path]` URL.
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
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "unsupported scheme {scheme:?}; use http:// or https://, e.g. {example}"
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

/// `OTEL_EXPORTER_OTLP_{TRACES_,}COMPRESSION`: `gzip` or `none` (any
/// case). `zstd` is valid OpenTelemetry but not compiled in; the OTLP crate
/// would skip an unknown value with a warning.
fn compression(env: Env<'_>, signal: &Signal) -> Result<Compression, String> {
    match env.first(&[signal.compression, COMPRESSION]) {
        None => Ok(Compression::None),
        Some((_, value)) if value.eq_ignore_ascii_case("none") => Ok(Compression::None),
        Some((_, value)) if value.eq_ignore_ascii_case("gzip") => Ok(Compression::Gzip),
        Some((var, value)) if value.eq_ignore_ascii_case("zstd") => Err(format!(
            "{var}={value}: zstd is not compiled into this binary; use gzip or none"
        )),
        Some((var, value)) => Err(format!(
            "{var}={value}: unknown compression; valid: gzip, none"
        )),
    }
}

/// The signal's TLS files: each variable per signal first, then generic.
/// A client certificate needs its key and the other way round, and the
/// files are for an `https://` endpoint: with `http://` they would be
/// ignored, so that is an error (which names the fix) too.
fn tls_files(env: Env<'_>, signal: &Signal, endpoint: &Endpoint) -> Result<TlsFiles, String> {
    let pem = |signal_var, generic_var| {
        env.first(&[signal_var, generic_var])
            .map(|(var, path)| PemFile { var, path })
    };
    let certificate = pem(signal.certificate, CERTIFICATE);
    let client = match (
        pem(signal.client_certificate, CLIENT_CERTIFICATE),
        pem(signal.client_key, CLIENT_KEY),
    ) {
        (None, None) => None,
        (Some(certificate), Some(key)) => Some(ClientIdentity { certificate, key }),
        (Some(certificate), None) => {
            return Err(format!(
                "{} is set without {}: mutual TLS needs the client certificate's private key",
                certificate.var, signal.client_key
            ))
        }
        (None, Some(key)) => {
            return Err(format!(
                "{} is set without {}: mutual TLS needs the client certificate",
                key.var, signal.client_certificate
            ))
        }
    };
    let files = TlsFiles {
        certificate,
        client,
    };
    let named = files
        .certificate
        .as_ref()
        .or(files.client.as_ref().map(|client| &client.certificate));
    if let Some(file) = named {
        if !endpoint.is_https() {
            return Err(format!(
                "{} is set but {} is {}: TLS files need an https:// endpoint; \
                 use https:// or unset {}",
                file.var,
                endpoint.source.unwrap_or(signal.endpoint),
                endpoint.url,
                file.var
            ));
        }
    }
    Ok(files)
}

impl Endpoint {
    /// Whether exports go over TLS.
    pub(super) fn is_https(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::tests::{err_of, with_env};
    use super::*;

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
            compression: Compression::None,
            tls: TlsFiles::default(),
        })
    }

    fn target_of(result: Result<Exporter, String>) -> Result<OtlpTarget, String> {
        match result? {
            Exporter::Otlp(target) => Ok(target),
            other => panic!("not otlp: {other:?}"),
        }
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
                vec![(ENDPOINT, "https://host:port")],
                "the port is not a number",
            ),
            (
                vec![(ENDPOINT, "collector:4317"), (INSECURE, "yes")],
                "OTEL_EXPORTER_OTLP_INSECURE=yes: expected true or false",
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
        assert_eq!(timeout(&[(TIMEOUT, "0")]), Ok(super::super::env::NO_LIMIT));

        assert!(traces_exporter(&[(HEADERS, "api-key=abc, x-tenant=acme")]).is_ok());
        let err = err_of(traces_exporter(&[(HEADERS, "api-key=abc,secret-token")]));
        assert!(err.contains("entry 2 is not key=value"), "{err}");
        assert!(
            !err.contains("secret-token"),
            "must not echo header values: {err}"
        );
    }

    #[test]
    fn compression_is_gzip_or_none_per_signal() {
        let compression =
            |vars: &[(&str, &str)]| target_of(traces_exporter(vars)).map(|t| t.compression);
        assert_eq!(compression(&[]), Ok(Compression::None));
        assert_eq!(compression(&[(COMPRESSION, "GZIP")]), Ok(Compression::Gzip));
        assert_eq!(
            compression(&[
                (COMPRESSION, "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")
            ]),
            Ok(Compression::None)
        );
        assert!(err_of(compression(&[(COMPRESSION, "zstd")])).contains("not compiled"));
        assert!(err_of(metrics_exporter(&[(
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "br"
        )]))
        .contains("unknown compression; valid: gzip, none"));
    }

    #[test]
    fn https_endpoints_take_tls_files_per_signal() {
        let https = [(ENDPOINT, "https://collector:4318")];
        let tls = |extra: &[(&str, &str)]| {
            let vars: Vec<_> = https.iter().chain(extra).copied().collect();
            target_of(traces_exporter(&vars)).map(|t| t.tls)
        };
        assert_eq!(tls(&[]), Ok(TlsFiles::default()));
        let pem = |var, path: &str| PemFile {
            var,
            path: path.to_owned(),
        };
        assert_eq!(
            tls(&[
                (CERTIFICATE, "/etc/ca.pem"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "/etc/traces-ca.pem"
                ),
                (CLIENT_CERTIFICATE, "/etc/client.pem"),
                (CLIENT_KEY, "/etc/client.key"),
            ]),
            Ok(TlsFiles {
                certificate: Some(pem(
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "/etc/traces-ca.pem"
                )),
                client: Some(ClientIdentity {
                    certificate: pem(CLIENT_CERTIFICATE, "/etc/client.pem"),
                    key: pem(CLIENT_KEY, "/etc/client.key"),
                }),
            })
        );
        let no_key = err_of(tls(&[(CLIENT_CERTIFICATE, "/etc/client.pem")]));
        assert!(
            no_key.starts_with(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without \
                 OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"
            ),
            "{no_key}"
        );
        assert!(err_of(tls(&[(CLIENT_KEY, "/etc/client.key")]))
            .contains("needs the client certificate"));
        let plain = err_of(traces_exporter(&[
            (ENDPOINT, "http://collector:4318"),
            (CERTIFICATE, "/etc/ca.pem"),
        ]));
        assert!(
            plain.starts_with(
                "OTEL_EXPORTER_OTLP_CERTIFICATE is set but OTEL_EXPORTER_OTLP_ENDPOINT is \
                 http://collector:4318/v1/traces: TLS files need an https:// endpoint"
            ),
            "{plain}"
        );
        let grpc = target_of(traces_exporter(&[
            (PROTOCOL, "grpc"),
            (ENDPOINT, "collector:4317"),
            (CERTIFICATE, "/etc/ca.pem"),
        ]))
        .expect("a scheme-less gRPC endpoint is https");
        assert_eq!(grpc.endpoint.url, "https://collector:4317");
        assert!(grpc.endpoint.is_https());
    }

    #[test]
    fn logs_are_exported_only_when_asked() {
        let logs = |vars: &[(&str, &str)]| with_env(vars, |env| exporter(env, &LOGS));
        assert_eq!(
            logs(&[(ENDPOINT, "http://collector:4318")]),
            Ok(Exporter::None)
        );
        let target = target_of(logs(&[
            ("OTEL_LOGS_EXPORTER", "otlp"),
            (ENDPOINT, "http://collector:4318"),
        ]))
        .expect("valid");
        assert_eq!(target.endpoint.url, "http://collector:4318/v1/logs");
        let console = err_of(logs(&[("OTEL_LOGS_EXPORTER", "console")]));
        assert!(console.contains("valid: otlp, none"), "{console}");
        assert!(console.contains("always go to stderr"), "{console}");
    }
}
