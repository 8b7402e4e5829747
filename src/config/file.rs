//! One service file: TOML text → `ServiceSpec`, with defaults applied and the
//! checks that involve several keys of the same file. Checks that involve
//! other services are in `validate.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use super::ConfigError;
use super::credentials;
use super::log_file;
use super::raw::{self, RawService};
use super::spec::{After, Condition, Output, PreStop, Ready, Restart, ServiceSpec};
use super::value::Problem;
use crate::text::human;

/// A 1-based line and column (in characters).
pub(super) type Pos = (usize, usize);

/// What one file yields: its spec when it has no error, and in any case what
/// the cross-service checks need (its `after` list, with positions), so that
/// a service with an unrelated mistake still takes part in them.
#[derive(Debug)]
pub(super) struct Parsed {
    pub name: String,
    pub path: PathBuf,
    pub spec: Option<ServiceSpec>,
    pub after_key: Option<Pos>,
    pub after: Vec<AfterAt>,
    /// Where `log-file.path` is written, for the check that no two
    /// services share a log file.
    pub log_file_at: Option<Pos>,
    pub errors: Vec<ConfigError>,
}

/// One `after` entry, for the checks between services: its target and
/// condition, and where each is written ((0, 0): not written, e.g. added
/// for an s6-rc tree).
#[derive(Debug, Clone)]
pub(super) struct AfterAt {
    pub name: String,
    pub at: Pos,
    pub condition: Condition,
    pub condition_at: Pos,
}

impl AfterAt {
    /// A dependency that no file wrote: `ready`, at no position.
    pub fn implied(name: &str) -> AfterAt {
        AfterAt {
            name: name.to_string(),
            at: (0, 0),
            condition: Condition::Ready,
            condition_at: (0, 0),
        }
    }
}

/// `[a-z0-9][a-z0-9_.-]*`: safe in a file name, a log prefix and a shell word.
pub(super) fn is_service_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

pub(super) fn invalid_name_message(name: &str) -> String {
    format!(
        "invalid service name \"{}\": use lower-case letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        name.escape_debug()
    )
}

/// Parses the definition of service `name` found at `path`. Relative paths
/// in it are relative to the directory holding `path`.
pub(super) fn parse(name: &str, path: &Path, text: &str) -> Parsed {
    // The defaults live in one place: `ServiceSpec::new`.
    parse_over(name, path, text, ServiceSpec::new(name, Vec::new()))
}

