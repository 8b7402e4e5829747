//! The raw step: walk one file's spanned TOML tree and type-check every key.
//!
//! Each key is checked on its own, so one bad key never hides another; every
//! problem carries the byte offset of what it is about (the key for unknown
//! keys, the value for wrong values, the element for a bad array or table
//! element). Defaults and checks between keys belong to `file.rs`; the
//! tables `ready`, `health` and `reload` to `hooks.rs`, `log-file` to
//! `log_file.rs`; the readers of one
//! value, which both use, to `value.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::Resource;
use nix::sys::signal::Signal;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::hooks;
use super::limits;
use super::log_file::{self, RawLogFile};
use super::signal;
use super::spec::{
    Condition, Health, MAX_REPLICAS, Output, PreStop, Ready, Reload, Restart, Schedule,
};
use super::value::{
    At, Problem, Value, WrittenDuration, argv, expected, integer, positive_duration, text,
    written_duration,
};
use crate::text::closest;

/// Every key of a service file that corral implements.
const KEYS: &[&str] = &[
    "command",
    "user",
    "group",
    "working-dir",
    "env",
    "env-file",
    "after",
    "oneshot",
    "enabled",
    "restart",
    "restart-delay",
    "restart-delay-max",
    "max-restarts",
    "essential",
    "stop-signal",
    "stop-timeout",
    "kill-group",
    "output",
    "log-file",
    "ready",
    "ready-timeout",
    "health",
    "reload",
    "watch",
    "pre-stop",
    "success-exit-codes",
    "limits",
    // SPEC section 11
    "schedule",
    "replicas",
];

/// A `user` or `group` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Id {
    Name(String),
    Number(u32),
}

/// The keys of one file, each type-checked; `None` when absent or invalid.
#[derive(Debug, Default)]
pub(super) struct RawService {
    /// The key was written, valid or not (so "missing" is not reported twice).
    pub has_command: bool,
    pub command: Option<Vec<String>>,
    pub user: Option<At<Id>>,
    pub group: Option<At<Id>>,
    pub working_dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub env_file: Option<PathBuf>,
    /// Where the `after` key is, for errors about the list as a whole (cycles).
    pub after_key: Option<usize>,
    pub after: Vec<RawAfter>,
    pub oneshot: Option<bool>,
    pub enabled: Option<bool>,
    pub restart: Option<Restart>,
    pub restart_delay: Option<At<WrittenDuration>>,
    pub restart_delay_max: Option<At<WrittenDuration>>,
    pub max_restarts: Option<u32>,
    pub essential: Option<bool>,
    pub stop_signal: Option<Signal>,
    pub stop_timeout: Option<Duration>,
    pub kill_group: Option<bool>,
    pub output: Option<Output>,
    pub log_file: Option<RawLogFile>,
    pub ready: Option<Ready>,
    pub command_key: Option<usize>,
    /// Where the `ready` and `health` keys are (a oneshot may have neither).
    pub ready_key: Option<usize>,
    pub health_key: Option<usize>,
    pub ready_timeout: Option<Duration>,
    pub health: Option<Health>,
    pub reload: Option<Reload>,
    /// As written: relative paths are resolved, and duplicates dropped, by
    /// `file.rs`.
    pub watch: Vec<PathBuf>,
    /// Where the `pre-stop` key is, for the check against `stop-timeout`.
    pub pre_stop_key: Option<usize>,
    pub pre_stop: Option<PreStop>,
    pub success_exit_codes: Option<Vec<u8>>,
    pub limits: Option<Vec<(Resource, u64)>>,
    /// `schedule`, and where its key is (for the keys it excludes).
    pub schedule: Option<Arc<Schedule>>,
    pub schedule_key: Option<usize>,
    /// `replicas`, and where its key is.
    pub replicas: Option<u32>,
    pub replicas_key: Option<usize>,
    /// Every key written, with where: what a key excludes is checked
    /// between keys (`file.rs`).
    pub keys: Vec<(String, usize)>,
}

/// Type-checks every key of `table`, collecting a problem for each bad key
/// or element.
pub(super) fn read(table: &DeTable<'_>) -> (RawService, Vec<Problem>) {
    let mut raw = RawService::default();
    let mut problems = Vec::new();
    for (key, value) in table.iter() {
        raw.keys.push((key.get_ref().to_string(), key.span().start));
        read_key(&mut raw, key, value, &mut problems);
    }
    (raw, problems)
}

