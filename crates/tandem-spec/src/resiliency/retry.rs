//! Retries: `spec.policies.retries`, their backoff, and the status codes they retry.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::yaml::fields::{CountError, FieldText, FileDuration, Parsed, count};

/// `policy:` of a retry: how the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// The same `duration` before every retry (Dapr's default).
    Constant,
    /// Starting at `initialInterval` and growing ×1.5 (with ±50% jitter) up to `maxInterval`.
    Exponential,
}

impl FieldText for BackoffPolicy {
    const EXPECTED: &'static str = "`constant` or `exponential`";
}

impl FromStr for BackoffPolicy {
    type Err = UnknownBackoffPolicy;

    /// `constant` or `exponential`, in any case, as Dapr reads them.
    fn from_str(text: &str) -> Result<Self, UnknownBackoffPolicy> {
        match text.trim().to_ascii_lowercase().as_str() {
            "constant" => Ok(BackoffPolicy::Constant),
            "exponential" => Ok(BackoffPolicy::Exponential),
            _ => Err(UnknownBackoffPolicy(text.to_owned())),
        }
    }
}

/// A retry `policy` that is neither `constant` nor `exponential`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown retry policy `{0}`: it must be `constant` or `exponential`")]
pub struct UnknownBackoffPolicy(pub String);

/// One named retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// `policy`: `constant` (default) or `exponential`.
    pub policy: BackoffPolicy,
    /// `duration`: the wait between retries of a `constant` policy (default 5s).
    pub duration: Duration,
    /// `initialInterval`: the first wait of an `exponential` policy (default 500ms, the
    /// value Dapr uses; Dapr's resource has no field for it, tandem accepts one).
    pub initial_interval: Duration,
    /// `maxInterval`: the longest wait of an `exponential` policy (default 60s).
    pub max_interval: Duration,
    /// `maxRetries`: retries after the first attempt; `None` is Dapr's `-1`, retry
    /// forever (the default). `Some(0)` never retries.
    pub max_retries: Option<u32>,
    /// `matching`: which failed calls are retried.
    pub matching: RetryMatching,
}

impl RetrySpec {
    /// Dapr's defaults: constant, 5s apart, forever.
    pub const DEFAULT: RetrySpec = RetrySpec {
        policy: BackoffPolicy::Constant,
        duration: Duration::from_secs(5),
        initial_interval: Duration::from_millis(500),
        max_interval: Duration::from_secs(60),
        max_retries: None,
        matching: RetryMatching {
            http_status_codes: Vec::new(),
            grpc_status_codes: Vec::new(),
        },
    };
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `matching:` of a retry: status codes worth retrying. An empty list retries every
/// failed call of that protocol, as in Dapr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryMatching {
    /// `httpStatusCodes`, e.g. `"429,500-599"` (codes 100-599).
    pub http_status_codes: Vec<RangeInclusive<u16>>,
    /// `gRPCStatusCodes`, e.g. `"4,8-11,13,14"` (codes 0-16).
    pub grpc_status_codes: Vec<RangeInclusive<u16>>,
}

impl RetryMatching {
    /// Whether a call that failed with HTTP `status` may be retried.
    pub fn matches_http(&self, status: u16) -> bool {
        matches_any(&self.http_status_codes, status)
    }

    /// Whether a call that failed with gRPC `code` may be retried.
    pub fn matches_grpc(&self, code: u16) -> bool {
        matches_any(&self.grpc_status_codes, code)
    }
}

fn matches_any(ranges: &[RangeInclusive<u16>], code: u16) -> bool {
    ranges.is_empty() || ranges.iter().any(|range| range.contains(&code))
}

/// Retry policy names Dapr defines itself (`DaprBuiltInServiceRetries`, ...): a
/// resource may override them, and a target may name them without defining them.
pub const BUILT_IN_RETRIES: [&str; 5] = [
    "DaprBuiltInServiceRetries",
    "DaprBuiltInActorRetries",
    "DaprBuiltInActorReminderRetries",
    "DaprBuiltInActorNotFoundRetries",
    "DaprBuiltInInitializationRetries",
];

/// A status code list tandem cannot read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusCodeError {
    #[error("`{item}` is not a status code or a range such as 500-599")]
    NotACode { item: String },
    #[error("`{item}`: {code} is not a valid code")]
    OutOfRange { item: String, code: u16 },
    #[error("`{item}`: a range must start with its lower code")]
    Reversed { item: String },
}

