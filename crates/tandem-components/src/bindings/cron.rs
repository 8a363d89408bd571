//! `bindings.cron`: an input binding that fires on a schedule, compatible with Dapr's.
//!
//! `schedule` takes what Dapr's takes: five fields (minute hour day-of-month month
//! day-of-week) or six with seconds first, each `*`, `?`, a value, a range `a-b`, a step
//! `*/n` or `a-b/n` or `a/n`, or a list of those; month and weekday names (`JAN`,
//! `MON`); the descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/
//! `@midnight`, `@hourly`; and `@every <Go duration>` (`@every 15m`). When both the day
//! of month and the day of week are restricted, a day matching either fires (classic
//! cron). Schedules run in UTC: `CRON_TZ=UTC` / `TZ=UTC` prefixes are accepted, other
//! zones are refused by name (daprd uses the sidecar's local zone, which in a container
//! is UTC).
//!
//! Each tick is an event with no data and the metadata `timeZone` and `readTimeUTC`, as
//! in Dapr. Ticks are not retried when the app refuses one — the next tick comes anyway
//! — and ticks missed while the sidecar was down are not made up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tandem_spec::{ComponentMetadata, ResourceError};
use time::{Date, Month, OffsetDateTime, Time};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Binding, BindingError, Handle, InputEvent, Outcome};

pub const METADATA: &[&str] = &["schedule"];

/// The cron input binding.
pub struct Cron {
    name: String,
    schedule: Schedule,
}

impl Cron {
    pub async fn build(metadata: &ComponentMetadata) -> Result<Arc<dyn Binding>, ResourceError> {
        let text = metadata.required("schedule")?;
        let schedule = Schedule::parse(text).map_err(|why| {
            metadata.field_error(
                "schedule",
                format!("invalid schedule format '{text}': {why}"),
            )
        })?;
        Ok(Arc::new(Self {
            name: metadata.component().name.clone(),
            schedule,
        }))
    }
}

#[async_trait]
impl Binding for Cron {
    fn reads(&self) -> bool {
        true
    }

