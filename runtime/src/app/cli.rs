//! The generated binary's command line: every flag with its environment
//! fallback, and the `OTEL_*` variables in `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::HandlerOptions;

use super::secrets::Source;

/// The `OTEL_*` variables, printed after the flags in `--help`.
const OTEL_HELP: &str = "\
OpenTelemetry (standard variables):
  OTEL_SERVICE_NAME             service.name [default: unknown_service:<binary>]
  OTEL_RESOURCE_ATTRIBUTES      more resource attributes, k=v,k=v
  OTEL_TRACES_EXPORTER          otlp | console | none [default: otlp]
  OTEL_METRICS_EXPORTER         otlp | console | none [default: otlp]
  OTEL_LOGS_EXPORTER            otlp | none: log lines to OTLP too [default: none]
  OTEL_EXPORTER_OTLP_ENDPOINT   http:// or https:// [default: http://localhost:4318,
                                or :4317 for grpc]
  OTEL_EXPORTER_OTLP_PROTOCOL   http/protobuf | grpc [default: http/protobuf]
  OTEL_EXPORTER_OTLP_HEADERS    k=v,k=v sent with every export
  OTEL_EXPORTER_OTLP_TIMEOUT    milliseconds per export, 0 for no limit [default: 10000]
  OTEL_EXPORTER_OTLP_COMPRESSION  gzip | none [default: none]
  OTEL_EXPORTER_OTLP_CERTIFICATE  CA file (PEM) for https:// [default: system roots]
  OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY
                                PEM files for mutual TLS
  OTEL_TRACES_SAMPLER           always_on | always_off | traceidratio |
                                parentbased_always_on | parentbased_always_off |
                                parentbased_traceidratio [default: parentbased_always_on]
  OTEL_TRACES_SAMPLER_ARG       the ratio of the *traceidratio samplers
  OTEL_PROPAGATORS              tracecontext,baggage | b3 | b3multi | none
                                [default: tracecontext,baggage]
  OTEL_SPAN_LINK_COUNT_LIMIT    [default: 128, or the largest batch max_records]
  OTEL_BSP_*, OTEL_BLRP_*, OTEL_METRIC_EXPORT_INTERVAL and the per-signal
  OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_* variables are honoured too.

Exit codes: 0 after a clean shutdown or a passing --check, 1 when the
consumer fails or --check finds a problem, 2 for invalid configuration,
130/143 when a second SIGINT/SIGTERM cuts the shutdown short.";

/// What the command line asks for.
#[derive(Debug)]
pub(crate) struct Cli {
    pub(crate) brokers: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) properties: Vec<(String, String)>,
    /// `--set-file` and `--set-env`: properties whose values are read at
    /// startup.
    pub(crate) property_sources: Vec<(String, Source)>,
    /// Whether `--set` came from the command line (rather than `KAFKA_SET`).
    pub(crate) set_on_command_line: bool,
    pub(crate) only: Vec<String>,
    pub(crate) list: bool,
    pub(crate) check: bool,
    pub(crate) health_addr: Option<SocketAddr>,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) log_format: String,
    pub(crate) log: String,
}

