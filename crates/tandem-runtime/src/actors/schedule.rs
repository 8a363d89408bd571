//! When actor timers and reminders fire: `dueTime`, `period` and `ttl` parsed and
//! checked the way daprd does, and a [`Schedule`] that steps from one due time to the
//! next. Pure: no clock (the caller passes "now"), no I/O.
//!
//! daprd has two sets of rules, and both are kept here because apps see the difference:
//!
//! - timers (daprd's `pkg/actors/api/reminders.go` `setReminderTimes` and `period.go`,
//!   on top of dapr/kit's `time` package): periods may be calendar periods (`P1M` adds a
//!   calendar month, as Go's `AddDate` does), `R0/...` is refused, a tick exactly at the
//!   expiry does not fire;
//! - reminders (daprd hands them to its Scheduler service: `pkg/actors/internal/scheduler`
//!   `scheduleFromPeriod`, and go-etcd-cron's `internal/scheduler/builder.go`,
//!   `repeats.go`, `internal/counter/counter.go`): periods are plain durations only
//!   (`@every <d>`), `R0/...` means "no limit", a reminder needs a due time or a period,
//!   a ttl needs a period, a reminder without a due time first fires one period after
//!   registration, and a tick exactly at the expiry still fires.
//!
//! Both read durations as Go's `time.ParseDuration` does (`1m30s`, `1.5s`, `-2h`) and as
//! dapr/kit's ISO 8601 reader does (`PT10S`, `P1DT2H`, `P2W`, `R5/PT10S`), quirks included
//! (designators may come in any order; unknown letters are skipped). Where daprd would
//! silently overflow or loop forever (huge ISO numbers, negative periods) this module
//! refuses instead.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i128 = 86_400;

/// Which of daprd's rule sets applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Timer,
    Reminder,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Timer => "timer",
            Kind::Reminder => "reminder",
        })
    }
}

/// Which request field a [`ScheduleError::OutOfRange`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    DueTime,
    Period,
    Ttl,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::DueTime => "due time",
            Field::Period => "period",
            Field::Ttl => "TTL",
        })
    }
}

/// Why a timer or reminder was refused. The texts are daprd's own (the caller wraps them
/// in `ERR_ACTOR_TIMER_CREATE` / `ERR_ACTOR_REMINDER_CREATE` as daprd does), except the
/// last two, which daprd does not have (it overflows or spins instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("error parsing timer due time: unsupported time/duration format: {0}")]
    TimerDueTime(String),
    #[error("error parsing timer due time: repetitions are not allowed")]
    TimerDueRepetitions,
    #[error("invalid timer period: parse error: unsupported duration format: {0}")]
    TimerPeriod(String),
    #[error("invalid timer period: has zero repetitions")]
    TimerZeroRepetitions,
    #[error("error parsing timer TTL: unsupported time/duration format: {0}")]
    TimerTtl(String),
    #[error("error parsing timer TTL: repetitions are not allowed")]
    TimerTtlRepetitions,
    /// daprd also names the timer's key; the caller knows it, this module does not.
    #[error("timer has already expired: dueTime: {due} TTL: {ttl}")]
    TimerExpired { due: String, ttl: String },
    #[error("unsupported period format: {0}")]
    ReminderPeriod(String),
    #[error("job must have either a due time or a schedule")]
    ReminderNeverFires,
    #[error("job must have a schedule to have a ttl")]
    ReminderTtlWithoutPeriod,
    #[error("due time format not recognized")]
    ReminderDueTime,
    #[error("repeats not supported for due time")]
    ReminderDueRepeats,
    #[error("ttl format not recognized")]
    ReminderTtl,
    #[error("ttl must be greater than due time")]
    ReminderTtlBeforeDue,
    #[error("{kind} {field} is out of range: {value}")]
    OutOfRange {
        kind: Kind,
        field: Field,
        value: String,
    },
    #[error("{kind} period must not be negative: {value}")]
    NegativePeriod { kind: Kind, value: String },
}

/// A period: calendar part (added as Go's `AddDate` does, in the due time's UTC offset)
/// then an exact part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    years: i64,
    months: i64,
    days: i64,
    nanos: i64,
    /// The UTC offset calendar arithmetic happens in (an RFC 3339 due time's, else UTC).
    offset_secs: i64,
}

impl Period {
    fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.nanos == 0
    }

    /// `t` plus this period; `None` past what `SystemTime` holds.
    fn following(&self, t: SystemTime) -> Option<SystemTime> {
        let t = add_date(t, self.offset_secs, self.years, self.months, self.days)?;
        from_nanos(to_nanos(t).checked_add(i128::from(self.nanos))?)
    }
}

/// When a timer or reminder fires: the first due time, then every period (if any) until
/// the repetitions are used up or the next due time passes the expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    first: SystemTime,
    /// `None`: fires once.
    period: Option<Period>,
    /// `None`: no limit. Counts every fire, the first included.
    repetitions: Option<u64>,
    expiry: Option<SystemTime>,
    due_text: String,
    period_text: String,
    ttl_text: String,
}

