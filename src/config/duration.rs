//! Duration strings: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, `"1.5s"`, `"1m30s"`, `"0"`.
//!
//! Parsed exactly (integer nanoseconds, no floating point), so `"0.1s"` is
//! 100 ms and not 99.999… ms, and nothing overflows on absurd input.

use std::time::Duration;

/// How to write a duration, appended to every error.
const EXAMPLE: &str = "such as \"250ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\"";

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000 * NANOS_PER_MS;

/// The longest duration accepted: 100 years. Every duration ends up added to
/// an `Instant` (a deadline), and std panics when that overflows (past about
/// 292 billion years of seconds in an i64): a `restart-delay` of
/// "4000000000000000h" would otherwise panic PID 1 at the first restart.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses a duration: one or more `NUMBER UNIT` parts (units `ms`, `s`, `m`,
/// `h`; a number may have a fraction), or a bare `0`. Surrounding whitespace is
/// ignored. The error names the bad text and gives an example.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(format!(
            "invalid duration \"{s}\": it is empty; write a number and a unit, {EXAMPLE}"
        ));
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if number.is_empty() {
            return Err(format!(
                "invalid duration \"{s}\": expected a number, {EXAMPLE}"
            ));
        }
        let Some(value) = parse_decimal(number) else {
            return Err(format!(
                "invalid duration \"{s}\": \"{number}\" is not a number, {EXAMPLE}"
            ));
        };
        let per_unit = match unit {
            "ms" => NANOS_PER_MS,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "" => {
                return Err(format!(
                    "invalid duration \"{s}\": \"{number}\" needs a unit (ms, s, m or h), {EXAMPLE}"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration \"{s}\": unknown unit \"{other}\" (use ms, s, m or h), {EXAMPLE}"
                ));
            }
        };
        let nanos = value.nanos(per_unit);
        total = match nanos.and_then(|n| total.checked_add(n)) {
            Some(t) => t,
            None => return Err(too_long(s)),
        };
        rest = next;
    }
    if total > MAX_DURATION.as_nanos() {
        return Err(too_long(s));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_long(s))?;
    // The remainder is below one second, so it fits a u32.
    let subsec = u32::try_from(total % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

fn too_long(s: &str) -> String {
    format!("invalid duration \"{s}\": too long (at most 100 years, 876000h)")
}

/// A decimal number `INT[.FRACTION]`, kept as integers so scaling is exact.
struct Decimal {
    int: u128,
    /// The fraction's digits as an integer, and 10^(number of digits).
    frac: u128,
    frac_scale: u128,
}

impl Decimal {
    /// `self * per_unit` in nanoseconds, truncated; `None` on overflow.
    fn nanos(&self, per_unit: u128) -> Option<u128> {
        let whole = self.int.checked_mul(per_unit)?;
        let part = self.frac.checked_mul(per_unit)? / self.frac_scale;
        whole.checked_add(part)
    }
}

/// Digits with at most one `.` and a digit on at least one side of it.
/// Fraction digits past nanosecond precision of hours are dropped.
fn parse_decimal(number: &str) -> Option<Decimal> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Only digits: parsing fails only past u128, a duration too long anyway
    // (u128::MAX times any unit overflows, which the caller reports so).
    let int = if int_part.is_empty() {
        0
    } else {
        int_part.parse::<u128>().unwrap_or(u128::MAX)
    };
    // 13 digits is below a nanosecond even for hours (3.6e12 ns), and keeps
    // 10^13 * 3.6e12 far inside u128.
    let frac_digits = frac_part.get(..frac_part.len().min(13)).unwrap_or("");
    let frac = if frac_digits.is_empty() {
        0
    } else {
        frac_digits.parse::<u128>().ok()?
    };
    let exponent = u32::try_from(frac_digits.len()).ok()?;
    let frac_scale = 10u128.checked_pow(exponent)?;
    Some(Decimal {
        int,
        frac,
        frac_scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_end_at_100_years_so_no_deadline_overflows() {
        assert_eq!(parse_duration("876000h"), Ok(MAX_DURATION));
        // This one used to parse, and panicked PID 1 at the first restart:
        // `Instant + Duration` overflowed.
        assert_eq!(
            parse_duration("4000000000000000h"),
            Err(
                "invalid duration \"4000000000000000h\": too long (at most 100 years, 876000h)"
                    .into()
            )
        );
        assert!(parse_duration("876000h1ms").is_err());
        // The longest accepted is a deadline std can represent.
        assert!(
            std::time::Instant::now()
                .checked_add(MAX_DURATION)
                .is_some()
        );
    }
}
