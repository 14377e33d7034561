//! Generated consumer binaries: [`main!`](crate::main) turns a list of
//! handlers into a deployable `main`.
//!
//! ```no_run
//! # mod handlers {
//! #     #[kafka_handler::kafka_handler(topics = ["orders"], group = "billing")]
//! #     pub fn bill(_payload: &str) {}
//! #     #[kafka_handler::kafka_handler(topics = ["orders"], group = "audit")]
//! #     pub fn audit(_payload: &str) {}
//! # }
//! # use handlers::{audit, bill};
//! kafka_handler::main!(bill, audit);
//! ```
//!
//! The binary reads its flags and their environment fallbacks (`--help`
//! lists them), sets up OpenTelemetry from the standard `OTEL_*` variables,
//! writes logs carrying trace and span ids, optionally serves `/livez`,
//! `/readyz` and Prometheus `/metrics`, and on SIGINT or SIGTERM finishes
//! the records in flight, commits, flushes telemetry and exits 0. A second
//! signal exits at once. The README's "Deploying a consumer" has the whole
//! table.

mod check;
mod cli;
mod diagnose;
mod http;
mod list;
mod logs;
mod prometheus;
mod secrets;
mod signals;
mod telemetry;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::error::Error;
use crate::redact;
use crate::{Consumer, Handler, Shutdown};

use cli::Cli;
use logs::LogFormat;
use telemetry::{Telemetry, TelemetryOptions};

/// Generates `fn main()` for a consumer binary of these handlers.
///
/// ```no_run
/// # mod handlers {
/// #     #[kafka_handler::kafka_handler(topics = ["orders"], group = "billing")]
/// #     pub fn bill(_payload: &str) {}
/// # }
/// # use handlers::bill;
/// kafka_handler::main!(bill);
/// ```
///
/// The binary is named after its target and versioned after its crate. See
/// [`app::run`](crate::app::run) for what it does.
#[macro_export]
macro_rules! main {
    () => {
        ::std::compile_error!("main! needs at least one handler: `kafka_handler::main!(bill, audit);`");
    };
    ($($handler:path),+ $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            $crate::app::run(
                $crate::handlers![$($handler),+],
                $crate::app::About {
                    version: ::std::env!("CARGO_PKG_VERSION"),
                    description: ::std::env!("CARGO_PKG_DESCRIPTION"),
                },
            )
        }
    };
}

/// What `--help` and `--version` say about the binary; [`main!`](crate::main)
/// takes them from the binary's crate.
#[derive(Clone, Copy, Debug)]
pub struct About {
    /// The crate's version.
    pub version: &'static str,
    /// The crate's description (may be empty).
    pub description: &'static str,
}

/// How the binary ends.
#[derive(Debug)]
enum Exit {
    /// Invalid configuration: exit 2.
    Config(String),
    /// The consumer, or `--check`, failed: exit 1.
    Failed(String),
}

impl Exit {
    fn code(&self) -> ExitCode {
        match self {
            Exit::Config(_) => ExitCode::from(2),
            Exit::Failed(_) => ExitCode::FAILURE,
        }
    }

    fn message(&self) -> &str {
        match self {
            Exit::Config(message) | Exit::Failed(message) => message,
        }
    }
}

/// Runs a consumer binary of `handlers` with the process's command line
/// and environment; what [`main!`](crate::main) calls.
///
/// Exits 0 after a clean shutdown (or `--list`, or a passing `--check`),
/// 1 when the consumer fails or `--check` finds a problem, 2 for invalid
/// configuration, and 128 + the signal's number when a second signal cuts
/// a shutdown short.
pub fn run(handlers: Vec<Handler>, about: About) -> ExitCode {
    let name = binary_name();
    let matches = cli::command(&name, about.version, about.description).get_matches();
    let cli = Cli::from_matches(&matches);
    match run_cli(cli, handlers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            let message = exit.message();
            if tracing::dispatcher::has_been_set() {
                tracing::error!(target: "kafka_handler", "{message}");
            } else {
                eprintln!("error: {message}");
            }
            exit.code()
        }
    }
}

