//! The members of the group as processes, and what their logs say: which
//! orders each handled, its health address, its ERROR lines and panics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_handler_tests::process::Stream;
use kafka_handler_tests::{example_binary, http, kafka, ChildProcess, DevBroker, Signal};

use super::production::Landed;
use super::{Protocol, EXIT, SENTINEL, SHUTDOWN_TIMEOUT, START};

/// What became of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Running, never signalled.
    Running,
    /// SIGTERM sent, not exited yet.
    Stopping(Instant),
    /// SIGKILLed.
    Killed,
    /// Exited after SIGTERM, this long after it.
    Stopped(Duration),
}

/// One process: `m{slot}-g{generation}`, or `fresh`.
pub(crate) struct Member {
    pub(crate) name: String,
    process: ChildProcess,
    /// How far its output was read.
    cursor: usize,
    /// Where it serves `/readyz`, once it said.
    health: Option<String>,
    pub(crate) fate: Fate,
    /// Orders (not sentinels) it handled, and sentinels.
    pub(crate) orders: usize,
    pub(crate) sentinels: usize,
    /// The timestamp of its last log line.
    pub(crate) last_log: String,
    /// Whether it logged `consumer started`: it handles signals from then
    /// on.
    started: bool,
}

/// A handling of an order: by which member, at which log timestamp.
pub(crate) type Handling = (usize, String);

/// The members of one scenario's group, every generation of them.
pub(crate) struct Group {
    pub(crate) broker: DevBroker,
    protocol: Protocol,
    /// The scenario's name, for messages and the directory of logs.
    label: String,
    pub(crate) members: Vec<Member>,
    /// The member in each slot now.
    live: Vec<Option<usize>>,
    generations: Vec<u32>,
    /// Every handling of every order and sentinel, by id.
    pub(crate) handled: HashMap<u64, Vec<Handling>>,
    /// Distinct orders (not sentinels) handled.
    pub(crate) distinct: u64,
    /// ERROR lines, panics and unclean exits, with the member's name.
    pub(crate) problems: Vec<String>,
    /// What happened when, for failure messages.
    pub(crate) events: Vec<String>,
    /// Where each order landed, once all were acknowledged.
    pub(crate) landed: Vec<Landed>,
    started: Instant,
}

