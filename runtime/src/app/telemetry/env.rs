//! The `OTEL_*` environment variables, read strictly: a value this binary
//! cannot honour is an error that names the variable and the fix, never
//! silently ignored. This module reads the SDK's own (resource, sampler,
//! limits, batch processors, metric reader); [`target`](super::target)
//! reads where each signal goes.
//!
//! Numbers follow the specification's types: a duration may be `0` (a
//! schedule delay of `0` means no delay), a timeout of `0` means no limit
//! ([`NO_LIMIT`]). Where the specification says to warn and ignore a bad
//! value, this binary stops with the error instead.
//!
//! The reading is pure: every reader takes an [`Env`] lookup, so tests
//! need not touch the process environment.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{Sampler, SpanLimits};

use super::target::{exporter, Exporter, OtlpTarget, LOGS, METRICS, TRACES};

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
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// The first of `names` that is set, with its name.
    pub(super) fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
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

    /// A duration in milliseconds (`0` included), or an error naming the
    /// variable.
    pub(super) fn duration(&self, name: &'static str) -> Result<Option<Duration>, String> {
        self.get(name)
            .map(|value| duration(name, &value))
            .transpose()
    }

    /// A timeout in milliseconds, `0` being [`NO_LIMIT`], or an error
    /// naming the variable.
    pub(super) fn timeout(&self, name: &'static str) -> Result<Option<Duration>, String> {
        self.get(name)
            .map(|value| timeout(name, &value))
            .transpose()
    }
}

/// What a timeout of `0` stands for: the specification reads it as
/// "indefinite" and allows "a very long time" instead; this is the
/// largest number of milliseconds a 32-bit integer holds (24.8 days).
pub(super) const NO_LIMIT: Duration = Duration::from_millis(i32::MAX as u64);

/// `value` of `name` as a number of milliseconds, `0` included.
pub(super) fn duration(name: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{name}={value}: expected a number of milliseconds, e.g. 10000"))
}

