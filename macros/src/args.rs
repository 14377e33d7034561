//! Parsing and checking `#[kafka_handler(..)]` arguments.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitInt, LitStr, Meta, Signature, Token, UnOp};

use crate::duration::parse_duration;
use crate::topics::{parse_topic, parse_topics};

const KEYS: &str = "`topics`, `group`, `batch`, `retries`, `backoff`, `dlq`, `publish`, \
                    `timeout`, `ordering`, `max_in_flight`, `record_key`, `crate`";

/// The largest `max_records` (the runtime's `BatchOptions::MAX_RECORDS_LIMIT`).
const MAX_RECORDS_LIMIT: u64 = 100_000;

/// The `max_records` of a bare `batch` (the runtime's
/// `BatchOptions::DEFAULT_MAX_RECORDS`).
const DEFAULT_MAX_RECORDS: u64 = 500;

/// The largest `max_in_flight` (the runtime's
/// `HandlerOptions::MAX_IN_FLIGHT_LIMIT`).
const MAX_IN_FLIGHT_LIMIT: u64 = 1_000_000;

const BATCH_FORM: &str =
    "expected `batch` or `batch(max_records = 500, max_wait = \"50ms\")` (both optional)";

/// The checked arguments. Every value keeps its span for later errors.
/// Options left out are `None`: the runtime's defaults apply.
pub(crate) struct HandlerArgs {
    pub(crate) topics: Vec<LitStr>,
    pub(crate) group: LitStr,
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) dlq: Option<LitStr>,
    /// The topic the handler's return value is produced to.
    pub(crate) publish: Option<LitStr>,
    /// Nanoseconds, above zero.
    pub(crate) timeout: Option<u64>,
    pub(crate) record_key: Option<bool>,
    pub(crate) krate: Option<syn::Path>,
    /// `Some` for a batch handler.
    pub(crate) batch: Option<BatchArgs>,
    /// Not `Key` on a batch handler.
    pub(crate) ordering: Option<ProcessingOrder>,
    /// 1 to [`MAX_IN_FLIGHT_LIMIT`], and not below a batch handler's
    /// `max_records`.
    pub(crate) max_in_flight: Option<u64>,
}

/// A checked `batch(..)`; what is left out takes the runtime's default.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchArgs {
    /// 1 to [`MAX_RECORDS_LIMIT`].
    pub(crate) max_records: Option<u64>,
    /// Nanoseconds, above zero.
    pub(crate) max_wait: Option<u64>,
}

/// A checked `ordering`: the runtime's `ProcessingOrder` of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessingOrder {
    /// `"partition"`: one record in flight per partition.
    Partition,
    /// `"key"`: one record in flight per key within a partition.
    Key,
    /// `"none"`: any record beside any other.
    Unordered,
}

