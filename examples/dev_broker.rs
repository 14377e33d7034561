//! A Kafka broker for local development: librdkafka's mock cluster, in
//! this process, until Ctrl-C.
//!
//! The mock cluster speaks the real Kafka wire protocol on a loopback port,
//! with consumer groups and offset commits, so anything that talks Kafka
//! can use it: a consumer binary built with `kafka_handler::main!` (such as
//! the `orders_consumer` example), kcat, or any language's client. It needs
//! no JVM, no container and no network: only this crate.
//!
//! ```text
//! cargo run --example dev_broker -- orders orders.dlq invoices
//! ```
//!
//! prints, then keeps running until SIGINT (Ctrl-C) or SIGTERM:
//!
//! ```text
//! export KAFKA_BROKERS=127.0.0.1:40123
//! created topic orders (4 partitions)
//! created topic orders.dlq (4 partitions)
//! created topic invoices (4 partitions)
//! try: kcat -b 127.0.0.1:40123 -L   or   kcat -b 127.0.0.1:40123 -t orders -P   (Ctrl-C stops the broker and loses its data)
//! ```
//!
//! Paste the first line into another shell and run a consumer there
//! (`cargo run --example orders_consumer`; add `--set session.timeout.ms=1500
//! --set heartbeat.interval.ms=100` for fast group joins), or produce with
//! `kcat -b $KAFKA_BROKERS -t orders -P`. Clients in any language connect
//! the same way.
//!
//! Things to know about the mock cluster:
//!
//! - Its port is random; a fixed port is not possible. Read the first line.
//! - Create topics here, on the command line: CreateTopics requests from
//!   other processes time out. A topic first used without being created is
//!   created on the fly, with 4 partitions.
//! - Everything is in memory and retention is small (about 5 MiB or 100k
//!   message sets per partition; older ones are dropped silently). Stopping
//!   this process loses every record and committed offset.
//! - Listing the cluster's topics does not create any: `--check` of a
//!   generated consumer reports the topics never created as missing.
//! - Its group coordinator rebalances after `session.timeout.ms - 1000`:
//!   consumers join much faster with `session.timeout.ms=1500` and
//!   `heartbeat.interval.ms=100` (`--set` flags of a generated consumer).

use std::io::Write as _;

use clap::{value_parser, Arg, ArgAction, Command};
use kafka_handler::testing::EmbeddedBroker;

/// The command line: `dev_broker [--partitions N] [TOPIC]...`.
fn command() -> Command {
    Command::new("dev_broker")
        .about(
            "Runs librdkafka's mock Kafka cluster in this process until SIGINT or SIGTERM; \
             prints `export KAFKA_BROKERS=..` first",
        )
        .arg(
            Arg::new("topics")
                .value_name("TOPIC")
                .action(ArgAction::Append)
                .help(
                    "Topics to create (topics first used without being created get 4 partitions)",
                ),
        )
        .arg(
            Arg::new("partitions")
                .long("partitions")
                .value_name("N")
                .default_value("4")
                .value_parser(value_parser!(i32).range(1..=10_000))
                .help("Partitions of each topic created"),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let matches = command().get_matches();
    let topics: Vec<String> = matches
        .get_many::<String>("topics")
        .map(|topics| topics.cloned().collect())
        .unwrap_or_default();
    let partitions = *matches
        .get_one::<i32>("partitions")
        .expect("--partitions has a default");
    // Listen before printing anything: whoever reads the address may signal
    // at once.
    let stop = stop_signal()?;
    // Ignore KAFKA_BROKERS: this process *is* the broker.
    let broker = EmbeddedBroker::mock()?;
    let brokers = broker.bootstrap_servers().to_owned();

    let mut out = std::io::stdout().lock();
    writeln!(out, "export KAFKA_BROKERS={brokers}")?;
    out.flush()?;
    for topic in &topics {
        broker
            .create_topic(topic, partitions)
            .await
            .map_err(|err| format!("creating topic {topic}: {err}"))?;
        writeln!(out, "created topic {topic} ({partitions} partitions)")?;
        out.flush()?;
    }
    let example_topic = topics.first().map_or("orders", String::as_str);
    writeln!(
        out,
        "try: kcat -b {brokers} -L   or   kcat -b {brokers} -t {example_topic} -P   \
         (Ctrl-C stops the broker and loses its data)"
    )?;
    out.flush()?;
    drop(out);

    stop.await;
    eprintln!("dev_broker: stopping");
    drop(broker);
    Ok(())
}

/// Starts listening for SIGINT and SIGTERM; the future resolves at the
/// first one.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
