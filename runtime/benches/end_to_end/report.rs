//! The end-to-end bench's report: the setup, the throughput table, the
//! targets and their verdicts, and the batch handler's table, from the
//! medians of every configuration's runs.

use crate::common::{median, span_queue};
use crate::{
    Kind, RunResult, BATCH_MAX_RECORDS, BATCH_MAX_WAIT, KINDS, MAX_LINKS_PER_SPAN, PARTITIONS,
};

/// Every configuration's runs (in the order of [`KINDS`]) and their median
/// records/s.
pub(super) struct Report<'a> {
    results: &'a [Vec<RunResult>],
    medians: Vec<f64>,
    /// The raw `BaseConsumer`'s median: the baseline of every ratio.
    raw: f64,
}

/// Where `kind` is in [`KINDS`].
fn index(kind: Kind) -> usize {
    KINDS.iter().position(|k| *k == kind).expect("a kind")
}

impl<'a> Report<'a> {
    /// The report of `results`, one list of runs per configuration of
    /// [`KINDS`], in that order.
    pub(super) fn new(results: &'a [Vec<RunResult>]) -> Self {
        let mut report = Report {
            results,
            medians: Vec::new(),
            raw: 0.0,
        };
        report.medians = KINDS
            .iter()
            .map(|&kind| report.median_of(kind, &RunResult::records_per_sec))
            .collect();
        report.raw = report.medians[0];
        report
    }

    /// The median of `f` over `kind`'s runs.
    fn median_of(&self, kind: Kind, f: &dyn Fn(&RunResult) -> f64) -> f64 {
        median(&mut self.results[index(kind)].iter().map(f).collect::<Vec<_>>())
    }

    /// `kind`'s median records/s.
    fn records_per_sec(&self, kind: Kind) -> f64 {
        self.medians[index(kind)]
    }

    /// `kind`'s median records/s ÷ the raw `BaseConsumer`'s.
    fn ratio(&self, kind: Kind) -> f64 {
        self.records_per_sec(kind) / self.raw
    }

    /// Prints the whole report: `records` produced, `expected` held by the
    /// mock, `repeats` runs of each configuration.
    pub(super) fn print(&self, records: u64, expected: u64, repeats: usize) {
        print_setup(records, expected, repeats);
        self.print_throughput(expected);
        self.print_targets();
        self.print_batch_handler();
    }

    /// The throughput table, one row per configuration, and whether every
    /// sampled run exported every span.
    fn print_throughput(&self, expected: u64) {
        println!();
        println!(
            "| consumer | records/s (median) | µs/record | × raw | × ruststream, same tracing | runs (records/s) | records read | spans exported / expected |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut dropped_spans = 0u64;
        for ((kind, runs), median) in KINDS.iter().zip(self.results).zip(&self.medians) {
            let per_run: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}k", r.records_per_sec() / 1000.0))
                .collect();
            let reads: Vec<u64> = runs.iter().map(|r| r.read).collect();
            let all_read = reads.iter().all(|&r| r == expected);
            let spans = if kind.sampled() {
                let exported: u64 = runs
                    .iter()
                    .filter_map(|r| r.exported)
                    .map(|e| e.spans)
                    .sum();
                let wanted: u64 = runs.iter().map(|r| kind.expected_spans(r)).sum();
                let short = wanted.saturating_sub(exported);
                dropped_spans += short;
                let links = match kind {
                    Kind::KafkaHandlerBatch { .. } => {
                        let exported = runs.iter().filter_map(|r| r.exported);
                        let dropped: u64 = exported.clone().map(|e| e.dropped_links).sum();
                        let max_links = exported.map(|e| e.max_links).max().unwrap_or(0);
                        format!(
                            " (records + batches); up to {max_links} links per span, {dropped} dropped"
                        )
                    }
                    _ => String::new(),
                };
                let verdict = match exported.cmp(&wanted) {
                    std::cmp::Ordering::Less => format!("**{short} short**"),
                    std::cmp::Ordering::Equal => "none short".to_owned(),
                    std::cmp::Ordering::Greater => format!("{} more", exported - wanted),
                };
                format!("{exported} / {wanted}{links}: {verdict}")
            } else {
                "—".to_owned()
            };
            let versus_peer = if matches!(kind, Kind::RustStream { .. }) {
                "1.00×".to_owned()
            } else {
                format!("{:.2}×", median / self.records_per_sec(kind.peer()))
            };
            println!(
                "| {} | {:.0} | {:.2} | {:.2}× | {versus_peer} | {} | {} | {spans} |",
                kind.describe(),
                median,
                1e6 / median.max(1e-9),
                median / self.raw,
                per_run.join(", "),
                if all_read {
                    format!("all {expected}")
                } else {
                    format!("{reads:?} of {expected}")
                },
            );
        }
        println!();
        println!(
            "spans: {}",
            if dropped_spans == 0 {
                "every sampled run exported every span it should have".to_owned()
            } else {
                format!("**{dropped_spans} spans short** over the sampled runs (dropped by the batch span processor?)")
            }
        );
    }

