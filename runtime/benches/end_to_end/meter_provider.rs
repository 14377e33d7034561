//! The SDK meter provider of the `kh-metrics` run, so that the per-record
//! metrics are recorded: a periodic reader into an exporter that discards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

/// A metric exporter that counts its exports and drops them.
#[derive(Debug, Default)]
struct DiscardMetrics(AtomicU64);

impl PushMetricExporter for DiscardMetrics {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Installs an SDK meter provider as the global one: a periodic reader
/// collecting every second into [`DiscardMetrics`].
pub(super) fn install_meter_provider() -> SdkMeterProvider {
    let reader = PeriodicReader::builder(DiscardMetrics::default())
        .with_interval(Duration::from_secs(1))
        .build();
    let provider = SdkMeterProvider::builder().with_reader(reader).build();
    global::set_meter_provider(provider.clone());
    provider
}

/// Puts the global no-op meter provider back and shuts `provider` down.
pub(super) fn uninstall_meter_provider(provider: SdkMeterProvider) {
    global::set_meter_provider(NoopMeterProvider::new());
    if let Err(err) = provider.shutdown() {
        eprintln!("shutting the meter provider down failed: {err}");
    }
}
