//! A service's `schedule` and the wall clock: when its next tick is, in
//! the container's time zone, and whether a tick is due.
//!
//! What it owns: the `Schedule` type (a cron expression, parsed by
//! `croner`, or `@every DUR`), the arithmetic of ticks (`next_after`,
//! `consult`) in any `Zone`, and the local time a person reads. The pure
//! core never calls it: the executor does, with the real wall clock and
//! the `Local` zone, and hands the answer back as an event. Tests call it
//! with a fake wall clock and named zones.
//!
//! croner walks the calendar over a date type of ours (`At`), which asks
//! its `Zone` one thing: the offset from UTC at an instant. `Local` asks
//! the C library (`localtime_r`: TZ, else /etc/localtime, read once, at
//! first use), so no tz database and no date crate is built in.
//!
//! Wall-clock times are milliseconds since the Unix epoch (`Wall`). Ticks
//! are identified by their wall time, and a tick already taken is never
//! taken again: the next one is always searched after the later of the
//! wall clock and the last tick taken (as systemd's OnCalendar timers
//! count from their last trigger). So a wall clock that steps back does
//! not repeat ticks, and one that jumps forward (NTP, a suspended VM) gives
//! one run, late, never a burst of the ticks missed.
//!
//! Daylight saving follows croner's rules (vixie-cron's): a fixed-time job
//! (`30 2 * * *`) whose time falls in the hour skipped at spring-forward
//! runs at the first second after the gap (03:00), and one in the repeated
//! hour at fall-back runs once, in the first pass; an interval or wildcard
//! job (`*/15 * * * *`, `@hourly`) runs at each of its times that exist,
//! so not in the gap, and in both passes of the repeated hour (they are
//! distinct instants, one real interval apart). `@every` counts real time
//! and knows no zone.

use std::cmp::Ordering;
use std::time::Duration;

use croner::errors::CronError;
use croner::{CivilDate, CivilDateTime, CivilTime, CronDateTime, Resolution, Weekday};

/// Milliseconds since the Unix epoch (UTC).
pub type Wall = i64;

/// How early a due tick may be taken. The executor computes each timer's
/// deadline a few microseconds apart from the next (one clock reading per
/// service): taking every tick within this of the earliest lets 1000 jobs
/// on one schedule wake corral once, not a thousand times.
pub const SLACK: Duration = Duration::from_millis(10);
const SLACK_MS: Wall = 10;

const DAY: i64 = 86_400;

/// A time zone, as far as ticks need one.
pub trait Zone {
    /// Seconds east of UTC at `secs` since the epoch.
    fn offset(&self, secs: i64) -> i64;
}

/// The container's zone, as the C library knows it: `TZ` (a zone name or
/// a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`), else
/// /etc/localtime; UTC without either.
pub struct Local;

impl Zone for Local {
    fn offset(&self, secs: i64) -> i64 {
        // `time_t` is 64 bits wide on every target corral builds for.
        let time: libc::time_t = secs;
        // SAFETY: `tm` is plain data (all zeroes is a valid value), and
        // localtime_r(3) only reads `time` and writes `tm`, both of which
        // live across the call; it is the reentrant form, safe beside
        // other threads.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&time, &mut tm).is_null() {
                0
            } else {
                tm.tm_gmtoff
            }
        }
    }
}

/// UTC.
pub struct Utc;

impl Zone for Utc {
    fn offset(&self, _secs: i64) -> i64 {
        0
    }
}

/// A `schedule` as written and as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// As written, for `corral check`, status and messages.
    pub text: String,
    pub when: When,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// A 5-field cron expression (aliases such as `@daily` included), in
    /// the local zone.
    Cron(Box<croner::Cron>),
    /// `@every DUR`: the multiples of the period (whole milliseconds, at
    /// least one) since the Unix epoch, so that every job with one period
    /// ticks at the same instants.
    Every(u64),
}

/// What the clock says of a timer consulted at its deadline (or armed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The tick the timer was armed for, if the wall clock has reached it.
    pub due: Option<Wall>,
    /// The tick to arm the timer for next; `Err`: there is none (a cron
    /// expression that never matches again, croner's message).
    pub next: Result<Wall, String>,
}