/// The command, named after the binary.
pub(crate) fn command(name: &str, version: &'static str, about: &'static str) -> Command {
    let about = if about.is_empty() {
        "A Kafka consumer built with kafka-handler: every record handled in its producer's trace."
    } else {
        about
    };
    Command::new(name.to_owned())
        .version(version)
        .about(about)
        .after_help(OTEL_HELP)
        .arg(
            Arg::new("brokers")
                .long("brokers")
                .env("KAFKA_BROKERS")
                .value_name("HOST:PORT,..")
                .help("Bootstrap servers of the Kafka cluster"),
        )
        .arg(
            Arg::new("group")
                .long("group")
                .env("KAFKA_GROUP")
                .value_name("GROUP")
                .help("Consumer group for every handler, instead of each handler's own"),
        )
        .arg(
            Arg::new("set")
                .long("set")
                .env("KAFKA_SET")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .value_delimiter(';')
                .value_parser(parse_property)
                .hide_env_values(true)
                .help(
                    "Any librdkafka consumer property, repeatable (in KAFKA_SET, \
                     separate them with ';')",
                ),
        )
        .arg(
            Arg::new("set-file")
                .long("set-file")
                .env("KAFKA_SET_FILE")
                .value_name("KEY=PATH")
                .action(ArgAction::Append)
                .value_delimiter(';')
                .value_parser(parse_property)
                .help(
                    "A librdkafka property read from a file, without its trailing line break, \
                     for secrets: --set-file sasl.password=/run/secrets/kafka-password",
                ),
        )
        .arg(
            Arg::new("set-env")
                .long("set-env")
                .env("KAFKA_SET_ENV")
                .value_name("KEY=VARIABLE")
                .action(ArgAction::Append)
                .value_delimiter(';')
                .value_parser(parse_property)
                .help(
                    "A librdkafka property read from an environment variable, for secrets: \
                     --set-env sasl.password=KAFKA_PASSWORD",
                ),
        )
        .arg(
            Arg::new("only")
                .long("only")
                .env("KAFKA_HANDLER_ONLY")
                .value_name("NAME")
                .action(ArgAction::Append)
                .value_delimiter(',')
                .help("Run only this handler, repeatable (see --list for the names)"),
        )
        .arg(
            Arg::new("list")
                .long("list")
                .env("KAFKA_HANDLER_LIST")
                .action(ArgAction::SetTrue)
                .help("Print every handler with its topics, group, batching, ordering, max_in_flight, retries and dead-letter topic, then exit"),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .env("KAFKA_HANDLER_CHECK")
                .action(ArgAction::SetTrue)
                .conflicts_with("list")
                .help("Validate the configuration, connect to the brokers, verify the topics exist, then exit"),
        )
        .arg(
            Arg::new("health-addr")
                .long("health-addr")
                .env("KAFKA_HANDLER_HEALTH_ADDR")
                .value_name("ADDR")
                .value_parser(clap::value_parser!(SocketAddr))
                .help("Serve /livez and /readyz on this address, e.g. 0.0.0.0:8080"),
        )
        .arg(
            Arg::new("metrics-addr")
                .long("metrics-addr")
                .env("KAFKA_HANDLER_METRICS_ADDR")
                .value_name("ADDR")
                .value_parser(clap::value_parser!(SocketAddr))
                .help("Serve the metrics as Prometheus text on /metrics at this address"),
        )
        .arg(
            Arg::new("shutdown-timeout")
                .long("shutdown-timeout")
                .env("KAFKA_HANDLER_SHUTDOWN_TIMEOUT")
                .value_name("DURATION")
                .default_value("30s")
                .value_parser(parse_duration)
                .help("How long records in flight may run after SIGTERM before they are cancelled (left uncommitted)"),
        )
        .arg(
            Arg::new("commit-interval")
                .long("commit-interval")
                .env("KAFKA_HANDLER_COMMIT_INTERVAL")
                .value_name("DURATION")
                .default_value("5s")
                .value_parser(parse_duration)
                .help("How often handled offsets are committed"),
        )
        .arg(
            Arg::new("max-in-flight")
                .long("max-in-flight")
                .env("KAFKA_HANDLER_MAX_IN_FLIGHT")
                .value_name("N")
                .value_parser(parse_max_in_flight)
                .help("The most records of each handler running at once in this process; overrides every handler's max_in_flight"),
        )
        .arg(
            Arg::new("log-format")
                .long("log-format")
                .env("KAFKA_HANDLER_LOG_FORMAT")
                .value_name("FORMAT")
                .default_value("auto")
                .value_parser(["auto", "text", "json"])
                .ignore_case(true)
                .help("Log lines on stderr: text for terminals, JSON for machines; auto picks by whether stderr is a terminal"),
        )
        .arg(
            Arg::new("log")
                .long("log")
                .env("RUST_LOG")
                .value_name("FILTER")
                .default_value("info")
                .help("Which log lines to write, in RUST_LOG syntax (e.g. info,librdkafka=warn)"),
        )
}