fn read_key(
    raw: &mut RawService,
    key: &Spanned<DeString<'_>>,
    value: &Value<'_>,
    problems: &mut Vec<Problem>,
) {
    const RESTART: &[(&str, Restart)] = &[
        ("always", Restart::Always),
        ("on-failure", Restart::OnFailure),
        ("never", Restart::Never),
    ];
    const OUTPUT: &[(&str, Output)] = &[
        ("prefix", Output::Prefix),
        ("inherit", Output::Inherit),
        ("null", Output::Null),
    ];
    let name: &str = key.get_ref();
    match name {
        "command" => {
            raw.has_command = true;
            raw.command_key = Some(key.span().start);
            raw.command = argv(name, value, problems);
        }
        "user" => keep(&mut raw.user, id(name, "user name", value), problems),
        "group" => keep(&mut raw.group, id(name, "group name", value), problems),
        "working-dir" => keep(&mut raw.working_dir, path(name, value), problems),
        "env-file" => keep(&mut raw.env_file, path(name, value), problems),
        "env" => raw.env = env(value, problems),
        "after" => {
            raw.after_key = Some(key.span().start);
            raw.after = after(value, problems);
        }
        "oneshot" => keep(&mut raw.oneshot, boolean(name, value), problems),
        "enabled" => keep(&mut raw.enabled, boolean(name, value), problems),
        "restart" => keep(&mut raw.restart, choice(name, value, RESTART), problems),
        "restart-delay" => keep(
            &mut raw.restart_delay,
            written_duration(name, value),
            problems,
        ),
        "restart-delay-max" => keep(
            &mut raw.restart_delay_max,
            written_duration(name, value),
            problems,
        ),
        "max-restarts" => keep(&mut raw.max_restarts, max_restarts(value), problems),
        "essential" => keep(&mut raw.essential, boolean(name, value), problems),
        "stop-signal" => keep(&mut raw.stop_signal, stop_signal(value), problems),
        "stop-timeout" => keep(
            &mut raw.stop_timeout,
            written_duration(name, value).map(|d| d.value.duration),
            problems,
        ),
        "kill-group" => keep(&mut raw.kill_group, boolean(name, value), problems),
        "output" => keep(&mut raw.output, choice(name, value, OUTPUT), problems),
        "log-file" => raw.log_file = log_file::log_file(key.span().start, value, problems),
        "ready" => {
            raw.ready_key = Some(key.span().start);
            raw.ready = hooks::ready(value, problems);
        }
        "ready-timeout" => keep(
            &mut raw.ready_timeout,
            positive_duration(name, value),
            problems,
        ),
        "health" => {
            raw.health_key = Some(key.span().start);
            raw.health = hooks::health(value, problems);
        }
        "reload" => raw.reload = hooks::reload(value, problems),
        "watch" => raw.watch = watch(value, problems),
        "pre-stop" => {
            raw.pre_stop_key = Some(key.span().start);
            raw.pre_stop = hooks::pre_stop(value, problems);
        }
        "success-exit-codes" => raw.success_exit_codes = exit_codes(value, problems),
        "limits" => raw.limits = limits::limits(value, problems),
        "schedule" => {
            raw.schedule_key = Some(key.span().start);
            keep(&mut raw.schedule, schedule(value), problems);
        }
        "replicas" => {
            raw.replicas_key = Some(key.span().start);
            keep(&mut raw.replicas, replicas(value), problems);
        }
        _ => {
            let shown = name.escape_debug();
            let message = match closest(name, KEYS.iter().copied()) {
                Some(guess) => format!("unknown key `{shown}` (did you mean `{guess}`?)"),
                None => format!("unknown key `{shown}`"),
            };
            problems.push(Problem::at(key.span().start, message));
        }
    }
}

/// Stores a good value, or records why it is bad.
fn keep<T>(slot: &mut Option<T>, result: Result<T, Problem>, problems: &mut Vec<Problem>) {
    match result {
        Ok(value) => *slot = Some(value),
        Err(problem) => problems.push(problem),
    }
}

/// A user or group: a name, or a numeric id as an integer or a string of digits.
fn id(key: &str, what: &str, value: &Value<'_>) -> Result<At<Id>, Problem> {
    let at = value.span().start;
    // (uid_t)-1 means "leave unchanged" to setresuid(2), so it is not an id.
    let number = |n: Option<i128>, shown: &str| match n.and_then(|n| u32::try_from(n).ok()) {
        Some(id) if id != u32::MAX => Ok(At {
            value: Id::Number(id),
            at,
        }),
        _ => Err(Problem::at(
            at,
            format!(
                "`{key}`: numeric id {shown} is out of range (0 to {})",
                u32::MAX - 1
            ),
        )),
    };
    match value.get_ref() {
        DeValue::Integer(i) => number(integer(i.as_str(), i.radix()), i.as_str()),
        DeValue::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            number(s.parse::<i128>().ok(), s.as_ref())
        }
        DeValue::String(s) if s.trim().is_empty() => {
            Err(Problem::at(at, format!("`{key}`: must not be empty")))
        }
        DeValue::String(_) => Ok(At {
            value: Id::Name(text(key, what, value)?),
            at,
        }),
        _ => Err(expected(key, &format!("a {what} or numeric id"), value)),
    }
}