/// A checked `backoff`, in nanoseconds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Backoff {
    /// `"250ms"`.
    Constant(u64),
    /// `"100ms..10s"`: `0 < min <= max`.
    Exponential { min: u64, max: u64 },
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
    /// Checks every argument against the annotated function's signature,
    /// reporting all problems at once.
    pub(crate) fn check(self, sig: &Signature) -> Result<HandlerArgs, syn::Error> {
        let mut errors = Errors::default();
        let mut topics: Option<Vec<LitStr>> = None;
        let mut group: Option<LitStr> = None;
        let mut retries: Option<u32> = None;
        let mut backoff: Option<Backoff> = None;
        let mut dlq: Option<LitStr> = None;
        let mut publish: Option<LitStr> = None;
        let mut timeout: Option<u64> = None;
        let mut record_key: Option<bool> = None;
        let mut krate: Option<syn::Path> = None;
        let mut batch: Option<BatchArgs> = None;
        // With their values' spans, for the checks against `batch` below.
        let mut ordering: Option<(ProcessingOrder, LitStr)> = None;
        let mut max_in_flight: Option<(u64, LitInt)> = None;
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
            if !matches!(
                key.as_str(),
                "topics"
                    | "group"
                    | "batch"
                    | "retries"
                    | "backoff"
                    | "dlq"
                    | "publish"
                    | "timeout"
                    | "ordering"
                    | "max_in_flight"
                    | "record_key"
                    | "crate"
            ) {
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
            if key == "batch" {
                batch = errors.ok(parse_batch(&meta));
                if let Some(problem) = batch_signature(sig) {
                    errors.push(problem);
                }
                continue;
            }
            let Meta::NameValue(name_value) = meta else {
                errors.push(syn::Error::new_spanned(
                    &meta,
                    format!("expected `{key} = ..`"),
                ));
                continue;
            };
            let value = &name_value.value;
            match key.as_str() {
                "topics" => topics = parse_topics(value, &mut errors),
                "group" => group = errors.ok(parse_group(value)),
                "retries" => retries = errors.ok(parse_retries(value)),
                "backoff" => backoff = errors.ok(parse_backoff(value)),
                "dlq" => dlq = errors.ok(parse_topic(value, "dlq", "orders.dlq")),
                "publish" => publish = errors.ok(parse_topic(value, "publish", "invoices")),
                "timeout" => {
                    timeout = errors.ok(parse_timeout(value));
                    if sig.asyncness.is_none() {
                        errors.push(syn::Error::new_spanned(
                            &name_value,
                            format!(
                                "`timeout` needs an `async fn`: a synchronous handler cannot be \
                                 cancelled while it runs; make `{}` an `async fn`, or drop `timeout`",
                                sig.ident
                            ),
                        ));
                    }
                }
                "ordering" => ordering = errors.ok(parse_ordering(value)),
                "max_in_flight" => max_in_flight = errors.ok(parse_max_in_flight(value)),
                "record_key" => record_key = errors.ok(parse_bool(value, "record_key")),
                "crate" => krate = errors.ok(parse_crate(value)),
                _ => unreachable!("keys are checked above"),
            }
        }

        if let (Some(dlq), Some(topics)) = (&dlq, &topics) {
            if topics.iter().any(|topic| topic.value() == dlq.value()) {
                errors.push(syn::Error::new(
                    dlq.span(),
                    format!(
                        "`dlq` {:?} is one of this handler's `topics`: a record given up on would \
                         be dead-lettered into the topic it came from and handled again, forever; \
                         use a topic of its own, e.g. \"{}.dlq\"",
                        dlq.value(),
                        dlq.value()
                    ),
                ));
            }
        }

        if let Some(publish) = &publish {
            if let Some(problem) = publish_problem(publish, sig, topics.as_deref(), &seen) {
                errors.push(problem);
            }
        }

        if let (Some(batch), Some((max, lit))) = (&batch, &max_in_flight) {
            // A bare `batch` has the runtime's default `max_records`.
            let (max_records, default, instead) = match batch.max_records {
                Some(n) => (n, "", format!("lower `max_records` to {max}")),
                None => (
                    DEFAULT_MAX_RECORDS,
                    ", the default",
                    format!("set `max_records = {max}` in `batch(..)`"),
                ),
            };
            if *max < max_records {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!(
                        "`max_in_flight = {max}` is below this batch handler's `max_records` \
                         ({max_records}{default}): a full batch could never start; write \
                         `max_in_flight = {max_records}` or more (a batch counts its records), \
                         or {instead}"
                    ),
                ));
            }
        }
        // `batch` counts even when its options were wrong (and reported):
        // the handler is still a batch handler.
        if seen.iter().any(|k| k == "batch") {
            if let Some((ProcessingOrder::Key, lit)) = &ordering {
                errors.push(syn::Error::new(
                    lit.span(),
                    "`ordering = \"key\"` is for handlers of one record: a batch holds records of \
                     many keys, so it cannot be ordered by key; write `ordering = \"partition\"` \
                     or `ordering = \"none\"`",
                ));
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
                retries,
                backoff,
                dlq,
                publish,
                timeout,
                record_key,
                krate,
                batch,
                ordering: ordering.map(|(ordering, _)| ordering),
                max_in_flight: max_in_flight.map(|(max, _)| max),
            }),
            // Both were reported above, or their values were.
            _ => Err(syn::Error::new(Span::call_site(), "invalid arguments")),
        }
    }
}

