//! What the SQL bindings (`bindings.postgresql`, `bindings.mysql`) share: the request's
//! `sql` and `params`, and the answer's metadata (`operation`, `sql`, `start-time`,
//! `end-time`, `duration`, `rows-affected`) written as Dapr's Go code writes them.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{BindingError, InvokeRequest};

pub const OPERATIONS: &[&str] = &["exec", "query", "close"];

/// The statement and its parameters, as the request's metadata gives them.
pub struct Statement {
    pub sql: String,
    pub params: Vec<serde_json::Value>,
}

impl Statement {
    /// `sql` (required) and `params` (a JSON array, optional).
    pub fn from_request(request: &InvokeRequest) -> Result<Self, BindingError> {
        let sql = match request.metadata.get("sql") {
            Some(sql) if !sql.is_empty() => sql.clone(),
            _ => {
                return Err(BindingError::Invalid(
                    "required metadata not set: sql".into(),
                ));
            }
        };
        let params = match request.metadata.get("params") {
            Some(text) if !text.is_empty() => {
                // `null` is an empty list to Go's decoder.
                serde_json::from_str::<Option<Vec<serde_json::Value>>>(text)
                    .map_err(|error| {
                        BindingError::Invalid(format!(
                            "invalid metadata property params: failed to unserialize into an array: {error}"
                        ))
                    })?
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(Self { sql, params })
    }
}

/// The answer's metadata for an operation that started at `start`.
pub struct Timing {
    start: OffsetDateTime,
    clock: std::time::Instant,
}

impl Timing {
    pub fn start() -> Self {
        Self {
            start: OffsetDateTime::now_utc(),
            clock: std::time::Instant::now(),
        }
    }

    /// `operation`, `sql`, `start-time`, `end-time`, `duration`, and `rows-affected`
    /// when given.
    pub fn metadata(
        &self,
        operation: &str,
        sql: &str,
        rows_affected: Option<u64>,
    ) -> HashMap<String, String> {
        let elapsed = self.clock.elapsed();
        let end = self.start + elapsed;
        let mut metadata: HashMap<String, String> = [
            ("operation", operation.to_owned()),
            ("sql", sql.to_owned()),
            ("start-time", rfc3339_nano(self.start)),
            ("end-time", rfc3339_nano(end)),
            ("duration", go_duration(elapsed)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        if let Some(rows) = rows_affected {
            metadata.insert("rows-affected".into(), rows.to_string());
        }
        metadata
    }
}

/// Go's `time.RFC3339Nano` for a UTC time: `2026-12-04T07:20:00.1234Z`, trailing zeros
/// of the fraction dropped (and the fraction with them when zero).
pub fn rfc3339_nano(time: OffsetDateTime) -> String {
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let nanos = time.nanosecond();
    if nanos != 0 {
        text.push('.');
        text.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    let offset = time.offset();
    if offset.is_utc() {
        text.push('Z');
    } else {
        let (hours, minutes, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        text.push_str(&format!(
            "{sign}{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        ));
    }
    text
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `12.5µs`, `1.234567ms`, `2.5s`,
/// `1m30s`, `2h0m0.5s`.
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let fraction = |value: u128, scale: u128, unit: &str| {
        let whole = value / scale;
        let rest = value % scale;
        if rest == 0 {
            format!("{whole}{unit}")
        } else {
            let digits = scale.to_string().len() - 1;
            let rest = format!("{rest:0digits$}");
            format!("{whole}.{}{unit}", rest.trim_end_matches('0'))
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fraction(nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return fraction(nanos, 1_000_000, "ms");
    }
    let seconds_nanos = nanos % 60_000_000_000;
    let minutes = nanos / 60_000_000_000;
    let seconds = fraction(seconds_nanos, 1_000_000_000, "s");
    if minutes == 0 {
        seconds
    } else if minutes < 60 {
        format!("{minutes}m{seconds}")
    } else {
        format!("{}h{}m{seconds}", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(go_duration(Duration::from_nanos(12_500)), "12.5µs");
        assert_eq!(go_duration(Duration::from_nanos(1_234_567)), "1.234567ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(7_200_500)), "2h0m0.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn times_are_written_as_go_writes_them() {
        assert_eq!(
            rfc3339_nano(datetime!(2026-12-04 07:20:00.1234 UTC)),
            "2026-12-04T07:20:00.1234Z"
        );
        assert_eq!(
            rfc3339_nano(datetime!(2026-12-04 07:20:00 UTC)),
            "2026-12-04T07:20:00Z"
        );
        assert_eq!(
            rfc3339_nano(datetime!(2026-12-04 07:20:00 -05:30)),
            "2026-12-04T07:20:00-05:30"
        );
    }
}
