//! The example binaries as child processes.
//!
//! `cargo test --workspace` builds every example of the workspace before it
//! runs the tests, into `<target>/<profile>/examples/<name>`, next to the
//! `deps/` directory the test binary runs from. [`example_binary`] finds
//! them there.

use std::fmt;
use std::io::Write as _;
use std::io::{BufRead as _, BufReader, Read};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The built `orders_consumer` with `args`, in an environment without the
/// caller's Kafka and OpenTelemetry settings, exporting nothing unless the
/// caller says so.
pub fn orders_consumer(args: &[&str]) -> Command {
    let mut command = Command::new(example_binary("orders_consumer"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("KAFKA_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .args(args);
    command
}

/// The path of the built example `name`. Panics, saying how to build it,
/// when it is missing.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary runs from <target>/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the example binary {} is missing: run `cargo build --workspace --examples` first \
         (`cargo test --workspace` builds it; `cargo test -p kafka-handler-tests` alone does not)",
        path.display()
    );
    path
}

/// The built example `name` with `args`, in an environment without the
/// caller's Kafka and OpenTelemetry settings (`KAFKA_*`, `OTEL_*`,
/// `RUST_LOG`), exporting nothing unless the test says so.
pub fn example_command(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(example_binary(name));
    for (variable, _) in std::env::vars_os() {
        let variable = variable.to_string_lossy();
        if variable.starts_with("KAFKA_") || variable.starts_with("OTEL_") || variable == "RUST_LOG"
        {
            command.env_remove(&*variable);
        }
    }
    command
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        .args(args);
    command
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A signal to send with [`ChildProcess::signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: what orchestrators send to stop a process.
    Term,
    /// SIGINT: Ctrl-C.
    Int,
    /// SIGKILL: no chance to clean up.
    Kill,
}

#[derive(Default)]
struct Output {
    /// Every line in arrival order.
    lines: Vec<(Stream, String)>,
    /// Streams that reached end of file.
    closed: usize,
}

/// A child process whose stdout and stderr are captured line by line in
/// background threads. Killed when dropped; if the test is panicking then,
/// its output is printed (unless a failure message already included it).
pub struct ChildProcess {
    name: String,
    command_line: String,
    child: std::process::Child,
    /// Its standard input, when spawned with [`ChildProcess::spawn_with_stdin`].
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    dumped: AtomicBool,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout and stderr captured.
    /// `name` labels its output in failure messages.
    pub fn spawn(name: &str, command: Command) -> Self {
        Self::spawn_inner(name, command, false)
    }

    /// [`spawn`](Self::spawn), with a pipe to its standard input for
    /// [`write_line`](Self::write_line). The pipe closes when this value is
    /// dropped.
    pub fn spawn_with_stdin(name: &str, command: Command) -> Self {
        Self::spawn_inner(name, command, true)
    }

    fn spawn_inner(name: &str, mut command: Command, stdin: bool) -> Self {
        command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command_line = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {name} ({command:?}): {err}"));
        let stdin = child.stdin.take();
        let output = Arc::new(Mutex::new(Output::default()));
        let stdout = child.stdout.take().expect("a piped stdout");
        let stderr = child.stderr.take().expect("a piped stderr");
        let readers = vec![
            read_lines(stdout, Stream::Stdout, Arc::clone(&output)),
            read_lines(stderr, Stream::Stderr, Arc::clone(&output)),
        ];
        Self {
            name: name.to_owned(),
            command_line,
            child,
            stdin,
            output,
            readers,
            status: None,
            dumped: AtomicBool::new(false),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lock(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lines of `stream` so far.
    pub fn lines(&self, stream: Stream) -> Vec<String> {
        self.lock()
            .lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// The lines of `stream` captured after `cursor`, which this moves past
    /// them: start with 0 and pass the same cursor again to read each line
    /// once, without copying the whole output every time.
    pub fn lines_since(&self, stream: Stream, cursor: &mut usize) -> Vec<String> {
        let output = self.lock();
        let start = (*cursor).min(output.lines.len());
        *cursor = output.lines.len();
        output.lines[start..]
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// Writes `line` and a newline to the process's standard input. Panics
    /// when it was not spawned with [`spawn_with_stdin`](Self::spawn_with_stdin)
    /// or the write fails (the process exited).
    pub fn write_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name} was spawned without a pipe to its stdin"));
        if let Err(err) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!("writing {line:?} to {name}'s stdin: {err}\n{}", self.dump());
        }
    }

    /// Standard output so far, lines joined with `\n`.
    pub fn stdout(&self) -> String {
        self.lines(Stream::Stdout).join("\n")
    }

    /// Standard error so far, lines joined with `\n`.
    pub fn stderr(&self) -> String {
        self.lines(Stream::Stderr).join("\n")
    }

    /// The stderr lines that are JSON objects (structured log lines).
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.lines(Stream::Stderr)
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Everything captured so far, labelled, for failure messages. Marks
    /// the output as shown, so dropping during a panic does not print it
    /// again.
    pub fn dump(&self) -> String {
        self.dumped.store(true, Ordering::Relaxed);
        self.render()
    }

    fn render(&self) -> String {
        let output = self.lock();
        let mut text = format!(
            "---- {} (pid {}, {}) output, {} lines ----\n$ {}\n",
            self.name,
            self.child.id(),
            match self.status {
                Some(status) => format!("exited: {status}"),
                None => "running".to_owned(),
            },
            output.lines.len(),
            self.command_line,
        );
        for (stream, line) in &output.lines {
            text.push_str(match stream {
                Stream::Stdout => "out| ",
                Stream::Stderr => "err| ",
            });
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("---- end of {} ----", self.name));
        text
    }

    /// Waits until a line of `stream` satisfies `matches`, and returns it.
    /// Panics after `limit` (or when the process exits first) with `what`
    /// and the captured output.
    pub async fn wait_for_line(
        &mut self,
        stream: Stream,
        limit: Duration,
        what: &str,
        mut matches: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(line) = self.find_line(stream, &mut matches) {
                return line;
            }
            if let Some(status) = self.exit_status() {
                // Give the readers a moment to deliver the last lines.
                self.join_readers(Duration::from_secs(2));
                if let Some(line) = self.find_line(stream, &mut matches) {
                    return line;
                }
                panic!(
                    "{} exited ({status}) before printing {what}\n{}",
                    self.name,
                    self.dump()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {limit:?} waiting for {} to print {what}\n{}",
                    self.name,
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first line of `stream` captured so far that satisfies `matches`.
    fn find_line(&self, stream: Stream, matches: impl FnMut(&str) -> bool) -> Option<String> {
        let mut matches = matches;
        self.lock()
            .lines
            .iter()
            .find(|(s, line)| *s == stream && matches(line))
            .map(|(_, line)| line.clone())
    }

    /// Waits for a JSON log line (on stderr) that satisfies `matches`.
    pub async fn wait_for_log(
        &mut self,
        limit: Duration,
        what: &str,
        mut matches: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let line = self
            .wait_for_line(Stream::Stderr, limit, what, |line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|value| value.is_object() && matches(&value))
            })
            .await;
        serde_json::from_str(&line).expect("matched as JSON")
    }

    /// Sends `signal` to the process (through `kill(1)`).
    pub fn signal(&mut self, signal: Signal) {
        let flag = match signal {
            Signal::Term => "-TERM",
            Signal::Int => "-INT",
            Signal::Kill => "-KILL",
        };
        let status = Command::new("kill")
            .arg(flag)
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill(1)");
        assert!(
            status.success(),
            "kill {flag} {} ({}) failed: {status}\n{}",
            self.child.id(),
            self.name,
            self.dump()
        );
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("polling the child");
        }
        self.status
    }

    /// Waits for the process to exit and for its output to be read, and
    /// returns its status. Panics after `limit` with the captured output
    /// (the process is killed when this value is dropped).
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                self.join_readers(Duration::from_secs(5));
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {limit:?} waiting for {} to exit\n{}",
                    self.name,
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` and checks the process then exits 0 within `limit`
    /// (a clean shutdown).
    pub async fn stop(&mut self, signal: Signal, limit: Duration) {
        self.signal(signal);
        let status = self.wait_exit(limit).await;
        assert_eq!(
            status.code(),
            Some(0),
            "{} exited with {status} after {signal:?}\n{}",
            self.name,
            self.dump()
        );
    }

    /// Runs the process to completion (within `limit`) and returns its
    /// status: for commands like `--help` and `--list`.
    pub async fn run(name: &str, command: Command, limit: Duration) -> (Self, ExitStatus) {
        let mut child = Self::spawn(name, command);
        let status = child.wait_exit(limit).await;
        (child, status)
    }

    /// Waits (a bounded time) for both output streams to reach end of file.
    fn join_readers(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.lock().closed < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.lock().closed == 2 {
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() && !self.dumped.load(Ordering::Relaxed) {
            eprintln!("{}", self.render());
        }
    }
}

fn read_lines(
    stream: impl Read + Send + 'static,
    which: Stream,
    output: Arc<Mutex<Output>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    output
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .lines
                        .push((which, line));
                }
            }
        }
        output.lock().unwrap_or_else(|e| e.into_inner()).closed += 1;
    })
}

