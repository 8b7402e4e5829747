//! `schedule`: a 5-field cron expression, an alias (`@hourly`, `@daily` /
//! `@midnight`, `@weekly`, `@monthly`, `@yearly` / `@annually`) or
//! `@every DUR`, read into a `calendar::Schedule`.
//!
//! Cron expressions are croner's, restricted to the 5 fields of SPEC
//! section 11: no seconds field (a 6th field is refused, with `@every` as
//! the way to tick faster than a minute), no year. Within the fields,
//! croner's extensions are accepted: names (`MON`, `JAN`), `L` (last day
//! of the month, last weekday `5L`), `W` (nearest weekday `15W`), `#`
//! (nth weekday `1#2`), `?` as `*`. Day-of-month and day-of-week combine
//! as in vixie cron (either matches).

use croner::parser::{CronParser, Seconds, Year};

use crate::calendar::{Schedule, When};
use crate::text::closest;

use super::duration::parse_duration;

const ALIASES: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * SUN"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Parse a `schedule` value; the error is the message after "`schedule`: ".
pub fn parse(text: &str) -> Result<Schedule, String> {
    let written = text.trim();
    let when = if let Some(rest) = written.strip_prefix('@') {
        let (word, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let word = format!("@{}", word.to_ascii_lowercase());
        if word == "@every" {
            every(arg.trim())?
        } else {
            let Some((_, expression)) = ALIASES.iter().find(|(alias, _)| *alias == word) else {
                let names = ALIASES.iter().map(|(a, _)| *a).chain(["@every"]);
                let hint = match closest(&word, names) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => String::new(),
                };
                return Err(format!(
                    "unknown alias `{}`{hint}; expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @every DURATION",
                    word.escape_debug()
                ));
            };
            if !arg.trim().is_empty() {
                return Err(format!("`{word}` takes no argument"));
            }
            cron(expression)?
        }
    } else {
        let fields = written.split_whitespace().count();
        if fields != 5 {
            let seconds = if fields == 6 {
                " (corral takes no seconds field: use \"@every 10s\" to run more often than once a minute)"
            } else {
                ""
            };
            return Err(format!(
                "expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), found {fields}{seconds}"
            ));
        }
        cron(written)?
    };
    let schedule = Schedule {
        text: written.to_string(),
        when,
    };
    // A day that never comes (`0 0 30 2 *`) is refused here, not found
    // out by a timer that never fires: there is no year field, so a
    // pattern that matches nothing after 1970 matches nothing ever.
    if let Err(e) = schedule.next_after(&crate::calendar::Local, 0) {
        return Err(format!(
            "\"{}\" never matches a date ({e})",
            written.escape_debug()
        ));
    }
    Ok(schedule)
}

/// The five fields, for messages.
const FIELDS: [&str; 5] = [
    "minute (0-59)",
    "hour (0-23)",
    "day-of-month (1-31)",
    "month (1-12 or JAN-DEC)",
    "day-of-week (0-7 or SUN-SAT)",
];

fn cron(expression: &str) -> Result<When, String> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    match parser.parse(expression) {
        Ok(cron) => Ok(When::Cron(Box::new(cron))),
        Err(e) => {
            // Name the field at fault: the first whose replacement by `*`
            // makes the rest parse.
            let fields: Vec<&str> = expression.split_whitespace().collect();
            let culprit = (0..fields.len()).find(|&i| {
                let mut fixed = fields.clone();
                if let Some(field) = fixed.get_mut(i) {
                    *field = "*";
                }
                parser.parse(&fixed.join(" ")).is_ok()
            });
            let place = match culprit.and_then(|i| Some((fields.get(i)?, FIELDS.get(i)?))) {
                Some((field, name)) => format!(" in the {name} field \"{}\"", field.escape_debug()),
                None => String::new(),
            };
            Err(format!(
                "invalid cron expression \"{}\"{place}: {e}",
                expression.escape_debug()
            ))
        }
    }
}

fn every(arg: &str) -> Result<When, String> {
    if arg.is_empty() {
        return Err("`@every` needs a duration, such as \"@every 30s\"".to_string());
    }
    let period = parse_duration(arg).map_err(|e| format!("`@every`: {e}"))?;
    let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(format!(
            "`@every`: the period must be at least 1ms, found \"{}\"",
            arg.escape_debug()
        ));
    }
    if period.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`@every`: the period must be whole milliseconds, found \"{}\"",
            arg.escape_debug()
        ));
    }
    Ok(When::Every(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(text).expect_err(text)
    }

    #[test]
    fn five_fields_aliases_and_every() {
        assert!(matches!(parse("*/5 * * * *").unwrap().when, When::Cron(_)));
        assert!(matches!(
            parse(" 0 9 * * MON-FRI ").unwrap().when,
            When::Cron(_)
        ));
        assert_eq!(parse(" 0 9 * * 1-5 ").unwrap().text, "0 9 * * 1-5");
        for alias in [
            "@hourly",
            "@daily",
            "@MIDNIGHT",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert!(
                matches!(parse(alias).unwrap().when, When::Cron(_)),
                "{alias}"
            );
        }
        assert_eq!(parse("@every 30s").unwrap().when, When::Every(30_000));
        assert_eq!(parse("@every 1m30s").unwrap().when, When::Every(90_000));
        assert_eq!(parse("@every 250ms").unwrap().when, When::Every(250));
        // croner's extensions within the five fields.
        for text in [
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "0 0 ? * *",
        ] {
            assert!(parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            error("*/10 * * * * *"),
            "expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), found 6 (corral takes no seconds field: use \"@every 10s\" to run more often than once a minute)"
        );
        assert_eq!(
            error("* * *"),
            "expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), found 3"
        );
        assert_eq!(
            error("61 * * * *"),
            "invalid cron expression \"61 * * * *\" in the minute (0-59) field \"61\": Component error: Number out of bounds."
        );
        assert!(error("0 9 * 13 MON").contains("in the month (1-12 or JAN-DEC) field \"13\""));
        assert!(error("* * * * FOO").starts_with("invalid cron expression"));
        assert_eq!(
            error("@dayly"),
            "unknown alias `@dayly` (did you mean `@daily`?); expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually or @every DURATION"
        );
        assert!(error("@reboot").starts_with("unknown alias `@reboot`"));
        assert_eq!(
            error("@every"),
            "`@every` needs a duration, such as \"@every 30s\""
        );
        assert!(error("@every soon").starts_with("`@every`: invalid duration"));
        assert_eq!(
            error("@every 0s"),
            "`@every`: the period must be at least 1ms, found \"0s\""
        );
        assert_eq!(
            error("@every 1.5ms"),
            "`@every`: the period must be whole milliseconds, found \"1.5ms\""
        );
        assert_eq!(error("@daily 3"), "`@daily` takes no argument");
        assert!(error("0 0 30 2 *").starts_with("\"0 0 30 2 *\" never matches a date ("));
    }
}
