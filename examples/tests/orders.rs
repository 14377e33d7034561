//! Testing the order handlers the way you would test yours: `TestApp` runs
//! them, with their real extractors, retries, dead letters and outputs, on
//! an embedded broker, and tells what became of each record and its trace.
//!
//! ```sh
//! cargo test -p kafka-handler-examples --test orders
//! ```

use kafka_handler::handlers;
use kafka_handler::testing::TestApp;
use kafka_handler_examples::orders::{bill, mail, review};
use rdkafka::Message as _;
use serde_json::{json, Value};

#[tokio::test]
async fn an_order_is_billed_and_its_invoice_mailed_in_the_same_trace(
) -> Result<(), Box<dyn std::error::Error>> {
    let app = TestApp::start(handlers![bill, mail]).await?;

    let order = app
        .send_keyed("orders", Some(b"order-1"), json!({"id": 1, "cents": 250}))
        .await?;
    let billed = app.outcome_of("orders", order).await?;
    assert!(billed.is_handled(), "{billed}");

    let invoice = app.next_record("invoices").await?;
    let body: Value = serde_json::from_slice(invoice.payload().unwrap_or_default())?;
    assert_eq!(body, json!({"order": 1, "cents": 250}));
    assert_eq!(invoice.key(), Some(&b"order-1"[..]));

    // The charge and the invoice's send are children of the order's span...
    let trace = app.trace_of(&billed);
    trace.assert_parent_of("charge card");
    trace.assert_parent_of("send invoices");
    // ...and the mailer continues the same trace.
    let mailed = app.outcome_of("invoices", invoice.offset()).await?;
    assert!(mailed.is_handled(), "{mailed}");
    assert_eq!(mailed.trace_id(), billed.trace_id());

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_order_of_nothing_is_retried_then_reviewed_in_its_own_trace(
) -> Result<(), Box<dyn std::error::Error>> {
    let app = TestApp::start(handlers![bill, review]).await?;

    let order = app
        .send_keyed("orders", Some(b"order-2"), json!({"id": 2, "cents": 0}))
        .await?;
    let billed = app.outcome_of("orders", order).await?;
    assert!(billed.is_dead_lettered(), "{billed}");
    assert_eq!(billed.attempts(), 3, "the first attempt and 2 retries");
    assert_eq!(
        billed.error_message().as_deref(),
        Some("payment gateway unavailable for order 2")
    );
    assert!(billed.outputs().is_empty(), "no invoice for a failed order");

    let copy = app.next_record("orders.dlq").await?;
    let reviewed = app.outcome_of("orders.dlq", copy.offset()).await?;
    assert!(reviewed.is_handled(), "{reviewed}");
    assert_eq!(
        reviewed.trace_id(),
        billed.trace_id(),
        "the review is in the order's trace"
    );

    app.stop().await?;
    Ok(())
}
