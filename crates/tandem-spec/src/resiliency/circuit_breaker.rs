//! Circuit breakers: `spec.policies.circuitBreakers`, and the `trip` expressions that
//! decide when one opens.

use std::time::Duration;

use serde::Deserialize;

use crate::suggest::closest;
use crate::yaml::fields::{CountError, FieldText, FileDuration, Parsed, count};

/// One named circuit breaker policy. Each target using it gets its own breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerSpec {
    /// `maxRequests`: calls let through while half-open (default 1; 0 means 1).
    pub max_requests: u32,
    /// `interval`: how often a closed breaker clears its counts; zero (the default)
    /// never clears them.
    pub interval: Duration,
    /// `timeout`: how long the breaker stays open before it half-opens (default 60s;
    /// zero means 60s).
    pub timeout: Duration,
    /// `trip`: when a failure opens the breaker (default `consecutiveFailures > 5`).
    pub trip: TripExpression,
}

impl Default for CircuitBreakerSpec {
    fn default() -> Self {
        Self {
            max_requests: 1,
            interval: Duration::ZERO,
            timeout: Duration::from_secs(60),
            trip: TripExpression::default(),
        }
    }
}

/// What a circuit breaker has counted since it last cleared its counts, the values
/// its `trip` expression reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerCounts {
    pub requests: u32,
    pub total_successes: u32,
    pub total_failures: u32,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
}

impl BreakerCounts {
    fn get(&self, counter: Counter) -> u32 {
        match counter {
            Counter::Requests => self.requests,
            Counter::TotalSuccesses => self.total_successes,
            Counter::TotalFailures => self.total_failures,
            Counter::ConsecutiveSuccesses => self.consecutive_successes,
            Counter::ConsecutiveFailures => self.consecutive_failures,
        }
    }
}

/// A counter a trip expression may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Requests,
    TotalSuccesses,
    TotalFailures,
    ConsecutiveSuccesses,
    ConsecutiveFailures,
}

impl Counter {
    const ALL: [(&'static str, Counter); 5] = [
        ("requests", Counter::Requests),
        ("totalSuccesses", Counter::TotalSuccesses),
        ("totalFailures", Counter::TotalFailures),
        ("consecutiveSuccesses", Counter::ConsecutiveSuccesses),
        ("consecutiveFailures", Counter::ConsecutiveFailures),
    ];

    /// The name the expression uses.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, counter)| *counter == self)
            .map(|(name, _)| *name)
            .unwrap_or_default()
    }

    /// `5 consecutive failures`: the count in words, for messages.
    fn describe(self, value: u32) -> String {
        let plural = |one: &str, many: &str| if value == 1 { one } else { many }.to_owned();
        let noun = match self {
            Counter::Requests => plural("call", "calls"),
            Counter::TotalSuccesses => plural("success", "successes"),
            Counter::TotalFailures => plural("failure", "failures"),
            Counter::ConsecutiveSuccesses => plural("consecutive success", "consecutive successes"),
            Counter::ConsecutiveFailures => plural("consecutive failure", "consecutive failures"),
        };
        format!("{value} {noun}")
    }
}

/// How a trip condition compares its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
}

impl Comparison {
    fn holds(self, left: u64, right: u64) -> bool {
        match self {
            Comparison::Greater => left > right,
            Comparison::GreaterOrEqual => left >= right,
            Comparison::Equal => left == right,
            Comparison::NotEqual => left != right,
            Comparison::Less => left < right,
            Comparison::LessOrEqual => left <= right,
        }
    }
}

/// `consecutiveFailures > 5`: one comparison of a counter with a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripCondition {
    pub counter: Counter,
    pub comparison: Comparison,
    pub value: u64,
}