impl Group {
    pub(crate) fn new(broker: DevBroker, protocol: Protocol, label: String, slots: usize) -> Self {
        Self {
            broker,
            protocol,
            label,
            members: Vec::new(),
            live: vec![None; slots],
            generations: vec![0; slots],
            handled: HashMap::new(),
            distinct: 0,
            problems: Vec::new(),
            events: Vec::new(),
            landed: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Notes `event` with the time since the scenario started.
    pub(crate) fn event(&mut self, event: impl AsRef<str>) {
        let line = format!(
            "[{:6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            event.as_ref()
        );
        self.events.push(line);
    }

    /// The live member of `slot`.
    pub(crate) fn live(&self, slot: usize) -> Option<usize> {
        self.live[slot]
    }

    /// Starts a member in `slot` (which must be empty): `orders_consumer
    /// --only audit` in the protocol's group. Returns its index.
    pub(crate) fn start(&mut self, slot: usize) -> usize {
        assert!(self.live[slot].is_none(), "slot {slot} is taken");
        self.generations[slot] += 1;
        let name = format!("m{slot}-g{}", self.generations[slot]);
        let index = self.spawn(name);
        self.live[slot] = Some(index);
        index
    }

    /// Starts the fresh member of the end check, in no slot.
    pub(crate) fn start_fresh(&mut self) -> usize {
        self.spawn("fresh".to_owned())
    }

    fn spawn(&mut self, name: String) -> usize {
        let mut command = Command::new(example_binary("orders_consumer"));
        for (var, _) in std::env::vars_os() {
            let var = var.to_string_lossy();
            if var.starts_with("KAFKA_") || var.starts_with("OTEL_") || var == "RUST_LOG" {
                command.env_remove(&*var);
            }
        }
        command
            .env("OTEL_TRACES_EXPORTER", "none")
            .env("OTEL_METRICS_EXPORTER", "none")
            .args(["--brokers", self.broker.brokers(), "--only", "audit"])
            .args(["--commit-interval", "1s", "--log-format", "json"])
            .args([
                "--shutdown-timeout",
                &format!("{}s", SHUTDOWN_TIMEOUT.as_secs()),
            ])
            .args(["--health-addr", "127.0.0.1:0"])
            .args(["--set", "fetch.wait.max.ms=50"])
            .args(self.protocol.flags())
            .args(
                std::env::var("CHAOS_MEMBER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            );
        let process = ChildProcess::spawn(&name, command);
        self.event(format!("start {name} (pid {})", process.pid()));
        self.members.push(Member {
            name,
            process,
            cursor: 0,
            health: None,
            fate: Fate::Running,
            orders: 0,
            sentinels: 0,
            last_log: String::new(),
            started: false,
        });
        self.members.len() - 1
    }

    /// Reads what the members logged since the last call. Panics when a
    /// member nobody signalled exited.
    pub(crate) fn refresh(&mut self) {
        if let Some(status) = self.broker.process().exit_status() {
            let dump = self.broker.dump();
            let mock_aborted = dump
                .lines()
                .find(|line| line.contains(crate::MOCK_ASSERTION))
                .map(|line| format!("{}: {line}\n", crate::MOCK_ABORTED))
                .unwrap_or_default();
            panic!(
                "{mock_aborted}{}: dev_broker exited ({status})\n{}",
                self.label,
                self.diagnostics()
            );
        }
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            let lines = member
                .process
                .lines_since(Stream::Stderr, &mut member.cursor);
            for line in lines {
                self.read_line(index, &line);
            }
            let member = &mut self.members[index];
            if member.fate == Fate::Running {
                if let Some(status) = member.process.exit_status() {
                    let name = member.name.clone();
                    panic!(
                        "{}: {name} exited on its own ({status})\n{}",
                        self.label,
                        self.diagnostics()
                    );
                }
            }
        }
    }

    fn read_line(&mut self, index: usize, line: &str) {
        let name = &self.members[index].name;
        let Ok(log) = serde_json::from_str::<serde_json::Value>(line) else {
            if line.contains("panicked") {
                self.problems.push(format!("{name}: {line}"));
            }
            return;
        };
        if log["level"] == "ERROR" {
            self.problems.push(format!("{name}: {line}"));
        }
        let timestamp = log["timestamp"].as_str().unwrap_or_default().to_owned();
        match log["message"].as_str() {
            Some("audited") => {
                let Some(id) = log["key"]
                    .as_str()
                    .and_then(|key| key.strip_prefix("order-"))
                    .and_then(|id| id.parse::<u64>().ok())
                else {
                    self.problems.push(format!(
                        "{name}: an audited line without an order key: {line}"
                    ));
                    return;
                };
                let handlings = self.handled.entry(id).or_default();
                if id < SENTINEL {
                    self.members[index].orders += 1;
                    if handlings.is_empty() {
                        self.distinct += 1;
                    }
                } else {
                    self.members[index].sentinels += 1;
                }
                handlings.push((index, timestamp.clone()));
            }
            Some("consumer started") => self.members[index].started = true,
            Some("serving HTTP endpoints") => {
                self.members[index].health = log["addr"].as_str().map(str::to_owned);
            }
            _ => {}
        }
        self.members[index].last_log = timestamp;
    }

    /// Refreshes until `condition` holds; panics after `limit` with `what`
    /// and the diagnostics.
    pub(crate) async fn wait(
        &mut self,
        limit: Duration,
        what: &str,
        mut condition: impl FnMut(&Self) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            if condition(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: timed out after {limit:?} waiting for {what}\n{}",
                    self.label,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `member` answers 200 on `/readyz`: it has partitions.
    pub(crate) fn is_ready(&self, member: usize) -> bool {
        self.members[member]
            .health
            .as_deref()
            .is_some_and(|addr| http::get(addr, "/readyz").is_ok_and(|r| r.status == 200))
    }

    /// Waits until no order rests on killed members alone: each was handled
    /// by a member that was not killed, or lies below its partition's
    /// committed offset. A killed member's last orders are committed by no
    /// one until a survivor took its partitions over and handled them
    /// again; stopping everyone before that would leave them to the fresh
    /// member. The committed offsets are read every half second (`topic`,
    /// `partitions`, group `audit`).
    pub(crate) async fn wait_settled(&mut self, limit: Duration, topic: &str, partitions: i32) {
        let landed: HashMap<u64, (i32, i64)> = self
            .landed
            .iter()
            .map(|&(id, partition, offset)| (id, (partition, offset)))
            .collect();
        let deadline = Instant::now() + limit;
        loop {
            self.refresh();
            let orphaned: Vec<(i32, i64)> = self
                .handled
                .iter()
                .filter(|(id, handlings)| {
                    **id < SENTINEL
                        && handlings
                            .iter()
                            .all(|(m, _)| self.members[*m].fate == Fate::Killed)
                })
                .filter_map(|(id, _)| landed.get(id).copied())
                .collect();
            if orphaned.is_empty() {
                return;
            }
            let last =
                match kafka::committed_offsets(self.broker.brokers(), "audit", topic, partitions) {
                    Ok(committed) => {
                        let uncommitted = orphaned
                            .iter()
                            .filter(|(p, offset)| committed[*p as usize].unwrap_or(0) <= *offset)
                            .count();
                        if uncommitted == 0 {
                            return;
                        }
                        format!(
                        "{uncommitted} orders handled only by killed members and not committed; \
                         committed offsets {committed:?}"
                    )
                    }
                    Err(err) => err,
                };
            if Instant::now() >= deadline {
                panic!(
                    "{}: timed out after {limit:?} waiting for the orders of killed members to \
                     be handled again or committed: {last}\n{}",
                    self.label,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `member` has partitions.
    pub(crate) async fn wait_ready(&mut self, member: usize) {
        let what = format!(
            "{} to be ready (partitions assigned)",
            self.members[member].name
        );
        self.wait(START, &what, |group| group.is_ready(member))
            .await;
        let event = format!("{} ready", self.members[member].name);
        self.event(event);
    }

    /// SIGKILLs the member of `slot` and waits for it to be gone.
    pub(crate) async fn kill(&mut self, slot: usize) {
        let index = self.live[slot].take().expect("a live member to kill");
        let member = &mut self.members[index];
        member.process.signal(Signal::Kill);
        member.fate = Fate::Killed;
        let event = format!("SIGKILL {} (pid {})", member.name, member.process.pid());
        self.event(event);
        let deadline = Instant::now() + EXIT;
        while self.members[index].process.exit_status().is_none() {
            if Instant::now() >= deadline {
                panic!(
                    "{} still runs {EXIT:?} after SIGKILL\n{}",
                    self.members[index].name,
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERMs `members` together and waits for each to exit, within
    /// [`EXIT`] of the signal. An exit other than 0 is a problem; a member
    /// still running then is a hang: its threads' stacks (gdb) and its last
    /// log lines go into the panic message.
    ///
    /// A member is signalled once it logged `consumer started`: before it
    /// watches for signals (a few hundred milliseconds after it was
    /// spawned), SIGTERM kills it the default way, not cleanly, as any
    /// process.
    pub(crate) async fn terminate(&mut self, members: &[usize]) {
        for &index in members {
            let what = format!(
                "{} to start (log `consumer started`)",
                self.members[index].name
            );
            self.wait(START, &what, |group| group.members[index].started)
                .await;
        }
        for &index in members {
            for slot in &mut self.live {
                if *slot == Some(index) {
                    *slot = None;
                }
            }
            let member = &mut self.members[index];
            member.process.signal(Signal::Term);
            member.fate = Fate::Stopping(Instant::now());
            let event = format!("SIGTERM {} (pid {})", member.name, member.process.pid());
            self.event(event);
        }
        loop {
            self.refresh();
            let mut stopping = false;
            for &index in members {
                let member = &mut self.members[index];
                let Fate::Stopping(since) = member.fate else {
                    continue;
                };
                if let Some(status) = member.process.exit_status() {
                    member.fate = Fate::Stopped(since.elapsed());
                    let name = member.name.clone();
                    if status.code() != Some(0) {
                        self.problems
                            .push(format!("{name}: exited with {status} after SIGTERM"));
                    }
                    self.event(format!(
                        "{name} exited ({status}) {:.1}s after SIGTERM",
                        since.elapsed().as_secs_f64()
                    ));
                } else if since.elapsed() > EXIT {
                    self.hung(index, since.elapsed());
                } else {
                    stopping = true;
                }
            }
            if !stopping {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics with the evidence of a hang.
    fn hung(&self, index: usize, after: Duration) -> ! {
        let member = &self.members[index];
        let pid = member.process.pid();
        let stacks = match Command::new("gdb")
            .args([
                "-p",
                &pid.to_string(),
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => format!("(no stacks: running gdb failed: {err})"),
        };
        panic!(
            "{}: HANG: {} (pid {pid}) still runs {after:?} after SIGTERM (bound: \
             --shutdown-timeout {SHUTDOWN_TIMEOUT:?} + 15 s)\n---- its threads (gdb) ----\n\
             {stacks}\n---- its last lines ----\n{}\n{}",
            self.label,
            member.name,
            tail(&member.process.stderr(), 60),
            self.diagnostics()
        );
    }

    /// The longest time a member took to exit after SIGTERM.
    pub(crate) fn slowest_exit(&self) -> Duration {
        self.members
            .iter()
            .filter_map(|m| match m.fate {
                Fate::Stopped(took) => Some(took),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// For failure messages: the events, each member's fate and figures,
    /// the problems, and the last lines of every member still running or
    /// that did not exit cleanly.
    pub(crate) fn diagnostics(&self) -> String {
        let mut text = String::from("---- events ----\n");
        for event in &self.events {
            let _ = writeln!(text, "{event}");
        }
        let _ = writeln!(
            text,
            "---- members ({} distinct orders handled) ----",
            self.distinct
        );
        for member in &self.members {
            let _ = writeln!(
                text,
                "{:10} pid {:6} {:?}: {} orders, {} sentinels",
                member.name,
                member.process.pid(),
                member.fate,
                member.orders,
                member.sentinels
            );
        }
        text.push_str(&problems(&self.problems));
        for member in &self.members {
            if matches!(member.fate, Fate::Running | Fate::Stopping(_)) {
                let _ = writeln!(
                    text,
                    "---- last lines of {} ----\n{}",
                    member.name,
                    tail(&member.process.stderr(), 15)
                );
            }
        }
        let _ = write!(
            text,
            "---- dev_broker ----\n{}",
            tail(&self.broker.dump(), 20)
        );
        text
    }
}

/// On a failure (or with `CHAOS_KEEP_LOGS` set), every member's whole
/// output goes to a directory (named in the message) instead of the
/// terminal: a long run's logs are hundreds of thousands of lines.
impl Drop for Group {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("CHAOS_KEEP_LOGS").is_none() {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "chaos-{}-{}",
            self.label,
            std::process::id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        for member in &self.members {
            // `dump` also marks the output as shown: dropping the process
            // then does not print it.
            let _ = std::fs::write(
                dir.join(format!("{}.log", member.name)),
                member.process.dump(),
            );
        }
        let _ = std::fs::write(dir.join("dev_broker.log"), self.broker.dump());
        let _ = std::fs::write(dir.join("events.log"), self.events.join("\n"));
        let landed: String = self
            .landed
            .iter()
            .map(|(id, partition, offset)| format!("order-{id} {partition} {offset}\n"))
            .collect();
        let _ = std::fs::write(dir.join("produced.txt"), landed);
        eprintln!(
            "chaos {}: every member's output is in {}",
            self.label,
            dir.display()
        );
    }
}

/// The problems, at most 50 of them, for a failure message.
pub(crate) fn problems(problems: &[String]) -> String {
    let mut text = format!("---- {} problems ----\n", problems.len());
    for problem in problems.iter().take(50) {
        let _ = writeln!(text, "{problem}");
    }
    if problems.len() > 50 {
        let _ = writeln!(text, "... and {} more", problems.len() - 50);
    }
    text
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
