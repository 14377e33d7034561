//! Durations in `#[kafka_handler]` arguments: `"250ms"`, `"30s"`, `"2m"`.
//!
//! One spelling per value: a whole number and a unit, nothing else. What is
//! rejected gets a reason and, where one exists, the spelling to use instead
//! (`"1.5s"` → `"1500ms"`, `"10 secs"` → `"10s"`).

use std::fmt;

const NANOS_PER_HOUR: u64 = 3_600_000_000_000;

/// The units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u64); 6] = [
    ("h", NANOS_PER_HOUR),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// What a duration looks like, appended to the errors about its spelling.
const FORMAT: &str = "a duration is a whole number followed by a unit, one of \
                      `ns`, `us`, `ms`, `s`, `m` or `h`, e.g. \"250ms\"";

/// Why a string is not a duration.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DurationError {
    Empty,
    /// `"ms"`, `"+1s"`.
    NoNumber,
    /// `"-1s"`.
    Negative,
    /// `"1.5s"`, with the same duration in a smaller unit when there is one.
    Fraction {
        instead: Option<String>,
    },
    /// `"100"`.
    NoUnit,
    /// `"10secs"`, with the intended spelling when the unit is recognisable.
    UnknownUnit {
        unit: String,
        instead: Option<String>,
    },
    /// `"10 ms"`: valid once the spaces are removed.
    Space {
        instead: String,
    },
    /// More nanoseconds than a `u64` holds (`Duration::from_nanos`).
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty")?,
            Self::NoNumber => f.write_str("it does not start with a number")?,
            Self::Negative => f.write_str("it is negative")?,
            Self::Fraction {
                instead: Some(instead),
            } => write!(f, "fractions are not supported, write {instead:?}")?,
            Self::Fraction { instead: None } => f.write_str(
                "fractions are not supported, and this one is not a whole number of nanoseconds",
            )?,
            Self::NoUnit => f.write_str("it has no unit")?,
            Self::UnknownUnit {
                unit,
                instead: Some(instead),
            } => write!(f, "unknown unit `{unit}`, write {instead:?}")?,
            Self::UnknownUnit {
                unit,
                instead: None,
            } => write!(f, "unknown unit `{unit}`")?,
            Self::Space { instead } => {
                return write!(f, "remove the spaces, write {instead:?}");
            }
            Self::TooLong => {
                return write!(
                    f,
                    "it is too long, the longest duration is {}h (about 584 years)",
                    u64::MAX / NANOS_PER_HOUR
                );
            }
        }
        write!(f, "; {FORMAT}")
    }
}

/// Parses `"<whole number><unit>"` into nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, DurationError> {
    if text.contains(char::is_whitespace) {
        // Diagnose the text without its spaces: either the spaces are the
        // only problem, or the other problem is the one worth reporting.
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        return match parse_squeezed(&squeezed) {
            Ok(_) => Err(DurationError::Space { instead: squeezed }),
            Err(err) => Err(err),
        };
    }
    parse_squeezed(text)
}

fn parse_squeezed(text: &str) -> Result<u64, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let (number, rest) = split_digits(text);
    if number.is_empty() {
        return Err(if text.starts_with('-') {
            DurationError::Negative
        } else {
            DurationError::NoNumber
        });
    }
    if let Some(after_point) = rest.strip_prefix('.') {
        let (fraction, unit) = split_digits(after_point);
        if !fraction.is_empty() {
            return Err(fraction_error(number, fraction, unit));
        }
    }
    if rest.is_empty() {
        return Err(DurationError::NoUnit);
    }
    let Some(unit_nanos) = unit_nanos(rest) else {
        return Err(DurationError::UnknownUnit {
            unit: rest.to_owned(),
            instead: alias(rest).and_then(|(unit, factor)| {
                let number = number.parse::<u64>().ok()?.checked_mul(factor)?;
                Some(format!("{number}{unit}"))
            }),
        });
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit_nanos))
        .ok_or(DurationError::TooLong)
}

