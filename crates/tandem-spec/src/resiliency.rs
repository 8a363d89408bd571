//! `kind: Resiliency`: named timeouts, retries and circuit breakers, and the targets
//! (apps, components, actors) they apply to.
//!
//! The file format is Dapr's (<https://docs.dapr.io/operations/resiliency/>). Parsing
//! checks everything that can be checked before the sidecar starts — durations, status
//! code lists, trip expressions, and that every policy a target names exists — so a
//! typo stops the sidecar with the file, the resource and the field instead of quietly
//! leaving a target unprotected (Dapr logs such a resource and skips it).
//!
//! The engine that applies these policies is the `tandem-resiliency` crate.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_serde::{Mapping, Value};

use crate::component::scalar_to_string;
use crate::duration::parse_duration;
use crate::error::ResourceError;

/// A Resiliency resource, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Resiliency {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// `scopes`: the app ids this resource applies to; empty means every app.
    pub scopes: Vec<String>,
    /// The file it came from.
    pub file: Option<PathBuf>,
    /// `spec.policies`.
    pub policies: Policies,
    /// `spec.targets`.
    pub targets: Targets,
}

impl Resiliency {
    /// How errors name this resource: `Resiliency 'myresiliency'`.
    pub fn describe(&self) -> String {
        format!("Resiliency '{}'", self.name)
    }

    /// Whether app `app_id` uses this resource (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }
}

/// `spec.policies`: policies by name, for targets to refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    /// `timeouts`: how long one attempt may take.
    pub timeouts: BTreeMap<String, Duration>,
    /// `retries`: how often and how far apart failed calls are tried again.
    pub retries: BTreeMap<String, RetrySpec>,
    /// `circuitBreakers`: when to stop calling a target that keeps failing.
    pub circuit_breakers: BTreeMap<String, CircuitBreakerSpec>,
    /// `caches` (tandem's, beyond Dapr): answers of an app or HTTP endpoint kept and
    /// reused for a while.
    pub caches: BTreeMap<String, CacheSpec>,
}

/// A response cache policy: which calls to a target are answered from a cache, and for
/// how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// `ttl`: how long an answer is served without calling the target again.
    pub ttl: Duration,
    /// `store`: the state store that keeps answers as the second level, shared by
    /// every sidecar using it; without one, answers live only in this sidecar.
    pub store: Option<String>,
    /// `staleIfError`: how long past `ttl` an answer may still be served when the
    /// target fails or times out.
    pub stale_if_error: Duration,
    /// `methods`: the HTTP methods whose answers are cached (default `GET`).
    pub methods: Vec<String>,
    /// `varyHeaders`: request headers that are part of the cache key.
    pub vary_headers: Vec<String>,
    /// `maxEntries`: the first level's size.
    pub max_entries: Option<u64>,
}

/// `policy:` of a retry: how the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// The same `duration` before every retry (Dapr's default).
    Constant,
    /// Starting at `initialInterval` and growing ×1.5 (with ±50% jitter) up to `maxInterval`.
    Exponential,
}

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

impl std::str::FromStr for TripExpression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        TripExpression::parse(text)
    }
}

impl TripExpression {
    const SUPPORTED: &'static str = "tandem supports comparisons of requests, totalSuccesses, \
        totalFailures, consecutiveSuccesses or consecutiveFailures with a whole number \
        (>, >=, ==, !=, <, <=), joined by && or ||, e.g. `consecutiveFailures > 5`";

    /// Parses an expression such as `consecutiveFailures >= 5 || totalFailures > 20`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let unsupported = |why: String| {
            format!(
                "`{text}` is not a trip expression tandem understands: {why}; {}",
                Self::SUPPORTED
            )
        };
        let tokens = tokenize(text).map_err(unsupported)?;
        if tokens.is_empty() {
            return Err(unsupported("it is empty".into()));
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

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
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
                .map_err(|_| format!("{} is too large", &rest[..len]))?;
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
                    '(' | ')' => return Err("parentheses are not supported".into()),
                    '-' => return Err("negative numbers are not supported".into()),
                    other => return Err(format!("unexpected `{other}`")),
                },
            }
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    Ok(tokens)
}