/// What is wrong with `publish` on this handler, if anything: a handler of
/// one record must return something to publish (a batch handler publishes
/// in each record's scope, `BatchRecord::publish`), and no handler may
/// publish into a topic it consumes.
fn publish_problem(
    publish: &LitStr,
    sig: &Signature,
    topics: Option<&[LitStr]>,
    seen: &[String],
) -> Option<syn::Error> {
    let name = &sig.ident;
    let batch = seen.iter().any(|key| key == "batch");
    let problem = if let Some(returns) = returns_nothing(&sig.output).filter(|_| !batch) {
        format!(
            "`publish` produces what the handler returns, and `{name}` returns {returns}: return \
             the record to publish, e.g. `-> Result<Json<Invoice>, BillingError>`, or drop \
             `publish`"
        )
    } else if topics.is_some_and(|topics| topics.iter().any(|t| t.value() == publish.value())) {
        format!(
            "`publish` {:?} is one of this handler's `topics`: every record it handles would be \
             handled again, forever; publish to a topic of its own",
            publish.value()
        )
    } else {
        return None;
    };
    Some(syn::Error::new(publish.span(), problem))
}

/// How the signature says it returns nothing (`()`, or `Result<(), E>`),
/// if it does.
fn returns_nothing(output: &syn::ReturnType) -> Option<&'static str> {
    let syn::ReturnType::Type(_, ty) = output else {
        return Some("`()`");
    };
    let is_unit = |ty: &syn::Type| matches!(ty, syn::Type::Tuple(tuple) if tuple.elems.is_empty());
    if is_unit(ty) {
        return Some("`()`");
    }
    let syn::Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(ok)) if last.ident == "Result" && is_unit(ok) => {
            Some("`Result<(), _>`")
        }
        _ => None,
    }
}

fn parse_retries(value: &Expr) -> syn::Result<u32> {
    const NEGATIVE: &str = "`retries` cannot be negative: it counts the attempts after the \
                            first; write `retries = 0` to never retry";
    match value {
        // syn reads `-1` as one literal (spanned on the `-` alone).
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) if lit.base10_digits().starts_with('-') => Err(syn::Error::new(lit.span(), NEGATIVE)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(value, NEGATIVE)),
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse::<u32>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`retries` is at most {} (`u32::MAX`), not {}",
                    u32::MAX,
                    lit.base10_digits()
                ),
            )
        }),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().parse::<u32>().is_ok() => Err(syn::Error::new(
            lit.span(),
            format!(
                "`retries` expects an integer, not a string: write `retries = {}`",
                lit.value()
            ),
        )),
        _ => Err(syn::Error::new_spanned(
            value,
            "`retries` expects an integer literal, e.g. `retries = 5`",
        )),
    }
}

/// `"partition"`, `"key"` or `"none"`, with its literal for later errors.
fn parse_ordering(value: &Expr) -> syn::Result<(ProcessingOrder, LitStr)> {
    const NAMES: &str = "\"partition\" (one record in flight per partition), \"key\" (one per \
                         key within a partition) or \"none\" (any beside any)";
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        // `ordering = key`: the name is right, the quotes are missing.
        let unquoted = match value {
            Expr::Path(path) => path
                .path
                .get_ident()
                .map(ToString::to_string)
                .filter(|name| matches!(name.as_str(), "partition" | "key" | "none")),
            _ => None,
        };
        let message = match unquoted {
            Some(name) => {
                format!("`ordering` expects a string literal: write `ordering = \"{name}\"`")
            }
            None => {
                format!("`ordering` expects a string literal: {NAMES}, e.g. `ordering = \"key\"`")
            }
        };
        return Err(syn::Error::new_spanned(value, message));
    };
    let name = lit.value();
    let ordering = match name.as_str() {
        "partition" => ProcessingOrder::Partition,
        "key" => ProcessingOrder::Key,
        "none" => ProcessingOrder::Unordered,
        other => {
            let lower = other.to_ascii_lowercase();
            let hint = match lower.as_str() {
                "partition" | "key" | "none" => format!("; write \"{lower}\" (lowercase)"),
                "unordered" | "any" => "; for no order write \"none\"".to_string(),
                "partitions" | "ordered" => "; write \"partition\"".to_string(),
                "keys" | "keyed" => "; write \"key\"".to_string(),
                _ => String::new(),
            };
            return Err(syn::Error::new(
                lit.span(),
                format!("unknown ordering {other:?}; expected {NAMES}{hint}"),
            ));
        }
    };
    Ok((ordering, lit.clone()))
}

