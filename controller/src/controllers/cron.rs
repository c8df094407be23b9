//! Cron schedules as CronJobs read them (upstream parses with robfig/cron v3's standard parser): five fields
//! (minute, hour, day of month, month, day of week) of `*`, `?`, numbers, names (`jan`, `mon`), ranges, steps
//! and lists; the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`;
//! `@every <duration>` (Go's duration syntax: `90s`, `1h30m`); an optional `CRON_TZ=<zone>` or `TZ=<zone>`
//! prefix. When both day fields are restricted a day matches if either does (Vixie cron's OR, which robfig
//! keeps); a step other than 1 makes `*` count as restricted, as in robfig.
//!
//! Times are matched in the schedule's zone as wall-clock times, via jiff, so `0 9 * * *` in Europe/Berlin is
//! 09:00 there on both sides of a daylight-saving change. `@every` counts from the time it is asked about (the
//! CronJob's last scheduled time, or its creation) in whole seconds, at least one, as robfig's constant delay does.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields, found {0}: {1}")]
    FieldCount(usize, String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse {field} field '{text}': {reason}")]
    Field { field: &'static str, text: String, reason: String },
    #[error("unknown time zone {0}")]
    TimeZone(String),
    #[error("failed to parse duration {0}: {1}")]
    Every(String, String),
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Fields(Fields),
    /// `@every`: a constant delay, whole seconds.
    Every(SignedDuration),
}

/// The five fields, as bit sets of the values they allow, and the zone they are matched in.
#[derive(Debug, Clone)]
pub struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Both day fields restricted: a day matches when either does.
    days_either: bool,
    zone: TimeZone,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Bounds = Bounds { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
// 7 is Sunday too, as in Vixie cron.
const DAY_OF_WEEK: Bounds =
    Bounds { name: "day of week", min: 0, max: 7, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Schedule {
    /// Parses `text`; `zone` is the CronJob's `timeZone` (or the controller's own zone without one), which a
    /// `CRON_TZ=` prefix overrides.
    pub fn parse(text: &str, zone: TimeZone) -> Result<Schedule, ScheduleError> {
        let mut text = text.trim();
        let mut zone = zone;
        if let Some(rest) = text.strip_prefix("CRON_TZ=").or_else(|| text.strip_prefix("TZ=")) {
            let (name, schedule) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            zone = TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?;
            text = schedule.trim();
        }
        if let Some(duration) = text.strip_prefix("@every ") {
            return parse_duration(duration.trim())
                .map(|delay| Schedule::Every(every(delay)))
                .map_err(|reason| ScheduleError::Every(duration.trim().to_string(), reason));
        }
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(ScheduleError::Descriptor(other.to_string())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount(fields.len(), expanded.to_string()));
        }
        let (minutes, _) = parse_field(fields[0], &MINUTE)?;
        let (hours, _) = parse_field(fields[1], &HOUR)?;
        let (days_of_month, dom_star) = parse_field(fields[2], &DAY_OF_MONTH)?;
        let (months, _) = parse_field(fields[3], &MONTH)?;
        let (mut days_of_week, dow_star) = parse_field(fields[4], &DAY_OF_WEEK)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week |= 1;
        }
        let days_either = !dom_star && !dow_star;
        Ok(Schedule::Fields(Fields { minutes, hours, days_of_month, months, days_of_week, days_either, zone }))
    }

    /// The first scheduled time strictly after `after` (within five years).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Fields(fields) => fields.next_after(after),
            Schedule::Every(delay) => whole_seconds(after).checked_add(*delay).ok(),
        }
    }

    /// The latest scheduled time at or before `until` and strictly after `since`.
    pub fn latest_between(&self, since: Timestamp, until: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Fields(fields) => fields.latest_between(since, until),
            Schedule::Every(delay) => {
                let first = whole_seconds(since).checked_add(*delay).ok()?;
                if first > until {
                    return None;
                }
                let periods = until.duration_since(first).as_secs() / delay.as_secs();
                first.checked_add(SignedDuration::from_secs(periods * delay.as_secs())).ok()
            }
        }
    }
}

impl Fields {
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_either {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn month_matches(&self, date: Date) -> bool {
        self.months & (1 << date.month()) != 0
    }

    fn hour_matches(&self, time: DateTime) -> bool {
        self.hours & (1 << time.hour()) != 0
    }

    fn minute_matches(&self, time: DateTime) -> bool {
        self.minutes & (1 << time.minute()) != 0
    }

    fn instant(&self, time: DateTime) -> Option<Timestamp> {
        time.to_zoned(self.zone.clone()).ok().map(|zoned| zoned.timestamp())
    }

    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let local = after.to_zoned(self.zone.clone()).datetime();
        let mut time = local.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let limit = local.checked_add(5.years()).ok()?;
        while time <= limit {
            if !self.month_matches(time.date()) {
                time = time.date().first_of_month().checked_add(1.month()).ok()?.to_datetime(Time::midnight());
            } else if !self.day_matches(time.date()) {
                time = time.date().tomorrow().ok()?.to_datetime(Time::midnight());
            } else if !self.hour_matches(time) {
                time = time.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
            } else if !self.minute_matches(time) {
                time = time.checked_add(1.minute()).ok()?;
            } else {
                match self.instant(time) {
                    // A wall-clock time skipped by a daylight-saving change maps forward; never to the past.
                    Some(instant) if instant > after => return Some(instant),
                    _ => time = time.checked_add(1.minute()).ok()?,
                }
            }
        }
        None
    }