/// Like `parse`, over other defaults: an s6-style service directory's
/// `corral.toml` adds keys to what the directory itself says (its `run`
/// script as the command, which the file may not replace).
pub(super) fn parse_over(name: &str, path: &Path, text: &str, defaults: ServiceSpec) -> Parsed {
    let s6 = !defaults.command.is_empty();
    let mut parsed = Parsed {
        name: name.to_string(),
        path: path.to_path_buf(),
        spec: None,
        after_key: None,
        after: Vec::new(),
        log_file_at: None,
        errors: Vec::new(),
    };
    if !is_service_name(name) {
        parsed
            .errors
            .push(ConfigError::whole_file(path, invalid_name_message(name)));
    }
    let error_at = |at: Option<usize>, message: String| match at {
        Some(offset) => {
            let (line, col) = line_col(text, offset);
            ConfigError {
                path: path.to_path_buf(),
                line,
                col,
                message,
            }
        }
        None => ConfigError::whole_file(path, message),
    };

    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span();
            let mut message = format!("TOML syntax error: {}", e.message());
            if e.message() == "duplicate key"
                && let Some(key) = span.clone().and_then(|s| text.get(s))
            {
                message = format!("duplicate key `{key}`");
            }
            parsed.errors.push(error_at(span.map(|s| s.start), message));
            return parsed;
        }
    };

    let (raw, mut problems) = raw::read(doc.get_ref());
    parsed.after_key = raw.after_key.map(|at| line_col(text, at));
    parsed.after = raw
        .after
        .iter()
        .map(|a| AfterAt {
            name: a.name.value.clone(),
            at: line_col(text, a.name.at),
            condition: a.condition.value,
            condition_at: line_col(text, a.condition.at),
        })
        .collect();

    if s6 && raw.has_command {
        problems.push(Problem {
            at: raw.command_key,
            message:
                "`command` cannot be set here: the service directory's `run` script is the command"
                    .to_string(),
        });
    } else if !raw.has_command && !s6 {
        problems.push(Problem {
            at: None,
            message: "missing required key `command`".to_string(),
        });
    }
    if s6
        && defaults.ready.is_some()
        && let Some(at) = raw.ready_key
    {
        problems.push(Problem {
            at: Some(at),
            message: "`ready` conflicts with the directory's `notification-fd` file: keep one"
                .to_string(),
        });
    }

    check_restart_delays(&raw, &defaults, &mut problems);
    check_pre_stop(&raw, &defaults, &mut problems);
    let base = path.parent().unwrap_or(Path::new(""));
    let log_file = raw.log_file.as_ref().map(|l| l.resolve(base));
    parsed.log_file_at = raw.log_file.as_ref().map(|l| line_col(text, l.path.at));
    if let (Some(raw_log), Some(log_file)) = (&raw.log_file, &log_file) {
        if raw.output.unwrap_or(defaults.output) == Output::Inherit {
            problems.push(Problem::at(
                raw_log.key_at,
                "`log-file` needs corral to read the service's output: not with `output = \"inherit\"`"
                    .to_string(),
            ));
        } else if let Err(message) = log_file::check_writable(&log_file.path) {
            problems.push(Problem::at(
                raw_log.path.at,
                format!("`log-file.path`: {message}"),
            ));
        }
    }
    if matches!(raw.ready, Some(Ready::LogLine(_)))
        && raw.output.unwrap_or(defaults.output) == Output::Inherit
    {
        problems.push(Problem {
            at: raw.ready_key,
            message: "`ready.log-line` needs corral to read the service's output: not with `output = \"inherit\"`"
                .to_string(),
        });
    }
    if raw.oneshot == Some(true) {
        // A oneshot is ready when it exits 0, and is not kept alive.
        for (key, at) in [("ready", raw.ready_key), ("health", raw.health_key)] {
            if at.is_some() {
                problems.push(Problem {
                    at,
                    message: format!(
                        "`{key}` does not apply to a oneshot: its dependants wait for its exit 0"
                    ),
                });
            }
        }
    }

    if raw.schedule.is_some() {
        check_schedule(&raw, &defaults, &mut problems);
    }
    if raw.replicas.is_some() {
        check_replicas(&raw, &mut problems);
    }

    let credentials = match credentials::resolve(raw.user.as_ref(), raw.group.as_ref()) {
        Ok(credentials) => Some(credentials),
        Err(mut more) => {
            problems.append(&mut more);
            None
        }
    };

    parsed
        .errors
        .extend(problems.into_iter().map(|p| error_at(p.at, p.message)));
    sort(&mut parsed.errors);
    if !parsed.errors.is_empty() {
        return parsed;
    }
    let command = if s6 {
        Some(defaults.command.clone())
    } else {
        raw.command
    };
    let (Some(command), Some(credentials)) = (command, credentials) else {
        // Unreachable: a missing command or bad credentials are errors above.
        return parsed;
    };

    // Duplicates are dropped once resolved (`a` and `./a` are one file;
    // `Path` equality ignores `.` components and repeated slashes).
    let mut watch: Vec<PathBuf> = Vec::new();
    for file in raw.watch {
        let file = base.join(file);
        if !watch.contains(&file) {
            watch.push(file);
        }
    }
    let oneshot = raw.oneshot.unwrap_or(defaults.oneshot);
    let default_restart = if oneshot {
        Restart::Never
    } else {
        defaults.restart
    };
    parsed.spec = Some(ServiceSpec {
        name: name.to_string(),
        source: path.to_path_buf(),
        command,
        credentials,
        // `join` keeps an absolute path as it is.
        working_dir: raw
            .working_dir
            .map_or(defaults.working_dir, |dir| base.join(dir)),
        env: raw.env,
        env_file: raw.env_file.map(|file| base.join(file)),
        after: raw
            .after
            .into_iter()
            .map(|a| After {
                name: a.name.value,
                condition: a.condition.value,
            })
            .collect(),
        oneshot,
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        restart: raw.restart.unwrap_or(default_restart),
        restart_delay: raw
            .restart_delay
            .map_or(defaults.restart_delay, |d| d.value.duration),
        restart_delay_max: raw
            .restart_delay_max
            .map_or(defaults.restart_delay_max, |d| d.value.duration),
        max_restarts: raw.max_restarts.unwrap_or(defaults.max_restarts),
        essential: raw.essential.unwrap_or(defaults.essential),
        stop_signal: raw.stop_signal.unwrap_or(defaults.stop_signal),
        stop_timeout: raw.stop_timeout.unwrap_or(defaults.stop_timeout),
        kill_group: raw.kill_group.unwrap_or(defaults.kill_group),
        output: raw.output.unwrap_or(defaults.output),
        log_file: log_file.or(defaults.log_file),
        ready: raw.ready.or(defaults.ready),
        ready_timeout: raw.ready_timeout.unwrap_or(defaults.ready_timeout),
        health: raw.health,
        reload: raw.reload,
        watch,
        finish: defaults.finish,
        success_exit_codes: raw
            .success_exit_codes
            .unwrap_or(defaults.success_exit_codes),
        pre_stop: raw.pre_stop.or(defaults.pre_stop),
        limits: raw.limits.unwrap_or(defaults.limits),
        schedule: raw.schedule,
        replicas: raw.replicas,
        ..defaults
    });
    parsed
}

