//! Compile-time behaviour of `#[kafka_handler]`: what it accepts, and the
//! errors it reports for what it rejects (snapshots in `tests/ui/fail/*.stderr`).
//!
//! Regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p kafka-handler-macros --test ui`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