/// The `dev_broker` example running as a child process: librdkafka's mock
/// cluster in a process of its own, reached over TCP like any broker.
#[derive(Debug)]
pub struct DevBroker {
    process: ChildProcess,
    brokers: String,
    partitions: i32,
}

impl DevBroker {
    /// Starts `dev_broker --partitions {partitions} --stdin-commands
    /// {topics..}` and waits until it printed its address and created every
    /// topic.
    pub async fn start(topics: &[&str], partitions: i32) -> Self {
        Self::start_with(topics, partitions, &[]).await
    }

    /// [`start`](Self::start) with more options of `dev_broker` (such as
    /// `--group-consumer-session-timeout-ms 3000`).
    pub async fn start_with(topics: &[&str], partitions: i32, options: &[&str]) -> Self {
        let mut command = Command::new(example_binary("dev_broker"));
        command
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg("--stdin-commands")
            .args(options)
            .arg("--")
            .args(topics)
            // The dev broker's own process ignores it; make sure of that.
            .env_remove("KAFKA_BROKERS");
        let mut process = ChildProcess::spawn_with_stdin("dev_broker", command);
        let limit = Duration::from_secs(30);
        let export = process
            .wait_for_line(Stream::Stdout, limit, "`export KAFKA_BROKERS=..`", |line| {
                line.starts_with("export KAFKA_BROKERS=")
            })
            .await;
        let brokers = export["export KAFKA_BROKERS=".len()..].trim().to_owned();
        for topic in topics {
            let expected = format!("created topic {topic} ({partitions} partitions)");
            process
                .wait_for_line(Stream::Stdout, limit, &format!("`{expected}`"), |line| {
                    line == expected
                })
                .await;
        }
        Self {
            process,
            brokers,
            partitions,
        }
    }