fn parse_condition(tokens: &[Token]) -> Result<TripCondition, String> {
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
                .ok_or_else(|| {
                    let known: Vec<&str> = Counter::ALL.iter().map(|(name, _)| *name).collect();
                    match closest(name, &known) {
                        Some(close) => format!("unknown counter `{name}`; did you mean `{close}`?"),
                        None => format!("unknown counter `{name}`"),
                    }
                })?;
            Ok(TripCondition {
                counter,
                comparison: *comparison,
                value: *value,
            })
        }
        [] => Err("a comparison is missing around && or ||".into()),
        _ => Err("each comparison must read `counter operator number`".into()),
    }
}

/// `spec.targets`: what the named policies apply to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// `apps`: service invocation calls to these app ids.
    pub apps: BTreeMap<String, TargetPolicies>,
    /// `components`: calls to components (`outbound`) and from them into the app
    /// (`inbound`, e.g. pub/sub deliveries).
    pub components: BTreeMap<String, ComponentTargets>,
    /// `actors`: calls to actors of these types.
    pub actors: BTreeMap<String, ActorTargetPolicies>,
}

/// The policies one target uses, by name; `None` means none of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicies {
    pub timeout: Option<String>,
    pub retry: Option<String>,
    pub circuit_breaker: Option<String>,
    /// `cache` (apps and HTTP endpoints only): the response cache policy.
    pub cache: Option<String>,
}

/// `targets.components.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentTargets {
    /// Calls from the sidecar to the component: state, publish, output bindings.
    pub outbound: TargetPolicies,
    /// Calls from the sidecar into the app for the component: pub/sub deliveries,
    /// input bindings.
    pub inbound: TargetPolicies,
}

/// `targets.actors.<type>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorTargetPolicies {
    pub policies: TargetPolicies,
    /// `circuitBreakerScope`: required with a `circuitBreaker`.
    pub circuit_breaker_scope: Option<ActorBreakerScope>,
    /// `circuitBreakerCacheSize`: how many actor breakers to keep (Dapr: 5000).
    pub circuit_breaker_cache_size: Option<u32>,
}

/// Whose failures an actor circuit breaker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorBreakerScope {
    /// `id`: each actor on its own.
    Id,
    /// `type`: all actors of the type together.
    Type,
    /// `both`.
    Both,
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

/// Parses one `kind: Resiliency` document.
///
/// Errors name `file`, `Resiliency '<name>'` and the field, e.g.
/// `spec.policies.retries.retryForever.maxRetries`.
pub fn parse_resiliency(file: &Path, value: Value) -> Result<Resiliency, ResourceError> {
    let name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let parser = Parser {
        file,
        resource: match &name {
            Some(name) => format!("Resiliency '{name}'"),
            None => "Resiliency".to_owned(),
        },
    };
    let Some(name) = name else {
        return Err(parser.error("metadata.name", "a resiliency resource needs a name"));
    };
    let namespace = value
        .get("metadata")
        .and_then(|metadata| metadata.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let scopes = parser.scopes(value.get("scopes"))?;

    if value.get("spec").is_none() {
        let nested = value
            .get("metadata")
            .is_some_and(|metadata| metadata.get("spec").is_some());
        let hint = if nested {
            ": it is indented under `metadata`, but `spec` must be a top-level key beside `metadata`"
        } else {
            ""
        };
        return Err(parser.error(
            "spec",
            format!("a resiliency resource needs a `spec` with `policies` and `targets`{hint}"),
        ));
    }
    let spec = parser.mapping(value.get("spec"), "spec")?;
    parser.known_keys(&spec, "spec", &["policies", "targets"])?;
    let policies = parser.policies(entry(&spec, "policies"))?;
    let targets = parser.targets(entry(&spec, "targets"), &policies)?;
    Ok(Resiliency {
        name,
        namespace,
        scopes,
        file: Some(file.to_owned()),
        policies,
        targets,
    })
}

fn entry<'a>(entries: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

/// Where errors point: the file and the resource.
struct Parser<'a> {
    file: &'a Path,
    resource: String,
}