/// `value` of `name` as a timeout in milliseconds: `0` is [`NO_LIMIT`].
pub(super) fn timeout(name: &str, value: &str) -> Result<Duration, String> {
    duration(name, value).map(|limit| if limit.is_zero() { NO_LIMIT } else { limit })
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
/// Milliseconds between metric exports.
const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Milliseconds a metric export may take (caps the OTLP timeout).
const METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// `cumulative`, `delta` or `lowmemory`, for OTLP metrics.
const METRICS_TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";

/// The batch span processor's variables and defaults. Its queue holds
/// 65,536 spans unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise: the SDK's
/// 2048 drops spans at full consumer speed.
const BSP: BatchVars = BatchVars {
    max_queue_size: ("OTEL_BSP_MAX_QUEUE_SIZE", 65_536),
    scheduled_delay: ("OTEL_BSP_SCHEDULE_DELAY", Duration::from_secs(5)),
    max_export_batch_size: ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    export_timeout: "OTEL_BSP_EXPORT_TIMEOUT",
    items: "span",
};

/// The batch log record processor's variables and the specification's
/// defaults.
const BLRP: BatchVars = BatchVars {
    max_queue_size: ("OTEL_BLRP_MAX_QUEUE_SIZE", 2048),
    scheduled_delay: ("OTEL_BLRP_SCHEDULE_DELAY", Duration::from_secs(1)),
    max_export_batch_size: ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", 512),
    export_timeout: "OTEL_BLRP_EXPORT_TIMEOUT",
    items: "log record",
};

/// What a schedule delay of `0` ("no delay") becomes: the SDK's batch
/// processors would spin on a zero wait, so they look every millisecond.
const SHORTEST_SCHEDULE_DELAY: Duration = Duration::from_millis(1);

/// Everything read from the environment.
#[derive(Debug)]
pub(super) struct Config {
    /// The tracer provider's settings.
    pub(super) traces: TraceSettings,
    /// The meter provider's settings.
    pub(super) metrics: MetricSettings,
    /// The logger provider's settings.
    pub(super) logs: LogSettings,
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
        let mut logs = LogSettings::read(env)?;
        if disabled {
            traces.exporter = Exporter::None;
            metrics.exporter = Exporter::None;
            logs.exporter = Exporter::None;
        }
        Ok(Self {
            traces,
            metrics,
            logs,
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
            batch: BatchSettings::read(env, &BSP)?,
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

/// One batch processor's variables, with their defaults.
#[derive(Debug)]
struct BatchVars {
    max_queue_size: (&'static str, usize),
    scheduled_delay: (&'static str, Duration),
    max_export_batch_size: (&'static str, usize),
    export_timeout: &'static str,
    /// What it queues, for messages: `span`.
    items: &'static str,
}

/// A batch processor's settings, from `OTEL_BSP_*` or `OTEL_BLRP_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchSettings {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub(super) max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`; `0` is [`SHORTEST_SCHEDULE_DELAY`].
    pub(super) scheduled_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub(super) max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT`, when set; `0` is [`NO_LIMIT`].
    pub(super) export_timeout: Option<Duration>,
}

impl BatchSettings {
    /// Reads `vars`, or says which one is wrong. A queue or batch size of
    /// `0` is an error: the specification says positive.
    fn read(env: Env<'_>, vars: &BatchVars) -> Result<Self, String> {
        let (queue_var, default_queue) = vars.max_queue_size;
        let max_queue_size = env.count::<usize>(queue_var)?.unwrap_or(default_queue);
        if max_queue_size == 0 {
            return Err(format!(
                "{queue_var}=0: the queue needs room for a {}",
                vars.items
            ));
        }
        let (batch_var, default_batch) = vars.max_export_batch_size;
        let max_export_batch_size = env.count::<usize>(batch_var)?.unwrap_or(default_batch);
        if max_export_batch_size == 0 || max_export_batch_size > max_queue_size {
            return Err(format!(
                "{batch_var}={max_export_batch_size}: must be from 1 to the \
                 queue size ({max_queue_size}, {queue_var})"
            ));
        }
        let (delay_var, default_delay) = vars.scheduled_delay;
        let scheduled_delay = env
            .duration(delay_var)?
            .map_or(default_delay, |delay| delay.max(SHORTEST_SCHEDULE_DELAY));
        Ok(Self {
            max_queue_size,
            scheduled_delay,
            max_export_batch_size,
            export_timeout: env.timeout(vars.export_timeout)?,
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
            interval: metric_interval(env)?,
            export_timeout: env.timeout(METRIC_EXPORT_TIMEOUT)?,
            temporality: temporality(env)?,
        })
    }
}

/// `OTEL_METRIC_EXPORT_INTERVAL`, default 60 s. `0` is an error: the
/// specification gives it no meaning, and the SDK would silently keep 60 s.
fn metric_interval(env: Env<'_>) -> Result<Duration, String> {
    match env.duration(METRIC_EXPORT_INTERVAL)? {
        None => Ok(Duration::from_secs(60)),
        Some(interval) if interval.is_zero() => Err(format!(
            "{METRIC_EXPORT_INTERVAL}=0: must be above 0 milliseconds, e.g. 60000"
        )),
        Some(interval) => Ok(interval),
    }
}

/// The logger provider's settings: where the log lines go besides stderr.
#[derive(Debug)]
pub(super) struct LogSettings {
    /// `OTEL_LOGS_EXPORTER`: `none` (the default here) or `otlp`.
    pub(super) exporter: Exporter,
    /// The batch log record processor's `OTEL_BLRP_*` variables.
    pub(super) batch: BatchSettings,
}

impl LogSettings {
    /// Reads the variables, or says which one is wrong.
    fn read(env: Env<'_>) -> Result<Self, String> {
        Ok(Self {
            exporter: exporter(env, &LOGS)?,
            batch: BatchSettings::read(env, &BLRP)?,
        })
    }

    /// The OTLP timeout, capped by `OTEL_BLRP_EXPORT_TIMEOUT`.
    pub(super) fn export_timeout(&self, target: &OtlpTarget) -> Duration {
        capped(target.timeout, self.batch.export_timeout)
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
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fmt;

    /// An environment of `vars`.
    pub(in crate::app::telemetry) fn with_env<T>(
        vars: &[(&str, &str)],
        f: impl FnOnce(Env<'_>) -> T,
    ) -> T {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        f(Env::new(&lookup))
    }

    /// The error of `result`, which must be one.
    pub(in crate::app::telemetry) fn err_of<T: fmt::Debug>(result: Result<T, String>) -> String {
        result.expect_err("must be a configuration error")
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
        let batch = |vars: &[(&str, &str)]| with_env(vars, |env| BatchSettings::read(env, &BSP));
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
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4096"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1024"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
        ])
        .expect("valid");
        assert_eq!(custom.max_queue_size, 4096);
        assert_eq!(custom.scheduled_delay, Duration::from_millis(200));
        assert_eq!(custom.max_export_batch_size, 1024);
        assert_eq!(custom.export_timeout, Some(Duration::from_secs(3)));
        assert!(err_of(batch(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512")
        ]))
        .contains("queue size (100"));
        assert!(err_of(batch(&[("OTEL_BSP_SCHEDULE_DELAY", "soon")]))
            .starts_with("OTEL_BSP_SCHEDULE_DELAY=soon"));
    }

    #[test]
    fn log_batches_use_the_blrp_variables_and_defaults() {
        let batch = |vars: &[(&str, &str)]| with_env(vars, |env| BatchSettings::read(env, &BLRP));
        assert_eq!(
            batch(&[("OTEL_BSP_MAX_QUEUE_SIZE", "4096")]),
            Ok(BatchSettings {
                max_queue_size: 2048,
                scheduled_delay: Duration::from_secs(1),
                max_export_batch_size: 512,
                export_timeout: None,
            })
        );
        assert!(err_of(batch(&[("OTEL_BLRP_MAX_QUEUE_SIZE", "0")])).contains("a log record"));
    }

    /// The specification's meanings of `0`: no delay for a schedule delay
    /// (a millisecond, so the processor does not spin), no limit for a
    /// timeout; positive sizes and a metric interval stay errors.
    #[test]
    fn zero_means_no_delay_or_no_limit_where_the_specification_says_so() {
        let batch = with_env(
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", "0"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
            ],
            |env| BatchSettings::read(env, &BSP),
        )
        .expect("valid");
        assert_eq!(batch.scheduled_delay, SHORTEST_SCHEDULE_DELAY);
        assert_eq!(batch.export_timeout, Some(NO_LIMIT));
        let config = with_env(
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
                (METRIC_EXPORT_TIMEOUT, "0"),
            ],
            |env| Config::read(env, 0, "consumer"),
        )
        .expect("valid");
        let Exporter::Otlp(target) = &config.metrics.exporter else {
            panic!("otlp");
        };
        assert_eq!(target.timeout, NO_LIMIT);
        assert_eq!(
            capped(target.timeout, config.metrics.export_timeout),
            NO_LIMIT
        );
        for (var, expected) in [
            (
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "OTEL_BSP_MAX_QUEUE_SIZE=0: the queue needs room",
            ),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "must be from 1"),
            (METRIC_EXPORT_INTERVAL, "must be above 0 milliseconds"),
        ] {
            let err = err_of(with_env(&[(var, "0")], |env| Config::read(env, 0, "c")));
            assert!(err.contains(expected), "{var}: {err}");
        }
        assert!(
            err_of(with_env(&[("OTEL_BSP_SCHEDULE_DELAY", "-1")], |env| {
                Config::read(env, 0, "c")
            }))
            .contains("expected a number of milliseconds")
        );
    }

    #[test]
    fn the_export_timeout_is_capped_by_the_processor_and_reader_timeouts() {
        let config = with_env(
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10000"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
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
        assert_eq!(config.logs.exporter, Exporter::None);
        let logs = with_env(
            &[(SDK_DISABLED, "true"), ("OTEL_LOGS_EXPORTER", "otlp")],
            |env| Config::read(env, 0, "c"),
        )
        .expect("valid");
        assert_eq!(logs.logs.exporter, Exporter::None);
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
