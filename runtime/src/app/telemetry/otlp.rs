//! The OTLP exporters of the three signals, configured from an
//! [`OtlpTarget`]: protocol, endpoint, timeout, gzip, and for `https://`
//! the TLS configuration of [`tls`](super::tls).
//!
//! Everything the target says is set on the builders explicitly: the OTLP
//! crate's own reading of the same variables (which skips a bad value with
//! a warning) then has nothing left to decide, except the headers, which
//! [`target`](super::target) has checked.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_otlp::{
    LogExporter, MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::metrics::Temporality;

use super::target::{Compression, OtlpTarget, Protocol};
use super::tls;

/// The span exporter to `target`, `timeout` per export.
pub(super) fn span_exporter(
    target: &OtlpTarget,
    timeout: Duration,
) -> Result<SpanExporter, String> {
    let builder = SpanExporter::builder();
    match target.protocol {
        Protocol::HttpProtobuf => over_http(builder.with_http(), target, timeout)?.build(),
        Protocol::Grpc => over_grpc(builder.with_tonic(), target, timeout)?.build(),
    }
    .map_err(|err| not_built("span", target, &err))
}

/// The metric exporter to `target`, `timeout` per export.
pub(super) fn metric_exporter(
    target: &OtlpTarget,
    timeout: Duration,
    temporality: Temporality,
) -> Result<MetricExporter, String> {
    let builder = MetricExporter::builder().with_temporality(temporality);
    match target.protocol {
        Protocol::HttpProtobuf => over_http(builder.with_http(), target, timeout)?.build(),
        Protocol::Grpc => over_grpc(builder.with_tonic(), target, timeout)?.build(),
    }
    .map_err(|err| not_built("metric", target, &err))
}

/// The log record exporter to `target`, `timeout` per export.
pub(super) fn log_exporter(target: &OtlpTarget, timeout: Duration) -> Result<LogExporter, String> {
    let builder = LogExporter::builder();
    match target.protocol {
        Protocol::HttpProtobuf => over_http(builder.with_http(), target, timeout)?.build(),
        Protocol::Grpc => over_grpc(builder.with_tonic(), target, timeout)?.build(),
    }
    .map_err(|err| not_built("log", target, &err))
}

/// The error for an exporter the OTLP crate would not build.
fn not_built(what: &str, target: &OtlpTarget, err: &dyn std::fmt::Display) -> String {
    format!("OTLP {what} exporter to {}: {err}", target.endpoint.url)
}

/// An OTLP/HTTP (protobuf) builder set up for `target`.
fn over_http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    target: &OtlpTarget,
    timeout: Duration,
) -> Result<B, String> {
    let mut builder = builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(target.endpoint.url.clone())
        .with_timeout(timeout);
    if target.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    Ok(builder.with_http_client(http_client(target, timeout)?))
}

/// A gRPC builder set up for `target`.
fn over_grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    target: &OtlpTarget,
    timeout: Duration,
) -> Result<B, String> {
    let mut builder = builder
        .with_endpoint(target.endpoint.url.clone())
        .with_timeout(timeout);
    if target.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    if target.endpoint.is_https() {
        builder = builder.with_channel(tls_channel(target, timeout)?);
    }
    Ok(builder)
}

/// The blocking HTTP client for an OTLP/HTTP endpoint, always ours: the
/// OTLP crate's default client would look for a process-wide rustls
/// provider, which a library should not install. For `http://` the TLS
/// configuration is never used. It is built on a thread of its own, as the
/// OTLP crate builds its default client: reqwest's blocking client must
/// not be built inside a runtime.
fn http_client(
    target: &OtlpTarget,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    let config = if target.endpoint.is_https() {
        tls::client_config(&target.tls)?
    } else {
        tls::unused_config()
    };
    let built = std::thread::Builder::new()
        .name("otlp-http-client".to_owned())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .use_preconfigured_tls(config)
                .timeout(timeout)
                .build()
        })
        .map_err(|err| format!("starting the OTLP/HTTP client: {err}"))?
        .join()
        .map_err(|_| "building the OTLP/HTTP client panicked".to_owned())?;
    built.map_err(|err| format!("the OTLP/HTTP client for {}: {err}", target.endpoint.url))
}

/// A lazily connecting gRPC channel to an `https://` endpoint, TLS by the
/// hyper-rustls connector (HTTP/2 negotiated with ALPN). Needs a tokio
/// runtime's context.
fn tls_channel(
    target: &OtlpTarget,
    timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let config = tls::client_config(&target.tls)?;
    let mut tcp = HttpConnector::new();
    // The connector checks the scheme (https only); the TCP part must not.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http2()
        .wrap_connector(tcp);
    let endpoint = tonic::transport::Endpoint::from_shared(target.endpoint.url.clone())
        .map_err(|err| format!("gRPC endpoint {}: {err}", target.endpoint.url))?
        .timeout(timeout);
    Ok(endpoint.connect_with_connector_lazy(connector))
}