impl Parser<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ResourceError {
        ResourceError::new(message)
            .in_file(self.file)
            .in_resource(self.resource.clone())
            .at_field(field)
    }

    /// A mapping's entries, with string keys. Absent or `null` reads as empty.
    fn mapping(
        &self,
        value: Option<&Value>,
        field: &str,
    ) -> Result<Vec<(String, Value)>, ResourceError> {
        let mapping: &Mapping = match value {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Mapping(mapping)) => mapping,
            Some(_) => return Err(self.error(field, "must be a mapping of names to values")),
        };
        mapping
            .iter()
            .map(|(key, value)| match scalar_to_string(key) {
                Some(key) if !key.is_empty() => Ok((key, value.clone())),
                _ => Err(self.error(field, "every key must be a plain name")),
            })
            .collect()
    }

    fn known_keys(
        &self,
        entries: &[(String, Value)],
        field: &str,
        known: &[&str],
    ) -> Result<(), ResourceError> {
        for (key, _) in entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key, known) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("known fields are: {}", known.join(", ")),
            };
            return Err(self.error(
                &format!("{field}.{key}"),
                format!("unknown field `{key}`; {hint}"),
            ));
        }
        Ok(())
    }

    fn scopes(&self, value: Option<&Value>) -> Result<Vec<String>, ResourceError> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    scalar_to_string(item)
                        .filter(|scope| !scope.is_empty())
                        .ok_or_else(|| self.error(&format!("scopes[{index}]"), "must be an app id"))
                })
                .collect(),
            Some(_) => Err(self.error("scopes", "must be a list of app ids")),
        }
    }

    fn duration(&self, value: &Value, field: &str) -> Result<Duration, ResourceError> {
        let text = scalar_to_string(value).unwrap_or_else(|| "this value".into());
        parse_duration(&text).map_err(|why| {
            self.error(
                field,
                format!(
                    "`{text}` is not a duration: {why}; write one such as `500ms`, `5s` or `1m30s` (or a whole number of milliseconds)"
                ),
            )
        })
    }

    fn whole_number(&self, value: &Value, field: &str) -> Result<i64, ResourceError> {
        scalar_to_string(value)
            .and_then(|text| text.trim().parse::<i64>().ok())
            .ok_or_else(|| self.error(field, "must be a whole number"))
    }

    fn name(&self, value: &Value, field: &str) -> Result<String, ResourceError> {
        match value {
            Value::String(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            _ => Err(self.error(field, "must be the name of a policy")),
        }
    }

    fn policies(&self, value: Option<&Value>) -> Result<Policies, ResourceError> {
        let field = "spec.policies";
        let entries = self.mapping(value, field)?;
        self.known_keys(
            &entries,
            field,
            &["timeouts", "retries", "circuitBreakers", "caches"],
        )?;
        let mut policies = Policies::default();
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            for (name, value) in self.mapping(Some(value), &field)? {
                let field = format!("{field}.{name}");
                match key.as_str() {
                    "timeouts" => {
                        let timeout = self.duration(&value, &field)?;
                        policies.timeouts.insert(name, timeout);
                    }
                    "retries" => {
                        let retry = self.retry(&value, &field)?;
                        policies.retries.insert(name, retry);
                    }
                    "caches" => {
                        let cache = self.cache(&value, &field)?;
                        policies.caches.insert(name, cache);
                    }
                    _ => {
                        let breaker = self.circuit_breaker(&value, &field)?;
                        policies.circuit_breakers.insert(name, breaker);
                    }
                }
            }
        }
        Ok(policies)
    }

    fn cache(&self, value: &Value, field: &str) -> Result<CacheSpec, ResourceError> {
        let entries = self.mapping(Some(value), field)?;
        self.known_keys(
            &entries,
            field,
            &[
                "ttl",
                "store",
                "staleIfError",
                "methods",
                "varyHeaders",
                "maxEntries",
            ],
        )?;
        let Some(ttl) = entry(&entries, "ttl") else {
            return Err(self.error(field, "a cache policy needs a `ttl`, e.g. `ttl: 30s`"));
        };
        let ttl = self.duration(ttl, &format!("{field}.ttl"))?;
        if ttl.is_zero() {
            return Err(self.error(&format!("{field}.ttl"), "must be longer than zero"));
        }
        let list = |key: &str| -> Result<Vec<String>, ResourceError> {
            match entry(&entries, key) {
                None => Ok(Vec::new()),
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|item| {
                        scalar_to_string(item).ok_or_else(|| {
                            self.error(&format!("{field}.{key}"), "must be a list of names")
                        })
                    })
                    .collect(),
                Some(_) => {
                    Err(self.error(&format!("{field}.{key}"), "must be a list, e.g. `[GET]`"))
                }
            }
        };
        let mut methods: Vec<String> = list("methods")?
            .iter()
            .map(|method| method.to_ascii_uppercase())
            .collect();
        if methods.is_empty() {
            methods.push("GET".into());
        }
        Ok(CacheSpec {
            ttl,
            store: entry(&entries, "store").and_then(scalar_to_string),
            stale_if_error: match entry(&entries, "staleIfError") {
                Some(value) => self.duration(value, &format!("{field}.staleIfError"))?,
                None => Duration::ZERO,
            },
            methods,
            vary_headers: list("varyHeaders")?,
            max_entries: match entry(&entries, "maxEntries") {
                Some(value) => Some(
                    u64::try_from(self.whole_number(value, &format!("{field}.maxEntries"))?)
                        .map_err(|_| {
                            self.error(&format!("{field}.maxEntries"), "must be 1 or more")
                        })?,
                ),
                None => None,
            },
        })
    }

    fn retry(&self, value: &Value, field: &str) -> Result<RetrySpec, ResourceError> {
        if !matches!(value, Value::Mapping(_) | Value::Null) {
            return Err(self.error(
                field,
                "a retry policy is a mapping, e.g. `{policy: constant, duration: 5s, maxRetries: 3}`",
            ));
        }
        let entries = self.mapping(Some(value), field)?;
        self.known_keys(
            &entries,
            field,
            &[
                "policy",
                "duration",
                "initialInterval",
                "maxInterval",
                "maxRetries",
                "matching",
            ],
        )?;
        let mut retry = RetrySpec::DEFAULT;
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            match key.as_str() {
                "policy" => {
                    // Dapr reads the policy kind case-insensitively.
                    retry.policy = match scalar_to_string(value)
                        .map(|kind| kind.trim().to_ascii_lowercase())
                        .as_deref()
                    {
                        Some("constant") => BackoffPolicy::Constant,
                        Some("exponential") => BackoffPolicy::Exponential,
                        _ => {
                            let shown = scalar_to_string(value).unwrap_or_default();
                            return Err(self.error(
                                &field,
                                format!(
                                    "unknown retry policy `{shown}`: it must be `constant` or `exponential`"
                                ),
                            ));
                        }
                    }
                }
                "duration" => retry.duration = self.duration(value, &field)?,
                "initialInterval" => retry.initial_interval = self.duration(value, &field)?,
                "maxInterval" => retry.max_interval = self.duration(value, &field)?,
                "maxRetries" => {
                    retry.max_retries = match self.whole_number(value, &field)? {
                        -1 => None,
                        count if (0..=i64::from(u32::MAX)).contains(&count) => Some(count as u32),
                        _ => {
                            return Err(self.error(
                                &field,
                                "must be -1 (retry forever), 0 (never retry) or a number of retries",
                            ));
                        }
                    }
                }
                _ => retry.matching = self.matching(value, &field)?,
            }
        }
        Ok(retry)
    }

    fn matching(&self, value: &Value, field: &str) -> Result<RetryMatching, ResourceError> {
        let entries = self.mapping(Some(value), field)?;
        self.known_keys(&entries, field, &["httpStatusCodes", "gRPCStatusCodes"])?;
        let mut matching = RetryMatching::default();
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            let text = scalar_to_string(value).ok_or_else(|| {
                self.error(
                    &field,
                    "must be a text of codes and ranges, e.g. \"429,500-599\"",
                )
            })?;
            if key == "httpStatusCodes" {
                matching.http_status_codes =
                    parse_status_codes(&text, 100..=599).map_err(|why| {
                        self.error(&field, format!("{why} (HTTP status codes are 100-599)"))
                    })?;
            } else {
                matching.grpc_status_codes = parse_status_codes(&text, 0..=16).map_err(|why| {
                    self.error(&field, format!("{why} (gRPC status codes are 0-16)"))
                })?;
            }
        }
        Ok(matching)
    }

    fn circuit_breaker(
        &self,
        value: &Value,
        field: &str,
    ) -> Result<CircuitBreakerSpec, ResourceError> {
        if !matches!(value, Value::Mapping(_) | Value::Null) {
            return Err(self.error(
                field,
                "a circuit breaker is a mapping, e.g. `{maxRequests: 1, timeout: 30s, trip: consecutiveFailures >= 5}`",
            ));
        }
        let entries = self.mapping(Some(value), field)?;
        self.known_keys(
            &entries,
            field,
            &["maxRequests", "interval", "timeout", "trip"],
        )?;
        let mut breaker = CircuitBreakerSpec::default();
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            match key.as_str() {
                "maxRequests" => {
                    breaker.max_requests = match self.whole_number(value, &field)? {
                        // Dapr's breaker (sony/gobreaker) reads 0 as 1.
                        0 => 1,
                        count if (1..=i64::from(u32::MAX)).contains(&count) => count as u32,
                        _ => {
                            return Err(self.error(
                                &field,
                                "must be the number of calls let through while half-open (1 or more)",
                            ));
                        }
                    }
                }
                "interval" => breaker.interval = self.duration(value, &field)?,
                "timeout" => {
                    let timeout = self.duration(value, &field)?;
                    // As in sony/gobreaker: a zero timeout means the 60s default.
                    if !timeout.is_zero() {
                        breaker.timeout = timeout;
                    }
                }
                _ => {
                    let text = scalar_to_string(value).unwrap_or_default();
                    breaker.trip =
                        TripExpression::parse(&text).map_err(|why| self.error(&field, why))?;
                }
            }
        }
        Ok(breaker)
    }

    fn targets(
        &self,
        value: Option<&Value>,
        policies: &Policies,
    ) -> Result<Targets, ResourceError> {
        let field = "spec.targets";
        let entries = self.mapping(value, field)?;
        self.known_keys(&entries, field, &["apps", "components", "actors"])?;
        let mut targets = Targets::default();
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            for (name, value) in self.mapping(Some(value), &field)? {
                let field = format!("{field}.{name}");
                match key.as_str() {
                    "apps" => {
                        let entries = self.target_entries(&value, &field)?;
                        self.known_keys(
                            &entries,
                            &field,
                            &[
                                "timeout",
                                "retry",
                                "circuitBreaker",
                                "circuitBreakerCacheSize",
                                "cache",
                            ],
                        )?;
                        if let Some(size) = entry(&entries, "circuitBreakerCacheSize") {
                            self.cache_size(size, &format!("{field}.circuitBreakerCacheSize"))?;
                        }
                        let policies = self.target_policies(&entries, &field, policies)?;
                        targets.apps.insert(name, policies);
                    }
                    "components" => {
                        let entries = self.target_entries(&value, &field)?;
                        self.known_keys(&entries, &field, &["outbound", "inbound"])?;
                        let mut component = ComponentTargets::default();
                        for (direction, value) in &entries {
                            let field = format!("{field}.{direction}");
                            let entries = self.target_entries(value, &field)?;
                            self.known_keys(
                                &entries,
                                &field,
                                &["timeout", "retry", "circuitBreaker"],
                            )?;
                            let named = self.target_policies(&entries, &field, policies)?;
                            if direction == "outbound" {
                                component.outbound = named;
                            } else {
                                component.inbound = named;
                            }
                        }
                        targets.components.insert(name, component);
                    }
                    _ => {
                        let actor = self.actor_target(&value, &field, policies)?;
                        targets.actors.insert(name, actor);
                    }
                }
            }
        }
        Ok(targets)
    }

    fn target_entries(
        &self,
        value: &Value,
        field: &str,
    ) -> Result<Vec<(String, Value)>, ResourceError> {
        if !matches!(value, Value::Mapping(_) | Value::Null) {
            return Err(self.error(
                field,
                "a target is a mapping of policy kinds to policy names, e.g. `{timeout: general, retry: important}`",
            ));
        }
        self.mapping(Some(value), field)
    }

    fn cache_size(&self, value: &Value, field: &str) -> Result<u32, ResourceError> {
        match self.whole_number(value, field)? {
            size if (1..=i64::from(u32::MAX)).contains(&size) => Ok(size as u32),
            _ => Err(self.error(field, "must be a number of circuit breakers (1 or more)")),
        }
    }

    /// Reads `timeout`, `retry` and `circuitBreaker` and checks that the policies they
    /// name are defined in this resource.
    fn target_policies(
        &self,
        entries: &[(String, Value)],
        field: &str,
        policies: &Policies,
    ) -> Result<TargetPolicies, ResourceError> {
        let mut named = TargetPolicies::default();
        for (key, value) in entries {
            let field = format!("{field}.{key}");
            let (slot, defined, kind, section): (_, Vec<&str>, _, _) = match key.as_str() {
                "timeout" => (
                    &mut named.timeout,
                    policies.timeouts.keys().map(String::as_str).collect(),
                    "timeout",
                    "timeouts",
                ),
                "retry" => (
                    &mut named.retry,
                    policies.retries.keys().map(String::as_str).collect(),
                    "retry policy",
                    "retries",
                ),
                "circuitBreaker" => (
                    &mut named.circuit_breaker,
                    policies
                        .circuit_breakers
                        .keys()
                        .map(String::as_str)
                        .collect(),
                    "circuit breaker",
                    "circuitBreakers",
                ),
                "cache" => (
                    &mut named.cache,
                    policies.caches.keys().map(String::as_str).collect(),
                    "cache policy",
                    "caches",
                ),
                _ => continue,
            };
            let name = self.name(value, &field)?;
            // Dapr's built-in retries exist without being defined.
            let built_in = key == "retry" && BUILT_IN_RETRIES.contains(&name.as_str());
            if !defined.contains(&name.as_str()) && !built_in {
                let hint = match closest(&name, &defined) {
                    Some(close) => format!("; did you mean '{close}'?"),
                    None if defined.is_empty() => format!("; this resource defines no {section}"),
                    None => format!("; it defines: {}", defined.join(", ")),
                };
                return Err(self.error(
                    &field,
                    format!("{kind} '{name}' is not defined in `spec.policies.{section}`{hint}"),
                ));
            }
            *slot = Some(name);
        }
        Ok(named)
    }

    fn actor_target(
        &self,
        value: &Value,
        field: &str,
        policies: &Policies,
    ) -> Result<ActorTargetPolicies, ResourceError> {
        let entries = self.target_entries(value, field)?;
        self.known_keys(
            &entries,
            field,
            &[
                "timeout",
                "retry",
                "circuitBreaker",
                "circuitBreakerScope",
                "circuitBreakerCacheSize",
            ],
        )?;
        let mut actor = ActorTargetPolicies {
            policies: self.target_policies(&entries, field, policies)?,
            ..Default::default()
        };
        for (key, value) in &entries {
            let field = format!("{field}.{key}");
            match key.as_str() {
                "circuitBreakerScope" => {
                    actor.circuit_breaker_scope =
                        Some(match scalar_to_string(value).as_deref().map(str::trim) {
                            Some("id") => ActorBreakerScope::Id,
                            Some("type") => ActorBreakerScope::Type,
                            Some("both") => ActorBreakerScope::Both,
                            _ => {
                                return Err(self.error(&field, "must be `id`, `type` or `both`"));
                            }
                        })
                }
                "circuitBreakerCacheSize" => {
                    actor.circuit_breaker_cache_size = Some(self.cache_size(value, &field)?)
                }
                _ => {}
            }
        }
        // Dapr refuses an actor circuit breaker without a scope.
        if actor.policies.circuit_breaker.is_some() && actor.circuit_breaker_scope.is_none() {
            return Err(self.error(
                &format!("{field}.circuitBreakerScope"),
                "an actor target with a `circuitBreaker` needs a `circuitBreakerScope`: `id`, `type` or `both`",
            ));
        }
        Ok(actor)
    }
}

/// Parses Dapr's status code lists: `"429,500-599"`. Empty items are skipped, as in
/// Dapr; an empty text means "every code".
pub fn parse_status_codes(
    text: &str,
    valid: RangeInclusive<u16>,
) -> Result<Vec<RangeInclusive<u16>>, String> {
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
        let code = |text: &str| -> Result<u16, String> {
            let code: u16 = text
                .parse()
                .map_err(|_| format!("`{item}` is not a status code or a range such as 500-599"))?;
            if valid.contains(&code) {
                Ok(code)
            } else {
                Err(format!("`{item}`: {code} is not a valid code"))
            }
        };
        let (start, end) = (code(start)?, code(end)?);
        if start > end {
            return Err(format!("`{item}`: a range must start with its lower code"));
        }
        ranges.push(start..=end);
    }
    Ok(ranges)
}

/// The closest of `known` to a mistyped `name`, when one is close enough.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|known| {
            let score =
                strsim::jaro_winkler(&name.to_ascii_lowercase(), &known.to_ascii_lowercase());
            (score, *known)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests;
