//! Cron expressions, evaluated in UTC.
//!
//! Five fields (`minute hour day-of-month month day-of-week`) as in crontab, or six with
//! seconds first (`second minute hour …`, for short test schedules). Each field takes
//! `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and lists of these separated
//! by commas. Day-of-week is 0–7 with 0 and 7 both Sunday. As in crontab, when both
//! day fields are restricted a day matching either one matches. `@hourly`, `@daily`
//! and `@weekly` are accepted too. Names (`MON`, `JAN`) are not.

use std::fmt;

use time::{Duration, OffsetDateTime, Time};

/// A parsed cron expression.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.source)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// What is wrong with a schedule expression, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "expected 5 fields (minute hour day month weekday) or 6 (with seconds first), found {0}"
    )]
    FieldCount(usize),
    #[error("{field}: step `{text}` is not a number")]
    Step { field: &'static str, text: String },
    #[error("{field}: a step of 0 never advances")]
    ZeroStep { field: &'static str },
    #[error("{field}: `{text}` is not a number")]
    NotANumber { field: &'static str, text: String },
    #[error("{field}: {value} is outside {min}-{max}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("{field}: range {low}-{high} runs backwards")]
    Backwards {
        field: &'static str,
        low: u32,
        high: u32,
    },
}

/// A bit set of the values `field` allows, within `min..=max`.
fn parse_field(field: &str, name: &'static str, min: u32, max: u32) -> Result<u64, ScheduleError> {
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| ScheduleError::Step {
                    field: name,
                    text: step.to_owned(),
                })?;
                if step == 0 {
                    return Err(ScheduleError::ZeroStep { field: name });
                }
                (range, step)
            }
            None => (part, 1),
        };
        let number = |text: &str| -> Result<u32, ScheduleError> {
            let value: u32 = text.parse().map_err(|_| ScheduleError::NotANumber {
                field: name,
                text: text.to_owned(),
            })?;
            if value < min || value > max {
                return Err(ScheduleError::OutOfRange {
                    field: name,
                    value,
                    min,
                    max,
                });
            }
            Ok(value)
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(ScheduleError::Backwards {
                    field: name,
                    low: a,
                    high: b,
                });
            }
            (a, b)
        } else {
            let a = number(range)?;
            // `5/15` means from 5 to the end, every 15.
            (a, if step > 1 { max } else { a })
        };
        let mut value = low;
        while value <= high {
            bits |= 1 << value;
            value += step;
        }
    }
    Ok(bits)
}

fn has(bits: u64, value: u8) -> bool {
    bits & (1 << value) != 0
}

/// The smallest value in `bits` above `after`, up to `max`: one jump instead of stepping
/// through every minute of an hourly schedule.
fn next_bit(bits: u64, after: u8, max: u8) -> Option<u8> {
    (after + 1..=max).find(|v| has(bits, *v))
}

