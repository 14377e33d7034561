//! `publish` in every ordering mode, on `TestApp`: each record's output is
//! produced once, under its own record's span, and with `ordering = "key"`
//! the outputs of one key keep the order of their inputs.

use std::time::Duration;

use kafka_handler::testing::TestApp;
use kafka_handler::{handlers, kafka_handler, Error, Output};
use rdkafka::Message as _;

/// Echoes each record after a pause that differs per record, so records
/// running side by side finish out of order.
async fn slow_echo(payload: &str) -> String {
    let pause = payload.bytes().map(u64::from).sum::<u64>() % 7;
    tokio::time::sleep(Duration::from_millis(pause)).await;
    payload.to_owned()
}

#[kafka_handler(topics = ["by-partition"], group = "partition", publish = "out-partition")]
async fn by_partition(payload: &str) -> String {
    slow_echo(payload).await
}

#[kafka_handler(topics = ["by-key"], group = "key", publish = "out-key",
                ordering = "key", max_in_flight = 16)]
async fn by_key(payload: &str) -> Output<String> {
    Output::new(slow_echo(payload).await)
}

#[kafka_handler(topics = ["unordered"], group = "none", publish = "out-none",
                ordering = "none", max_in_flight = 16)]
async fn unordered(payload: &str) -> Option<String> {
    Some(slow_echo(payload).await)
}

const RECORDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ordering_publishes_each_output_once_in_its_records_trace() -> Result<(), Error> {
    let app = TestApp::start(handlers![by_partition, by_key, unordered]).await?;
    for (topic, output) in [
        ("by-partition", "out-partition"),
        ("by-key", "out-key"),
        ("unordered", "out-none"),
    ] {
        let mut sent = Vec::new();
        for i in 0..RECORDS {
            let key = format!("k{}", i % 3);
            let payload = format!("{key}-{i:02}");
            let offset = app
                .send_keyed(topic, Some(key.as_bytes()), payload.as_str())
                .await?;
            sent.push((offset, key, payload));
        }
        for (offset, _, payload) in &sent {
            let outcome = app.outcome_of(topic, *offset).await?;
            assert!(outcome.is_handled(), "{topic}: {outcome}");
            assert_eq!(outcome.outputs().len(), 1, "{topic}: {payload}");
            app.trace_of(&outcome)
                .assert_parent_of(&format!("send {output}"));
        }
        let mut outputs = Vec::new();
        for _ in 0..RECORDS {
            let record = app.next_record(output).await?;
            let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
            let payload = String::from_utf8(record.payload().unwrap().to_vec()).unwrap();
            outputs.push((key, payload));
        }
        let mut published: Vec<&str> = outputs.iter().map(|(_, p)| p.as_str()).collect();
        published.sort_unstable();
        let mut expected: Vec<&str> = sent.iter().map(|(_, _, p)| p.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(published, expected, "{topic}: every output once");
        if topic != "unordered" {
            for key in ["k0", "k1", "k2"] {
                let of_key: Vec<&str> = outputs
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, p)| p.as_str())
                    .collect();
                let mut in_order = of_key.clone();
                in_order.sort_unstable();
                assert_eq!(
                    of_key, in_order,
                    "{topic}: the outputs of {key} in input order"
                );
            }
        }
    }
    app.stop().await
}