fn run_cli(mut cli: Cli, handlers: Vec<Handler>) -> Result<(), Exit> {
    let handlers = select(handlers, &cli.only)?;
    if cli.list {
        print!(
            "{}",
            list::render(&handlers, cli.group.as_deref(), cli.max_in_flight)
        );
        return Ok(());
    }
    let secrets_on_command_line: Vec<String> = if cli.set_on_command_line {
        secrets::on_command_line(&cli.properties)
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    cli.properties = secrets::resolve(&cli.properties, &cli.property_sources, |name| {
        std::env::var_os(name)
    })
    .map_err(Exit::Config)?;
    let brokers = cli.brokers.clone().ok_or_else(|| {
        Exit::Config("no brokers: pass --brokers HOST:PORT or set KAFKA_BROKERS".into())
    })?;
    if cli.check {
        // Validates the handlers and every property, as `run` would.
        build(&cli, &brokers, handlers.clone())?;
        return check(&brokers, &cli, &handlers);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Exit::Failed(format!("starting the async runtime: {err}")))?;
    let telemetry = {
        let _entered = runtime.enter();
        Telemetry::init(&TelemetryOptions {
            log_format: LogFormat::parse(&cli.log_format).map_err(Exit::Config)?,
            log_filter: cli.log.clone(),
            max_batch_records: handlers
                .iter()
                .filter_map(|h| h.options().batch.map(|b| b.max_records()))
                .max()
                .unwrap_or(0),
            prometheus: cli.metrics_addr.is_some(),
        })
        .map_err(Exit::Config)?
    };
    for key in &secrets_on_command_line {
        tracing::warn!(
            target: "kafka_handler",
            "{key} is on the command line, where `ps` shows it to every user of the machine: \
             pass it with --set-file {key}=PATH or --set-env {key}=VARIABLE instead"
        );
    }
    tracing::info!(
        target: "kafka_handler",
        brokers = %brokers,
        properties = %redact::Properties(&cli.properties),
        "connecting"
    );
    // After telemetry: each handler binds the tracer provider installed now.
    // `Telemetry::shutdown` flushes it, within the export timeout.
    let consumer = build(&cli, &brokers, handlers)?;
    let result = runtime.block_on(serve(&cli, consumer, &telemetry));
    telemetry.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(1));
    if result.is_ok() {
        tracing::info!(target: "kafka_handler", "stopped: handled offsets committed, telemetry flushed");
    }
    result
}

/// Runs the consumer beside the HTTP endpoints and the signal watcher.
async fn serve(cli: &Cli, consumer: Consumer, telemetry: &Telemetry) -> Result<(), Exit> {
    let shutdown = Shutdown::new();
    let health = consumer.health();
    let metrics = telemetry.prometheus();
    // One listener per address; the same address may serve both.
    let mut listeners: Vec<(SocketAddr, &str, http::Endpoints)> = Vec::new();
    if let Some(addr) = cli.health_addr {
        let endpoints = http::Endpoints {
            health: Some(health),
            metrics: None,
            shutdown: shutdown.clone(),
        };
        listeners.push((addr, "--health-addr", endpoints));
    }
    if let Some(addr) = cli.metrics_addr {
        // Port 0 asks for two ports, not one shared.
        let shared = listeners
            .iter_mut()
            .find(|(a, _, _)| *a == addr && addr.port() != 0);
        match shared {
            Some((_, _, endpoints)) => endpoints.metrics = metrics,
            None => {
                let endpoints = http::Endpoints {
                    health: None,
                    metrics,
                    shutdown: shutdown.clone(),
                };
                listeners.push((addr, "--metrics-addr", endpoints));
            }
        }
    }
    for (addr, flag, endpoints) in listeners {
        let listener = http::bind(addr, flag).await.map_err(Exit::Config)?;
        let addr = listener
            .local_addr()
            .map_err(|err| Exit::Failed(format!("{flag}: {err}")))?;
        tracing::info!(target: "kafka_handler", %addr, paths = %endpoints.paths(), "serving HTTP endpoints");
        http::serve(listener, endpoints);
    }
    signals::watch(shutdown.clone()).map_err(Exit::Failed)?;
    consumer
        .run(shutdown)
        .await
        .map_err(|err| Exit::Failed(err.to_string()))
}

/// The handlers `--only` names (by function name, or by full path when two
/// share one), or all; an unknown name is a configuration error listing the
/// known ones.
fn select(handlers: Vec<Handler>, only: &[String]) -> Result<Vec<Handler>, Exit> {
    if only.is_empty() {
        return Ok(handlers);
    }
    let named = |handler: &Handler, name: &str| {
        handler.name() == name || short_name(handler.name()) == name
    };
    if let Some(unknown) = only
        .iter()
        .find(|name| !handlers.iter().any(|h| named(h, name)))
    {
        let known: Vec<&str> = handlers.iter().map(|h| short_name(h.name())).collect();
        return Err(Exit::Config(format!(
            "--only {unknown}: no such handler; this binary has {}",
            known.join(", ")
        )));
    }
    Ok(handlers
        .into_iter()
        .filter(|h| only.iter().any(|name| named(h, name)))
        .collect())
}

