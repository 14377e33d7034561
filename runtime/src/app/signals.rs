//! SIGINT and SIGTERM: the first drains and stops, the second exits at once.

use crate::Shutdown;

/// Watches for the signals in the background. The first triggers
/// `shutdown` (stop fetching, finish the records in flight, commit, flush);
/// a second exits the process at once with 128 + its number, leaving the
/// records in flight uncommitted.
pub(crate) fn watch(shutdown: Shutdown) -> Result<(), String> {
    let mut signals = Signals::new()?;
    tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(
            target: "kafka_handler",
            signal = first.name,
            "shutting down: finishing the records in flight, then committing and flushing \
             telemetry; signal again to exit at once"
        );
        shutdown.trigger();
        let second = signals.next().await;
        tracing::warn!(
            target: "kafka_handler",
            signal = second.name,
            "second signal: exiting at once; records in flight stay uncommitted and are \
             handled again after a restart"
        );
        std::process::exit(128 + second.number);
    });
    Ok(())
}

/// A signal received.
struct Received {
    name: &'static str,
    number: i32,
}

#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Result<Self, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen =
            |kind| signal(kind).map_err(|err| format!("listening for SIGINT and SIGTERM: {err}"));
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received { name: "SIGINT", number: 2 },
            _ = self.terminate.recv() => Received { name: "SIGTERM", number: 15 },
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Result<Self, String> {
        Ok(Self)
    }

    async fn next(&mut self) -> Received {
        // Without Ctrl-C support there is nothing to wait for.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        Received {
            name: "Ctrl-C",
            number: 2,
        }
    }
}
