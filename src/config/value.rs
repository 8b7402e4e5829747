//! Readers of one TOML value, shared by the raw step (`raw.rs`) and the
//! hook tables (`hooks.rs`): each checks a value's type and shape and
//! returns it, or a `Problem` at the byte offset of what is wrong.
//!
//! What it must never do: know a key's place in a service file (that is
//! `raw.rs` and `hooks.rs`), or stop at the first problem of a list.

use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::duration;

/// Something wrong in one file. `at` is a byte offset into the file's text;
/// `None` when there is nothing to point at (a missing key).
#[derive(Debug)]
pub(super) struct Problem {
    pub at: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn at(at: usize, message: String) -> Problem {
        Problem {
            at: Some(at),
            message,
        }
    }
}

/// A value and the byte offset where it was written.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub value: T,
    pub at: usize,
}

/// A duration and its text as written, for messages that compare two.
#[derive(Debug, Clone)]
pub(super) struct WrittenDuration {
    pub duration: Duration,
    pub text: String,
}

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// What was found, for "expected X, found Y": the TOML type.
fn found(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "date-time",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

pub(super) fn expected(key: &str, what: &str, value: &Value<'_>) -> Problem {
    Problem::at(
        value.span().start,
        format!("`{key}`: expected {what}, found {}", found(value.get_ref())),
    )
}

/// A string that can be handed to `execve` or the environment: no NUL byte.
pub(super) fn text(key: &str, what: &str, value: &Value<'_>) -> Result<String, Problem> {
    match value.get_ref() {
        DeValue::String(s) if s.contains('\0') => Err(Problem::at(
            value.span().start,
            format!("`{key}`: must not contain a NUL character"),
        )),
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(expected(key, what, value)),
    }
}

/// A command line such as `command` or `ready.exec`: an array of strings
/// (argv), or a string run by `/bin/sh -c`. Every bad element is reported.
pub(super) fn argv(
    key: &str,
    value: &Value<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    const WHAT: &str = "an array of strings or a string";
    let empty = || Problem::at(value.span().start, format!("`{key}`: must not be empty"));
    let mut fail = |problem| {
        problems.push(problem);
        None
    };
    match value.get_ref() {
        DeValue::String(_) => match text(key, WHAT, value) {
            Ok(script) if script.trim().is_empty() => fail(empty()),
            Ok(script) => Some(vec!["/bin/sh".to_string(), "-c".to_string(), script]),
            Err(problem) => fail(problem),
        },
        DeValue::Array(items) => {
            let Some(first) = items.first() else {
                return fail(empty());
            };
            let mut argv = Vec::with_capacity(items.len());
            let mut bad = Vec::new();
            for item in items.iter() {
                match text(key, "a string", item) {
                    Ok(arg) => argv.push(arg),
                    Err(problem) => bad.push(problem),
                }
            }
            if matches!(first.get_ref(), DeValue::String(s) if s.is_empty()) {
                bad.push(Problem::at(
                    first.span().start,
                    format!("`{key}`: the program (first element) must not be empty"),
                ));
            }
            if bad.is_empty() {
                Some(argv)
            } else {
                problems.append(&mut bad);
                None
            }
        }
        _ => fail(expected(key, WHAT, value)),
    }
}

pub(super) fn integer(digits: &str, radix: u32) -> Option<i128> {
    i128::from_str_radix(digits, radix).ok()
}

pub(super) fn written_duration(
    key: &str,
    value: &Value<'_>,
) -> Result<At<WrittenDuration>, Problem> {
    let at = value.span().start;
    match value.get_ref() {
        DeValue::String(s) => match duration::parse_duration(s.as_ref()) {
            Ok(duration) => Ok(At {
                value: WrittenDuration {
                    duration,
                    text: s.to_string(),
                },
                at,
            }),
            Err(message) => Err(Problem::at(at, format!("`{key}`: {message}"))),
        },
        _ => Err(expected(key, "a duration string such as \"250ms\"", value)),
    }
}

/// A duration that must be longer than zero (a timeout or an interval).
pub(super) fn positive_duration(key: &str, value: &Value<'_>) -> Result<Duration, Problem> {
    let written = written_duration(key, value)?;
    if written.value.duration.is_zero() {
        return Err(Problem::at(
            written.at,
            format!("`{key}`: must be longer than zero"),
        ));
    }
    Ok(written.value.duration)
}