    async fn read(
        &self,
        handler: Arc<dyn Handle>,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, BindingError> {
        let schedule = self.schedule.clone();
        let name = self.name.clone();
        Ok(tokio::spawn(async move {
            let ticks = TaskTracker::new();
            let mut after = OffsetDateTime::now_utc();
            loop {
                let Some(next) = schedule.next_after(after) else {
                    tracing::warn!(binding = %name, "the schedule never fires again");
                    break;
                };
                let wait = (next - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                after = next;
                let (handler, name) = (handler.clone(), name.clone());
                // Each tick on its own, as in Dapr: a slow app does not delay the next.
                ticks.spawn(async move {
                    let event = InputEvent {
                        data: Default::default(),
                        metadata: [
                            ("timeZone".to_owned(), "UTC".to_owned()),
                            (
                                "readTimeUTC".to_owned(),
                                go_time_string(OffsetDateTime::now_utc()),
                            ),
                        ]
                        .into(),
                    };
                    if handler.handle(event).await != Outcome::Done {
                        tracing::debug!(binding = %name, "the app did not take a cron tick");
                    }
                });
            }
            ticks.close();
            ticks.wait().await;
        }))
    }
}

/// Go's `time.Time.String()` for a UTC time: `2026-12-04 06:50:00.123456789 +0000 UTC`
/// (trailing zeros of the fraction dropped), the form Dapr's `readTimeUTC` has.
fn go_time_string(time: OffsetDateTime) -> String {
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let nanos = time.nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push_str(" +0000 UTC");
    text
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
enum Schedule {
    /// `@every d`: every `d` from the start, at least one second.
    Every(Duration),
    Fields(Fields),
}

/// The allowed values of each field, as bit sets.
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month or day-of-week was `*`/`?`: then a day must match both
    /// (one of them matches everything); otherwise either.
    any_day: bool,
}

/// One field's range and names.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldKind = FieldKind {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldKind = FieldKind {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldKind = FieldKind {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldKind = FieldKind {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldKind = FieldKind {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: FieldKind = FieldKind {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    fn parse(text: &str) -> Result<Self, String> {
        let mut text = text.trim();
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (zone, rest) = rest
                    .split_once(' ')
                    .ok_or("a time zone without a schedule")?;
                if !matches!(zone, "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT") {
                    return Err(format!(
                        "time zone '{zone}': tandem runs schedules in UTC; write the schedule in UTC"
                    ));
                }
                text = rest.trim();
            }
        }
        if let Some(descriptor) = text.strip_prefix('@') {
            if let Some(every) = descriptor.strip_prefix("every ") {
                let every = tandem_spec::parse_duration(every.trim())
                    .map_err(|why| format!("@every: {why}"))?;
                // As robfig/cron: below one second is rounded up to one second.
                return Ok(Self::Every(every.max(Duration::from_secs(1))));
            }
            let fields = match descriptor {
                "yearly" | "annually" => "0 0 0 1 1 *",
                "monthly" => "0 0 0 1 * *",
                "weekly" => "0 0 0 * * 0",
                "daily" | "midnight" => "0 0 0 * * *",
                "hourly" => "0 0 * * * *",
                _ => return Err(format!("unrecognized descriptor: @{descriptor}")),
            };
            return Self::parse(fields);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        let fields = match fields.len() {
            5 => [&["0"][..], &fields].concat(),
            6 => fields,
            n => return Err(format!("expected 5 to 6 fields, found {n}: {text}")),
        };
        let star = |field: &str| field == "*" || field == "?";
        let weekdays = parse_field(fields[5], &WEEKDAY)?;
        Ok(Self::Fields(Fields {
            seconds: parse_field(fields[0], &SECOND)?,
            minutes: parse_field(fields[1], &MINUTE)?,
            hours: parse_field(fields[2], &HOUR)?,
            days: parse_field(fields[3], &DAY)?,
            months: parse_field(fields[4], &MONTH)?,
            // 7 is Sunday too.
            weekdays: if weekdays & (1 << 7) != 0 {
                (weekdays | 1) & !(1 << 7)
            } else {
                weekdays
            },
            any_day: star(fields[3]) || star(fields[5]),
        }))
    }

    /// The first time strictly after `after` (to the second) the schedule fires; `None`
    /// if it never does (within the next five years, e.g. `0 0 30 2 *`).
    fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let fields = match self {
            Self::Every(every) => return Some(after + *every),
            Self::Fields(fields) => fields,
        };
        let mut t = after.replace_nanosecond(0).ok()? + time::Duration::SECOND;
        let limit = t.year() + 5;
        let has = |set: u64, value: u32| set & (1 << value) != 0;
        while t.year() <= limit {
            if !has(fields.months, u32::from(u8::from(t.month()))) {
                let (year, month) = match t.month() {
                    Month::December => (t.year() + 1, Month::January),
                    month => (t.year(), month.next()),
                };
                t = Date::from_calendar_date(year, month, 1)
                    .ok()?
                    .midnight()
                    .assume_utc();
                continue;
            }
            let day_of_month = has(fields.days, u32::from(t.day()));
            let day_of_week = has(
                fields.weekdays,
                u32::from(t.weekday().number_days_from_sunday()),
            );
            let day = if fields.any_day {
                day_of_month && day_of_week
            } else {
                day_of_month || day_of_week
            };
            if !day {
                t = (t.date().next_day()?).midnight().assume_utc();
                continue;
            }
            if !has(fields.hours, u32::from(t.hour())) {
                t = t.replace_time(Time::from_hms(t.hour(), 0, 0).ok()?) + time::Duration::HOUR;
                continue;
            }
            if !has(fields.minutes, u32::from(t.minute())) {
                t = t.replace_time(Time::from_hms(t.hour(), t.minute(), 0).ok()?)
                    + time::Duration::MINUTE;
                continue;
            }
            if !has(fields.seconds, u32::from(t.second())) {
                t += time::Duration::SECOND;
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// One field: a comma-separated list of `*`, `?`, `v`, `a-b`, each with an optional `/step`.
fn parse_field(text: &str, kind: &FieldKind) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("{}: bad step '{step}' in '{part}'", kind.name))?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            (kind.min, kind.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, kind)?, value(high, kind)?)
        } else {
            let low = value(range, kind)?;
            // `a/n` runs from a to the end of the range.
            (low, if step.is_some() { kind.max } else { low })
        };
        // Day of week allows 7 (Sunday) at the top of a range.
        let max = if kind.name == WEEKDAY.name {
            7
        } else {
            kind.max
        };
        if low < kind.min || high > max || low > high {
            return Err(format!(
                "{}: '{part}' is outside {}-{}",
                kind.name, kind.min, kind.max
            ));
        }
        let step = step.unwrap_or(1);
        let mut at = low;
        while at <= high {
            bits |= 1 << at;
            at += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, kind: &FieldKind) -> Result<u32, String> {
    if let Some(index) = kind
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        // Months count from 1, weekdays from 0.
        return Ok(index as u32 + kind.min);
    }
    text.parse()
        .map_err(|_| format!("{}: '{text}' is not a number", kind.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(schedule: &str, after: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(schedule)
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn six_fields_have_seconds_and_five_start_at_second_zero() {
        let at = datetime!(2026-12-04 06:50:07 UTC);
        assert_eq!(
            next("*/15 * * * * *", at),
            datetime!(2026-12-04 06:50:15 UTC)
        );
        assert_eq!(next("0 30 * * * *", at), datetime!(2026-12-04 07:30:00 UTC));
        assert_eq!(next("*/5 * * * *", at), datetime!(2026-12-04 06:55:00 UTC));
        assert_eq!(
            next("0 9 * * MON-FRI", at),
            datetime!(2026-12-04 09:00:00 UTC)
        );
        assert_eq!(
            next("0 9 * * SAT,SUN", at),
            datetime!(2026-12-05 09:00:00 UTC)
        );
        assert_eq!(next("0 0 1 JAN *", at), datetime!(2027-01-01 00:00:00 UTC));
        assert_eq!(next("@hourly", at), datetime!(2026-12-04 07:00:00 UTC));
        assert_eq!(next("@daily", at), datetime!(2026-12-05 00:00:00 UTC));
        assert_eq!(next("@weekly", at), datetime!(2026-12-06 00:00:00 UTC));
        assert_eq!(next("@monthly", at), datetime!(2027-01-01 00:00:00 UTC));
        assert_eq!(next("@yearly", at), datetime!(2027-01-01 00:00:00 UTC));
        assert_eq!(next("@every 15m", at), datetime!(2026-12-04 07:05:07 UTC));
        assert_eq!(
            next("CRON_TZ=UTC 0 0 * * *", at),
            datetime!(2026-12-05 00:00:00 UTC)
        );
        // Sunday as 7; a list with a stepped range.
        assert_eq!(next("0 0 * * 7", at), datetime!(2026-12-06 00:00:00 UTC));
        assert_eq!(
            next("0 0,30 8-10/2 * * *", at),
            datetime!(2026-12-04 08:00:00 UTC)
        );
    }

    #[test]
    fn a_restricted_day_of_month_or_of_week_fires_on_either() {
        // The 13th or a Friday, whichever comes first.
        let at = datetime!(2026-12-04 06:50:00 UTC); // a Friday
        assert_eq!(next("0 0 13 * FRI", at), datetime!(2026-12-11 00:00:00 UTC));
        assert_eq!(next("0 0 13 * *", at), datetime!(2026-12-13 00:00:00 UTC));
        // Leap day: the next 29 February.
        assert_eq!(next("0 0 29 2 *", at), datetime!(2028-02-29 00:00:00 UTC));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (schedule, says) in [
            ("* * *", "expected 5 to 6 fields"),
            ("61 * * * * *", "seconds: '61' is outside 0-59"),
            ("* * * * FOO", "day of week: 'FOO' is not a number"),
            ("*/0 * * * *", "bad step"),
            ("@fortnightly", "unrecognized descriptor"),
            ("@every soon", "@every"),
            (
                "CRON_TZ=Europe/Paris 0 0 * * *",
                "tandem runs schedules in UTC",
            ),
        ] {
            let error = Schedule::parse(schedule).unwrap_err();
            assert!(error.contains(says), "{schedule}: {error}");
        }
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(datetime!(2026-01-01 0:00 UTC)),
            None
        );
    }

    #[test]
    fn read_times_are_written_as_go_writes_them() {
        assert_eq!(
            go_time_string(datetime!(2026-12-04 06:50:00.1234 UTC)),
            "2026-12-04 06:50:00.1234 +0000 UTC"
        );
        assert_eq!(
            go_time_string(datetime!(2026-12-04 06:50:00 UTC)),
            "2026-12-04 06:50:00 +0000 UTC"
        );
    }
}