/// The error for `"<number>.<fraction><unit>"`, suggesting the same
/// duration as a whole number of a smaller unit.
fn fraction_error(number: &str, fraction: &str, unit: &str) -> DurationError {
    let Some((unit, factor)) = unit_nanos(unit).map(|_| (unit, 1)).or_else(|| alias(unit)) else {
        return DurationError::UnknownUnit {
            unit: unit.to_owned(),
            instead: None,
        };
    };
    let unit_nanos = unit_nanos(unit).unwrap_or(1) * factor;
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        // `"2.0s"`: only the point is wrong.
        return match number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
        {
            Some(number) if number.checked_mul(unit_nanos).is_some() => DurationError::Fraction {
                instead: Some(format!("{number}{unit}")),
            },
            _ => DurationError::TooLong,
        };
    }
    // Past 13 significant decimals no unit's nanoseconds divide evenly
    // (an hour is 2^13 * 3^2 * 5^11 ns), so there is no exact spelling.
    if fraction.len() > 13 {
        return DurationError::Fraction { instead: None };
    }
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction = fraction.parse::<u128>().unwrap_or(0);
    let Some(scaled) = number
        .parse::<u128>()
        .ok()
        .and_then(|whole| whole.checked_mul(scale))
        .and_then(|whole| whole.checked_add(fraction))
        .and_then(|value| value.checked_mul(u128::from(unit_nanos)))
    else {
        return DurationError::TooLong;
    };
    if scaled % scale != 0 {
        return DurationError::Fraction { instead: None };
    }
    match u64::try_from(scaled / scale) {
        Ok(nanos) => DurationError::Fraction {
            instead: Some(spell(nanos)),
        },
        Err(_) => DurationError::TooLong,
    }
}

/// A non-zero duration in its largest whole unit: `1_500_000_000` →
/// `"1500ms"`.
fn spell(nanos: u64) -> String {
    let (unit, unit_nanos) = UNITS
        .iter()
        .copied()
        .find(|&(_, unit_nanos)| nanos % unit_nanos == 0)
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / unit_nanos)
}

fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    )
}

fn unit_nanos(unit: &str) -> Option<u64> {
    UNITS
        .iter()
        .find(|&&(name, _)| name == unit)
        .map(|&(_, nanos)| nanos)
}

