//! Bad configuration fails `build()` with a message that names the fix.

use kafka_handler::{handlers, kafka_handler, Consumer, Error};

#[kafka_handler(topics = ["orders"], group = "billing")]
fn bill(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders", "refunds"], group = "billing")]
fn refund(_payload: &[u8]) {}

fn build_error(builder: kafka_handler::ConsumerBuilder) -> String {
    match builder.build() {
        Ok(consumer) => panic!("expected a configuration error, built {consumer:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn an_unknown_librdkafka_property_is_rejected_with_its_name() {
    let message = build_error(
        Consumer::builder()
            .brokers("127.0.0.1:1")
            .handlers(handlers![bill])
            .set("no.such.property", "1"),
    );
    assert!(message.contains("no.such.property"), "{message}");
}

#[test]
fn auto_commit_cannot_be_turned_on() {
    let message = build_error(
        Consumer::builder()
            .brokers("127.0.0.1:1")
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
    let message = build_error(
        Consumer::builder()
            .brokers("127.0.0.1:1")
            .handlers(handlers![bill, refund]),
    );
    assert!(message.contains("both consume topic `orders`"), "{message}");
    // In different groups they can.
    Consumer::builder()
        .brokers("127.0.0.1:1")
        .handlers(handlers![bill])
        .handler(handlers![refund].remove(0).with_group("refunds"))
        .build()
        .expect("handlers in different groups may share a topic");
}

#[test]
fn at_least_one_handler_is_required() {
    let error = Consumer::builder()
        .brokers("127.0.0.1:1")
        .build()
        .unwrap_err();
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
