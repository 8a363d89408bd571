//! Durations as Dapr's resource files write them: Go durations (`"1m30s"`) or a bare
//! number of milliseconds.
//!
//! The text comes straight from a user's file, so nothing here may panic or overflow:
//! the arithmetic is exact, in whole nanoseconds, and bounded by Go's own limit (the
//! longest `time.Duration`), which is also what `daprd` accepts. Staying below it keeps
//! every later `Instant + duration` and cache TTL in range.

use std::time::Duration;

/// The longest duration accepted: Go's, `2562047h47m16.854775807s` (about 292 years).
pub const MAX_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// Fraction digits read past the point; further ones are below a nanosecond even in
/// hours, and reading them would only risk overflow.
const MAX_FRACTION_DIGITS: usize = 20;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("a duration cannot be negative")]
    Negative,
    #[error("expected a number at `{rest}`")]
    MissingNumber { rest: String },
    #[error("`{number}` is not a number")]
    NotANumber { number: String },
    #[error(
        "`{number}` has no unit (ns, us, ms, s, m or h); only a whole number may go without one, read as milliseconds"
    )]
    MissingUnit { number: String },
    #[error("unknown unit `{unit}`; the units are ns, us, ms, s, m and h")]
    UnknownUnit { unit: String },
    #[error("it is longer than the longest duration, 2562047h47m16.854775807s (about 292 years)")]
    TooLong,
}

/// Parses a duration the way Dapr accepts one: a Go duration (`"500ms"`, `"60s"`,
/// `"1m30s"`, `"1.5h"`) or a bare whole number, which Dapr reads as milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    // Go allows a leading `+`.
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        let millis = whole(text).ok_or(DurationError::TooLong)?;
        return to_duration(
            millis
                .checked_mul(1_000_000)
                .ok_or(DurationError::TooLong)?,
        );
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(DurationError::MissingNumber { rest: rest.into() });
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3_600 * NANOS_PER_SECOND,
            "" => {
                return Err(DurationError::MissingUnit {
                    number: number.into(),
                });
            }
            _ => return Err(DurationError::UnknownUnit { unit: unit.into() }),
        };
        let part = nanos(number, nanos_per_unit)?;
        total = total
            .checked_add(part)
            .filter(|total| *total <= MAX_DURATION.as_nanos())
            .ok_or(DurationError::TooLong)?;
        rest = after;
    }
    to_duration(total)
}

/// `number` (digits with at most one point) of a unit `nanos_per_unit` long, in
/// nanoseconds, truncated as Go truncates.
fn nanos(number: &str, nanos_per_unit: u128) -> Result<u128, DurationError> {
    let not_a_number = || DurationError::NotANumber {
        number: number.into(),
    };
    let (integer, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (integer.is_empty() && fraction.is_empty()) {
        return Err(not_a_number());
    }
    let integer = if integer.is_empty() {
        0
    } else {
        whole(integer).ok_or(DurationError::TooLong)?
    };
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        // At most 20 digits times at most an hour in nanoseconds: below 2^128.
        let digits = whole(fraction).ok_or_else(not_a_number)?;
        let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| not_a_number())?);
        digits * nanos_per_unit / scale
    };
    integer
        .checked_mul(nanos_per_unit)
        .and_then(|nanos| nanos.checked_add(fraction_nanos))
        .ok_or(DurationError::TooLong)
}

/// ASCII digits as a number; `None` when too large for any duration.
fn whole(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |value, digit| {
        value.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
    })
}

fn to_duration(nanos: u128) -> Result<Duration, DurationError> {
    if nanos > MAX_DURATION.as_nanos() {
        return Err(DurationError::TooLong);
    }
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| DurationError::TooLong)?;
    let subsec = u32::try_from(nanos % NANOS_PER_SECOND).map_err(|_| DurationError::TooLong)?;
    Ok(Duration::new(seconds, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_bare_milliseconds() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" +2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.1s"), Ok(Duration::from_millis(1100)));
        assert_eq!(parse_duration("3µs2ns"), Ok(Duration::from_nanos(3002)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn every_refusal_says_why() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-8s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("soon"),
            Err(DurationError::MissingNumber {
                rest: "soon".into()
            })
        );
        assert_eq!(
            parse_duration("10 parsecs"),
            Err(DurationError::UnknownUnit {
                unit: " parsecs".into()
            })
        );
        assert_eq!(
            parse_duration("1.5"),
            Err(DurationError::MissingUnit {
                number: "1.5".into()
            })
        );
        assert_eq!(
            parse_duration("1.2.3s"),
            Err(DurationError::NotANumber {
                number: "1.2.3".into()
            })
        );
        assert_eq!(
            parse_duration(".s"),
            Err(DurationError::NotANumber { number: ".".into() })
        );
    }

    #[test]
    fn the_longest_duration_is_gos() {
        assert_eq!(parse_duration("2562047h47m16.854775807s"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("9223372036854775807ns"), Ok(MAX_DURATION));
        for too_long in [
            "2562047h47m16.854775808s",
            "2562048h",
            "99999999999999999999h",
            "99999999999999999999",
            "9223372036855",
            "340282366920938463463374607431768211456s",
            "99999999999999999999999999999999999999999999999999ms",
            "9999999999999999h9999999999999999m",
            "99999999999999999999.5s",
        ] {
            assert_eq!(
                parse_duration(too_long),
                Err(DurationError::TooLong),
                "{too_long}"
            );
        }
        // Digits past the twentieth are below a nanosecond.
        assert_eq!(
            parse_duration("1.000000000999999999999999999h"),
            Ok(Duration::from_nanos(3_600_000_003_599))
        );
    }

    /// Random texts, huge numbers and long chains of units: never a panic, and never
    /// a duration past the longest.
    #[test]
    fn fuzzed_texts_never_panic() {
        // A small xorshift generator: reproducible, and no dependency for one test.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "0",
            "1",
            "7",
            "9",
            "99999999999999999999",
            ".",
            "..",
            "-",
            "+",
            " ",
            "h",
            "m",
            "s",
            "ms",
            "us",
            "µs",
            "μs",
            "ns",
            "e",
            "x",
            "\u{0}",
            "é",
            "1e9",
            "NaN",
            "inf",
        ];
        for _ in 0..50_000 {
            let len = next() % 12;
            let mut text = String::new();
            for _ in 0..len {
                let index = usize::try_from(next() % pieces.len() as u64).unwrap();
                text.push_str(pieces[index]);
            }
            if let Ok(duration) = parse_duration(&text) {
                assert!(duration <= MAX_DURATION, "{text}: {duration:?}");
            }
        }
        let many_units = "1h2m3s4ms5us6ns".repeat(10_000);
        assert!(parse_duration(&many_units).is_ok());
        let too_many_hours = "999999h".repeat(10_000);
        assert_eq!(parse_duration(&too_many_hours), Err(DurationError::TooLong));
        let long_number = format!("{}s", "9".repeat(100_000));
        assert_eq!(parse_duration(&long_number), Err(DurationError::TooLong));
        let long_fraction = format!("1.{}s", "9".repeat(100_000));
        assert_eq!(
            parse_duration(&long_fraction),
            Ok(Duration::from_nanos(1_999_999_999))
        );
    }
}