/// The unit meant by a common other spelling (`"secs"`, `"µs"`, `"MS"`),
/// and the factor to the number (`"d"` is 24 `h`).
fn alias(unit: &str) -> Option<(&'static str, u64)> {
    let lower = unit.to_lowercase();
    let alias = match lower.as_str() {
        "ns" | "nsec" | "nsecs" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => ("ns", 1),
        "us" | "µs" | "μs" | "usec" | "usecs" | "micro" | "micros" | "microsecond"
        | "microseconds" => ("us", 1),
        "ms" | "msec" | "msecs" | "milli" | "millis" | "millisecond" | "milliseconds" => ("ms", 1),
        "s" | "sec" | "secs" | "second" | "seconds" => ("s", 1),
        "m" | "min" | "mins" | "minute" | "minutes" => ("m", 1),
        "h" | "hr" | "hrs" | "hour" | "hours" => ("h", 1),
        "d" | "day" | "days" => ("h", 24),
        _ => return None,
    };
    Some(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instead(text: &str) -> Option<String> {
        match parse_duration(text) {
            Err(
                DurationError::Fraction { instead } | DurationError::UnknownUnit { instead, .. },
            ) => instead,
            Err(DurationError::Space { instead }) => Some(instead),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn every_unit() {
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration("7us"), Ok(7_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("0ms"), Ok(0));
        assert_eq!(parse_duration("007s"), Ok(7_000_000_000));
    }

    #[test]
    fn up_to_u64_nanoseconds() {
        assert_eq!(parse_duration("18446744073709551615ns"), Ok(u64::MAX));
        assert_eq!(
            parse_duration("18446744073709551616ns"),
            Err(DurationError::TooLong)
        );
        assert_eq!(parse_duration("5124095h"), Ok(5_124_095 * NANOS_PER_HOUR));
        assert_eq!(parse_duration("5124096h"), Err(DurationError::TooLong));
        assert_eq!(
            parse_duration("99999999999999999999999999s"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        assert_eq!(parse_duration("ms"), Err(DurationError::NoNumber));
        assert_eq!(parse_duration("+1s"), Err(DurationError::NoNumber));
        assert_eq!(parse_duration(".5s"), Err(DurationError::NoNumber));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(parse_duration("100"), Err(DurationError::NoUnit));
        assert_eq!(
            parse_duration("1m30s"),
            Err(DurationError::UnknownUnit {
                unit: "m30s".into(),
                instead: None
            })
        );
        assert_eq!(
            parse_duration("1.s"),
            Err(DurationError::UnknownUnit {
                unit: ".s".into(),
                instead: None
            })
        );
        assert_eq!(
            parse_duration("1_000ms"),
            Err(DurationError::UnknownUnit {
                unit: "_000ms".into(),
                instead: None
            })
        );
    }

    #[test]
    fn other_spellings_of_units_are_suggested() {
        assert_eq!(instead("10 secs").as_deref(), Some("10s"));
        assert_eq!(instead("10secs").as_deref(), Some("10s"));
        assert_eq!(instead("5min").as_deref(), Some("5m"));
        assert_eq!(instead("3µs").as_deref(), Some("3us"));
        assert_eq!(instead("100MS").as_deref(), Some("100ms"));
        assert_eq!(instead("2d").as_deref(), Some("48h"));
        assert_eq!(instead("2 fortnights"), None);
    }

    #[test]
    fn spaces_are_suggested_away() {
        assert_eq!(instead("10 ms").as_deref(), Some("10ms"));
        assert_eq!(instead(" 30s ").as_deref(), Some("30s"));
    }

    #[test]
    fn fractions_are_suggested_in_a_smaller_unit() {
        assert_eq!(instead("1.5s").as_deref(), Some("1500ms"));
        assert_eq!(instead("0.1s").as_deref(), Some("100ms"));
        assert_eq!(instead("1.5h").as_deref(), Some("90m"));
        assert_eq!(instead("1.25m").as_deref(), Some("75s"));
        assert_eq!(instead("2.0s").as_deref(), Some("2s"));
        assert_eq!(instead("60.0s").as_deref(), Some("60s"));
        assert_eq!(instead("0.0ms").as_deref(), Some("0ms"));
        assert_eq!(instead("1.0 days").as_deref(), Some("24h"));
        assert_eq!(instead("0.000001ms").as_deref(), Some("1ns"));
        assert_eq!(instead("1.5 secs").as_deref(), Some("1500ms"));
        assert_eq!(instead("0.5d").as_deref(), Some("12h"));
        assert_eq!(instead("0.5ns"), None);
        assert_eq!(instead("0.00000000000000000001h"), None);
        assert_eq!(
            parse_duration("1.5parsecs"),
            Err(DurationError::UnknownUnit {
                unit: "parsecs".into(),
                instead: None
            })
        );
        assert_eq!(parse_duration("5124095.9h"), Err(DurationError::TooLong));
    }

    #[test]
    fn spelled_in_the_largest_whole_unit() {
        assert_eq!(spell(1_500_000_000), "1500ms");
        assert_eq!(spell(90 * 60_000_000_000), "90m");
        assert_eq!(spell(7_200_000_000_000), "2h");
        assert_eq!(spell(1_001), "1001ns");
    }

    #[test]
    fn messages() {
        assert_eq!(
            DurationError::Fraction {
                instead: Some("1500ms".into())
            }
            .to_string(),
            format!("fractions are not supported, write \"1500ms\"; {FORMAT}")
        );
        assert_eq!(
            DurationError::TooLong.to_string(),
            "it is too long, the longest duration is 5124095h (about 584 years)"
        );
    }
}