    fn latest_between(&self, since: Timestamp, until: Timestamp) -> Option<Timestamp> {
        let local_since = since.to_zoned(self.zone.clone()).datetime();
        let mut time =
            until.to_zoned(self.zone.clone()).datetime().with().second(0).subsec_nanosecond(0).build().ok()?;
        // An hour of slack below `since`, so a wall-clock hour repeated by a daylight-saving change is judged
        // by its instant below rather than cut off by the civil comparison.
        while time >= local_since.checked_sub(1.hour()).ok()? {
            if !self.month_matches(time.date()) {
                time = time.date().first_of_month().to_datetime(Time::midnight()).checked_sub(1.minute()).ok()?;
            } else if !self.day_matches(time.date()) {
                time = time.date().to_datetime(Time::midnight()).checked_sub(1.minute()).ok()?;
            } else if !self.hour_matches(time) {
                time = time.with().minute(0).build().ok()?.checked_sub(1.minute()).ok()?;
            } else if !self.minute_matches(time) {
                time = time.checked_sub(1.minute()).ok()?;
            } else {
                match self.instant(time) {
                    Some(instant) if instant > since && instant <= until => return Some(instant),
                    Some(instant) if instant <= since => return None,
                    _ => time = time.checked_sub(1.minute()).ok()?,
                }
            }
        }
        None
    }
}

/// `time` without its fraction of a second.
fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// robfig's `Every`: under a second counts as one; the rest is cut to whole seconds.
fn every(delay: SignedDuration) -> SignedDuration {
    SignedDuration::from_secs(delay.as_secs().max(1))
}

/// A duration in Go's syntax (time.ParseDuration): an optional sign, then one or more decimal numbers, each with
/// a unit of ns, us (or µs), ms, s, m or h, as `1h30m` or `1.5s`; a plain `0` is zero.
fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut nanoseconds: i128 = 0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{text}\"")),
            other => return Err(format!("time: unknown unit \"{other}\" in duration \"{text}\"")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut divisor = 1i128;
        for digit in fraction.bytes().take(18) {
            divisor *= 10;
            part += i128::from(digit - b'0') * scale / divisor;
        }
        nanoseconds =
            nanoseconds.checked_add(part).filter(|total| *total <= i128::from(i64::MAX)).ok_or_else(invalid)?;
        rest = after;
    }
    let nanoseconds = if negative { -nanoseconds } else { nanoseconds };
    Ok(SignedDuration::from_nanos(nanoseconds as i64))
}

/// A field as a bit set of the values it allows, and whether it is an unrestricted `*` or `?`.
fn parse_field(text: &str, bounds: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let error = |reason: String| ScheduleError::Field { field: bounds.name, text: text.to_string(), reason };
    let mut bits = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| error(format!("invalid step '{step}'")))?;
                if step == 0 {
                    return Err(error("step must be positive".into()));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = step.is_none_or(|step| step == 1);
            (bounds.min, bounds.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, bounds).map_err(error)?, value(high, bounds).map_err(error)?)
        } else {
            let start = value(range, bounds).map_err(error)?;
            // "N/step" runs from N to the field's maximum.
            (start, if step.is_some() { bounds.max } else { start })
        };
        if start > end {
            return Err(error(format!("beginning of range ({start}) beyond end of range ({end})")));
        }
        let step = step.unwrap_or(1) as usize;
        for allowed in (start..=end).step_by(step) {
            bits |= 1 << allowed;
        }
    }
    Ok((bits, star))
}

