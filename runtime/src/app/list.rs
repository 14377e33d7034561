//! `--list`: every handler with its topics, group, batching, ordering,
//! `max_in_flight` and failure path.

use std::fmt::Write as _;

use crate::Handler;

/// One block per handler, in declaration order. `group` overrides the
/// handlers' own groups (`--group`), `max_in_flight` their own
/// `max_in_flight` (`--max-in-flight`).
pub(crate) fn render(
    handlers: &[Handler],
    group: Option<&str>,
    max_in_flight: Option<usize>,
) -> String {
    let mut out = String::new();
    for handler in handlers {
        let options = handler.options();
        let _ = writeln!(out, "{}", super::short_name(handler.name()));
        let _ = writeln!(out, "  topics   {}", handler.topics().join(", "));
        let _ = writeln!(out, "  group    {}", group.unwrap_or(handler.group()));
        let kind = match (handler.is_batch(), handler.is_async()) {
            (true, true) => "async, batches",
            (true, false) => "sync, batches",
            (false, true) => "async, one record at a time",
            (false, false) => "sync, one record at a time",
        };
        let _ = writeln!(out, "  kind     {kind}");
        if let Some(batch) = options.batch {
            let _ = writeln!(
                out,
                "  batch    up to {} records, cut {:?} after the first",
                batch.max_records(),
                batch.max_wait()
            );
        }
        let _ = writeln!(
            out,
            "  ordering {}, max_in_flight {}",
            options.ordering,
            max_in_flight.unwrap_or_else(|| handler.max_in_flight())
        );
        let then = match &options.dlq {
            Some(dlq) => format!("then dead-lettered to {dlq}"),
            None => "then held (no dead-letter topic)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  retries  {} (backoff {}), {then}",
            options.retries, options.backoff
        );
        if let Some(publish) = &options.publish {
            let _ = writeln!(
                out,
                "  publish  {publish} (what it returns, committed after the broker's ack)"
            );
        }
        if let Some(timeout) = options.timeout {
            let _ = writeln!(out, "  timeout  {timeout:?} per attempt");
        }
        if !options.record_key {
            let _ = writeln!(out, "  keys     not recorded on spans");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOptions, Outcome, ProcessingOrder};
    use std::time::Duration;

    #[test]
    fn lists_topics_group_failure_path_and_batching() {
        let bill = Handler::sync("bill", ["orders"], "billing", |_| Outcome::Ok(()))
            .with_retries(2)
            .with_dlq("orders.dlq")
            .with_publish("invoices");
        let pack = Handler::batch("pack", ["orders", "returns"], "warehouse", |_| {
            Box::pin(async { Outcome::Ok(()) })
        })
        .with_batch(BatchOptions::new(100, Duration::from_millis(50)));
        let listed = render(&[bill.clone(), pack], None, None);
        let bill_block = listed.split("pack\n").next().unwrap();
        assert!(bill_block.starts_with("bill\n"), "{listed}");
        assert!(bill_block.contains("topics   orders\n"), "{listed}");
        assert!(bill_block.contains("group    billing\n"), "{listed}");
        assert!(bill_block.contains("retries  2 (backoff "), "{listed}");
        assert!(
            bill_block.contains("then dead-lettered to orders.dlq"),
            "{listed}"
        );
        assert!(
            bill_block.contains("publish  invoices (what it returns"),
            "{listed}"
        );
        assert!(listed.contains("topics   orders, returns\n"), "{listed}");
        assert!(
            listed.contains("batch    up to 100 records, cut 50ms"),
            "{listed}"
        );
        assert!(
            listed.contains("then held (no dead-letter topic)"),
            "{listed}"
        );

        let overridden = render(&[bill], Some("canary"), None);
        assert!(overridden.contains("group    canary\n"), "{overridden}");
    }

    #[test]
    fn lists_ordering_and_max_in_flight_with_their_defaults_and_override() {
        let audit = Handler::sync("audit", ["orders"], "audit", |_| Outcome::Ok(()));
        let ship = Handler::sync("ship", ["orders"], "shipping", |_| Outcome::Ok(()))
            .with_ordering(ProcessingOrder::Key)
            .with_max_in_flight(5);
        let pack = Handler::batch("pack", ["orders"], "warehouse", |_| {
            Box::pin(async { Outcome::Ok(()) })
        })
        .with_batch(BatchOptions::new(100, Duration::from_millis(50)))
        .with_ordering(ProcessingOrder::Unordered);
        let handlers = [audit, ship, pack];
        let listed = render(&handlers, None, None);
        let lines: Vec<&str> = listed
            .lines()
            .filter(|line| line.starts_with("  ordering "))
            .collect();
        assert_eq!(
            lines,
            [
                "  ordering partition, max_in_flight 64",
                "  ordering key, max_in_flight 5",
                "  ordering none, max_in_flight 800",
            ],
            "{listed}"
        );
        // After the batch line, whose max_records the default multiplies.
        assert!(
            listed.contains("cut 50ms after the first\n  ordering none, max_in_flight 800\n"),
            "{listed}"
        );

        let overridden = render(&handlers, None, Some(7));
        assert_eq!(
            overridden.matches(", max_in_flight 7\n").count(),
            3,
            "{overridden}"
        );
    }
}