impl Schedule {
    /// The first tick strictly after `after`, in `zone`.
    pub fn next_after<Z: Zone>(&self, zone: &Z, after: Wall) -> Result<Wall, String> {
        match &self.when {
            When::Every(period) => {
                let period = Wall::try_from(*period).unwrap_or(Wall::MAX).max(1);
                after
                    .div_euclid(period)
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(period))
                    .ok_or_else(|| "the next tick is out of range".to_string())
            }
            // Ticks are whole seconds: the first after the second `after`
            // falls in is the first after `after`.
            When::Cron(cron) => cron
                .find_next_occurrence(
                    &At {
                        secs: after.div_euclid(1000),
                        zone,
                    },
                    false,
                )
                .map_err(|e| e.to_string())?
                .secs
                .checked_mul(1000)
                .ok_or_else(|| "the next tick is out of range".to_string()),
        }
    }

    /// The `count` ticks after `after` (for `corral check`).
    pub fn upcoming<Z: Zone>(&self, zone: &Z, after: Wall, count: usize) -> Vec<Wall> {
        let mut ticks = Vec::with_capacity(count);
        let mut from = after;
        while ticks.len() < count {
            match self.next_after(zone, from) {
                Ok(tick) => {
                    ticks.push(tick);
                    from = tick;
                }
                Err(_) => break,
            }
        }
        ticks
    }
}

/// Consult the clock for a timer, at wall time `now`. `pending`: the tick
/// the timer was armed for (none: it is being armed); `last`: the last
/// tick taken. A pending tick is due once the wall clock has reached it
/// (within `SLACK`); if it has not (the wall clock stepped back while the
/// timer ran on the monotonic clock), the timer waits for it again. After
/// a tick taken, or when arming, the next tick is the first after the
/// wall clock, the tick taken and the last one taken, whichever is
/// latest: no tick twice, and ticks missed while the clock jumped are not
/// made up.
pub fn consult<Z: Zone>(
    schedule: &Schedule,
    zone: &Z,
    now: Wall,
    pending: Option<Wall>,
    last: Option<Wall>,
) -> Reading {
    let due = pending.filter(|&tick| now.saturating_add(SLACK_MS) >= tick);
    let next = match (pending, due) {
        (Some(tick), None) => Ok(tick),
        _ => {
            let from = [due, last].into_iter().flatten().fold(now, Wall::max);
            schedule.next_after(zone, from)
        }
    };
    Reading { due, next }
}

/// The wall clock now (0 before the epoch).
pub fn wall_now() -> Wall {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| Wall::try_from(d.as_millis()).unwrap_or(Wall::MAX))
}

/// `at` in `zone` as RFC 3339 with its offset, to the second:
/// `2026-12-04T21:00:00+01:00`.
pub fn rfc3339<Z: Zone>(zone: &Z, at: Wall) -> String {
    let secs = at.div_euclid(1000);
    let offset = zone.offset(secs);
    let local = secs.saturating_add(offset);
    let (year, month, day) = civil_from_days(local.div_euclid(DAY));
    let of_day = local.rem_euclid(DAY);
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        minutes / 60,
        minutes % 60
    )
}

/// An instant (whole seconds since the epoch) in a zone: what croner
/// walks the calendar with.
struct At<'z, Z> {
    secs: i64,
    zone: &'z Z,
}

impl<Z> Clone for At<'_, Z> {
    fn clone(&self) -> Self {
        At {
            secs: self.secs,
            zone: self.zone,
        }
    }
}

impl<Z: Zone> At<'_, Z> {
    /// Seconds since the epoch of the wall clock reading here.
    fn local(&self) -> i64 {
        self.secs.saturating_add(self.zone.offset(self.secs))
    }
}

