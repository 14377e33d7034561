//! Parsing and checking `#[kafka_handler(..)]` arguments.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

const KEYS: &str = "`topics`, `group`, `record_key`, `crate`";

/// The checked arguments. Every value keeps its span for later errors.
pub(crate) struct HandlerArgs {
    pub(crate) topics: Vec<LitStr>,
    pub(crate) group: LitStr,
    pub(crate) record_key: Option<bool>,
    pub(crate) krate: Option<syn::Path>,
}

/// The raw `key = value` list, before checking.
pub(crate) struct RawArgs(Punctuated<Meta, Token![,]>);

impl Parse for RawArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Punctuated::parse_terminated(input)
            .map(RawArgs)
            .map_err(|err| {
                // syn's own message ("expected identifier") says what token
                // was wanted, not what the attribute takes: add that.
                syn::Error::new(
                    err.span(),
                    format!(
                        "{err}: #[kafka_handler] takes `key = value` arguments, \
                         e.g. `#[kafka_handler(topics = [\"orders\"], group = \"billing\")]`"
                    ),
                )
            })
    }
}

impl RawArgs {
    /// Checks every argument, reporting all problems at once.
    pub(crate) fn check(self) -> Result<HandlerArgs, syn::Error> {
        let mut errors = Errors::default();
        let mut topics: Option<Vec<LitStr>> = None;
        let mut group: Option<LitStr> = None;
        let mut record_key: Option<bool> = None;
        let mut krate: Option<syn::Path> = None;
        let mut seen: Vec<String> = Vec::new();

        for meta in self.0 {
            let path = meta.path();
            let Some(key) = path
                .get_ident()
                .map(ToString::to_string)
                .or_else(|| (path.segments.len() == 1).then(|| path.segments[0].ident.to_string()))
            else {
                errors.push(syn::Error::new_spanned(
                    path,
                    format!("unknown argument; expected one of {KEYS}"),
                ));
                continue;
            };
            if !matches!(key.as_str(), "topics" | "group" | "record_key" | "crate") {
                errors.push(syn::Error::new_spanned(
                    path,
                    format!("unknown argument `{key}`; expected one of {KEYS}"),
                ));
                continue;
            }
            if seen.contains(&key) {
                errors.push(syn::Error::new_spanned(
                    path,
                    format!("duplicate argument `{key}`"),
                ));
                continue;
            }
            seen.push(key.clone());
            let Meta::NameValue(name_value) = meta else {
                errors.push(syn::Error::new_spanned(
                    &meta,
                    format!("expected `{key} = ..`"),
                ));
                continue;
            };
            let value = name_value.value;
            match key.as_str() {
                "topics" => topics = errors.ok(parse_topics(&value)),
                "group" => group = errors.ok(parse_group(&value)),
                "record_key" => record_key = errors.ok(parse_bool(&value, "record_key")),
                "crate" => krate = errors.ok(parse_crate(&value)),
                _ => unreachable!("keys are checked above"),
            }
        }

        if topics.is_none() && !seen.iter().any(|k| k == "topics") {
            errors.push(syn::Error::new(
                Span::call_site(),
                "missing `topics`, e.g. `#[kafka_handler(topics = [\"orders\"], group = \"billing\")]`",
            ));
        }
        if group.is_none() && !seen.iter().any(|k| k == "group") {
            errors.push(syn::Error::new(
                Span::call_site(),
                "missing `group`, e.g. `#[kafka_handler(topics = [\"orders\"], group = \"billing\")]`",
            ));
        }
        errors.finish()?;
        match (topics, group) {
            (Some(topics), Some(group)) => Ok(HandlerArgs {
                topics,
                group,
                record_key,
                krate,
            }),
            // Both were reported above, or their values were.
            _ => Err(syn::Error::new(Span::call_site(), "invalid arguments")),
        }
    }
}

fn parse_topics(value: &Expr) -> syn::Result<Vec<LitStr>> {
    let Expr::Array(array) = value else {
        return Err(syn::Error::new_spanned(
            value,
            "expected an array of topic names, e.g. `topics = [\"orders\"]`",
        ));
    };
    if array.elems.is_empty() {
        return Err(syn::Error::new_spanned(
            array,
            "`topics` must name at least one topic",
        ));
    }
    let mut errors = Errors::default();
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
    errors.finish().map(|()| topics)
}

fn parse_crate(value: &Expr) -> syn::Result<syn::Path> {
    let lit = parse_str(
        value,
        "crate",
        "a path in a string literal, e.g. `crate = \"::kafka_handler\"`",
    )?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`crate` expects a path like `::kafka_handler` or `crate::reexport::kafka_handler`, \
                 not {:?}",
                lit.value()
            ),
        )
    })
}

fn parse_group(value: &Expr) -> syn::Result<LitStr> {
    let lit = parse_str(value, "group", "a consumer group name string literal")?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(lit.span(), "`group` must not be empty"));
    }
    Ok(lit)
}

fn parse_str(value: &Expr, key: &str, what: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects {what}"),
        )),
    }
}

fn parse_bool(value: &Expr, key: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => Ok(lit.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects `true` or `false`"),
        )),
    }
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

/// Collects errors so the user sees all of them in one build.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|err| self.push(err)).ok()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
