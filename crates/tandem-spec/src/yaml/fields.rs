//! Field types shared by the file formats: values read from the text as written
//! ([`Parsed`]), plain values ([`Scalar`]), durations and bounded whole numbers.
//!
//! Each checks its own value while it is read, so its problem comes back with the
//! field's path and never as a panic or a silent wrap-around later.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::duration::{DurationError, parse_duration};

/// A value written as text (or a number) in a field, parsed by [`FromStr`].
pub(crate) trait FieldText: FromStr<Err: fmt::Display> {
    /// What the field takes, for a value that is not text at all: `a duration such as
    /// `5s``.
    const EXPECTED: &'static str;
}

/// A field whose text is parsed by `T`'s [`FromStr`]; its error is the field's problem.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed<T>(pub T);

impl<'de, T: FieldText> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<T>(PhantomData<T>);

        impl<T: FieldText> Visitor<'_> for TextVisitor<T> {
            type Value = Parsed<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str(T::EXPECTED)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.parse().map(Parsed).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// A plain value as written (`text`, `5`, `true`), or something that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar {
    Text(String),
    /// Null, a list or a mapping.
    Other,
}

impl Scalar {
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Scalar::Text(text) => Some(text),
            Scalar::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any value")
            }

            fn visit_str<E>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(text.to_owned()))
            }

            fn visit_bool<E>(self, flag: bool) -> Result<Scalar, E> {
                Ok(Scalar::Text(flag.to_string()))
            }

            fn visit_u64<E>(self, number: u64) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }

            fn visit_u128<E>(self, number: u128) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }

            fn visit_i64<E>(self, number: i64) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }

            fn visit_i128<E>(self, number: i128) -> Result<Scalar, E> {
                Ok(Scalar::Text(number.to_string()))
            }

            fn visit_f64<E>(self, number: f64) -> Result<Scalar, E> {
                // As `yaml_serde` writes it, like every other number read as text.
                Ok(Scalar::Text(yaml_serde::Number::from(number).to_string()))
            }

            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Scalar, A::Error> {
                while items.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A duration field: a Go duration or a whole number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileDuration(pub Duration);

/// Why a duration field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a duration: {why}; write one such as `500ms`, `5s` or `1m30s` (or a whole number of milliseconds)"
)]
pub(crate) struct FileDurationError {
    text: String,
    #[source]
    why: DurationError,
}

impl FieldText for FileDuration {
    const EXPECTED: &'static str = "a duration such as `500ms`, `5s` or `1m30s`";
}

impl FromStr for FileDuration {
    type Err = FileDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text)
            .map(FileDuration)
            .map_err(|why| FileDurationError {
                text: text.to_owned(),
                why,
            })
    }
}

/// A whole number outside what its field allows, or not a whole number at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be {expected}, not `{text}`")]
pub(crate) struct CountError {
    text: String,
    expected: &'static str,
}

/// Reads a whole number from a field's text and checks it against `range`;
/// `expected` says what the field takes, for the error.
pub(crate) fn count<T: TryFrom<i128>>(
    text: &str,
    range: std::ops::RangeInclusive<i128>,
    expected: &'static str,
) -> Result<T, CountError> {
    let error = || CountError {
        text: text.to_owned(),
        expected,
    };
    // Digits beyond i128 are out of every range: they fail the range check below.
    let number: i128 = text.trim().parse().map_err(|_| error())?;
    if !range.contains(&number) {
        return Err(error());
    }
    T::try_from(number).map_err(|_| error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_checked_against_their_range() {
        let retries = |text: &str| count::<u32>(text, 0..=i128::from(u32::MAX), "a count");
        assert_eq!(retries(" 7 "), Ok(7));
        assert_eq!(retries("4294967295"), Ok(u32::MAX));
        for bad in [
            "4294967296",
            "-1",
            "1.5",
            "three",
            "99999999999999999999",
            "999999999999999999999999999999999999999999999",
            "",
        ] {
            let error = retries(bad).unwrap_err();
            assert_eq!(error.to_string(), format!("must be a count, not `{bad}`"));
        }
    }

    #[test]
    fn durations_say_why_they_are_refused() {
        let error = "5 seconds".parse::<FileDuration>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`5 seconds` is not a duration: unknown unit ` seconds`; the units are ns, us, ms, s, m and h; write one such as `500ms`, `5s` or `1m30s` (or a whole number of milliseconds)"
        );
        assert_eq!(
            "10000".parse::<FileDuration>(),
            Ok(FileDuration(Duration::from_secs(10)))
        );
    }
}