/// An integer literal from 1 to [`MAX_IN_FLIGHT_LIMIT`], with its literal
/// for later errors.
fn parse_max_in_flight(value: &Expr) -> syn::Result<(u64, LitInt)> {
    const NEGATIVE: &str = "`max_in_flight` cannot be negative: it is the most records of this \
                            handler running at once, e.g. `max_in_flight = 64`";
    match value {
        // syn reads `-1` as one literal (spanned on the `-` alone).
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) if lit.base10_digits().starts_with('-') => Err(syn::Error::new(lit.span(), NEGATIVE)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(value, NEGATIVE)),
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<u64>() {
            Ok(0) => Err(syn::Error::new(
                lit.span(),
                "`max_in_flight` must be at least 1: with 0 no record would ever start; give \
                 the most records of this handler that may run at once, e.g. `max_in_flight = 64`",
            )),
            Ok(max) if max <= MAX_IN_FLIGHT_LIMIT => Ok((max, lit.clone())),
            _ => Err(syn::Error::new(
                lit.span(),
                format!(
                    "`max_in_flight` is at most {MAX_IN_FLIGHT_LIMIT}, not {}",
                    lit.base10_digits()
                ),
            )),
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().parse::<u64>().is_ok() => Err(syn::Error::new(
            lit.span(),
            format!(
                "`max_in_flight` expects an integer, not a string: write `max_in_flight = {}`",
                lit.value()
            ),
        )),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "`max_in_flight` expects an integer literal from 1 to {MAX_IN_FLIGHT_LIMIT}, \
                 e.g. `max_in_flight = 64`"
            ),
        )),
    }
}

fn parse_backoff(value: &Expr) -> syn::Result<Backoff> {
    let lit = parse_str(
        value,
        "backoff",
        "a string literal: a range, `backoff = \"100ms..10s\"` (doubling from the first \
         delay up to the second), or one duration, `backoff = \"250ms\"` (constant)",
    )?;
    let text = lit.value();
    let error = |message: String| syn::Error::new(lit.span(), message);
    let Some((lower, upper)) = text.split_once("..") else {
        return parse_duration(&text)
            .map(Backoff::Constant)
            .map_err(|problem| error(format!("invalid backoff {text:?}: {problem}")));
    };
    if let Some(upper) = upper.strip_prefix('=') {
        return Err(error(format!(
            "`backoff` ranges are written with `..` (both bounds are included), not `..=`: \
             write \"{lower}..{upper}\""
        )));
    }
    let mut errors = Errors::default();
    let min = errors.ok(parse_duration(lower)
        .map_err(|problem| error(format!("invalid backoff lower bound {lower:?}: {problem}"))));
    let max = errors.ok(parse_duration(upper)
        .map_err(|problem| error(format!("invalid backoff upper bound {upper:?}: {problem}"))));
    errors.finish()?;
    let (Some(min), Some(max)) = (min, max) else {
        unreachable!("both bounds parsed, or an error was returned")
    };
    if min > max {
        return Err(error(format!(
            "backoff {text:?} is inverted: the lower bound must not exceed the upper bound; \
             write \"{upper}..{lower}\""
        )));
    }
    if min == 0 {
        let instead = match max {
            0 => String::new(),
            100_000_000.. => format!(", or start above zero, e.g. \"100ms..{upper}\""),
            1_000_000.. => format!(", or start above zero, e.g. \"1ms..{upper}\""),
            _ => format!(", or start above zero, e.g. \"1ns..{upper}\""),
        };
        return Err(error(format!(
            "backoff {text:?} starts at zero, and doubling zero stays zero, so every retry \
             would be immediate: write \"0ms\" for immediate retries{instead}"
        )));
    }
    Ok(Backoff::Exponential { min, max })
}