impl Schedule {
    /// A timer's schedule, registered at `now`, with daprd's timer rules.
    pub fn timer(
        due: &str,
        period: &str,
        ttl: &str,
        now: SystemTime,
    ) -> Result<Self, ScheduleError> {
        let kind = Kind::Timer;
        // dueTime: an ISO 8601 duration, a Go duration or an RFC 3339 time, in that order.
        let (first, offset_secs) = if due.is_empty() {
            (now, 0)
        } else {
            match point_in_time(due, now, 0, Order::IsoFirst) {
                Ok(point) => point,
                Err(PointError::Repetitions) => return Err(ScheduleError::TimerDueRepetitions),
                Err(PointError::Unsupported) => {
                    return Err(ScheduleError::TimerDueTime(due.to_owned()));
                }
                Err(PointError::OutOfRange) => return Err(out_of_range(kind, Field::DueTime, due)),
            }
        };
        let (period_value, repetitions) = if period.is_empty() {
            (None, None)
        } else {
            let parsed = match parse_period(period) {
                Ok(parsed) => parsed,
                Err(IsoError::Unsupported) => {
                    return Err(ScheduleError::TimerPeriod(period.to_owned()));
                }
                Err(IsoError::OutOfRange) => return Err(out_of_range(kind, Field::Period, period)),
            };
            if parsed.repetitions == 0 {
                return Err(ScheduleError::TimerZeroRepetitions);
            }
            let value = Period {
                years: parsed.years,
                months: parsed.months,
                days: parsed.days,
                nanos: parsed.nanos,
                offset_secs,
            };
            // Negative repetitions are as good as none in daprd: no limit.
            (Some(value), u64::try_from(parsed.repetitions).ok())
        };
        let expiry = if ttl.is_empty() {
            None
        } else {
            // The ttl counts from the first due time.
            let (expiry, _) = match point_in_time(ttl, first, offset_secs, Order::IsoFirst) {
                Ok(point) => point,
                Err(PointError::Repetitions) => return Err(ScheduleError::TimerTtlRepetitions),
                Err(PointError::Unsupported) => {
                    return Err(ScheduleError::TimerTtl(ttl.to_owned()));
                }
                Err(PointError::OutOfRange) => return Err(out_of_range(kind, Field::Ttl, ttl)),
            };
            if now > expiry || first > expiry {
                return Err(ScheduleError::TimerExpired {
                    due: format_rfc3339_nano(first),
                    ttl: ttl.to_owned(),
                });
            }
            Some(expiry)
        };
        Self::build(
            kind,
            first,
            period_value,
            repetitions,
            expiry,
            (due, period, ttl),
        )
    }

    /// A reminder's schedule, registered at `now`, with the rules of daprd's Scheduler.
    pub fn reminder(
        due: &str,
        period: &str,
        ttl: &str,
        now: SystemTime,
    ) -> Result<Self, ScheduleError> {
        let kind = Kind::Reminder;
        let (period_value, repetitions) = if period.is_empty() {
            (None, None)
        } else {
            let parsed = match parse_period(period) {
                Ok(parsed) => parsed,
                Err(IsoError::Unsupported) => {
                    return Err(ScheduleError::ReminderPeriod(period.to_owned()));
                }
                Err(IsoError::OutOfRange) => return Err(out_of_range(kind, Field::Period, period)),
            };
            // The Scheduler runs `@every <duration>`: no calendar periods. (Negative
            // calendar parts slip through daprd's `> 0` check and are dropped; so here.)
            if parsed.years > 0 || parsed.months > 0 || parsed.days > 0 {
                return Err(ScheduleError::ReminderPeriod(period.to_owned()));
            }
            let value = Period {
                years: 0,
                months: 0,
                days: 0,
                nanos: parsed.nanos,
                offset_secs: 0,
            };
            // Only a positive count limits the fires; `R0/` and `R-1/` do not.
            let repetitions = u64::try_from(parsed.repetitions).ok().filter(|r| *r > 0);
            (Some(value), repetitions)
        };
        if due.is_empty() && period_value.is_none() {
            return Err(ScheduleError::ReminderNeverFires);
        }
        if period_value.is_none() && !ttl.is_empty() {
            return Err(ScheduleError::ReminderTtlWithoutPeriod);
        }
        let (due_time, offset_secs) = if due.is_empty() {
            (None, 0)
        } else {
            match point_in_time(due, now, 0, Order::Rfc3339First) {
                Ok((at, offset)) => (Some(at), offset),
                Err(PointError::Repetitions) => return Err(ScheduleError::ReminderDueRepeats),
                Err(PointError::Unsupported) => return Err(ScheduleError::ReminderDueTime),
                Err(PointError::OutOfRange) => return Err(out_of_range(kind, Field::DueTime, due)),
            }
        };
        let expiry = if ttl.is_empty() {
            None
        } else {
            // The ttl counts from the due time if there is one, else from registration.
            let from = due_time.unwrap_or(now);
            let (expiry, _) = match point_in_time(ttl, from, offset_secs, Order::Rfc3339First) {
                Ok(point) => point,
                Err(PointError::OutOfRange) => return Err(out_of_range(kind, Field::Ttl, ttl)),
                Err(_) => return Err(ScheduleError::ReminderTtl),
            };
            if due_time.is_some_and(|due| due > expiry) {
                return Err(ScheduleError::ReminderTtlBeforeDue);
            }
            Some(expiry)
        };
        // Without a due time the clock starts at registration and the first fire is one
        // period later (the Scheduler's `start`); with one, the first fire is the due time.
        let first = match (due_time, &period_value) {
            (Some(due), _) => due,
            (None, Some(period)) => period
                .following(now)
                .ok_or_else(|| out_of_range(kind, Field::Period, period_text(period)))?,
            (None, None) => return Err(ScheduleError::ReminderNeverFires),
        };
        Self::build(
            kind,
            first,
            period_value,
            repetitions,
            expiry,
            (due, period, ttl),
        )
    }

    fn build(
        kind: Kind,
        first: SystemTime,
        period: Option<Period>,
        repetitions: Option<u64>,
        expiry: Option<SystemTime>,
        (due_text, period_text, ttl_text): (&str, &str, &str),
    ) -> Result<Self, ScheduleError> {
        // A zero period does not repeat (daprd: timers fire once; reminders would fire
        // back to back forever, which is refused as "once" here too). A negative one
        // would fire back to back as well: refused.
        let period = match period {
            Some(period) if period.is_zero() => None,
            Some(period) => match period.following(first) {
                Some(next) if next > first => Some(period),
                Some(next) if next == first => None,
                Some(_) => {
                    return Err(ScheduleError::NegativePeriod {
                        kind,
                        value: period_text.to_owned(),
                    });
                }
                None => return Err(out_of_range(kind, Field::Period, period_text)),
            },
            None => None,
        };
        Ok(Self {
            kind,
            first,
            period,
            repetitions,
            expiry,
            due_text: due_text.to_owned(),
            period_text: period_text.to_owned(),
            ttl_text: ttl_text.to_owned(),
        })
    }

    /// The first due time; `None` if it is already past the expiry (a timer whose ttl
    /// ends exactly at its due time, or a reminder without a due time whose ttl ends
    /// before its first period).
    pub fn first(&self) -> Option<SystemTime> {
        self.within_expiry(self.first)
    }