fn value(text: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let number = match bounds.names.iter().position(|name| *name == lower) {
        Some(index) => index as u32 + if bounds.min == 1 { 1 } else { 0 },
        None => text.parse().map_err(|_| format!("invalid value '{text}'"))?,
    };
    if number < bounds.min || number > bounds.max {
        return Err(format!("{number} out of range [{}, {}]", bounds.min, bounds.max));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Schedule {
        Schedule::parse(text, TimeZone::UTC).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        let every_quarter = utc("*/15 * * * *");
        assert_eq!(every_quarter.next_after(at("2026-03-01T10:07:30Z")), Some(at("2026-03-01T10:15:00Z")));
        assert_eq!(every_quarter.next_after(at("2026-03-01T10:45:00Z")), Some(at("2026-03-01T11:00:00Z")));
        let weekdays = utc("30 9 * * mon-fri");
        // 2026-03-06 is a Friday.
        assert_eq!(weekdays.next_after(at("2026-03-06T10:00:00Z")), Some(at("2026-03-09T09:30:00Z")));
        let listed = utc("0 8,20 * jan,jul *");
        assert_eq!(listed.next_after(at("2026-01-31T21:00:00Z")), Some(at("2026-07-01T08:00:00Z")));
        let from_ten = utc("10/20 * * * *");
        assert_eq!(from_ten.next_after(at("2026-03-01T10:31:00Z")), Some(at("2026-03-01T10:50:00Z")));
        assert_eq!(utc("0 0 * * 7").next_after(at("2026-03-06T00:00:00Z")), Some(at("2026-03-08T00:00:00Z")));
    }

    #[test]
    fn descriptors() {
        assert_eq!(utc("@hourly").next_after(at("2026-03-01T10:00:00Z")), Some(at("2026-03-01T11:00:00Z")));
        assert_eq!(utc("@daily").next_after(at("2026-03-01T10:00:00Z")), Some(at("2026-03-02T00:00:00Z")));
        assert_eq!(utc("@yearly").next_after(at("2026-03-01T10:00:00Z")), Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(utc("@weekly").next_after(at("2026-03-06T10:00:00Z")), Some(at("2026-03-08T00:00:00Z")));
    }

    #[test]
    fn every_counts_whole_seconds_from_the_time_asked_about() {
        let schedule = utc("@every 1h30m");
        assert_eq!(schedule.next_after(at("2026-03-01T10:07:30.25Z")), Some(at("2026-03-01T11:37:30Z")));
        let created = at("2026-03-01T10:00:00Z");
        assert_eq!(schedule.latest_between(created, at("2026-03-01T11:29:59Z")), None);
        assert_eq!(schedule.latest_between(created, at("2026-03-01T11:30:00Z")), Some(at("2026-03-01T11:30:00Z")));
        assert_eq!(schedule.latest_between(created, at("2026-03-01T15:00:00Z")), Some(at("2026-03-01T14:30:00Z")));
        // Under a second is a second; fractions of a second are cut.
        assert_eq!(utc("@every 300ms").next_after(created), Some(at("2026-03-01T10:00:01Z")));
        assert_eq!(utc("@every 1.9s").next_after(created), Some(at("2026-03-01T10:00:01Z")));
        assert_eq!(utc("TZ=Europe/Berlin @every 90s").next_after(created), Some(at("2026-03-01T10:01:30Z")));
        for bad in ["@every", "@every 5", "@every 5x", "@every m", "@every 1.2.3s", "@every 1h 30m"] {
            assert!(Schedule::parse(bad, TimeZone::UTC).is_err(), "{bad}");
        }
        let error = Schedule::parse("@every 5", TimeZone::UTC).unwrap_err().to_string();
        assert_eq!(error, "failed to parse duration 5: time: missing unit in duration \"5\"");
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 13th, or any Friday: 2026-03-06 is a Friday, before the 13th.
        let either = utc("0 0 13 * fri");
        assert_eq!(either.next_after(at("2026-03-01T00:00:00Z")), Some(at("2026-03-06T00:00:00Z")));
        assert_eq!(either.next_after(at("2026-03-12T00:00:00Z")), Some(at("2026-03-13T00:00:00Z")));
        // With one day field a star, both must match: Friday the 13th only... as `*` day of month matches all.
        let fridays = utc("0 0 * * fri");
        assert_eq!(fridays.next_after(at("2026-03-07T00:00:00Z")), Some(at("2026-03-13T00:00:00Z")));
    }

    #[test]
    fn zones_from_the_field_or_the_prefix() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let nine = Schedule::parse("0 9 * * *", berlin).unwrap();
        // Winter: UTC+1; summer (from 2026-03-29): UTC+2.
        assert_eq!(nine.next_after(at("2026-03-01T00:00:00Z")), Some(at("2026-03-01T08:00:00Z")));
        assert_eq!(nine.next_after(at("2026-04-01T00:00:00Z")), Some(at("2026-04-01T07:00:00Z")));
        let prefixed = utc("CRON_TZ=Asia/Tokyo 0 9 * * *");
        assert_eq!(prefixed.next_after(at("2026-03-01T00:00:00Z")), Some(at("2026-03-02T00:00:00Z")));
        assert_eq!(
            Schedule::parse("TZ=Nowhere/Else * * * * *", TimeZone::UTC).unwrap_err(),
            ScheduleError::TimeZone("Nowhere/Else".into())
        );
    }

    #[test]
    fn the_latest_time_in_a_window() {
        let every_five = utc("*/5 * * * *");
        assert_eq!(
            every_five.latest_between(at("2026-03-01T10:00:00Z"), at("2026-03-01T10:17:00Z")),
            Some(at("2026-03-01T10:15:00Z"))
        );
        assert_eq!(every_five.latest_between(at("2026-03-01T10:15:00Z"), at("2026-03-01T10:19:59Z")), None);
        let yearly = utc("@yearly");
        assert_eq!(
            yearly.latest_between(at("2020-06-01T00:00:00Z"), at("2026-03-01T00:00:00Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn malformed_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad, TimeZone::UTC).is_err(), "{bad}");
        }
    }
}