impl Cli {
    /// Reads the parsed matches.
    pub(crate) fn from_matches(matches: &ArgMatches) -> Self {
        let string = |id: &str| matches.get_one::<String>(id).cloned();
        let pairs = |id: &str| {
            matches
                .get_many::<(String, String)>(id)
                .map(|values| values.cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let files = pairs("set-file")
            .into_iter()
            .map(|(key, path)| (key, Source::File(path.into())));
        let variables = pairs("set-env")
            .into_iter()
            .map(|(key, variable)| (key, Source::Env(variable)));
        Self {
            brokers: string("brokers").filter(|b| !b.is_empty()),
            group: string("group").filter(|g| !g.is_empty()),
            properties: pairs("set"),
            property_sources: files.chain(variables).collect(),
            set_on_command_line: matches.value_source("set") == Some(ValueSource::CommandLine),
            only: matches
                .get_many::<String>("only")
                .map(|values| values.filter(|v| !v.is_empty()).cloned().collect())
                .unwrap_or_default(),
            list: matches.get_flag("list"),
            check: matches.get_flag("check"),
            health_addr: matches.get_one::<SocketAddr>("health-addr").copied(),
            metrics_addr: matches.get_one::<SocketAddr>("metrics-addr").copied(),
            shutdown_timeout: matches
                .get_one::<Duration>("shutdown-timeout")
                .copied()
                .unwrap_or(Duration::from_secs(30)),
            commit_interval: matches
                .get_one::<Duration>("commit-interval")
                .copied()
                .unwrap_or(Duration::from_secs(5)),
            max_in_flight: matches.get_one::<usize>("max-in-flight").copied(),
            log_format: string("log-format").unwrap_or_else(|| "auto".into()),
            log: string("log").unwrap_or_else(|| "info".into()),
        }
    }
}

/// `key=value`, both sides non-empty after trimming the key.
fn parse_property(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw.split_once('=').ok_or_else(|| {
        format!("`{raw}` is not KEY=VALUE (for example --set session.timeout.ms=10000)")
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "`{raw}` has no property name before `=` (for example --set session.timeout.ms=10000)"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `--max-in-flight`: a whole number of records, from 1 to
/// [`HandlerOptions::MAX_IN_FLIGHT_LIMIT`].
fn parse_max_in_flight(raw: &str) -> Result<usize, String> {
    let limit = HandlerOptions::MAX_IN_FLIGHT_LIMIT;
    let raw = raw.trim();
    let fix = format!("give a number of records from 1 to {limit}");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{raw}` is not a whole number: {fix}"));
    }
    match raw.parse::<usize>() {
        Ok(0) => Err(format!("`0` would let no record run: {fix}")),
        Ok(max) if max <= limit => Ok(max),
        // Past the limit, or past usize.
        _ => Err(format!("`{raw}` is above the limit of {limit}: {fix}")),
    }
}

/// A duration: a whole number with a unit, `ms`, `s`, `m` or `h` (`30s`,
/// `500ms`, `2m`).
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{raw}` has no unit: write it as 30s, 500ms, 2m or 1h"))?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration: write it as 30s, 500ms, 2m or 1h"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "`{raw}` has an unknown unit `{unit}`: use ms, s, m or h"
            ))
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{raw}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let command = command("consumer", "0.0.0", "");
        let matches = command
            .try_get_matches_from(std::iter::once("consumer").chain(args.iter().copied()))?;
        Ok(Cli::from_matches(&matches))
    }

    #[test]
    fn flags_are_read() {
        let cli = parse(&[
            "--brokers",
            "b:9092",
            "--group",
            "g",
            "--set",
            "a=1",
            "--set",
            "b.c=x=y",
            "--only",
            "bill",
            "--only",
            "audit,pack",
            "--shutdown-timeout",
            "500ms",
            "--health-addr",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(cli.brokers.as_deref(), Some("b:9092"));
        assert_eq!(cli.group.as_deref(), Some("g"));
        assert_eq!(
            cli.properties,
            [("a".into(), "1".into()), ("b.c".into(), "x=y".into())]
        );
        assert!(cli.set_on_command_line);
        assert!(cli.property_sources.is_empty());
        assert_eq!(cli.only, ["bill", "audit", "pack"]);
        assert_eq!(cli.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(cli.commit_interval, Duration::from_secs(5));
        assert_eq!(cli.health_addr, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(cli.max_in_flight, None);
        assert!(!cli.list && !cli.check);
    }

    #[test]
    fn max_in_flight_is_a_number_within_the_limit() {
        let limit = HandlerOptions::MAX_IN_FLIGHT_LIMIT;
        let max = |args: &[&str]| parse(args).map(|cli| cli.max_in_flight);
        assert_eq!(max(&["--max-in-flight", "7"]).unwrap(), Some(7));
        assert_eq!(
            max(&["--max-in-flight", &limit.to_string()]).unwrap(),
            Some(limit)
        );
        for (raw, needle) in [
            ("0".to_owned(), "no record".to_owned()),
            (
                (limit + 1).to_string(),
                format!("above the limit of {limit}"),
            ),
            (
                "99999999999999999999999".to_owned(),
                "above the limit".to_owned(),
            ),
            ("many".to_owned(), "not a whole number".to_owned()),
            ("-1".to_owned(), "not a whole number".to_owned()),
        ] {
            let error = max(&[&format!("--max-in-flight={raw}")])
                .unwrap_err()
                .to_string();
            assert!(error.contains("--max-in-flight"), "{error}");
            assert!(error.contains(&needle), "{raw}: {error}");
            assert!(error.contains(&format!("1 to {limit}")), "{error}");
        }
    }

    #[test]
    fn a_malformed_set_names_the_form() {
        let error = parse(&["--set", "novalue"]).unwrap_err().to_string();
        assert!(error.contains("`novalue` is not KEY=VALUE"), "{error}");
        let error = parse(&["--set", "=1"]).unwrap_err().to_string();
        assert!(error.contains("no property name"), "{error}");
    }

    #[test]
    fn set_file_and_set_env_name_their_sources() {
        let cli = parse(&[
            "--set-file",
            "sasl.password=/run/secrets/kafka",
            "--set-env",
            "ssl.key.password=KEY_PASSWORD",
        ])
        .unwrap();
        assert_eq!(
            cli.property_sources,
            [
                (
                    "sasl.password".to_owned(),
                    Source::File("/run/secrets/kafka".into())
                ),
                (
                    "ssl.key.password".to_owned(),
                    Source::Env("KEY_PASSWORD".into())
                ),
            ]
        );
        assert!(!cli.set_on_command_line);
    }

    #[test]
    fn list_and_check_exclude_each_other() {
        assert!(parse(&["--list", "--check"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3d")
            .unwrap_err()
            .contains("unknown unit `d`"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn help_documents_every_flag_and_variable() {
        let help = command("consumer", "0.0.0", "")
            .render_long_help()
            .to_string();
        for needle in [
            "--brokers",
            "KAFKA_BROKERS",
            "--group",
            "KAFKA_GROUP",
            "--set",
            "KAFKA_SET",
            "--set-file",
            "KAFKA_SET_FILE",
            "--set-env",
            "KAFKA_SET_ENV",
            "--only",
            "KAFKA_HANDLER_ONLY",
            "--list",
            "--check",
            "--health-addr",
            "--metrics-addr",
            "--shutdown-timeout",
            "--commit-interval",
            "--max-in-flight",
            "KAFKA_HANDLER_MAX_IN_FLIGHT",
            "--log-format",
            "RUST_LOG",
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "OTEL_LOGS_EXPORTER",
            "OTEL_PROPAGATORS",
        ] {
            assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
        }
    }
}