impl<Z: Zone> CronDateTime for At<'_, Z> {
    fn to_civil(&self) -> CivilDateTime {
        let local = self.local();
        let (year, month, day) = civil_from_days(local.div_euclid(DAY));
        let of_day = local.rem_euclid(DAY);
        // In range by construction: a month 1-12, a day of that month, a time of day.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(year, month, day),
            CivilTime::from_parts_unchecked(
                (of_day / 3600) as u32,
                (of_day / 60 % 60) as u32,
                (of_day % 60) as u32,
            ),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday.
        let days = self.local().div_euclid(DAY);
        Weekday::from_days_from_sunday((days + 4).rem_euclid(7) as u32)
    }

    /// The instants whose wall clock reads `civil`: one, two (the clock was
    /// set back) or none (it was set forward). Offsets change at most once
    /// within a day of any instant, so the offsets a day before and a day
    /// after are the only ones to try.
    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let days = days_from_civil(civil.year(), civil.month(), civil.day());
        let wall = days * DAY
            + i64::from(civil.hour()) * 3600
            + i64::from(civil.minute()) * 60
            + i64::from(civil.second());
        let reads_wall = |near: i64| {
            let secs = wall - self.zone.offset(near);
            (secs + self.zone.offset(secs) == wall).then_some(secs)
        };
        let at = |secs: i64| At {
            secs,
            zone: self.zone,
        };
        Ok(match (reads_wall(wall - DAY), reads_wall(wall + DAY)) {
            (Some(a), Some(b)) if a != b => Resolution::Ambiguous(at(a.min(b)), at(a.max(b))),
            (Some(one), _) | (None, Some(one)) => Resolution::Single(at(one)),
            (None, None) => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        Some(At {
            secs: self.secs.checked_add(seconds)?,
            zone: self.zone,
        })
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.secs.cmp(&other.secs)
    }
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, by
/// the proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        month as u32,
        day as u32,
    )
}