/// A circuit breaker's `trip`. Dapr evaluates a CEL expression over the breaker's
/// counts; tandem understands the part of CEL these expressions use: comparisons of
/// `requests`, `totalSuccesses`, `totalFailures`, `consecutiveSuccesses` and
/// `consecutiveFailures` with whole numbers, joined by `&&` and `||` (`&&` binds
/// tighter, as in CEL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripExpression {
    text: String,
    /// Any of these groups, each true when all its conditions are.
    any_of: Vec<Vec<TripCondition>>,
}

impl Default for TripExpression {
    /// `consecutiveFailures > 5`, Dapr's default.
    fn default() -> Self {
        Self {
            text: "consecutiveFailures > 5".into(),
            any_of: vec![vec![TripCondition {
                counter: Counter::ConsecutiveFailures,
                comparison: Comparison::Greater,
                value: 5,
            }]],
        }
    }
}

impl std::fmt::Display for TripExpression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl FieldText for TripExpression {
    const EXPECTED: &'static str = "a trip expression such as `consecutiveFailures > 5`";
}

impl std::str::FromStr for TripExpression {
    type Err = TripExpressionError;

    fn from_str(text: &str) -> Result<Self, TripExpressionError> {
        TripExpression::parse(text)
    }
}

/// A `trip` tandem does not understand, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a trip expression tandem understands: {why}; tandem supports comparisons of \
     requests, totalSuccesses, totalFailures, consecutiveSuccesses or consecutiveFailures with a \
     whole number (>, >=, ==, !=, <, <=), joined by && or ||, e.g. `consecutiveFailures > 5`"
)]
pub struct TripExpressionError {
    /// The expression as written.
    pub text: String,
    #[source]
    pub why: TripProblem,
}

/// What is wrong in a trip expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TripProblem {
    #[error("it is empty")]
    Empty,
    #[error("parentheses are not supported")]
    Parentheses,
    #[error("negative numbers are not supported")]
    Negative,
    #[error("unexpected `{0}`")]
    Unexpected(char),
    #[error("{0} is too large")]
    TooLarge(String),
    #[error("unknown counter `{name}`{}", match suggestion { Some(close) => format!("; did you mean `{close}`?"), None => String::new() })]
    UnknownCounter {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("a comparison is missing around && or ||")]
    MissingComparison,
    #[error("each comparison must read `counter operator number`")]
    NotAComparison,
}

