//! Topic names in `#[kafka_handler(..)]`: `topics`, `dlq` and `publish`.

use syn::{Expr, LitStr};

use crate::args::{parse_str, Errors};

/// The topics that are valid, reporting the others; `None` when the value
/// is not a list of topics at all.
pub(crate) fn parse_topics(value: &Expr, errors: &mut Errors) -> Option<Vec<LitStr>> {
    let Expr::Array(array) = value else {
        errors.push(syn::Error::new_spanned(
            value,
            "expected an array of topic names, e.g. `topics = [\"orders\"]`",
        ));
        return None;
    };
    if array.elems.is_empty() {
        errors.push(syn::Error::new_spanned(
            array,
            "`topics` must name at least one topic",
        ));
        return None;
    }
    let mut topics: Vec<LitStr> = Vec::new();
    for elem in &array.elems {
        let Some(lit) = errors.ok(parse_str(elem, "topics", "a topic name string literal")) else {
            continue;
        };
        let name = lit.value();
        if let Err(problem) = check_topic_name(&name) {
            errors.push(syn::Error::new(
                lit.span(),
                format!("invalid topic name {}: {problem}", shorten(&name)),
            ));
        } else if topics.iter().any(|t| t.value() == name) {
            errors.push(syn::Error::new(
                lit.span(),
                format!("topic {name:?} is listed twice"),
            ));
        } else {
            topics.push(lit);
        }
    }
    Some(topics)
}

/// One topic name, the value of `key` (`dlq`, `publish`); `example` is a
/// valid value.
pub(crate) fn parse_topic(value: &Expr, key: &str, example: &str) -> syn::Result<LitStr> {
    let lit = parse_str(
        value,
        key,
        &format!("a topic name string literal, e.g. `{key} = \"{example}\"`"),
    )?;
    let name = lit.value();
    check_topic_name(&name).map_err(|problem| {
        syn::Error::new(
            lit.span(),
            format!("invalid `{key}` topic name {}: {problem}", shorten(&name)),
        )
    })?;
    Ok(lit)
}

/// Kafka's rule for topic names (`org.apache.kafka.common.internals.Topic`):
/// 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not allowed as topic names".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "a topic name is at most 249 characters, this one has {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed; use ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// A topic name for an error message: quoted, and cut short when it is too
/// long to read (the span already shows the whole literal).
fn shorten(name: &str) -> String {
    const MAX: usize = 40;
    if name.chars().count() <= MAX {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}