    /// The due time after `last_due`, once `fired_so_far` fires happened (the one at
    /// `last_due` included); `None` when the schedule is over: no period, repetitions
    /// used up, past the expiry, or beyond what `SystemTime` holds.
    pub fn next(&self, fired_so_far: u32, last_due: SystemTime) -> Option<SystemTime> {
        let period = self.period?;
        if self
            .repetitions
            .is_some_and(|limit| u64::from(fired_so_far) >= limit)
        {
            return None;
        }
        let next = period.following(last_due).filter(|next| *next > last_due)?;
        self.within_expiry(next)
    }

    fn within_expiry(&self, at: SystemTime) -> Option<SystemTime> {
        match (self.expiry, self.kind) {
            // A timer is active while its due time is strictly before its expiry.
            (Some(expiry), Kind::Timer) if at >= expiry => None,
            // The Scheduler stops only once the next tick is after the expiry.
            (Some(expiry), Kind::Reminder) if at > expiry => None,
            _ => Some(at),
        }
    }
}

/// What the actor API echoes back (reminder GET and list, timer callbacks); not every
/// accessor has a caller yet.
#[allow(dead_code, reason = "accessors for the actor API's answers")]
impl Schedule {
    /// Which rule set this schedule was parsed with.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The absolute expiry, if there is a ttl.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }

    /// The repetition limit (all fires, the first included); `None`: no limit.
    pub fn repetitions(&self) -> Option<u64> {
        self.repetitions
    }

    /// Whether it fires more than once (barring a ttl or a repetition count of 1).
    pub fn repeats(&self) -> bool {
        self.period.is_some()
    }

    /// `dueTime` exactly as given (daprd echoes it back in reminder GET and list).
    pub fn due_text(&self) -> &str {
        &self.due_text
    }

    /// `period` exactly as given (timers' callbacks echo it back).
    pub fn period_text(&self) -> &str {
        &self.period_text
    }

    /// `ttl` exactly as given.
    pub fn ttl_text(&self) -> &str {
        &self.ttl_text
    }

    /// The period as daprd's Scheduler stores it and reminder GET shows it: `@every 1m30s`
    /// (Go's duration text); `None` when it fires once.
    pub fn every_text(&self) -> Option<String> {
        let period = self.period?;
        Some(format!("@every {}", format_go_duration(period.nanos)))
    }
}

fn out_of_range(kind: Kind, field: Field, value: impl Into<String>) -> ScheduleError {
    ScheduleError::OutOfRange {
        kind,
        field,
        value: value.into(),
    }
}

/// A period's text for an error when the original is not at hand.
fn period_text(period: &Period) -> String {
    format_go_duration(period.nanos)
}

// ---------------------------------------------------------------------------------------
// Parsing

/// A duration as dapr/kit's `ParseISO8601Duration` reads it, or a Go duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    years: i64,
    months: i64,
    days: i64,
    nanos: i64,
    /// `-1`: none given (no limit).
    repetitions: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsoError {
    Unsupported,
    /// Well-formed, but a number overflows (daprd would wrap around silently).
    OutOfRange,
}

/// dapr/kit's `ParseDuration`: ISO 8601 first, then a Go duration.
fn parse_period(text: &str) -> Result<Parsed, IsoError> {
    match parse_iso8601(text) {
        Ok(parsed) => Ok(parsed),
        Err(IsoError::OutOfRange) => Err(IsoError::OutOfRange),
        Err(IsoError::Unsupported) => parse_go_duration(text)
            .map(|nanos| Parsed {
                years: 0,
                months: 0,
                days: 0,
                nanos,
                repetitions: -1,
            })
            .ok_or(IsoError::Unsupported),
    }
}

/// dapr/kit's `ParseISO8601Duration`, byte for byte: `R<n>/` optional (then the rest may
/// be empty), `P`, date designators `Y` `M` `W` `D`, `T`, time designators `H` `M` `S`,
/// integers only (signs allowed), any order, other bytes skipped. `Y` and date `M`
/// replace earlier values; the others add up.
fn parse_iso8601(text: &str) -> Result<Parsed, IsoError> {
    use IsoError::{OutOfRange, Unsupported};
    let bytes = text.as_bytes();
    let mut parsed = Parsed {
        years: 0,
        months: 0,
        days: 0,
        nanos: 0,
        repetitions: -1,
    };
    if bytes.len() < 2 {
        return Err(Unsupported);
    }
    let mut i = 0;
    if bytes[0] == b'R' {
        while i + 1 < bytes.len() && bytes[i + 1] != b'/' {
            i += 1;
        }
        i += 1;
        if i < 2 {
            return Err(Unsupported);
        }
        parsed.repetitions = go_atoi(&text[1..i])?;
        i += 1;
        if i >= bytes.len() {
            return Ok(parsed);
        }
    }
    if bytes[i] != b'P' {
        return Err(Unsupported);
    }
    i += 1;
    let mut start = i;
    let mut in_time = false;
    let add_nanos = |total: i64, n: i64, unit: i64| -> Result<i64, IsoError> {
        n.checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or(OutOfRange)
    };
    while i < bytes.len() {
        let designator = bytes[i];
        if designator == b'T' {
            if start != i {
                return Err(Unsupported);
            }
            in_time = true;
            start = i + 1;
        } else if matches!(designator, b'Y' | b'W' | b'D' | b'H' | b'S' | b'M') {
            let date_only = matches!(designator, b'Y' | b'W' | b'D');
            let time_only = matches!(designator, b'H' | b'S');
            if start == i || (date_only && in_time) || (time_only && !in_time) {
                return Err(Unsupported);
            }
            let n = go_atoi(&text[start..i])?;
            match (designator, in_time) {
                (b'Y', _) => parsed.years = n,
                (b'W', _) => {
                    parsed.days = n
                        .checked_mul(7)
                        .and_then(|n| parsed.days.checked_add(n))
                        .ok_or(OutOfRange)?;
                }
                (b'D', _) => parsed.days = parsed.days.checked_add(n).ok_or(OutOfRange)?,
                (b'H', _) => parsed.nanos = add_nanos(parsed.nanos, n, 3_600_000_000_000)?,
                (b'S', _) => parsed.nanos = add_nanos(parsed.nanos, n, 1_000_000_000)?,
                (_, true) => parsed.nanos = add_nanos(parsed.nanos, n, 60_000_000_000)?,
                (_, false) => parsed.months = n,
            }
            start = i + 1;
        }
        i += 1;
    }
    Ok(parsed)
}