/// Parses Dapr's status code lists: `"429,500-599"`. Empty items are skipped, as in
/// Dapr; an empty text means "every code".
pub fn parse_status_codes(
    text: &str,
    valid: RangeInclusive<u16>,
) -> Result<Vec<RangeInclusive<u16>>, StatusCodeError> {
    let mut ranges = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (start, end) = match item.split_once('-') {
            Some((start, end)) => (start.trim(), end.trim()),
            None => (item, item),
        };
        let code = |text: &str| -> Result<u16, StatusCodeError> {
            let code: u16 = text.parse().map_err(|_| StatusCodeError::NotACode {
                item: item.to_owned(),
            })?;
            if valid.contains(&code) {
                Ok(code)
            } else {
                Err(StatusCodeError::OutOfRange {
                    item: item.to_owned(),
                    code,
                })
            }
        };
        let (start, end) = (code(start)?, code(end)?);
        if start > end {
            return Err(StatusCodeError::Reversed {
                item: item.to_owned(),
            });
        }
        ranges.push(start..=end);
    }
    Ok(ranges)
}

/// A retry policy as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a retry policy: a mapping such as `{policy: constant, duration: 5s, maxRetries: 3}`"
)]
pub(super) struct RetryFile {
    policy: Option<Parsed<BackoffPolicy>>,
    duration: Option<Parsed<FileDuration>>,
    initial_interval: Option<Parsed<FileDuration>>,
    max_interval: Option<Parsed<FileDuration>>,
    max_retries: Option<Parsed<MaxRetries>>,
    matching: Option<MatchingFile>,
}

impl From<RetryFile> for RetrySpec {
    fn from(file: RetryFile) -> Self {
        let defaults = RetrySpec::DEFAULT;
        let duration = |field: Option<Parsed<FileDuration>>, default: Duration| {
            field.map_or(default, |Parsed(FileDuration(duration))| duration)
        };
        RetrySpec {
            policy: file.policy.map_or(defaults.policy, |Parsed(policy)| policy),
            duration: duration(file.duration, defaults.duration),
            initial_interval: duration(file.initial_interval, defaults.initial_interval),
            max_interval: duration(file.max_interval, defaults.max_interval),
            max_retries: file
                .max_retries
                .map_or(defaults.max_retries, |Parsed(MaxRetries(count))| count),
            matching: file
                .matching
                .map(|matching| RetryMatching {
                    http_status_codes: matching
                        .http_status_codes
                        .map(|Parsed(HttpStatusCodes(codes))| codes)
                        .unwrap_or_default(),
                    grpc_status_codes: matching
                        .grpc_status_codes
                        .map(|Parsed(GrpcStatusCodes(codes))| codes)
                        .unwrap_or_default(),
                })
                .unwrap_or(defaults.matching),
        }
    }
}

/// `maxRetries`: `-1` (forever) or a count.
struct MaxRetries(Option<u32>);

impl FieldText for MaxRetries {
    const EXPECTED: &'static str = "-1 (retry forever), 0 (never retry) or a number of retries";
}

impl FromStr for MaxRetries {
    type Err = CountError;

    fn from_str(text: &str) -> Result<Self, CountError> {
        let count: i64 = count(
            text,
            -1..=i128::from(u32::MAX),
            "-1 (retry forever), 0 (never retry) or a number of retries up to 4294967295",
        )?;
        Ok(MaxRetries(u32::try_from(count).ok()))
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `httpStatusCodes` and `gRPCStatusCodes`"
)]
struct MatchingFile {
    #[serde(rename = "httpStatusCodes")]
    http_status_codes: Option<Parsed<HttpStatusCodes>>,
    #[serde(rename = "gRPCStatusCodes")]
    grpc_status_codes: Option<Parsed<GrpcStatusCodes>>,
}

/// A status code list that does not hold, and which codes its protocol has.
#[derive(Debug, thiserror::Error)]
#[error("{why} ({protocol} status codes are {valid})")]
struct CodesError {
    #[source]
    why: StatusCodeError,
    protocol: &'static str,
    valid: &'static str,
}

struct HttpStatusCodes(Vec<RangeInclusive<u16>>);

impl FieldText for HttpStatusCodes {
    const EXPECTED: &'static str = "a list of codes and ranges such as \"429,500-599\"";
}

impl FromStr for HttpStatusCodes {
    type Err = CodesError;

    fn from_str(text: &str) -> Result<Self, CodesError> {
        parse_status_codes(text, 100..=599)
            .map(HttpStatusCodes)
            .map_err(|why| CodesError {
                why,
                protocol: "HTTP",
                valid: "100-599",
            })
    }
}

struct GrpcStatusCodes(Vec<RangeInclusive<u16>>);

impl FieldText for GrpcStatusCodes {
    const EXPECTED: &'static str = "a list of codes and ranges such as \"4,8-11,13,14\"";
}

impl FromStr for GrpcStatusCodes {
    type Err = CodesError;

    fn from_str(text: &str) -> Result<Self, CodesError> {
        parse_status_codes(text, 0..=16)
            .map(GrpcStatusCodes)
            .map_err(|why| CodesError {
                why,
                protocol: "gRPC",
                valid: "0-16",
            })
    }
}