/// The keys a scheduled service cannot have: it runs to completion at each
/// tick, so restart policies, readiness, liveness, reloads and `essential`
/// (which ends the container when the service ends) make no sense.
fn check_schedule(raw: &RawService, defaults: &ServiceSpec, problems: &mut Vec<Problem>) {
    const RESTART: &str = "a failed run is reported, and the next tick runs it again";
    const READY: &str = "it runs to completion at each tick";
    const RELOAD: &str = "a changed definition applies from its next run";
    for (key, at) in &raw.keys {
        let why = match key.as_str() {
            "restart" | "restart-delay" | "restart-delay-max" | "max-restarts" => RESTART,
            "ready" | "ready-timeout" | "health" => READY,
            "reload" | "watch" => RELOAD,
            "oneshot" if raw.oneshot == Some(true) => {
                "a scheduled service already runs to completion, at each tick"
            }
            "essential" if raw.essential == Some(true) => {
                "it ends after each run by design; a failed run is reported in `ctl status` and the log"
            }
            _ => continue,
        };
        problems.push(Problem::at(
            *at,
            format!("`{key}` does not apply to a scheduled service (`schedule`): {why}"),
        ));
    }
    if defaults.ready.is_some() {
        problems.push(Problem {
            at: raw.schedule_key,
            message: "`schedule` conflicts with the directory's `notification-fd` file: a scheduled service has no readiness".to_string(),
        });
    }
}

/// A replicated service: each instance needs a log file of its own, and
/// runs of a schedule never overlap (so N copies of one would be one).
fn check_replicas(raw: &RawService, problems: &mut Vec<Problem>) {
    if raw.schedule.is_some() {
        problems.push(Problem {
            at: raw.replicas_key,
            message: "`replicas` does not apply to a scheduled service (`schedule`): its runs never overlap; define one service per job".to_string(),
        });
    }
    if let Some(log) = &raw.log_file
        && !log.path.value.to_string_lossy().contains("{replica}")
    {
        problems.push(Problem::at(
            log.path.at,
            "`log-file.path` needs `{replica}` with `replicas`: each instance writes a file of its own".to_string(),
        ));
    }
}

/// `restart-delay-max` is the cap of a delay that starts at `restart-delay`,
/// so it must not be below it; the message names whichever was written.
fn check_restart_delays(raw: &RawService, defaults: &ServiceSpec, problems: &mut Vec<Problem>) {
    let delay = raw
        .restart_delay
        .as_ref()
        .map_or(defaults.restart_delay, |d| d.value.duration);
    let max = raw
        .restart_delay_max
        .as_ref()
        .map_or(defaults.restart_delay_max, |d| d.value.duration);
    if max >= delay {
        return;
    }
    match (&raw.restart_delay, &raw.restart_delay_max) {
        (Some(delay), Some(max)) => problems.push(Problem::at(
            max.at,
            format!(
                "`restart-delay-max` (\"{}\") must not be shorter than `restart-delay` (\"{}\")",
                max.value.text, delay.value.text
            ),
        )),
        (Some(delay), None) => problems.push(Problem::at(
            delay.at,
            format!(
                "`restart-delay` (\"{}\") must not be longer than `restart-delay-max` (default \"{}\")",
                delay.value.text,
                show(defaults.restart_delay_max)
            ),
        )),
        (None, Some(max)) => problems.push(Problem::at(
            max.at,
            format!(
                "`restart-delay-max` (\"{}\") must not be shorter than `restart-delay` (default \"{}\")",
                max.value.text,
                show(defaults.restart_delay)
            ),
        )),
        // Only the defaults: they are consistent.
        (None, None) => {}
    }
}

/// `pre-stop` counts in `stop-timeout`: a `delay` as long as it would leave
/// the service no time between its stop signal and SIGKILL, a `timeout`
/// longer than it could never be reached.
fn check_pre_stop(raw: &RawService, defaults: &ServiceSpec, problems: &mut Vec<Problem>) {
    let stop_timeout = raw.stop_timeout.unwrap_or(defaults.stop_timeout);
    let (key, wait, rule) = match &raw.pre_stop {
        Some(PreStop::Delay(delay)) if *delay >= stop_timeout => {
            ("delay", *delay, "be shorter than")
        }
        Some(PreStop::Exec {
            timeout: Some(timeout),
            ..
        }) if *timeout > stop_timeout => ("timeout", *timeout, "not be longer than"),
        _ => return,
    };
    problems.push(Problem {
            at: raw.pre_stop_key,
            message: format!(
                "`pre-stop.{key}` ({}) must {rule} `stop-timeout` ({}), which it counts in: raise `stop-timeout`",
                human(wait),
                human(stop_timeout)
            ),
        });
}

/// A default duration as a user would write it: `"30s"`, `"100ms"`.
fn show(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Errors in reading order; a stable sort keeps the order of errors found at
/// the same place.
pub(super) fn sort(errors: &mut [ConfigError]) {
    crate::sort::sort_by(errors, |a, b| {
        (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col))
    });
}

/// The 1-based line and character column of byte `offset` in `text`
/// (clamped to the text, and moved back to a character boundary).
pub(super) fn line_col(text: &str, offset: usize) -> Pos {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}