/// Days since 1970-01-01 of a date (the inverse of `civil_from_days`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use chrono::{Offset, TimeZone};

    use super::*;

    /// A named zone of the tz database, through chrono-tz.
    struct Named(chrono_tz::Tz);

    impl Zone for Named {
        fn offset(&self, secs: i64) -> i64 {
            let utc = chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .naive_utc();
            i64::from(
                self.0
                    .offset_from_utc_datetime(&utc)
                    .fix()
                    .local_minus_utc(),
            )
        }
    }

    const BERLIN: Named = Named(chrono_tz::Europe::Berlin);
    const NEW_YORK: Named = Named(chrono_tz::America::New_York);
    const UTC: Named = Named(chrono_tz::UTC);

    fn cron(text: &str) -> Schedule {
        Schedule {
            text: text.into(),
            when: When::Cron(Box::new(
                croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Disallowed)
                    .build()
                    .parse(text)
                    .unwrap(),
            )),
        }
    }

    fn every(ms: u64) -> Schedule {
        Schedule {
            text: format!("@every {ms}ms"),
            when: When::Every(ms),
        }
    }

    /// Wall time of a local time in `zone` (the first, if it is repeated).
    fn at(zone: &Named, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Wall {
        zone.0
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    /// The ticks from `from` (exclusive) to `to` (inclusive), each as local RFC 3339.
    fn ticks<Z: Zone>(schedule: &Schedule, zone: &Z, from: Wall, to: Wall) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = from;
        loop {
            t = schedule.next_after(zone, t).unwrap();
            if t > to {
                return out;
            }
            out.push(rfc3339(zone, t));
        }
    }

    const HOUR: Wall = 3_600_000;

    #[test]
    fn the_next_tick_of_a_cron_expression_is_strictly_after() {
        let s = cron("*/5 * * * *");
        let t = at(&UTC, 2026, 12, 4, 20, 3, 0) + 500;
        assert_eq!(s.next_after(&UTC, t), Ok(at(&UTC, 2026, 12, 4, 20, 5, 0)));
        // Exactly on a tick: the one after it.
        let on = at(&UTC, 2026, 12, 4, 20, 5, 0);
        assert_eq!(s.next_after(&UTC, on), Ok(on + 5 * 60_000));
        assert_eq!(
            s.upcoming(&UTC, on, 3)
                .into_iter()
                .map(|t| rfc3339(&UTC, t))
                .collect::<Vec<_>>(),
            vec![
                "2026-12-04T20:10:00+00:00",
                "2026-12-04T20:15:00+00:00",
                "2026-12-04T20:20:00+00:00"
            ]
        );
    }

    #[test]
    fn cron_ticks_follow_the_zone() {
        let daily = cron("0 3 * * *");
        let t = at(&UTC, 2026, 12, 4, 12, 0, 0);
        // 03:00 in Berlin (UTC+1 in winter) is 02:00 UTC.
        assert_eq!(
            daily.next_after(&BERLIN, t),
            Ok(at(&UTC, 2026, 12, 5, 2, 0, 0))
        );
        assert_eq!(
            rfc3339(&BERLIN, at(&UTC, 2026, 12, 5, 2, 0, 0)),
            "2026-12-05T03:00:00+01:00"
        );
        assert_eq!(
            rfc3339(&NEW_YORK, at(&UTC, 2026, 12, 5, 2, 0, 0)),
            "2026-12-04T21:00:00-05:00"
        );
    }

    #[test]
    fn every_ticks_at_multiples_of_its_period_since_the_epoch() {
        let s = every(30_000);
        assert_eq!(s.next_after(&UTC, 0), Ok(30_000));
        assert_eq!(s.next_after(&UTC, 29_999), Ok(30_000));
        assert_eq!(s.next_after(&UTC, 30_000), Ok(60_000));
        // Two jobs with one period tick at the same instants, whenever armed.
        let a = every(1000).next_after(&UTC, 1_764_000_000_123);
        let b = every(1000).next_after(&UTC, 1_764_000_000_877);
        assert_eq!(a, Ok(1_764_000_001_000));
        assert_eq!(a, b);
        // Before the epoch too, and no overflow at the end of time.
        assert_eq!(s.next_after(&UTC, -1), Ok(0));
        assert!(s.next_after(&UTC, Wall::MAX).is_err());
    }

    #[test]
    fn spring_forward_runs_a_fixed_time_job_right_after_the_gap_and_skips_wildcard_ones() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let before = at(&BERLIN, 2026, 3, 29, 0, 0, 0);
        let after = at(&BERLIN, 2026, 3, 29, 5, 0, 0);
        // 02:30 does not exist that day: the job runs at 03:00, once.
        assert_eq!(
            ticks(&cron("30 2 * * *"), &BERLIN, before, after),
            vec!["2026-03-29T03:00:00+02:00"]
        );
        // A wildcard hour has no 02:xx that day.
        assert_eq!(
            ticks(&cron("30 * * * *"), &BERLIN, before, after),
            vec![
                "2026-03-29T00:30:00+01:00",
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:30:00+02:00"
            ]
        );
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let before = at(&NEW_YORK, 2026, 3, 8, 0, 0, 0);
        let after = at(&NEW_YORK, 2026, 3, 9, 0, 0, 0);
        assert_eq!(
            ticks(&cron("15 2 * * *"), &NEW_YORK, before, after),
            vec!["2026-03-08T03:00:00-04:00"]
        );
    }

    #[test]
    fn fall_back_runs_a_fixed_time_job_once_and_wildcard_ones_in_both_passes() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
        let before = at(&BERLIN, 2026, 10, 25, 0, 0, 0);
        let after = at(&BERLIN, 2026, 10, 25, 5, 0, 0);
        assert_eq!(
            ticks(&cron("30 2 * * *"), &BERLIN, before, after),
            vec!["2026-10-25T02:30:00+02:00"],
            "not a second time in the repeated hour"
        );
        assert_eq!(
            ticks(&cron("0 * * * *"), &BERLIN, before, after),
            vec![
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00",
                "2026-10-25T05:00:00+01:00"
            ],
            "hourly: every real hour, one apart"
        );
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let before = at(&NEW_YORK, 2026, 11, 1, 0, 0, 0);
        let after = at(&NEW_YORK, 2026, 11, 2, 0, 0, 0);
        assert_eq!(
            ticks(&cron("30 1 * * *"), &NEW_YORK, before, after),
            vec!["2026-11-01T01:30:00-04:00"]
        );
        // `@every` counts real time, whatever the zone says.
        let before = at(&BERLIN, 2026, 10, 25, 1, 0, 0);
        assert_eq!(
            ticks(&every(HOUR as u64), &BERLIN, before, before + 3 * HOUR).len(),
            3
        );
    }

    #[test]
    fn a_due_tick_is_taken_once_and_the_next_comes_after_it() {
        let s = cron("* * * * *");
        let tick = at(&UTC, 2026, 12, 4, 20, 1, 0);
        // Arming: the first tick after now.
        let armed = consult(&s, &UTC, tick - 20_000, None, None);
        assert_eq!(
            armed,
            Reading {
                due: None,
                next: Ok(tick)
            }
        );
        // At the deadline, a few ms early (the slack): due, and the next is a minute on.
        let read = consult(&s, &UTC, tick - 3, Some(tick), None);
        assert_eq!(
            read,
            Reading {
                due: Some(tick),
                next: Ok(tick + 60_000)
            }
        );
        // Re-armed after a stop and start within the same minute: not this tick again.
        let again = consult(&s, &UTC, tick + 5, None, Some(tick));
        assert_eq!(again.next, Ok(tick + 60_000));
    }

    #[test]
    fn a_wall_clock_that_steps_back_neither_runs_early_nor_repeats_a_tick() {
        let s = cron("0 * * * *");
        let tick = at(&UTC, 2026, 12, 4, 21, 0, 0);
        // The monotonic deadline came, but the wall clock was set back an hour:
        // not due; the same tick stays armed.
        let read = consult(&s, &UTC, tick - HOUR, Some(tick), Some(tick - HOUR));
        assert_eq!(
            read,
            Reading {
                due: None,
                next: Ok(tick)
            }
        );
        // Set back after a tick was taken: the next is after the last one
        // taken, never one that already ran.
        let read = consult(&s, &UTC, tick - 2 * HOUR + 1, None, Some(tick));
        assert_eq!(read.next, Ok(tick + HOUR));
    }

    #[test]
    fn a_wall_clock_that_jumps_forward_gives_one_late_run_not_a_burst() {
        let s = every(1000);
        let tick = 1_764_000_000_000;
        // Suspended for an hour: the pending tick is due (once), and the
        // next is the first after now, not the 3600 missed in between.
        let now = tick + HOUR + 250;
        let read = consult(&s, &UTC, now, Some(tick), Some(tick - 1000));
        assert_eq!(
            read,
            Reading {
                due: Some(tick),
                next: Ok(tick + HOUR + 1000)
            }
        );
    }

    #[test]
    fn a_cron_expression_that_never_matches_has_no_next_tick() {
        let s = cron("0 0 30 2 *");
        assert!(s.next_after(&UTC, 0).is_err());
        assert!(consult(&s, &UTC, 0, None, None).next.is_err());
        assert!(s.upcoming(&UTC, 0, 3).is_empty());
    }

    /// `Local` is the C library's zone. glibc reads TZ once per process,
    /// so the check runs in a child of this test binary, with TZ set to
    /// Berlin's rule (a POSIX rule: no zoneinfo file needed).
    #[test]
    fn the_local_zone_is_the_c_librarys_tz() {
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new(exe)
            .args([
                "--exact",
                "calendar::tests::local_zone_in_a_child",
                "--ignored",
            ])
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{out}");
        assert!(out.contains("1 passed"), "{out}");
    }

    #[test]
    #[ignore = "run by the_local_zone_is_the_c_librarys_tz, with TZ set"]
    fn local_zone_in_a_child() {
        assert_eq!(
            std::env::var("TZ").as_deref(),
            Ok("CET-1CEST,M3.5.0,M10.5.0/3")
        );
        let start = at(&UTC, 2026, 1, 1, 0, 0, 0) / 1000;
        for secs in (start..start + 366 * DAY).step_by(3607) {
            assert_eq!(Local.offset(secs), BERLIN.offset(secs), "at {secs}");
        }
        let before = at(&BERLIN, 2026, 10, 25, 0, 0, 0);
        let after = at(&BERLIN, 2026, 10, 25, 5, 0, 0);
        assert_eq!(
            ticks(&cron("30 2 * * *"), &Local, before, after),
            vec!["2026-10-25T02:30:00+02:00"]
        );
        let before = at(&BERLIN, 2026, 3, 29, 0, 0, 0);
        assert_eq!(
            ticks(&cron("30 2 * * *"), &Local, before, before + 5 * HOUR),
            vec!["2026-03-29T03:00:00+02:00"]
        );
    }
}