fn path(key: &str, value: &Value<'_>) -> Result<PathBuf, Problem> {
    let s = text(key, "a path string", value)?;
    if s.is_empty() {
        return Err(Problem::at(
            value.span().start,
            format!("`{key}`: must not be empty"),
        ));
    }
    Ok(PathBuf::from(s))
}

fn boolean(key: &str, value: &Value<'_>) -> Result<bool, Problem> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(expected(key, "true or false", value)),
    }
}

/// One of a few strings, e.g. `restart`: a bad one lists the valid ones.
fn choice<T: Copy>(key: &str, value: &Value<'_>, choices: &[(&str, T)]) -> Result<T, Problem> {
    let valid = choices
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match value.get_ref() {
        DeValue::String(s) => choices
            .iter()
            .find(|(name, _)| *name == s.as_ref())
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Problem::at(
                    value.span().start,
                    format!(
                        "`{key}`: expected one of {valid}, found \"{}\"",
                        s.escape_debug()
                    ),
                )
            }),
        _ => Err(expected(key, &format!("one of {valid}"), value)),
    }
}

fn max_restarts(value: &Value<'_>) -> Result<u32, Problem> {
    let range = format!("an integer from 0 to {} (0 = unlimited)", u32::MAX);
    match value.get_ref() {
        DeValue::Integer(i) => integer(i.as_str(), i.radix())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Problem::at(
                    value.span().start,
                    format!("`max-restarts`: expected {range}, found {}", i.as_str()),
                )
            }),
        _ => Err(expected("max-restarts", &range, value)),
    }
}

fn replicas(value: &Value<'_>) -> Result<u32, Problem> {
    let range = format!("an integer from 1 to {MAX_REPLICAS}");
    match value.get_ref() {
        DeValue::Integer(i) => integer(i.as_str(), i.radix())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_REPLICAS).contains(n))
            .ok_or_else(|| {
                Problem::at(
                    value.span().start,
                    format!("`replicas`: expected {range}, found {}", i.as_str()),
                )
            }),
        _ => Err(expected("replicas", &range, value)),
    }
}

fn stop_signal(value: &Value<'_>) -> Result<Signal, Problem> {
    match value.get_ref() {
        DeValue::String(s) => signal::parse_signal(s.as_ref()).map_err(|message| {
            Problem::at(value.span().start, format!("`stop-signal`: {message}"))
        }),
        _ => Err(expected(
            "stop-signal",
            "a signal name such as \"TERM\"",
            value,
        )),
    }
}

/// `env`: a table of strings whose keys are valid variable names. Every bad
/// entry is reported; the good ones are kept, in key order.
fn env(value: &Value<'_>, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let DeValue::Table(table) = value.get_ref() else {
        problems.push(expected("env", "a table of strings", value));
        return Vec::new();
    };
    let mut vars = Vec::new();
    for (key, item) in table.iter() {
        let name: &str = key.get_ref();
        if !is_env_name(name) {
            problems.push(Problem::at(
                key.span().start,
                format!(
                    "`env`: invalid variable name `{}` (use letters, digits and `_`, not starting with a digit)",
                    name.escape_debug()
                ),
            ));
            continue;
        }
        let shown = format!("env.{name}");
        match item.get_ref() {
            DeValue::String(_) => match text(&shown, "a string", item) {
                Ok(v) => vars.push((name.to_string(), v)),
                Err(problem) => problems.push(problem),
            },
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                let mut problem = expected(&shown, "a string", item);
                problem.message.push_str(" (put the value in quotes)");
                problems.push(problem);
            }
            _ => problems.push(expected(&shown, "a string", item)),
        }
    }
    vars
}

/// POSIX-portable environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One entry of `after`, where its name and its condition are written
/// (the same place in the array form).
#[derive(Debug, Clone)]
pub(super) struct RawAfter {
    pub name: At<String>,
    pub condition: At<Condition>,
}

