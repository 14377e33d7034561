//! `Propagation::from_env`: `OTEL_PROPAGATORS` is process-wide, so this
//! binary holds one test that sets it in turn.

use kafka_handler::propagation::{Format, Propagation, PROPAGATORS_ENV};

fn from_env(value: Option<&str>) -> Result<Vec<Format>, String> {
    match value {
        Some(value) => std::env::set_var(PROPAGATORS_ENV, value),
        None => std::env::remove_var(PROPAGATORS_ENV),
    }
    Propagation::from_env()
        .map(|propagation| propagation.formats().to_vec())
        .map_err(|error| error.to_string())
}

#[test]
fn otel_propagators_is_read_in_order_with_the_specs_rules() {
    use Format::*;
    assert_eq!(PROPAGATORS_ENV, "OTEL_PROPAGATORS");
    let default = Ok(vec![TraceContext, Baggage]);
    assert_eq!(from_env(None), default, "unset");
    assert_eq!(from_env(Some("")), default, "empty");
    assert_eq!(from_env(Some(" \t")), default, "blank");
    assert_eq!(from_env(Some("b3")), Ok(vec![B3]));
    assert_eq!(
        from_env(Some("b3multi , tracecontext,baggage")),
        Ok(vec![B3Multi, TraceContext, Baggage]),
        "order and whitespace"
    );
    assert_eq!(
        from_env(Some("B3,tracecontext,b3")),
        Ok(vec![B3, TraceContext]),
        "case and duplicates"
    );
    assert_eq!(from_env(Some("none")), Ok(vec![]), "none");
    assert_eq!(
        from_env(Some("tracecontext,jaegr")),
        Err(
            "OTEL_PROPAGATORS: unknown propagator \"jaegr\"; valid names: tracecontext, \
             baggage, b3, b3multi, none"
                .to_owned()
        )
    );
    assert_eq!(
        from_env(Some("none,b3")),
        Err("OTEL_PROPAGATORS: \"none\" cannot be combined with other propagators".to_owned())
    );
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        std::env::set_var(PROPAGATORS_ENV, std::ffi::OsStr::from_bytes(b"b3\xff"));
        assert_eq!(
            Propagation::from_env().unwrap_err().to_string(),
            "OTEL_PROPAGATORS: the value is not valid UTF-8"
        );
    }
    std::env::remove_var(PROPAGATORS_ENV);
}