/// `batch` or `batch(max_records = .., max_wait = "..")`.
fn parse_batch(meta: &Meta) -> syn::Result<BatchArgs> {
    let list = match meta {
        Meta::Path(_) => return Ok(BatchArgs::default()),
        Meta::List(list) => list,
        Meta::NameValue(_) => return Err(syn::Error::new_spanned(meta, BATCH_FORM)),
    };
    let items = list
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .map_err(|err| syn::Error::new(err.span(), format!("{err}: {BATCH_FORM}")))?;
    let mut errors = Errors::default();
    let mut args = BatchArgs::default();
    let mut seen: Vec<String> = Vec::new();
    for item in items {
        let key = item
            .path()
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Meta::NameValue(name_value) = &item else {
            errors.push(syn::Error::new_spanned(&item, BATCH_FORM));
            continue;
        };
        if seen.contains(&key) {
            errors.push(syn::Error::new_spanned(
                &name_value.path,
                format!("duplicate `{key}`"),
            ));
            continue;
        }
        seen.push(key.clone());
        let value = &name_value.value;
        match key.as_str() {
            "max_records" => args.max_records = errors.ok(parse_max_records(value)),
            "max_wait" => args.max_wait = errors.ok(parse_max_wait(value)),
            _ => errors.push(syn::Error::new_spanned(
                &name_value.path,
                "unknown `batch` option; expected `max_records` or `max_wait`",
            )),
        }
    }
    errors.finish().map(|()| args)
}

fn parse_max_records(value: &Expr) -> syn::Result<u64> {
    let problem = || {
        syn::Error::new_spanned(
            value,
            format!("`max_records` is a whole number from 1 to {MAX_RECORDS_LIMIT}, e.g. `max_records = 500`"),
        )
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = value
    else {
        return Err(problem());
    };
    match lit.base10_parse::<u64>() {
        Ok(n) if (1..=MAX_RECORDS_LIMIT).contains(&n) => Ok(n),
        _ => Err(problem()),
    }
}

fn parse_max_wait(value: &Expr) -> syn::Result<u64> {
    let lit = parse_str(
        value,
        "max_wait",
        "a duration string literal, e.g. `max_wait = \"50ms\"`",
    )?;
    let text = lit.value();
    match parse_duration(&text) {
        Ok(0) => Err(syn::Error::new(
            lit.span(),
            "`max_wait` must be above zero: it is how long the first record of a batch waits \
             for others, e.g. \"50ms\"",
        )),
        Ok(nanos) => Ok(nanos),
        Err(problem) => Err(syn::Error::new(
            lit.span(),
            format!("invalid max_wait {text:?}: {problem}"),
        )),
    }
}

/// A batch handler takes exactly one argument, its `Batch<T>`.
fn batch_signature(sig: &Signature) -> Option<syn::Error> {
    match sig.inputs.len() {
        1 => None,
        0 => Some(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "a `batch` handler takes its records as one argument: `fn {}(batch: Batch<'_, Json<T>>)`",
                sig.ident
            ),
        )),
        _ => Some(syn::Error::new_spanned(
            &sig.inputs,
            "a `batch` handler takes exactly one argument, `Batch<T>`; read each record's key, \
             headers and metadata from it (`record.record()`)",
        )),
    }
}