impl TripExpression {
    /// Parses an expression such as `consecutiveFailures >= 5 || totalFailures > 20`.
    pub fn parse(text: &str) -> Result<Self, TripExpressionError> {
        let unsupported = |why: TripProblem| TripExpressionError {
            text: text.to_owned(),
            why,
        };
        let tokens = tokenize(text).map_err(unsupported)?;
        if tokens.is_empty() {
            return Err(unsupported(TripProblem::Empty));
        }
        let mut any_of = Vec::new();
        for group in tokens.split(|token| *token == Token::Or) {
            let mut all_of = Vec::new();
            for condition in group.split(|token| *token == Token::And) {
                all_of.push(parse_condition(condition).map_err(unsupported)?);
            }
            any_of.push(all_of);
        }
        Ok(Self {
            text: text.trim().to_owned(),
            any_of,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The groups of conditions: the expression is true when all conditions of any
    /// group are.
    pub fn conditions(&self) -> &[Vec<TripCondition>] {
        &self.any_of
    }

    /// Whether the breaker should open with these counts.
    pub fn is_tripped_by(&self, counts: &BreakerCounts) -> bool {
        self.any_of.iter().any(|all_of| {
            all_of.iter().all(|condition| {
                condition
                    .comparison
                    .holds(u64::from(counts.get(condition.counter)), condition.value)
            })
        })
    }

    /// The counts that matter to this expression, in words: `5 consecutive failures`.
    pub fn describe(&self, counts: &BreakerCounts) -> String {
        let mut seen: Vec<Counter> = Vec::new();
        for condition in self.any_of.iter().flatten() {
            if !seen.contains(&condition.counter) {
                seen.push(condition.counter);
            }
        }
        seen.iter()
            .map(|counter| counter.describe(counts.get(*counter)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    Number(u64),
    Compare(Comparison),
    And,
    Or,
}

fn tokenize(text: &str) -> Result<Vec<Token>, TripProblem> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(first) = rest.chars().next() {
        let (token, len) = if first.is_ascii_alphabetic() || first == '_' {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (Token::Name(rest[..len].to_owned()), len)
        } else if first.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number = rest[..len]
                .parse()
                .map_err(|_| TripProblem::TooLarge(rest[..len].to_owned()))?;
            (Token::Number(number), len)
        } else {
            let two = rest.get(..2).unwrap_or("");
            match two {
                ">=" => (Token::Compare(Comparison::GreaterOrEqual), 2),
                "<=" => (Token::Compare(Comparison::LessOrEqual), 2),
                "==" => (Token::Compare(Comparison::Equal), 2),
                "!=" => (Token::Compare(Comparison::NotEqual), 2),
                "&&" => (Token::And, 2),
                "||" => (Token::Or, 2),
                _ => match first {
                    '>' => (Token::Compare(Comparison::Greater), 1),
                    '<' => (Token::Compare(Comparison::Less), 1),
                    '(' | ')' => return Err(TripProblem::Parentheses),
                    '-' => return Err(TripProblem::Negative),
                    other => return Err(TripProblem::Unexpected(other)),
                },
            }
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    Ok(tokens)
}

fn parse_condition(tokens: &[Token]) -> Result<TripCondition, TripProblem> {
    match tokens {
        [
            Token::Name(name),
            Token::Compare(comparison),
            Token::Number(value),
        ] => {
            let counter = Counter::ALL
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, counter)| *counter)
                .ok_or_else(|| TripProblem::UnknownCounter {
                    name: name.clone(),
                    suggestion: closest(name, Counter::ALL.iter().map(|(known, _)| *known)),
                })?;
            Ok(TripCondition {
                counter,
                comparison: *comparison,
                value: *value,
            })
        }
        [] => Err(TripProblem::MissingComparison),
        _ => Err(TripProblem::NotAComparison),
    }
}

/// A circuit breaker as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a circuit breaker: a mapping such as `{maxRequests: 1, timeout: 30s, trip: consecutiveFailures >= 5}`"
)]
pub(super) struct CircuitBreakerFile {
    max_requests: Option<Parsed<MaxRequests>>,
    interval: Option<Parsed<FileDuration>>,
    timeout: Option<Parsed<FileDuration>>,
    trip: Option<Parsed<TripExpression>>,
}

impl From<CircuitBreakerFile> for CircuitBreakerSpec {
    fn from(file: CircuitBreakerFile) -> Self {
        let defaults = CircuitBreakerSpec::default();
        CircuitBreakerSpec {
            max_requests: file
                .max_requests
                .map_or(defaults.max_requests, |Parsed(MaxRequests(count))| count),
            interval: file
                .interval
                .map_or(defaults.interval, |Parsed(FileDuration(interval))| interval),
            // As in sony/gobreaker: a zero timeout means the 60s default.
            timeout: file
                .timeout
                .map(|Parsed(FileDuration(timeout))| timeout)
                .filter(|timeout| !timeout.is_zero())
                .unwrap_or(defaults.timeout),
            trip: file.trip.map_or(defaults.trip, |Parsed(trip)| trip),
        }
    }
}

/// `maxRequests`: calls let through while half-open.
struct MaxRequests(u32);

impl FieldText for MaxRequests {
    const EXPECTED: &'static str = "a number of calls";
}

impl std::str::FromStr for MaxRequests {
    type Err = CountError;

    fn from_str(text: &str) -> Result<Self, CountError> {
        let count: u32 = count(
            text,
            0..=i128::from(u32::MAX),
            "the number of calls let through while half-open, from 0 (read as 1) to 4294967295",
        )?;
        // Dapr's breaker (sony/gobreaker) reads 0 as 1.
        Ok(MaxRequests(count.max(1)))
    }
}
