//! `--list`: every handler with its topics, group, failure path and batching.

use std::fmt::Write as _;

use crate::Handler;

/// One block per handler, in declaration order. `group` overrides the
/// handlers' own groups (`--group`).
pub(crate) fn render(handlers: &[Handler], group: Option<&str>) -> String {
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
        let then = match &options.dlq {
            Some(dlq) => format!("then dead-lettered to {dlq}"),
            None => "then held (no dead-letter topic)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  retries  {} (backoff {}), {then}",
            options.retries, options.backoff
        );
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
    use crate::{BatchOptions, Outcome};
    use std::time::Duration;

    #[test]
    fn lists_topics_group_failure_path_and_batching() {
        let bill = Handler::sync("bill", ["orders"], "billing", |_| Outcome::Ok(()))
            .with_retries(2)
            .with_dlq("orders.dlq");
        let pack = Handler::batch("pack", ["orders", "returns"], "warehouse", |_| {
            Box::pin(async { Outcome::Ok(()) })
        })
        .with_batch(BatchOptions::new(100, Duration::from_millis(50)));
        let listed = render(&[bill.clone(), pack], None);
        let bill_block = listed.split("pack\n").next().unwrap();
        assert!(bill_block.starts_with("bill\n"), "{listed}");
        assert!(bill_block.contains("topics   orders\n"), "{listed}");
        assert!(bill_block.contains("group    billing\n"), "{listed}");
        assert!(bill_block.contains("retries  2 (backoff "), "{listed}");
        assert!(
            bill_block.contains("then dead-lettered to orders.dlq"),
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

        let overridden = render(&[bill], Some("canary"));
        assert!(overridden.contains("group    canary\n"), "{overridden}");
    }
}
