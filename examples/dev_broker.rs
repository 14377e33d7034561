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
//! - Groups of the KIP-848 protocol (`group.protocol=consumer`) take their
//!   timing from the broker: a member that dies keeps its partitions for
//!   the session timeout (30 s), and members learn of new assignments at
//!   each heartbeat (3 s). `--group-consumer-session-timeout-ms` and
//!   `--group-consumer-heartbeat-interval-ms` shorten them (the brokers'
//!   `group.consumer.session.timeout.ms` and
//!   `group.consumer.heartbeat.interval.ms`).
//!
//! Faults, for chaos tests: with `--stdin-commands` it reads commands on its
//! standard input, one a line, and acknowledges each on standard output:
//!
//! ```text
//! down 1      the broker (id 1, the only one) closes its connections and
//!             refuses new ones; prints `broker 1 down`
//! up 1        it accepts connections again; prints `broker 1 up`
//! ```
//!
//! Clients see a broker outage: they reconnect with backoff, and the group
//! coordinator is unreachable meanwhile. A malformed command is reported on
//! standard error and ignored; end of input ends the commands, not the
//! broker. Without the flag standard input is not read (so `dev_broker &`
//! in a shell is not stopped for reading the terminal).

use std::io::Write as _;

use clap::{value_parser, Arg, ArgAction, Command};
use kafka_handler::testing::EmbeddedBroker;

/// The command line: `dev_broker [--partitions N] [--stdin-commands]
/// [--group-consumer-session-timeout-ms MS] [--group-consumer-heartbeat-interval-ms MS]
/// [TOPIC]...`.
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
        .arg(
            Arg::new("group-consumer-session-timeout-ms")
                .long("group-consumer-session-timeout-ms")
                .value_name("MS")
                .value_parser(value_parser!(u32).range(1..=i32::MAX as i64))
                .help(
                    "KIP-848 groups (group.protocol=consumer): how long a member may go without \
                     a heartbeat before its partitions go to others [default: 30000]",
                ),
        )
        .arg(
            Arg::new("group-consumer-heartbeat-interval-ms")
                .long("group-consumer-heartbeat-interval-ms")
                .value_name("MS")
                .value_parser(value_parser!(u32).range(1..=i32::MAX as i64))
                .help(
                    "KIP-848 groups: how often members heartbeat (and learn of a new \
                     assignment) [default: 3000]",
                ),
        )
        .arg(
            Arg::new("stdin-commands")
                .long("stdin-commands")
                .action(ArgAction::SetTrue)
                .help(
                    "Read fault commands on stdin, one a line: `down 1` takes the broker down \
                     (connections closed and refused), `up 1` brings it back; each is \
                     acknowledged on stdout (`broker 1 down`, `broker 1 up`)",
                ),
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
    let session = matches.get_one::<u32>("group-consumer-session-timeout-ms");
    let heartbeat = matches.get_one::<u32>("group-consumer-heartbeat-interval-ms");
    if session.is_some() || heartbeat.is_some() {
        let millis = |ms: Option<&u32>, default: u32| {
            std::time::Duration::from_millis(u64::from(*ms.unwrap_or(&default)))
        };
        broker.set_consumer_group_timing(millis(session, 30_000), millis(heartbeat, 3_000))?;
    }

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

    let mut commands = if matches.get_flag("stdin-commands") {
        stdin_lines()
    } else {
        // No sender: `recv` answers `None` at once, and that branch is off.
        tokio::sync::mpsc::unbounded_channel().1
    };
    let mut reading = matches.get_flag("stdin-commands");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            line = commands.recv(), if reading => match line {
                Some(line) => run_command(&broker, line.trim())?,
                None => reading = false,
            },
        }
    }
    eprintln!("dev_broker: stopping");
    drop(broker);
    Ok(())
}

/// The lines of standard input, read on a thread of their own; the channel
/// closes at end of input (or a read error).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Runs one `--stdin-commands` command: `down ID` or `up ID`. A malformed
/// one is reported on stderr and ignored; only a failure to write the
/// acknowledgement is an error.
fn run_command(broker: &EmbeddedBroker, line: &str) -> std::io::Result<()> {
    if line.is_empty() {
        return Ok(());
    }
    let mut words = line.split_whitespace();
    let (verb, id) = (words.next(), words.next().map(str::parse::<i32>));
    let done = match (verb, id, words.next()) {
        (Some("down"), Some(Ok(id)), None) => broker.broker_down(id).map(|()| (id, "down")),
        (Some("up"), Some(Ok(id)), None) => broker.broker_up(id).map(|()| (id, "up")),
        _ => {
            eprintln!("dev_broker: unknown command {line:?}: expected `down ID` or `up ID`");
            return Ok(());
        }
    };
    match done {
        Ok((id, state)) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "broker {id} {state}")?;
            out.flush()
        }
        Err(err) => {
            eprintln!("dev_broker: {line:?} failed: {err}");
            Ok(())
        }
    }
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