impl Schedule {
    /// Parses `expression`; the error says which field is wrong and why.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let source = expression.trim().to_owned();
        let expanded = match source.as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(ScheduleError::FieldCount(n)),
        };
        let mut weekdays = parse_field(rest[4], "weekday", 0, 7)?;
        if has(weekdays, 7) {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Self {
            seconds: parse_field(second, "second", 0, 59)?,
            minutes: parse_field(rest[0], "minute", 0, 59)?,
            hours: parse_field(rest[1], "hour", 0, 23)?,
            days: parse_field(rest[2], "day of month", 1, 31)?,
            months: parse_field(rest[3], "month", 1, 12)?,
            weekdays,
            days_restricted: rest[2] != "*",
            weekdays_restricted: rest[4] != "*",
            source,
        })
    }

    fn day_matches(&self, at: OffsetDateTime) -> bool {
        let day = has(self.days, at.day());
        let weekday = has(self.weekdays, at.weekday().number_days_from_sunday());
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The first tick strictly after `after`; `None` if there is none within 5 years
    /// (`0 0 31 2 *` never fires).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut at = after.replace_nanosecond(0).ok()? + Duration::SECOND;
        let limit = after + Duration::days(5 * 366);
        while at <= limit {
            if !has(self.months, u8::from(at.month())) {
                // The first day of the next month.
                let (year, month) = match at.month().next() {
                    time::Month::January => (at.year() + 1, time::Month::January),
                    month => (at.year(), month),
                };
                at = time::Date::from_calendar_date(year, month, 1)
                    .ok()?
                    .with_time(Time::MIDNIGHT)
                    .assume_utc();
            } else if !self.day_matches(at) {
                at = (at.date() + Duration::DAY)
                    .with_time(Time::MIDNIGHT)
                    .assume_utc();
            } else if !has(self.hours, at.hour()) {
                at = match next_bit(self.hours, at.hour(), 23) {
                    Some(hour) => at.replace_time(Time::from_hms(hour, 0, 0).ok()?),
                    None => (at.date() + Duration::DAY)
                        .with_time(Time::MIDNIGHT)
                        .assume_utc(),
                };
            } else if !has(self.minutes, at.minute()) {
                let hour_start = at.replace_time(Time::from_hms(at.hour(), 0, 0).ok()?);
                at = match next_bit(self.minutes, at.minute(), 59) {
                    Some(minute) => hour_start + Duration::minutes(i64::from(minute)),
                    None => hour_start + Duration::HOUR,
                };
            } else if !has(self.seconds, at.second()) {
                let minute_start = at.replace_time(Time::from_hms(at.hour(), at.minute(), 0).ok()?);
                at = match next_bit(self.seconds, at.second(), 59) {
                    Some(second) => minute_start + Duration::seconds(i64::from(second)),
                    None => minute_start + Duration::MINUTE,
                };
            } else {
                return Some(at);
            }
        }
        None
    }

    /// The last tick at or before `at`, looking back at most `within`.
    pub fn last_at_or_before(
        &self,
        at: OffsetDateTime,
        within: Duration,
    ) -> Option<OffsetDateTime> {
        self.ticks(at - within - Duration::SECOND, at).last()
    }

    /// Every tick `t` with `after < t <= until`, oldest first.
    pub fn ticks(
        &self,
        after: OffsetDateTime,
        until: OffsetDateTime,
    ) -> impl Iterator<Item = OffsetDateTime> + '_ {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let next = self.next_after(cursor)?;
            if next > until {
                return None;
            }
            cursor = next;
            Some(next)
        })
    }

    /// A plain-English reading: "every 5 min", "hourly at :17", "daily at 03:30 UTC", or
    /// the expression itself when the ticks are not evenly spaced.
    pub fn describe(&self) -> String {
        // A week and a day from a Monday: weekday-only schedules show their weekend gap.
        let start = OffsetDateTime::UNIX_EPOCH + Duration::days(4);
        let ticks: Vec<OffsetDateTime> = self
            .ticks(start, start + Duration::days(8))
            .take(20_000)
            .collect();
        let gaps: Vec<Duration> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
        let even = !gaps.is_empty() && gaps.iter().all(|g| *g == gaps[0]);
        if !even {
            return self.source.clone();
        }
        let gap = gaps[0];
        let first = ticks[0];
        if gap == Duration::DAY {
            format!("daily at {:02}:{:02} UTC", first.hour(), first.minute())
        } else if gap == Duration::HOUR && first.second() == 0 {
            format!("hourly at :{:02}", first.minute())
        } else if gap.whole_seconds() % 3600 == 0 {
            format!("every {} h", gap.whole_hours())
        } else if gap.whole_seconds() % 60 == 0 {
            format!("every {} min", gap.whole_minutes())
        } else {
            format!("every {} s", gap.whole_seconds())
        }
    }

    /// How far apart ticks are at most, over two days (for grace defaults and charts).
    pub fn longest_gap(&self) -> Duration {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::days(4);
        let ticks: Vec<OffsetDateTime> = self
            .ticks(start, start + Duration::days(8))
            .take(20_000)
            .collect();
        ticks
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(Duration::days(7))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        Schedule::parse(expr).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn every_five_minutes_fires_on_the_fives() {
        assert_eq!(
            next("*/5 * * * *", datetime!(2026-11-23 10:02:13 UTC)),
            datetime!(2026-11-23 10:05 UTC)
        );
        // Strictly after: a tick exactly at `after` is not returned.
        assert_eq!(
            next("*/5 * * * *", datetime!(2026-11-23 10:05 UTC)),
            datetime!(2026-11-23 10:10 UTC)
        );
        let schedule = Schedule::parse("*/5 * * * *").unwrap();
        let day = schedule
            .ticks(
                datetime!(2026-11-22 12:00 UTC),
                datetime!(2026-11-23 12:00 UTC),
            )
            .count();
        assert_eq!(day, 288);
    }

    #[test]
    fn hours_days_and_months_roll_over() {
        assert_eq!(
            next("30 3 * * *", datetime!(2026-12-31 04:00 UTC)),
            datetime!(2027-01-01 03:30 UTC)
        );
        assert_eq!(
            next("0 0 1 3 *", datetime!(2026-11-23 00:00 UTC)),
            datetime!(2027-03-01 00:00 UTC)
        );
        assert_eq!(
            next("0 0 29 2 *", datetime!(2026-03-01 00:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
        assert!(Schedule::parse("0 0 31 2 *")
            .unwrap()
            .next_after(datetime!(2026-01-01 00:00 UTC))
            .is_none());
    }

    #[test]
    fn restricted_day_fields_match_either_one() {
        // 2026-11-23 is a Monday. "The 1st, or any Friday" fires on Friday the 27th.
        assert_eq!(
            next("0 12 1 * 5", datetime!(2026-11-23 00:00 UTC)),
            datetime!(2026-11-27 12:00 UTC)
        );
        // Sunday is 0 and 7.
        assert_eq!(
            next("0 0 * * 7", datetime!(2026-11-23 00:00 UTC)),
            datetime!(2026-11-29 00:00 UTC)
        );
        assert_eq!(
            next("0 9 * * 1-5", datetime!(2026-11-27 10:00 UTC)),
            datetime!(2026-11-30 09:00 UTC)
        );
    }

    #[test]
    fn lists_ranges_steps_and_seconds() {
        assert_eq!(
            next("15,45 8-9 * * *", datetime!(2026-11-23 08:20 UTC)),
            datetime!(2026-11-23 08:45 UTC)
        );
        assert_eq!(
            next("10-50/20 * * * *", datetime!(2026-11-23 08:31 UTC)),
            datetime!(2026-11-23 08:50 UTC)
        );
        assert_eq!(
            next("*/2 * * * * *", datetime!(2026-11-23 08:00:01.5 UTC)),
            datetime!(2026-11-23 08:00:02 UTC)
        );
        assert_eq!(
            next("@hourly", datetime!(2026-11-23 08:00 UTC)),
            datetime!(2026-11-23 09:00 UTC)
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        for (expr, says) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour: 24"),
            ("* * 0 * *", "day of month: 0"),
            ("* * * 13 *", "month: 13"),
            ("* * * * 8", "weekday: 8"),
            ("*/0 * * * *", "step of 0"),
            ("5-1 * * * *", "runs backwards"),
            ("x * * * *", "minute: `x` is not a number"),
            ("* * * * MON", "weekday: `MON`"),
        ] {
            let error = Schedule::parse(expr).unwrap_err().to_string();
            assert!(error.contains(says), "{expr}: {error}");
        }
    }

    #[test]
    fn describes_common_schedules() {
        let describe = |e: &str| Schedule::parse(e).unwrap().describe();
        assert_eq!(describe("*/5 * * * *"), "every 5 min");
        assert_eq!(describe("17 * * * *"), "hourly at :17");
        assert_eq!(describe("30 3 * * *"), "daily at 03:30 UTC");
        assert_eq!(describe("0 */6 * * *"), "every 6 h");
        assert_eq!(describe("*/2 * * * * *"), "every 2 s");
        assert_eq!(describe("0 9 * * 1-5"), "0 9 * * 1-5");
        assert_eq!(
            Schedule::parse("0 9 * * 1-5").unwrap().longest_gap(),
            Duration::days(3)
        );
    }

    #[test]
    fn the_last_tick_at_or_before() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            s.last_at_or_before(datetime!(2026-11-23 10:07 UTC), Duration::hours(1)),
            Some(datetime!(2026-11-23 10:05 UTC))
        );
        assert_eq!(
            s.last_at_or_before(datetime!(2026-11-23 10:05 UTC), Duration::hours(1)),
            Some(datetime!(2026-11-23 10:05 UTC))
        );
    }
}