/// `after`: an array of service names (each to be ready), or a table of
/// service name = condition. The names are checked against the other
/// services by `validate.rs`. Every bad element is reported; duplicates in
/// the array are dropped.
fn after(value: &Value<'_>, problems: &mut Vec<Problem>) -> Vec<RawAfter> {
    let mut names: Vec<RawAfter> = Vec::new();
    match value.get_ref() {
        DeValue::Array(items) => {
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) => {
                        if !names.iter().any(|n| n.name.value == s.as_ref()) {
                            let at = item.span().start;
                            names.push(RawAfter {
                                name: At {
                                    value: s.to_string(),
                                    at,
                                },
                                condition: At {
                                    value: Condition::Ready,
                                    at,
                                },
                            });
                        }
                    }
                    _ => problems.push(expected("after", "a service name (string)", item)),
                }
            }
        }
        DeValue::Table(table) => {
            for (key, item) in table.iter() {
                let name: &str = key.get_ref();
                match condition(name, item) {
                    Ok(condition) => {
                        // The table may be sorted by name: kept in file order.
                        let at = key.span().start;
                        let slot = names.partition_point(|n| n.name.at < at);
                        names.insert(
                            slot,
                            RawAfter {
                                name: At {
                                    value: name.to_string(),
                                    at,
                                },
                                condition,
                            },
                        );
                    }
                    Err(problem) => problems.push(problem),
                }
            }
        }
        _ => problems.push(expected(
            "after",
            "an array of service names or a table of name = condition",
            value,
        )),
    }
    names
}

/// The condition of `after.NAME`: one of `Condition::NAMES`.
fn condition(name: &str, value: &Value<'_>) -> Result<At<Condition>, Problem> {
    let key = format!("after.{}", name.escape_debug());
    let at = value.span().start;
    let DeValue::String(s) = value.get_ref() else {
        return Err(expected(&key, "a condition such as \"ready\"", value));
    };
    if let Some(&(_, value)) = Condition::NAMES.iter().find(|(n, _)| *n == s.as_ref()) {
        return Ok(At { value, at });
    }
    let shown = s.escape_debug();
    let message = match closest(s, Condition::NAMES.iter().map(|(n, _)| *n)) {
        Some(guess) => {
            format!("`{key}`: unknown condition \"{shown}\" (did you mean \"{guess}\"?)")
        }
        None => format!(
            "`{key}`: unknown condition \"{shown}\" (expected \"started\", \"ready\", \"healthy\", \"completed\" or \"succeeded\")"
        ),
    };
    Err(Problem::at(at, message))
}

/// `schedule`: a cron expression, an alias or `@every DUR` (`schedule.rs`).
fn schedule(value: &Value<'_>) -> Result<Arc<Schedule>, Problem> {
    let text = text(
        "schedule",
        "a cron expression string such as \"*/5 * * * *\"",
        value,
    )?;
    super::schedule::parse(&text)
        .map(Arc::new)
        .map_err(|message| Problem::at(value.span().start, format!("`schedule`: {message}")))
}

/// `watch`: an array of paths. Every bad element is reported.
fn watch(value: &Value<'_>, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let DeValue::Array(items) = value.get_ref() else {
        problems.push(expected("watch", "an array of paths", value));
        return Vec::new();
    };
    let mut paths = Vec::new();
    for item in items.iter() {
        match text("watch", "a path (string)", item) {
            Ok(path) if path.is_empty() => problems.push(Problem::at(
                item.span().start,
                "`watch`: a path must not be empty".to_string(),
            )),
            Ok(path) => paths.push(PathBuf::from(path)),
            Err(problem) => problems.push(problem),
        }
    }
    paths
}

/// `success-exit-codes`: a non-empty array of exit codes (0 to 255). Every
/// bad element is reported; duplicates are dropped.
fn exit_codes(value: &Value<'_>, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    let DeValue::Array(items) = value.get_ref() else {
        problems.push(expected(
            "success-exit-codes",
            "an array of exit codes such as [0, 3]",
            value,
        ));
        return None;
    };
    if items.is_empty() {
        problems.push(Problem::at(
            value.span().start,
            "`success-exit-codes`: must not be empty (without the key, only 0 is a success)".into(),
        ));
    }
    let before = problems.len();
    let mut codes = Vec::new();
    for item in items.iter() {
        let code = match item.get_ref() {
            DeValue::Integer(i) => {
                integer(i.as_str(), i.radix()).and_then(|n| u8::try_from(n).ok())
            }
            _ => None,
        };
        match code {
            Some(code) if codes.contains(&code) => {}
            Some(code) => codes.push(code),
            None => problems.push(Problem::at(
                item.span().start,
                "`success-exit-codes`: an exit code is a whole number from 0 to 255".into(),
            )),
        }
    }
    (problems.len() == before && !items.is_empty()).then_some(codes)
}