/// Go's `strconv.Atoi`: optional sign, ASCII digits, fits in 64 bits. Out of range is
/// "unsupported" in dapr/kit, as any other Atoi error.
fn go_atoi(text: &str) -> Result<i64, IsoError> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IsoError::Unsupported);
    }
    text.parse::<i64>().map_err(|_| IsoError::Unsupported)
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+` with units
/// `ns us µs μs ms s m h`, or a bare `0`; `None` where Go errs (overflow included).
fn parse_go_duration(text: &str) -> Option<i64> {
    const LIMIT: u64 = 1 << 63;
    let mut rest = text.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), tail)) = rest.split_first() {
        negative = sign == b'-';
        rest = tail;
    }
    if rest == b"0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !(rest[0] == b'.' || rest[0].is_ascii_digit()) {
            return None;
        }
        // The integer part; overflow is an error.
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut value: u64 = 0;
        for &digit in &rest[..int_len] {
            if value > LIMIT / 10 {
                return None;
            }
            value = value * 10 + u64::from(digit - b'0');
            if value > LIMIT {
                return None;
            }
        }
        let had_int = int_len > 0;
        rest = &rest[int_len..];
        // The fraction: digits past what 63 bits hold are dropped, as Go drops them.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut had_fraction = false;
        if let Some((b'.', tail)) = rest.split_first() {
            rest = tail;
            let frac_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &digit in &rest[..frac_len] {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            had_fraction = frac_len > 0;
            rest = &rest[frac_len..];
        }
        if !had_int && !had_fraction {
            return None;
        }
        let unit_len = rest
            .iter()
            .take_while(|b| !(**b == b'.' || b.is_ascii_digit()))
            .count();
        let unit: u64 = match &rest[..unit_len] {
            b"ns" => 1,
            // "us", "µs" (micro sign) and "μs" (Greek mu), as UTF-8.
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        if value > LIMIT / unit {
            return None;
        }
        value *= unit;
        if fraction > 0 {
            // Go converts through float64 here, truncating.
            let extra = (fraction as f64 * (unit as f64 / scale)) as u64;
            value = value.checked_add(extra).filter(|v| *v <= LIMIT)?;
        }
        total = total.checked_add(value).filter(|t| *t <= LIMIT)?;
    }
    if negative {
        // -(1 << 63) is i64::MIN, which Go accepts.
        Some((-(i128::from(total))) as i64)
    } else {
        i64::try_from(total).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// dapr/kit's `ParseTime` (timers): ISO 8601, Go duration, RFC 3339.
    IsoFirst,
    /// go-etcd-cron's `parsePointInTime` (reminders): RFC 3339, Go duration, ISO 8601.
    Rfc3339First,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointError {
    Unsupported,
    /// An ISO 8601 duration with a repetition count.
    Repetitions,
    OutOfRange,
}

/// A point in time: an RFC 3339 time (with its UTC offset), or `from` plus a duration
/// (calendar parts added in `offset_secs`, which is then also the result's offset).
fn point_in_time(
    text: &str,
    from: SystemTime,
    offset_secs: i64,
    order: Order,
) -> Result<(SystemTime, i64), PointError> {
    let iso = || -> Option<Result<(SystemTime, i64), PointError>> {
        let parsed = match parse_iso8601(text) {
            Ok(parsed) => parsed,
            Err(IsoError::OutOfRange) => return Some(Err(PointError::OutOfRange)),
            Err(IsoError::Unsupported) => return None,
        };
        // dapr/kit refuses any count but "none" (-1, also written `R-1/`); go-etcd-cron
        // refuses positive counts only.
        let refused = match order {
            Order::IsoFirst => parsed.repetitions != -1,
            Order::Rfc3339First => parsed.repetitions > 0,
        };
        if refused {
            return Some(Err(PointError::Repetitions));
        }
        Some(
            add_date(from, offset_secs, parsed.years, parsed.months, parsed.days)
                .and_then(|t| from_nanos(to_nanos(t).checked_add(i128::from(parsed.nanos))?))
                .map(|t| (t, offset_secs))
                .ok_or(PointError::OutOfRange),
        )
    };
    let go = || -> Option<Result<(SystemTime, i64), PointError>> {
        let nanos = parse_go_duration(text)?;
        Some(
            to_nanos(from)
                .checked_add(i128::from(nanos))
                .and_then(from_nanos)
                .map(|t| (t, offset_secs))
                .ok_or(PointError::OutOfRange),
        )
    };
    let rfc = || parse_rfc3339(text).map(Ok);
    let found = match order {
        Order::IsoFirst => iso().or_else(go).or_else(rfc),
        Order::Rfc3339First => rfc().or_else(go).or_else(iso),
    };
    found.unwrap_or(Err(PointError::Unsupported))
}

/// An RFC 3339 time as Go's `time.Parse(time.RFC3339Nano, …)` takes it (upper-case `T`
/// and `Z`, fraction optional), with its UTC offset in seconds.
fn parse_rfc3339(text: &str) -> Option<(SystemTime, i64)> {
    use time::format_description::well_known::Rfc3339;
    // Go's layout matches `T` and `Z` literally; the time crate would also take `t`/`z`.
    if text.as_bytes().get(10) != Some(&b'T') || text.ends_with('z') {
        return None;
    }
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let at = from_nanos(parsed.unix_timestamp_nanos())?;
    Some((at, i64::from(parsed.offset().whole_seconds())))
}

// ---------------------------------------------------------------------------------------
// Time arithmetic (checked everywhere: huge inputs give `None`, never a panic)

fn to_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    }
}

fn from_nanos(nanos: i128) -> Option<SystemTime> {
    let secs = u64::try_from(nanos.unsigned_abs() / NANOS_PER_SEC.unsigned_abs()).ok()?;
    let sub = u32::try_from(nanos.unsigned_abs() % NANOS_PER_SEC.unsigned_abs()).ok()?;
    let span = Duration::new(secs, sub);
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(span)
    } else {
        UNIX_EPOCH.checked_sub(span)
    }
}

/// Go's `t.AddDate(years, months, days)` in a fixed UTC offset: the civil date moves,
/// the wall clock stays, and overflowing days roll over (31 January + 1 month =
/// 3 March, or 2 March in a leap year).
fn add_date(
    t: SystemTime,
    offset_secs: i64,
    years: i64,
    months: i64,
    days: i64,
) -> Option<SystemTime> {
    if years == 0 && months == 0 && days == 0 {
        return Some(t);
    }
    let nanos = to_nanos(t);
    let local = nanos.checked_add(i128::from(offset_secs) * NANOS_PER_SEC)?;
    let day_nanos = SECS_PER_DAY * NANOS_PER_SEC;
    let day = local.div_euclid(day_nanos);
    let within_day = local.rem_euclid(day_nanos);
    let (year, month, mday) = civil_from_days(day);
    let month_index = i128::from(month - 1).checked_add(i128::from(months))?;
    let year = year
        .checked_add(i128::from(years))?
        .checked_add(month_index.div_euclid(12))?;
    let month = u32::try_from(month_index.rem_euclid(12) + 1).ok()?;
    let day = days_from_civil(year, month, 1)?
        .checked_add(i128::from(mday) - 1)?
        .checked_add(i128::from(days))?;
    let local = day.checked_mul(day_nanos)?.checked_add(within_day)?;
    from_nanos(local.checked_sub(i128::from(offset_secs) * NANOS_PER_SEC)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i128, month: u32, day: u32) -> Option<i128> {
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i128::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i128::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era.checked_mul(146_097)?
        .checked_add(day_of_era)?
        .checked_sub(719_468)
}

/// The civil date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

// ---------------------------------------------------------------------------------------
// Formatting

/// Go's `time.Duration.String()`: `1h30m0s`, `1.5s`, `500ms`, `0s`.
pub fn format_go_duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut n = nanos.unsigned_abs();
    let sign = if negative { "-" } else { "" };
    if n == 0 {
        return "0s".to_owned();
    }
    if n < 1_000_000_000 {
        // Below a second: the largest of ns, µs, ms that keeps an integer part.
        let (unit, scale) = match n {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", fixed(n, scale));
    }
    let hours = n / 3_600_000_000_000;
    n %= 3_600_000_000_000;
    let minutes = n / 60_000_000_000;
    n %= 60_000_000_000;
    let seconds = fixed(n, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn fixed(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `Format(time.RFC3339Nano)` in UTC: `2026-12-03T10:00:00.5Z` (trailing zeros of
/// the fraction dropped; years past 9999 written out in full).
pub fn format_rfc3339_nano(t: SystemTime) -> String {
    let nanos = to_nanos(t);
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let fraction = nanos.rem_euclid(NANOS_PER_SEC);
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let in_day = secs.rem_euclid(SECS_PER_DAY);
    let (hour, minute, second) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    let fraction = if fraction == 0 {
        String::new()
    } else {
        let digits = format!("{fraction:09}");
        format!(".{}", digits.trim_end_matches('0'))
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T10:00:00Z.
    fn now() -> SystemTime {
        at("2026-12-03T10:00:00Z")
    }

    fn at(text: &str) -> SystemTime {
        parse_rfc3339(text).expect("test time").0
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn timer(due: &str, period: &str, ttl: &str) -> Result<Schedule, ScheduleError> {
        Schedule::timer(due, period, ttl, now())
    }

    fn reminder(due: &str, period: &str, ttl: &str) -> Result<Schedule, ScheduleError> {
        Schedule::reminder(due, period, ttl, now())
    }

    /// Every due time, up to `limit`.
    fn fires(schedule: &Schedule, limit: usize) -> Vec<SystemTime> {
        let mut out = Vec::new();
        let mut next = schedule.first();
        while let Some(due) = next {
            out.push(due);
            if out.len() >= limit {
                break;
            }
            let fired = u32::try_from(out.len()).expect("small");
            next = schedule.next(fired, due);
        }
        out
    }

    // --- Go durations

    #[test]
    fn go_durations_parse_as_go_does() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("0s", 0),
            ("1h", 3_600_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("3µs", 3_000),
            ("3μs", 3_000),
            ("-2h", -7_200_000_000_000),
            ("+5s", 5_000_000_000),
            ("1s1s", 2_000_000_000),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_go_duration(text), Some(*nanos), "{text}");
        }
        for text in [
            "",
            "1",
            "s",
            ".s",
            "1x",
            "1 s",
            "1S",
            "-",
            "+",
            "99999999999999h",
            "2562047h47m16.854775808s",
            "1.5",
            "PT1S",
        ] {
            assert_eq!(parse_go_duration(text), None, "{text}");
        }
    }

    #[test]
    fn go_durations_format_as_go_does() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (10_000_000_000, "10s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (93_784_000_000_000, "26h3m4s"),
            (-1_000_000_000, "-1s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_go_duration(*nanos), *text, "{nanos}");
            // And Go's text reads back.
            assert_eq!(parse_go_duration(text), Some(*nanos), "{text}");
        }
        assert_eq!(format_go_duration(i64::MIN), "-2562047h47m16.854775808s");
    }

    // --- ISO 8601 as dapr/kit reads it

    #[test]
    fn iso8601_durations_parse_as_dapr_kit_does() {
        let p = |y, mo, d, nanos: i64, r| Parsed {
            years: y,
            months: mo,
            days: d,
            nanos,
            repetitions: r,
        };
        let s = 1_000_000_000;
        let cases = [
            ("PT10S", p(0, 0, 0, 10 * s, -1)),
            ("P1DT2H", p(0, 0, 1, 7_200 * s, -1)),
            ("P2W", p(0, 0, 14, 0, -1)),
            (
                "P1Y2M3W4DT5H6M7S",
                p(1, 2, 25, (5 * 3_600 + 6 * 60 + 7) * s, -1),
            ),
            ("R5/PT10S", p(0, 0, 0, 10 * s, 5)),
            ("R-1/PT1S", p(0, 0, 0, s, -1)),
            ("R0/PT1S", p(0, 0, 0, s, 0)),
            // A count alone parses, with no period at all.
            ("R5", p(0, 0, 0, 0, 5)),
            ("R5/", p(0, 0, 0, 0, 5)),
            // Quirks kept: any order, later Y/M replace, D/W/time add, unknown bytes skipped.
            ("PT10S5H", p(0, 0, 0, 5 * 3_600 * s + 10 * s, -1)),
            ("P1Y2Y", p(2, 0, 0, 0, -1)),
            ("P1D1D", p(0, 0, 2, 0, -1)),
            ("PT", p(0, 0, 0, 0, -1)),
            ("PT10", p(0, 0, 0, 0, -1)),
            ("P5X", p(0, 0, 0, 0, -1)),
            ("PT-10S", p(0, 0, 0, -10 * s, -1)),
            ("R99999999999/PT1S", p(0, 0, 0, s, 99_999_999_999)),
        ];
        for (text, parsed) in cases {
            assert_eq!(parse_iso8601(text), Ok(parsed), "{text}");
        }
        for text in [
            "", "P", "R", "R/PT10S", "Rx/PT1S", "PT1.5S", "P1S", "PT1D", "P1H", "P1T", "PTS",
            "pt10s", "10s", "R5/10s", "PT1,5S",
        ] {
            assert_eq!(parse_iso8601(text), Err(IsoError::Unsupported), "{text}");
        }
        for text in [
            "PT99999999999999H",
            "P9223372036854775807W",
            "PT9223372036854775807S",
        ] {
            assert_eq!(parse_iso8601(text), Err(IsoError::OutOfRange), "{text}");
        }
        // Beyond 64 bits Atoi fails: unsupported, as in daprd.
        assert_eq!(
            parse_iso8601("R99999999999999999999/PT1S"),
            Err(IsoError::Unsupported)
        );
    }

    #[test]
    fn periods_fall_back_to_go_durations() {
        assert_eq!(parse_period("1m30s").map(|p| p.nanos), Ok(90_000_000_000));
        assert_eq!(parse_period("1m30s").map(|p| p.repetitions), Ok(-1));
        assert_eq!(parse_period("bogus"), Err(IsoError::Unsupported));
    }

    // --- RFC 3339

    #[test]
    fn rfc3339_times_parse_as_go_does() {
        let utc = at("2026-12-03T10:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-12-03T12:00:00+02:00"),
            Some((utc, 7_200))
        );
        assert_eq!(
            parse_rfc3339("2026-12-03T10:00:00.25Z").map(|(t, _)| t),
            utc.checked_add(Duration::from_millis(250))
        );
        for text in [
            "2026-12-03t10:00:00Z",
            "2026-12-03T10:00:00z",
            "2026-12-03 10:00:00Z",
            "2026-12-03T10:00:00",
            "99999-01-01T00:00:00Z",
            "2026-13-03T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339_nano(now()), "2026-12-03T10:00:00Z");
        let later = now() + Duration::from_millis(1_500);
        assert_eq!(format_rfc3339_nano(later), "2026-12-03T10:00:01.5Z");
        assert_eq!(format_rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn calendar_arithmetic_is_go_add_date() {
        let add = |t: &str, y, m, d| add_date(at(t), 0, y, m, d).map(format_rfc3339_nano);
        assert_eq!(
            add("2026-01-31T08:00:00Z", 0, 1, 0).as_deref(),
            Some("2026-03-03T08:00:00Z")
        );
        assert_eq!(
            add("2028-01-31T08:00:00Z", 0, 1, 0).as_deref(),
            Some("2028-03-02T08:00:00Z")
        );
        assert_eq!(
            add("2026-12-03T10:00:00Z", 1, 0, 0).as_deref(),
            Some("2027-12-03T10:00:00Z")
        );
        assert_eq!(
            add("2026-12-03T10:00:00Z", 0, 1, 0).as_deref(),
            Some("2027-01-03T10:00:00Z")
        );
        assert_eq!(
            add("2026-03-01T00:00:00Z", 0, -1, 0).as_deref(),
            Some("2026-02-01T00:00:00Z")
        );
        assert_eq!(
            add("2026-12-31T23:59:59Z", 0, 0, 1).as_deref(),
            Some("2027-01-01T23:59:59Z")
        );
        assert_eq!(
            add("2024-02-29T00:00:00Z", 1, 0, 0).as_deref(),
            Some("2025-03-01T00:00:00Z")
        );
        assert_eq!(
            add("2026-12-03T10:00:00Z", 97_973, 0, 0).as_deref(),
            Some("99999-12-03T10:00:00Z")
        );
        // In a UTC offset the local date moves: 23:30 on 31 January at -01:00 is 1 February
        // in UTC, yet one month later is 3 March locally, as Go computes it.
        let local = add_date(at("2026-01-31T23:30:00-01:00"), -3_600, 0, 1, 0);
        assert_eq!(local, Some(at("2026-03-03T23:30:00-01:00")));
        // Huge: None, never a panic.
        assert_eq!(add("2026-12-03T10:00:00Z", i64::MAX, 0, 0), None);
        assert_eq!(add("2026-12-03T10:00:00Z", 0, i64::MAX, 0), None);
        assert_eq!(add("2026-12-03T10:00:00Z", 0, 0, i64::MAX), None);
        assert_eq!(
            add("2026-12-03T10:00:00Z", i64::MIN, i64::MIN, i64::MIN),
            None
        );
    }

    #[test]
    fn civil_round_trip() {
        for day in [
            -1_000_000i128,
            -1,
            0,
            59,
            60,
            365,
            10_957,
            20_000,
            3_000_000,
        ] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), Some(day), "{day}");
        }
    }

    // --- timers

    #[test]
    fn timer_due_time_forms() {
        let cases: &[(&str, SystemTime)] = &[
            ("", now()),
            ("0s", now()),
            ("1m30s", now() + secs(90)),
            ("500ms", now() + Duration::from_millis(500)),
            ("1.5s", now() + Duration::from_millis(1_500)),
            ("1h", now() + secs(3_600)),
            ("PT10S", now() + secs(10)),
            ("P1DT2H", now() + secs(26 * 3_600)),
            ("P1W", now() + secs(7 * 86_400)),
            ("P1M", at("2027-01-03T10:00:00Z")),
            ("P1Y", at("2027-12-03T10:00:00Z")),
            ("R-1/PT5S", now() + secs(5)),
            ("2026-12-03T11:00:00Z", at("2026-12-03T11:00:00Z")),
            ("2026-12-03T13:00:00+02:00", at("2026-12-03T11:00:00Z")),
            // In the past: fires at once.
            ("-5s", now() - secs(5)),
            ("2020-01-01T00:00:00Z", at("2020-01-01T00:00:00Z")),
        ];
        for (due, first) in cases {
            let schedule = timer(due, "", "").expect(due);
            assert_eq!(schedule.first(), Some(*first), "{due}");
            assert_eq!(schedule.next(1, *first), None, "{due}: fires once");
            assert_eq!(schedule.due_text(), *due);
        }
    }

    #[test]
    fn timer_errors_are_daprds() {
        let message = |due: &str, period: &str, ttl: &str| {
            timer(due, period, ttl).expect_err("refused").to_string()
        };
        assert_eq!(
            message("soon", "", ""),
            "error parsing timer due time: unsupported time/duration format: soon"
        );
        assert_eq!(
            message("R5/PT1S", "", ""),
            "error parsing timer due time: repetitions are not allowed"
        );
        assert_eq!(
            message("", "every", ""),
            "invalid timer period: parse error: unsupported duration format: every"
        );
        assert_eq!(
            message("", "R/PT10S", ""),
            "invalid timer period: parse error: unsupported duration format: R/PT10S"
        );
        assert_eq!(
            message("", "R0/PT1S", ""),
            "invalid timer period: has zero repetitions"
        );
        assert_eq!(
            message("", "1s", "forever"),
            "error parsing timer TTL: unsupported time/duration format: forever"
        );
        assert_eq!(
            message("", "1s", "R2/PT1S"),
            "error parsing timer TTL: repetitions are not allowed"
        );
        assert_eq!(
            message("", "1s", "-1s"),
            "timer has already expired: dueTime: 2026-12-03T10:00:00Z TTL: -1s"
        );
        assert_eq!(
            message("1h", "1s", "2026-12-03T10:30:00Z"),
            "timer has already expired: dueTime: 2026-12-03T11:00:00Z TTL: 2026-12-03T10:30:00Z"
        );
        assert_eq!(
            message("", "-1s", ""),
            "timer period must not be negative: -1s"
        );
        assert_eq!(
            message("99999999999999h", "", ""),
            "error parsing timer due time: unsupported time/duration format: 99999999999999h"
        );
        assert_eq!(
            message("PT99999999999999H", "", ""),
            "timer due time is out of range: PT99999999999999H"
        );
        assert_eq!(
            message("", "P9223372036854775807Y", ""),
            "timer period is out of range: P9223372036854775807Y"
        );
        assert_eq!(
            message("", "1s", "PT99999999999999H"),
            "timer TTL is out of range: PT99999999999999H"
        );
    }

    #[test]
    fn timer_period_repeats_and_ends() {
        let every = timer("", "1s", "").expect("valid");
        assert_eq!(every.first(), Some(now()));
        assert_eq!(every.next(1, now()), Some(now() + secs(1)));
        assert_eq!(
            every.next(u32::MAX, now()),
            Some(now() + secs(1)),
            "no limit"
        );
        assert_eq!(every.repetitions(), None);
        assert!(every.repeats());

        // R3: three fires in all, the first included.
        let three = timer("2s", "R3/PT1S", "").expect("valid");
        assert_eq!(
            fires(&three, 10),
            vec![now() + secs(2), now() + secs(3), now() + secs(4)]
        );
        // Negative counts are no limit, as in daprd.
        assert_eq!(
            fires(&timer("", "R-2/PT1S", "").expect("valid"), 10).len(),
            10
        );
        // A huge count is just a big limit.
        let huge = timer("", "R99999999999/PT1S", "").expect("valid");
        assert_eq!(huge.repetitions(), Some(99_999_999_999));
        assert_eq!(huge.next(u32::MAX, now()), Some(now() + secs(1)));

        // A zero period fires once, as daprd's timers do; so does a count alone.
        for period in ["0s", "PT0S", "R5", "R5/", "PT", "P0D"] {
            let once = timer("", period, "").expect(period);
            assert_eq!(fires(&once, 10), vec![now()], "{period}");
            assert!(!once.repeats());
        }

        // The ttl counts from the due time; a tick exactly at the expiry does not fire.
        let ttl = timer("10s", "1s", "3s").expect("valid");
        assert_eq!(ttl.expiry(), Some(now() + secs(13)));
        assert_eq!(
            fires(&ttl, 10),
            vec![now() + secs(10), now() + secs(11), now() + secs(12)]
        );
        // A ttl ending at the due time is accepted, but never fires.
        let never = timer("10s", "1s", "0s").expect("accepted, as in daprd");
        assert_eq!(never.first(), None);
        // An absolute ttl.
        let until = timer("", "PT1H", "2026-12-03T12:30:00Z").expect("valid");
        assert_eq!(fires(&until, 10).len(), 3);
    }

    #[test]
    fn timer_calendar_periods() {
        let monthly = timer("2026-01-31T08:00:00Z", "P1M", "").expect("valid");
        // Each step from the last due time, as daprd's GetFollowing does.
        assert_eq!(
            fires(&monthly, 3),
            vec![
                at("2026-01-31T08:00:00Z"),
                at("2026-03-03T08:00:00Z"),
                at("2026-04-03T08:00:00Z"),
            ]
        );
        let yearly = timer("", "P1Y", "").expect("valid");
        assert_eq!(yearly.next(1, now()), Some(at("2027-12-03T10:00:00Z")));
        let weekly = timer("", "P1WT1H", "").expect("valid");
        assert_eq!(
            weekly.next(1, now()),
            Some(now() + secs(7 * 86_400 + 3_600))
        );
        // Big but representable: year 99999 and beyond fire, far away.
        let far = timer("", "P97973Y", "").expect("valid");
        let next = far.next(1, now()).map(format_rfc3339_nano);
        assert_eq!(next.as_deref(), Some("99999-12-03T10:00:00Z"));
    }

    #[test]
    fn huge_inputs_never_panic() {
        let texts = [
            "99999999999999h",
            "PT99999999999999H",
            "P99999999999Y",
            "P9223372036854775807Y",
            "P-9223372036854775808M",
            "P9223372036854775807D",
            "R99999999999/PT1S",
            "R9223372036854775807/P9223372036854775807Y",
            "2562047h47m16.854775807s",
            "-2562047h47m16.854775808s",
            "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z",
        ];
        for a in texts {
            for b in texts {
                for c in ["", a, b] {
                    for schedule in [
                        Schedule::timer(a, b, c, now()),
                        Schedule::reminder(a, b, c, now()),
                        Schedule::timer("", a, c, now()),
                        Schedule::reminder("", b, "", now()),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        let _ = fires(&schedule, 3);
                        let _ = schedule.next(u32::MAX, UNIX_EPOCH);
                        let _ = schedule.every_text();
                    }
                }
            }
        }
        // The far future is the end of the schedule, not a wrap-around.
        let far = timer("", "P99999999999Y", "").expect("representable");
        let next = far.next(1, now()).expect("year ~1e11 fits");
        assert_eq!(far.next(2, next).and_then(|n| far.next(3, n)), None);
    }

    // --- reminders

    #[test]
    fn reminder_due_time_and_first_fire() {
        // With a due time the first fire is the due time.
        let due = reminder("5s", "10s", "").expect("valid");
        assert_eq!(due.first(), Some(now() + secs(5)));
        assert_eq!(due.next(1, now() + secs(5)), Some(now() + secs(15)));
        // Without one, the first fire is a period after registration.
        let no_due = reminder("", "10s", "").expect("valid");
        assert_eq!(no_due.first(), Some(now() + secs(10)));
        // Once, at the due time.
        let once = reminder("2026-12-03T11:00:00+01:00", "", "").expect("valid");
        assert_eq!(fires(&once, 10), vec![now()]);
        // ISO due times, and counts that are not positive are let through.
        assert_eq!(
            reminder("PT1M", "", "").expect("valid").first(),
            Some(now() + secs(60))
        );
        assert_eq!(
            reminder("R0/PT1M", "", "").expect("valid").first(),
            Some(now() + secs(60))
        );
        // Calendar due times are fine (only periods are limited).
        assert_eq!(
            reminder("P1M", "", "").expect("valid").first(),
            Some(at("2027-01-03T10:00:00Z"))
        );
    }

    #[test]
    fn reminder_errors_are_the_schedulers() {
        let message = |due: &str, period: &str, ttl: &str| {
            reminder(due, period, ttl).expect_err("refused").to_string()
        };
        assert_eq!(
            message("", "", ""),
            "job must have either a due time or a schedule"
        );
        assert_eq!(
            message("1s", "", "1h"),
            "job must have a schedule to have a ttl"
        );
        assert_eq!(message("soon", "", ""), "due time format not recognized");
        assert_eq!(
            message("R2/PT1S", "", ""),
            "repeats not supported for due time"
        );
        assert_eq!(message("", "1s", "forever"), "ttl format not recognized");
        assert_eq!(message("", "1s", "R2/PT1S"), "ttl format not recognized");
        assert_eq!(
            message("2026-12-03T11:00:00Z", "1s", "2026-12-03T10:30:00Z"),
            "ttl must be greater than due time"
        );
        assert_eq!(message("", "every", ""), "unsupported period format: every");
        assert_eq!(
            message("", "R/PT10S", ""),
            "unsupported period format: R/PT10S"
        );
        for calendar in ["P1D", "P1W", "P1M", "P1Y", "R3/P1DT1H"] {
            assert_eq!(
                message("", calendar, ""),
                format!("unsupported period format: {calendar}")
            );
        }
        assert_eq!(
            message("", "-1s", ""),
            "reminder period must not be negative: -1s"
        );
        assert_eq!(
            message("", "PT99999999999999H", ""),
            "reminder period is out of range: PT99999999999999H"
        );
    }

    #[test]
    fn reminder_repetitions_and_expiry() {
        let three = reminder("", "R3/PT1S", "").expect("valid");
        assert_eq!(three.repetitions(), Some(3));
        assert_eq!(
            fires(&three, 10),
            vec![now() + secs(1), now() + secs(2), now() + secs(3)]
        );
        // R0 and negative counts: no limit (daprd only passes positive counts on).
        for period in ["R0/PT1S", "R-1/PT1S"] {
            let unlimited = reminder("", period, "").expect(period);
            assert_eq!(unlimited.repetitions(), None, "{period}");
            assert_eq!(fires(&unlimited, 20).len(), 20, "{period}");
        }
        // A tick exactly at the expiry still fires; the ttl counts from the due time.
        let ttl = reminder("10s", "1s", "2s").expect("valid");
        assert_eq!(
            fires(&ttl, 10),
            vec![now() + secs(10), now() + secs(11), now() + secs(12)]
        );
        // Without a due time the ttl counts from registration, and also bounds the first fire.
        let short = reminder("", "10s", "5s").expect("accepted, as by the Scheduler");
        assert_eq!(short.first(), None);
        // A ttl equal to the due time is accepted and fires once.
        let same = reminder("10s", "1s", "0s").expect("valid");
        assert_eq!(fires(&same, 10), vec![now() + secs(10)]);
        // Negative calendar parts are dropped, as daprd drops them.
        let dropped = reminder("", "P-1DT10S", "").expect("valid");
        assert_eq!(dropped.first(), Some(now() + secs(10)));
    }

    #[test]
    fn reminder_texts() {
        let schedule = reminder("PT5S", "R5/PT1M30S", "2026-12-04T00:00:00Z").expect("valid");
        assert_eq!(schedule.due_text(), "PT5S");
        assert_eq!(schedule.period_text(), "R5/PT1M30S");
        assert_eq!(schedule.ttl_text(), "2026-12-04T00:00:00Z");
        assert_eq!(schedule.every_text().as_deref(), Some("@every 1m30s"));
        assert_eq!(schedule.kind(), Kind::Reminder);
        assert_eq!(reminder("1s", "", "").expect("valid").every_text(), None);
    }

    #[test]
    fn missed_periods_can_be_skipped_by_stepping() {
        // What a caller does after downtime: step until past "now" (no burst).
        let schedule = reminder("", "10s", "").expect("valid");
        let later = now() + secs(95);
        let mut fired = 1;
        let mut due = schedule.first().expect("fires");
        while due <= later {
            fired += 1;
            due = schedule.next(fired, due).expect("unlimited");
        }
        assert_eq!(due, now() + secs(100));
    }
}
