//! `max_in_flight` is an integer literal from 1 to 1,000,000.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = 0)]
fn zero(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = -8)]
fn negative(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = 1_000_001)]
fn too_many(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = "16")]
fn string(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = 6.4)]
fn float(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", max_in_flight = LIMIT)]
fn constant(_payload: &[u8]) {}

const LIMIT: usize = 8;

fn main() {}