/// A handler's function name: `bill` for `my_crate::orders::bill`.
pub(crate) fn short_name(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

/// The consumer the flags describe; an invalid configuration is exit 2.
fn build(cli: &Cli, brokers: &str, handlers: Vec<Handler>) -> Result<Consumer, Exit> {
    if let Some(max) = cli.max_in_flight {
        check_batches_fit(max, &handlers)?;
    }
    let mut builder = Consumer::builder()
        .brokers(brokers)
        .handlers(handlers)
        .shutdown_timeout(cli.shutdown_timeout)
        .commit_interval(cli.commit_interval);
    if let Some(group) = &cli.group {
        builder = builder.group(group);
    }
    if let Some(max) = cli.max_in_flight {
        builder = builder.max_in_flight(max);
    }
    for (key, value) in &cli.properties {
        builder = builder.set(key, value);
    }
    builder.build().map_err(config_error)
}

/// `--max-in-flight` below a batch handler's `max_records`: its full
/// batches could never start. `build()` rejects it too, but in terms of the
/// handler's own option; this names the flag.
fn check_batches_fit(max: usize, handlers: &[Handler]) -> Result<(), Exit> {
    let largest = handlers
        .iter()
        .filter_map(|h| h.batch_options().map(|batch| (h, batch.max_records())))
        .filter(|(_, records)| *records > max)
        .max_by_key(|(_, records)| *records);
    match largest {
        None => Ok(()),
        Some((handler, records)) => {
            let name = short_name(handler.name());
            Err(Exit::Config(format!(
                "--max-in-flight (KAFKA_HANDLER_MAX_IN_FLIGHT) is {max}, below the {records} \
                 records of a full batch of `{name}`, which could never start: raise it to at \
                 least {records}, or run `{name}` apart with --only"
            )))
        }
    }
}

fn config_error(error: Error) -> Exit {
    match error {
        Error::Kafka {
            source: KafkaError::ClientConfig(_, description, key, value),
            ..
        } => Exit::Config(format!(
            "librdkafka rejects `{key}={value}`: {description}. Check --set / KAFKA_SET \
             against librdkafka's CONFIGURATION.md",
            // Redacted already, when the builder made the error.
            value = redact::value(&key, &value),
        )),
        Error::Kafka { .. } => Exit::Config(format!("{error} (check --set / KAFKA_SET)")),
        other => Exit::Config(other.to_string()),
    }
}

fn check(brokers: &str, cli: &Cli, handlers: &[Handler]) -> Result<(), Exit> {
    let report = check::run(brokers, &cli.properties, handlers);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "configuration: ok ({} handlers)", handlers.len());
    if !cli.properties.is_empty() {
        let _ = writeln!(
            stdout,
            "properties: {}",
            redact::Properties(&cli.properties)
        );
    }
    for line in &report.lines {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    if report.problems.is_empty() {
        let _ = writeln!(stdout, "check passed");
        return Ok(());
    }
    // One problem, one line: what is wrong and how to fix it.
    Err(Exit::Failed(match report.problems.as_slice() {
        [problem] => format!("check failed: {problem}"),
        problems => format!("check failed:\n  {}", problems.join("\n  ")),
    }))
}

/// The binary's file name, for `--help` and the default service name.
fn binary_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "consumer".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOptions, Outcome};

    fn handler(name: &'static str) -> Handler {
        Handler::sync(name, ["orders"], name, |_| Outcome::Ok(()))
    }

    #[test]
    fn only_selects_and_rejects_unknown_names() {
        let all = || vec![handler("bill"), handler("audit"), handler("pack")];
        let names = |hs: Vec<Handler>| hs.iter().map(|h| h.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            names(select(all(), &[]).unwrap()),
            ["bill", "audit", "pack"]
        );
        assert_eq!(
            names(select(all(), &["pack".into(), "bill".into()]).unwrap()),
            ["bill", "pack"]
        );
        let qualified = || vec![handler("app::orders::bill"), handler("app::orders::audit")];
        assert_eq!(
            names(select(qualified(), &["audit".into()]).unwrap()),
            ["app::orders::audit"]
        );
        assert_eq!(
            names(select(qualified(), &["app::orders::bill".into()]).unwrap()),
            ["app::orders::bill"]
        );
        let Err(Exit::Config(message)) = select(all(), &["nosuch".into()]) else {
            panic!("an unknown name must be a configuration error");
        };
        assert!(message.contains("--only nosuch"), "{message}");
        assert!(message.contains("bill, audit, pack"), "{message}");
    }

    #[test]
    fn max_in_flight_below_a_batch_names_the_flag_and_the_batch() {
        let pack = || {
            Handler::batch("app::pack", ["orders"], "warehouse", |_| {
                Box::pin(async { Outcome::Ok(()) })
            })
            .with_batch(BatchOptions::new(100, Duration::from_millis(50)))
        };
        assert!(check_batches_fit(7, &[handler("bill")]).is_ok());
        assert!(check_batches_fit(100, &[handler("bill"), pack()]).is_ok());
        let Err(Exit::Config(message)) = check_batches_fit(7, &[handler("bill"), pack()]) else {
            panic!("a batch larger than --max-in-flight must be a configuration error");
        };
        for needle in [
            "--max-in-flight",
            "is 7",
            "100 records",
            "`pack`",
            "at least 100",
        ] {
            assert!(message.contains(needle), "lacks {needle:?}: {message}");
        }
    }
}
