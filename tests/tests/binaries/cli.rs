//! The command line: `--list`, `--max-in-flight`, bad configurations, `--help`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_every_handler_and_only_selects() {
    let (child, status) =
        ChildProcess::run("orders_consumer --list", orders_consumer(&["--list"]), EXIT).await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    let listed = child.stdout();
    let blocks = blocks(&listed);
    assert_eq!(
        blocks.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        HANDLERS.into_iter().collect(),
        "{listed}"
    );
    let expect = |handler: &str, needles: &[&str]| {
        let block = &blocks[handler];
        for needle in needles {
            assert!(
                block.contains(needle),
                "{handler} lacks {needle:?}:\n{listed}"
            );
        }
    };
    expect(
        "bill",
        &[
            "topics   orders\n",
            "group    billing\n",
            "retries  2 (backoff 50ms..200ms)",
            "dead-lettered to orders.dlq",
        ],
    );
    expect(
        "audit",
        &[
            "topics   orders\n",
            "group    audit\n",
            "held (no dead-letter topic)",
        ],
    );
    expect(
        "pack",
        &[
            "topics   orders\n",
            "group    warehouse\n",
            "up to 100 records",
            "50ms",
        ],
    );
    expect(
        "review",
        &["topics   orders.dlq\n", "group    billing-review\n"],
    );
    expect("mail", &["topics   invoices\n", "group    mailer\n"]);
    assert!(!blocks["audit"].contains("batch"), "{listed}");

    let (child, status) = ChildProcess::run(
        "orders_consumer --only audit --list",
        orders_consumer(&["--only", "audit", "--list", "--group", "canary"]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    let listed = child.stdout();
    assert_eq!(
        blocks_of(&listed),
        ["audit"],
        "--only audit lists audit alone:\n{listed}"
    );
    assert!(
        listed.contains("group    canary\n"),
        "--group overrides:\n{listed}"
    );

    let (child, status) = ChildProcess::run(
        "orders_consumer --only nosuch",
        orders_consumer(&["--only", "nosuch", "--list"]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(2), "{}", child.dump());
    let stderr = child.stderr();
    assert!(stderr.contains("nosuch"), "{}", child.dump());
    for name in HANDLERS {
        assert!(
            stderr.contains(name),
            "the error does not name {name}\n{}",
            child.dump()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_ordering_and_max_in_flight_and_the_override() {
    let (child, status) =
        ChildProcess::run("orders_consumer --list", orders_consumer(&["--list"]), EXIT).await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    let listed = child.stdout();
    let defaults = blocks(&listed);
    for name in ["bill", "audit", "review", "mail"] {
        assert!(
            defaults[name].contains("  ordering partition, max_in_flight 64\n"),
            "{name}: a handler of one record, ordered by partition, 64 in flight:\n{listed}"
        );
    }
    // A batch handler's default is 8 full batches.
    let max_records: usize = defaults["pack"]
        .split("up to ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pack lists no batch size:\n{listed}"));
    assert!(
        defaults["pack"].contains(&format!(
            "  ordering partition, max_in_flight {}\n",
            8 * max_records
        )),
        "pack's default is 8 x {max_records}:\n{listed}"
    );

    let mut from_env = orders_consumer(&["--list"]);
    from_env.env("KAFKA_HANDLER_MAX_IN_FLIGHT", "7");
    let mut both = orders_consumer(&["--list", "--max-in-flight", "9"]);
    both.env("KAFKA_HANDLER_MAX_IN_FLIGHT", "7");
    for (name, command, expected) in [
        (
            "orders_consumer --list --max-in-flight 7",
            orders_consumer(&["--list", "--max-in-flight", "7"]),
            7,
        ),
        (
            "KAFKA_HANDLER_MAX_IN_FLIGHT=7 orders_consumer --list",
            from_env,
            7,
        ),
        ("the flag over the variable", both, 9),
    ] {
        let (child, status) = ChildProcess::run(name, command, EXIT).await;
        assert_eq!(status.code(), Some(0), "{}", child.dump());
        let listed = child.stdout();
        let overridden = blocks(&listed);
        assert_eq!(overridden.len(), HANDLERS.len(), "{name}:\n{listed}");
        for (handler, block) in &overridden {
            assert!(
                block.contains(&format!(", max_in_flight {expected}\n")),
                "{name}: {handler} does not show {expected}:\n{listed}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_max_in_flight_is_a_configuration_error() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    let range = format!(
        "1 to {}",
        kafka_handler::HandlerOptions::MAX_IN_FLIGHT_LIMIT
    );
    let with = |args: &[&str]| {
        let mut command = orders_consumer(&["--brokers", &brokers]);
        command.args(args);
        command
    };
    fails_with(
        with(&["--max-in-flight", "0"]),
        2,
        &["--max-in-flight", "no record", &range],
    )
    .await;
    fails_with(
        with(&["--max-in-flight", "many"]),
        2,
        &["--max-in-flight", "not a whole number", &range],
    )
    .await;
    let above = (kafka_handler::HandlerOptions::MAX_IN_FLIGHT_LIMIT + 1).to_string();
    fails_with(
        with(&["--max-in-flight", &above]),
        2,
        &["--max-in-flight", "above the limit", &range],
    )
    .await;
    let mut from_env = with(&[]);
    from_env.env("KAFKA_HANDLER_MAX_IN_FLIGHT", "0");
    fails_with(from_env, 2, &["--max-in-flight", &range]).await;
    // Even where the handlers are only listed.
    fails_with(
        orders_consumer(&["--list", "--max-in-flight", "0"]),
        2,
        &["--max-in-flight"],
    )
    .await;

    // Below the batch handler's max_records, full batches could never start.
    let (child, status) = ChildProcess::run(
        "orders_consumer --max-in-flight 7",
        with(&["--max-in-flight", "7"]),
        EXIT,
    )
    .await;
    assert_eq!(status.code(), Some(2), "{}", child.dump());
    let stderr = child.stderr();
    for needle in ["--max-in-flight", "is 7", "`pack`", "at least 100"] {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            child.dump()
        );
    }
}

/// `--list`'s blocks by handler name: a block starts at an unindented line.
fn blocks(listed: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in listed.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            if let Some((name, block)) = current.take() {
                blocks.insert(name, block);
            }
            current = Some((line.trim().to_owned(), String::new()));
        } else if let Some((_, block)) = &mut current {
            block.push_str(line);
            block.push('\n');
        }
    }
    if let Some((name, block)) = current {
        blocks.insert(name, block);
    }
    blocks
}

fn blocks_of(listed: &str) -> Vec<String> {
    blocks(listed).into_keys().collect()
}

/// Runs `orders_consumer` expecting it to exit at once with `code` and a
/// message on stderr containing every one of `needles`.
async fn fails_with(mut command: Command, code: i32, needles: &[&str]) {
    command.args(["--only", "audit"]);
    let (child, status) = ChildProcess::run("orders_consumer", command, EXIT).await;
    assert_eq!(status.code(), Some(code), "{}", child.dump());
    let stderr = child.stderr();
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            child.dump()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_with_a_clear_message() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    let with = |args: &[&str]| {
        let mut command = orders_consumer(&["--brokers", &brokers]);
        command.args(args);
        command
    };
    fails_with(
        with(&["--set", "no.such.property=1"]),
        2,
        &["no.such.property"],
    )
    .await;
    fails_with(with(&["--set", "novalue"]), 2, &["novalue", "KEY=VALUE"]).await;
    fails_with(
        with(&["--set", "enable.auto.commit=true"]),
        2,
        &["enable.auto.commit"],
    )
    .await;
    fails_with(
        with(&["--commit-interval", "5"]),
        2,
        &["--commit-interval", "unit"],
    )
    .await;
    let mut zipkin = with(&[]);
    zipkin.env("OTEL_TRACES_EXPORTER", "zipkin");
    fails_with(
        zipkin,
        2,
        &["OTEL_TRACES_EXPORTER", "zipkin", "otlp", "console", "none"],
    )
    .await;
    fails_with(orders_consumer(&[]), 2, &["--brokers", "KAFKA_BROKERS"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_mentions_every_flag_and_its_environment_variable() {
    let (child, status) =
        ChildProcess::run("orders_consumer --help", orders_consumer(&["--help"]), EXIT).await;
    assert_eq!(status.code(), Some(0), "{}", child.dump());
    let help = child.stdout();

    // Every option block of the long help: `--flag` then its description.
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('-') && indent <= 6 {
            let long = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(|word| word.trim_end_matches('=').to_owned());
            current = long.clone();
            if let Some(long) = long {
                options.insert(long, trimmed.to_owned());
            }
        } else if line.trim().is_empty() || indent == 0 {
            if indent == 0 {
                current = None;
            }
        } else if let Some(flag) = &current {
            let block = options.get_mut(flag).unwrap();
            block.push(' ');
            block.push_str(trimmed);
        }
    }
    let expected = [
        ("--brokers", "KAFKA_BROKERS"),
        ("--group", "KAFKA_GROUP"),
        ("--set", "KAFKA_SET"),
        ("--only", "KAFKA_HANDLER_ONLY"),
        ("--list", "KAFKA_HANDLER_LIST"),
        ("--check", "KAFKA_HANDLER_CHECK"),
        ("--health-addr", "KAFKA_HANDLER_HEALTH_ADDR"),
        ("--metrics-addr", "KAFKA_HANDLER_METRICS_ADDR"),
        ("--shutdown-timeout", "KAFKA_HANDLER_SHUTDOWN_TIMEOUT"),
        ("--commit-interval", "KAFKA_HANDLER_COMMIT_INTERVAL"),
        ("--max-in-flight", "KAFKA_HANDLER_MAX_IN_FLIGHT"),
        ("--log-format", "KAFKA_HANDLER_LOG_FORMAT"),
        ("--log", "RUST_LOG"),
    ];
    for (flag, env) in expected {
        let block = options
            .get(flag)
            .unwrap_or_else(|| panic!("--help does not document {flag}:\n{help}"));
        assert!(
            block.contains(&format!("[env: {env}")),
            "{flag} does not name {env}: {block:?}\n{help}"
        );
    }
    // And no flag goes without its variable (a new one must get one too).
    for (flag, block) in &options {
        if flag == "--help" || flag == "--version" {
            continue;
        }
        assert!(
            block.contains("[env: "),
            "{flag} has no environment variable: {block:?}"
        );
    }
    for variable in [
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_PROPAGATORS",
    ] {
        assert!(
            help.contains(variable),
            "--help does not mention {variable}:\n{help}"
        );
    }
}
