//! `ordering` is one of "partition", "key" or "none", in a string literal.
use kafka_handler::kafka_handler;

#[kafka_handler(topics = ["orders"], group = "billing", ordering = "random")]
fn unknown(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", ordering = "Key")]
fn capitalised(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", ordering = "unordered")]
fn synonym(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", ordering = key)]
fn unquoted(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", ordering = 1)]
fn not_a_string(_payload: &[u8]) {}

#[kafka_handler(topics = ["orders"], group = "billing", ordering = "key", ordering = "none")]
fn twice(_payload: &[u8]) {}

fn main() {}