fn parse_timeout(value: &Expr) -> syn::Result<u64> {
    let lit = parse_str(
        value,
        "timeout",
        "a duration string literal, e.g. `timeout = \"30s\"`",
    )?;
    let text = lit.value();
    match parse_duration(&text) {
        Ok(0) => Err(syn::Error::new(
            lit.span(),
            format!(
                "`timeout` must be above zero: {text:?} would cancel every attempt before it \
                 starts; give the longest an attempt may take, e.g. \"30s\", or drop `timeout` \
                 for no limit"
            ),
        )),
        Ok(nanos) => Ok(nanos),
        Err(problem) => Err(syn::Error::new(
            lit.span(),
            format!("invalid timeout {text:?}: {problem}"),
        )),
    }
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

pub(crate) fn parse_str(value: &Expr, key: &str, what: &str) -> syn::Result<LitStr> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(text: &str) -> Result<Backoff, String> {
        parse_backoff(&syn::parse_quote!(#text)).map_err(|err| err.to_string())
    }

    fn retries(value: Expr) -> Result<u32, String> {
        parse_retries(&value).map_err(|err| err.to_string())
    }

    #[test]
    fn backoff_forms() {
        assert_eq!(backoff("250ms"), Ok(Backoff::Constant(250_000_000)));
        assert_eq!(backoff("0ms"), Ok(Backoff::Constant(0)));
        assert_eq!(
            backoff("100ms..10s"),
            Ok(Backoff::Exponential {
                min: 100_000_000,
                max: 10_000_000_000
            })
        );
        assert_eq!(
            backoff("1s..1s"),
            Ok(Backoff::Exponential {
                min: 1_000_000_000,
                max: 1_000_000_000
            })
        );
    }

    #[test]
    fn backoff_errors() {
        let err = |text| backoff(text).unwrap_err();
        assert!(err("10s..100ms").contains("write \"100ms..10s\""));
        assert!(err("100ms..=10s").contains("not `..=`: write \"100ms..10s\""));
        assert!(err("0ms..10s").ends_with("e.g. \"100ms..10s\""));
        assert!(err("0ns..50ms").ends_with("e.g. \"1ms..50ms\""));
        assert!(err("0ns..500ns").ends_with("e.g. \"1ns..500ns\""));
        assert!(err("0s..0s").ends_with("write \"0ms\" for immediate retries"));
        assert!(err("..10s").starts_with("invalid backoff lower bound \"\": it is empty"));
        assert!(err("100ms .. 10s").starts_with(
            "invalid backoff lower bound \"100ms \": remove the spaces, write \"100ms\""
        ));
        // Both bounds are reported.
        let both = parse_backoff(&syn::parse_quote!("1x..2y")).unwrap_err();
        assert_eq!(both.into_iter().count(), 2);
    }

    fn ordering(value: Expr) -> Result<ProcessingOrder, String> {
        parse_ordering(&value)
            .map(|(ordering, _)| ordering)
            .map_err(|err| err.to_string())
    }

    fn max_in_flight(value: Expr) -> Result<u64, String> {
        parse_max_in_flight(&value)
            .map(|(max, _)| max)
            .map_err(|err| err.to_string())
    }

    /// The errors of checking `args` on `fn handle(batch: Batch<&[u8]>)`.
    fn check_errors(args: proc_macro2::TokenStream) -> Vec<String> {
        let sig: Signature = syn::parse_quote!(fn handle(batch: Batch<&[u8]>));
        let args: RawArgs = syn::parse2(args).expect("arguments parse");
        match args.check(&sig) {
            Ok(_) => Vec::new(),
            Err(err) => err.into_iter().map(|err| err.to_string()).collect(),
        }
    }

    #[test]
    fn ordering_values() {
        assert_eq!(
            ordering(syn::parse_quote!("partition")),
            Ok(ProcessingOrder::Partition)
        );
        assert_eq!(ordering(syn::parse_quote!("key")), Ok(ProcessingOrder::Key));
        assert_eq!(
            ordering(syn::parse_quote!("none")),
            Ok(ProcessingOrder::Unordered)
        );
        let err = ordering(syn::parse_quote!("random")).unwrap_err();
        assert!(err.starts_with("unknown ordering \"random\"; expected \"partition\""));
        assert!(err.contains("\"key\"") && err.contains("\"none\""));
        assert!(ordering(syn::parse_quote!("Key"))
            .unwrap_err()
            .ends_with("write \"key\" (lowercase)"));
        assert!(ordering(syn::parse_quote!("unordered"))
            .unwrap_err()
            .ends_with("write \"none\""));
        assert!(ordering(syn::parse_quote!(key))
            .unwrap_err()
            .contains("write `ordering = \"key\"`"));
        assert!(ordering(syn::parse_quote!(1))
            .unwrap_err()
            .starts_with("`ordering` expects a string literal"));
    }

    #[test]
    fn max_in_flight_values() {
        assert_eq!(max_in_flight(syn::parse_quote!(1)), Ok(1));
        assert_eq!(
            max_in_flight(syn::parse_quote!(1_000_000)),
            Ok(MAX_IN_FLIGHT_LIMIT)
        );
        assert!(max_in_flight(syn::parse_quote!(0))
            .unwrap_err()
            .contains("must be at least 1"));
        assert!(max_in_flight(syn::parse_quote!(1_000_001))
            .unwrap_err()
            .contains("at most 1000000, not 1000001"));
        assert!(max_in_flight(syn::parse_quote!(99999999999999999999999))
            .unwrap_err()
            .contains("at most 1000000"));
        assert!(max_in_flight(syn::parse_quote!(-1))
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(max_in_flight(syn::parse_quote!(-(1)))
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(max_in_flight(syn::parse_quote!("16"))
            .unwrap_err()
            .contains("write `max_in_flight = 16`"));
        assert!(max_in_flight(syn::parse_quote!(6.4))
            .unwrap_err()
            .contains("expects an integer literal from 1 to 1000000"));
    }

    #[test]
    fn batch_ordering_and_max_in_flight() {
        let base = quote::quote!(topics = ["a"], group = "g");
        assert!(
            check_errors(quote::quote!(#base, batch, ordering = "none", max_in_flight = 500))
                .is_empty()
        );
        assert!(check_errors(
            quote::quote!(#base, batch(max_records = 10), ordering = "partition", max_in_flight = 10)
        )
        .is_empty());

        let errors = check_errors(quote::quote!(#base, batch, ordering = "key"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("a batch holds records of many keys"));
        // Still a batch handler when its options are wrong.
        let errors = check_errors(quote::quote!(#base, batch(max_records = 0), ordering = "key"));
        assert_eq!(errors.len(), 2);

        let errors = check_errors(quote::quote!(#base, batch, max_in_flight = 499));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("below this batch handler's `max_records` (500, the default)"));
        let errors =
            check_errors(quote::quote!(#base, batch(max_records = 20), max_in_flight = 10));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("`max_records` (20)"));
        assert!(errors[0].contains("write `max_in_flight = 20` or more"));
    }

    #[test]
    fn ordering_and_max_in_flight_on_one_record() {
        let sig: Signature = syn::parse_quote!(async fn handle(payload: &[u8]));
        let args: RawArgs = syn::parse_quote!(
            topics = ["a"],
            group = "g",
            ordering = "key",
            max_in_flight = 1
        );
        let args = args.check(&sig).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(args.ordering, Some(ProcessingOrder::Key));
        assert_eq!(args.max_in_flight, Some(1));
    }

    #[test]
    fn retries_values() {
        assert_eq!(retries(syn::parse_quote!(0)), Ok(0));
        assert_eq!(retries(syn::parse_quote!(4_294_967_295)), Ok(u32::MAX));
        assert!(retries(syn::parse_quote!(4294967296))
            .unwrap_err()
            .contains("at most 4294967295"));
        assert!(retries(syn::parse_quote!(-1))
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(retries(syn::parse_quote!(-(1)))
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(retries(syn::parse_quote!("3"))
            .unwrap_err()
            .contains("write `retries = 3`"));
        assert!(retries(syn::parse_quote!(3.0))
            .unwrap_err()
            .contains("expects an integer literal"));
    }
}