    /// `127.0.0.1:PORT`, for `--brokers` or `KAFKA_BROKERS`.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The partitions of each topic it created.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Its captured output, for failure messages.
    pub fn dump(&self) -> String {
        self.process.dump()
    }

    /// Takes mock broker `id` (1, the only one) down: it closes its
    /// connections and refuses new ones. Returns once the broker
    /// acknowledged it.
    pub async fn broker_down(&mut self, id: i32) {
        self.command(&format!("down {id}"), &format!("broker {id} down"))
            .await;
    }

    /// Brings mock broker `id` back up; returns once acknowledged.
    pub async fn broker_up(&mut self, id: i32) {
        self.command(&format!("up {id}"), &format!("broker {id} up"))
            .await;
    }

    /// Writes `command` to the broker's stdin and waits (30 s at most) for
    /// one more `ack` line on its stdout.
    async fn command(&mut self, command: &str, ack: &str) {
        let acks = |process: &ChildProcess| {
            process
                .lines(Stream::Stdout)
                .iter()
                .filter(|line| *line == ack)
                .count()
        };
        let before = acks(&self.process);
        self.process.write_line(command);
        let process = &self.process;
        crate::wait_until(
            Duration::from_secs(30),
            &format!("dev_broker to acknowledge `{command}` with `{ack}`"),
            || acks(process) > before,
            || process.dump(),
        )
        .await;
    }

    /// The broker's process, to signal it or read its output.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}