    /// The targets, against the raw `BaseConsumer` and the hand-written
    /// loop, with their verdicts; ruststream, metrics and the sync handler
    /// against the async one for reference.
    fn print_targets(&self) {
        let verdict = |met: bool| if met { "met" } else { "**missed**" };
        let hand_on = self.ratio(Kind::HandWritten { sampled: true });
        let hand_off = self.ratio(Kind::HandWritten { sampled: false });
        let rs_on = self.ratio(Kind::RustStream { sampled: true });
        let rs_off = self.ratio(Kind::RustStream { sampled: false });
        println!();
        println!("| target | handler | measured | |");
        println!("|---|---|---|---|");
        for (label, on, off) in [
            (
                "sync `fn` (inline)",
                Kind::KafkaHandler { sampled: true },
                Kind::KafkaHandler { sampled: false },
            ),
            (
                "`async fn`",
                Kind::KafkaHandlerAsync { sampled: true },
                Kind::KafkaHandlerAsync { sampled: false },
            ),
        ] {
            let (kh_on, kh_off) = (self.ratio(on), self.ratio(off));
            println!(
                "| kafka-handler 100% sampled ≥ 0.85× raw | {label} | {kh_on:.2}× | {} |",
                verdict(kh_on >= 0.85)
            );
            println!(
                "| kafka-handler tracing off ≥ 0.95× raw | {label} | {kh_off:.2}× | {} |",
                verdict(kh_off >= 0.95)
            );
            println!(
                "| never slower than hand-written, 100% sampled | {label} | {kh_on:.2}× vs {hand_on:.2}× raw (kafka-handler ÷ hand-written = {:.2}) | {} |",
                kh_on / hand_on,
                verdict(kh_on >= hand_on)
            );
            println!(
                "| never slower than hand-written, tracing off | {label} | {kh_off:.2}× vs {hand_off:.2}× raw (kafka-handler ÷ hand-written = {:.2}) | {} |",
                kh_off / hand_off,
                verdict(kh_off >= hand_off)
            );
            println!(
                "| (reference) ÷ ruststream, 100% sampled | {label} | {kh_on:.2}× vs {rs_on:.2}× raw = {:.2} | |",
                kh_on / rs_on
            );
            println!(
                "| (reference) ÷ ruststream, tracing off | {label} | {kh_off:.2}× vs {rs_off:.2}× raw = {:.2} | |",
                kh_off / rs_off
            );
        }
        let kh_off = self.ratio(Kind::KafkaHandler { sampled: false });
        let kh_metrics = self.ratio(Kind::KafkaHandlerMetered);
        println!(
            "| metrics' cost (reference): tracing off with an SDK meter provider | sync `fn` | {kh_metrics:.2}× raw, {:.2}× tracing off without one | |",
            kh_metrics / kh_off
        );
        println!(
            "| sync `fn` ÷ `async fn` (reference) | | tracing off {:.2}, 100% sampled {:.2} | |",
            kh_off / self.ratio(Kind::KafkaHandlerAsync { sampled: false }),
            self.ratio(Kind::KafkaHandler { sampled: true })
                / self.ratio(Kind::KafkaHandlerAsync { sampled: true })
        );
    }

