//! Bad configuration fails `build()` with a message that names the fix.

use std::time::Duration;

use kafka_handler::{
    handlers, kafka_handler, Backoff, Consumer, ConsumerBuilder, Error, Handler, Record,
};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn bill(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders", "refunds"], group = "billing")]
fn refund(_payload: &[u8]) {}

/// A builder for a broker that is never reached: `build()` only checks.
fn offline() -> ConsumerBuilder {
    Consumer::builder().brokers("127.0.0.1:1")
}

fn build_error(builder: ConsumerBuilder) -> String {
    match builder.build() {
        Ok(consumer) => panic!("expected a configuration error, built {consumer:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn an_unknown_librdkafka_property_is_rejected_with_its_name() {
    let message = build_error(
        offline()
            .handlers(handlers![bill])
            .set("no.such.property", "1"),
    );
    assert!(message.contains("no.such.property"), "{message}");
}

#[test]
fn auto_commit_cannot_be_turned_on() {
    let message = build_error(
        offline()
            .handlers(handlers![bill])
            .set("enable.auto.commit", "true"),
    );
    assert!(message.contains("enable.auto.commit=true"), "{message}");
    assert!(message.contains("remove the property"), "{message}");
}

#[test]
fn brokers_are_required() {
    if std::env::var_os(kafka_handler::BROKERS_ENV).is_some() {
        return; // the environment provides them
    }
    let message = build_error(Consumer::builder().handlers(handlers![bill]));
    assert!(message.contains("KAFKA_BROKERS"), "{message}");
}

#[test]
fn two_handlers_cannot_share_a_topic_in_one_group() {
    let message = build_error(offline().handlers(handlers![bill, refund]));
    assert!(message.contains("both consume topic `orders`"), "{message}");
    // In different groups they can.
    offline()
        .handlers(handlers![bill])
        .handler(handlers![refund].remove(0).with_group("refunds"))
        .build()
        .expect("handlers in different groups may share a topic");
}

#[test]
fn at_least_one_handler_is_required() {
    let error = offline().build().unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
}

#[test]
fn descriptors_carry_the_attribute() {
    let handler = handlers![refund].remove(0);
    assert_eq!(handler.topics(), ["orders", "refunds"]);
    assert_eq!(handler.group(), "billing");
    assert!(handler.name().ends_with("::refund"), "{}", handler.name());
    assert!(!handler.is_async());
    // The function itself is still callable as written.
    refund(b"{}");
}

/// A builder with one handler, `handler`, on a broker that is never reached.
fn with_handler(handler: Handler) -> ConsumerBuilder {
    offline().handler(handler)
}

fn sync_handler() -> Handler {
    Handler::sync(
        "tests::sync_orders",
        ["orders"],
        "billing",
        |_: &Record<'_>| Ok(()),
    )
}

fn async_handler() -> Handler {
    Handler::asynchronous("tests::async_orders", ["orders"], "billing", |_| {
        Box::pin(async { Ok(()) })
    })
}

#[test]
fn valid_retry_dead_letter_and_timeout_options_build() {
    // The control for the rejections below: each of them differs from one
    // of these in the one setting at fault.
    with_handler(
        sync_handler()
            .with_retries(1)
            .with_backoff(Backoff::exponential(
                Duration::from_secs(1),
                Duration::from_secs(2),
            ))
            .with_dlq("orders.dlq_v-1"),
    )
    .dead_letter_set("linger.ms", "5")
    .build()
    .expect("a valid backoff and dead-letter topic");
    with_handler(async_handler().with_timeout(Duration::from_millis(1)))
        .build()
        .expect("an async handler may have a timeout");
}

#[test]
fn an_inverted_backoff_is_rejected() {
    let message = build_error(with_handler(sync_handler().with_backoff(
        Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1)),
    )));
    assert!(message.contains("tests::sync_orders"), "{message}");
    assert!(message.contains("inverted"), "{message}");
    assert!(message.contains("2s..1s"), "{message}");
}

#[test]
fn an_invalid_dead_letter_topic_name_is_rejected() {
    for (dlq, problem) in [
        ("orders dlq", "' '"),
        ("orders/dlq", "'/'"),
        ("", "1 to 249 characters"),
        ("..", "`..`"),
    ] {
        let message = build_error(with_handler(sync_handler().with_dlq(dlq)));
        assert!(message.contains("tests::sync_orders"), "{message}");
        assert!(
            message.contains(&format!("invalid dead-letter topic {dlq:?}")),
            "{message}"
        );
        assert!(message.contains(problem), "{dlq:?}: {message}");
    }
    let long = "d".repeat(250);
    let message = build_error(with_handler(sync_handler().with_dlq(&long)));
    assert!(message.contains("1 to 249 characters"), "{message}");
}

#[test]
fn a_dead_letter_topic_cannot_be_one_of_the_handlers_topics() {
    let handler = Handler::sync(
        "tests::loops",
        ["orders", "refunds"],
        "billing",
        |_: &Record<'_>| Ok(()),
    )
    .with_dlq("refunds");
    let message = build_error(with_handler(handler));
    assert!(
        message.contains("`tests::loops` consumes its own dead-letter topic `refunds`"),
        "{message}"
    );
}

#[test]
fn a_sync_handler_cannot_have_a_timeout() {
    let message = build_error(with_handler(
        sync_handler().with_timeout(Duration::from_secs(1)),
    ));
    assert!(message.contains("tests::sync_orders"), "{message}");
    assert!(message.contains("synchronous"), "{message}");
    assert!(message.contains("timeout"), "{message}");
}

#[test]
fn a_zero_timeout_is_rejected() {
    let message = build_error(with_handler(async_handler().with_timeout(Duration::ZERO)));
    assert!(message.contains("tests::async_orders"), "{message}");
    assert!(message.contains("timeout of zero"), "{message}");
}

#[test]
fn an_unknown_dead_letter_producer_property_is_rejected_with_its_name() {
    let message = build_error(
        with_handler(sync_handler().with_dlq("orders.dlq"))
            .dead_letter_set("no.such.producer.property", "1"),
    );
    assert!(message.contains("no.such.producer.property"), "{message}");
    assert!(message.contains("dead-letter producer"), "{message}");
}

#[test]
fn dead_letter_producer_properties_are_checked_even_without_a_dlq() {
    let message =
        build_error(with_handler(sync_handler()).dead_letter_set("no.such.producer.property", "1"));
    assert!(message.contains("no.such.producer.property"), "{message}");
    assert!(message.contains("dead-letter producer"), "{message}");
}

#[kafka_handler(topics = ["clicks"], group = "analytics", batch)]
async fn store(_batch: kafka_handler::Batch<'_, &[u8]>) {}

#[kafka_handler(topics = ["clicks"], group = "analytics", batch)]
fn count(_batch: kafka_handler::Batch<'_, &[u8]>) {}

fn batch(handler: Handler, options: kafka_handler::BatchOptions) -> ConsumerBuilder {
    with_handler(handler.with_batch(options))
}

#[test]
fn valid_batch_options_build() {
    let options = kafka_handler::BatchOptions::new(100_000, Duration::from_nanos(1));
    batch(handlers![store].remove(0), options)
        .build()
        .expect("the largest batch and the shortest wait are valid");
}

#[test]
fn batch_options_need_a_batch_handler() {
    let message = build_error(batch(sync_handler(), Default::default()));
    assert!(message.contains("takes one record at a time"), "{message}");
    assert!(message.contains("Handler::batch"), "{message}");
}

#[test]
fn batch_sizes_outside_one_to_a_hundred_thousand_are_rejected() {
    for max_records in [0, 100_001] {
        let options = kafka_handler::BatchOptions::new(max_records, Duration::from_millis(50));
        let message = build_error(batch(handlers![store].remove(0), options));
        assert!(
            message.contains(&format!("`max_records` is {max_records}")),
            "{message}"
        );
    }
}

#[test]
fn a_zero_max_wait_is_rejected() {
    let options = kafka_handler::BatchOptions::new(10, Duration::ZERO);
    let message = build_error(batch(handlers![store].remove(0), options));
    assert!(
        message.contains("`max_wait` must be above zero"),
        "{message}"
    );
}

#[test]
fn a_synchronous_batch_handler_cannot_have_a_timeout() {
    let handler = handlers![count]
        .remove(0)
        .with_timeout(Duration::from_secs(1));
    let message = build_error(with_handler(handler));
    assert!(message.contains("is synchronous"), "{message}");
    let handler = handlers![store]
        .remove(0)
        .with_timeout(Duration::from_secs(1));
    with_handler(handler)
        .build()
        .expect("an async batch handler can time out");
}