    /// The batch handler against the floor and the single-record handler of
    /// the same tracing.
    fn print_batch_handler(&self) {
        let batch_of = |sampled: bool| Kind::KafkaHandlerBatch { sampled };
        let single_of = |sampled: bool| Kind::KafkaHandler { sampled };
        let batch_runs = |sampled: bool| &self.results[index(batch_of(sampled))];
        let row = |label: &str, cell: &dyn Fn(bool) -> String| {
            println!("| {label} | {} | {} |", cell(false), cell(true));
        };
        // Of the batch runs: the rate up to the end of the last full batch.
        let to_last_full = |sampled: bool| {
            self.median_of(batch_of(sampled), &|r| {
                r.batches
                    .and_then(|b| b.records_per_sec_to_last_full())
                    .unwrap_or(0.0)
            })
        };
        let single = |sampled: bool| self.records_per_sec(single_of(sampled));
        let batch = |sampled: bool| self.records_per_sec(batch_of(sampled));
        let raw = self.raw;
        println!();
        println!(
            "| batch handler (`max_records = {BATCH_MAX_RECORDS}`, `max_wait = {}ms`), `process` per record | tracing off | 100% sampled |",
            BATCH_MAX_WAIT.as_millis()
        );
        println!("|---|---|---|");
        row("records/s (median, first record to last)", &|s| {
            format!("{:.0}", batch(s))
        });
        row("**batch ÷ raw `BaseConsumer`**", &|s| {
            format!("**{:.2}×**", batch(s) / raw)
        });
        row(
            "**batch ÷ single-record kafka-handler (sync `fn`, as the batch handler)**",
            &|s| format!("**{:.2}**", batch(s) / single(s)),
        );
        row("batch ÷ single, run by run (same repeat)", &|s| {
            batch_runs(s)
                .iter()
                .zip(&self.results[index(single_of(s))])
                .map(|(b, one)| {
                    format!(
                        "{:.2}",
                        b.records_per_sec() / one.records_per_sec().max(1e-9)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        row(
            "single-record kafka-handler (sync `fn`) ÷ raw (reference)",
            &|s| format!("{:.2}×", single(s) / raw),
        );
        row(
            "records/s up to the end of the last full batch (median; without the end-of-input tail)",
            &|s| format!("{:.0}", to_last_full(s)),
        );
        row("… ÷ raw / ÷ single", &|s| {
            format!(
                "{:.2}× / {:.2}",
                to_last_full(s) / raw,
                to_last_full(s) / single(s)
            )
        });
        row(
            "end-of-input tail: last full batch to last record (median)",
            &|s| {
                let tail = self.median_of(batch_of(s), &|r| {
                    r.batches
                        .and_then(|b| b.to_last_full)
                        .map_or(0.0, |(_, to)| {
                            r.elapsed.saturating_sub(to).as_secs_f64() * 1e3
                        })
                });
                let elapsed = self.median_of(batch_of(s), &|r| r.elapsed.as_secs_f64() * 1e3);
                format!("{tail:.1} ms of {elapsed:.0} ms")
            },
        );
        row("batches per run (median), cut by `max_wait`", &|s| {
            let calls = self.median_of(batch_of(s), &|r| r.batches.map_or(0.0, |b| b.calls as f64));
            let cut = self.median_of(batch_of(s), &|r| {
                r.batches.map_or(0.0, |b| (b.calls - b.full) as f64)
            });
            format!("{calls:.0}, {cut:.0} cut")
        });
        row("time inside the batch handler (median, µs/record)", &|s| {
            let busy = self.median_of(batch_of(s), &|r| {
                r.batches
                    .map_or(0.0, |b| b.busy.as_secs_f64() * 1e6 / r.read.max(1) as f64)
            });
            format!("{busy:.2}")
        });
    }
}

/// What was measured, and how each configuration was set up.
fn print_setup(records: u64, expected: u64, repeats: usize) {
    println!();
    println!(
        "End to end: {records} records produced, {expected} held by the mock over {PARTITIONS} partitions; \
         medians of {repeats} runs each"
    );
    println!(
        "100% sampled runs: SDK provider with `with_max_links_per_span({MAX_LINKS_PER_SPAN})` (the default \
         is 128), so each batch span keeps all its links (one per record); no other span has more than one; \
         batch span processor queue {} (`BENCH_SPAN_QUEUE`; the SDK's default is 2,048), export batches of 512.",
        span_queue()
    );
    println!(
        "Batch handler: `batch(max_records = {BATCH_MAX_RECORDS}, max_wait = \"{}ms\")`, one \
         `record.process(..)` per record (its own span, linked to the batch span); timed like the \
         single-record handler, from the first record processed to the last.",
        BATCH_MAX_WAIT.as_millis()
    );
    println!(
        "ruststream-rdkafka 0.7.1 (ruststream 0.7.7): an async handler (`impl Handle<Payload<'_>>`, a \
         borrowed view of the payload, no codec) calling the same no-op; `KafkaTopic` with the same consumer \
         properties, `StartOffset::Earliest`, `Commit::Tracked`. Sampled: `OpenTelemetry::new().consume_layer()` \
         (a `tracing` span per delivery) and a global `tracing` subscriber with the tracing-opentelemetry \
         layer on the run's provider, at INFO (off in every other run)."
    );
}
