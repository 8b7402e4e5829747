//! One atomic s6-rc service directory → a `ServiceSpec`: a longrun's
//! `run`, `finish`, `notification-fd`, `timeout-*`, `down-signal` and
//! `env/`; a oneshot's `up` and `down` command lines and `timeout-up`.
//! Errors go to `Ctx::errors`, each naming the file.
//!
//! What it must never do: open `run`, `finish` or any script (they are only
//! stat'ed; `up` and `down` are read, as s6-rc-compile lexes them), or look
//! at other services.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Ctx, SMALL_LIMIT, small_file};
use crate::config::spec::{Origin, Ready, Restart, ServiceSpec};
use crate::config::{ConfigError, MAX_DURATION, parse_notification_fd, parse_signal};
use crate::text::execline::command_line;

/// The spec of longrun `name`, or `None` after pushing its errors.
pub(super) fn longrun(name: &str, dir: &Path, ctx: &mut Ctx) -> Option<ServiceSpec> {
    let before = ctx.errors.len();
    let dir_abs = absolute(dir);
    let run = dir_abs.join("run");
    match fs::metadata(&run) {
        Ok(meta) if meta.is_file() && executable(&meta) => {}
        Ok(meta) if meta.is_file() => ctx.errors.push(ConfigError::whole_file(
            &dir.join("run"),
            "not executable (chmod +x it)".to_string(),
        )),
        Ok(_) => ctx.errors.push(ConfigError::whole_file(
            &dir.join("run"),
            "not a regular file".to_string(),
        )),
        Err(_) if dir.join("up").exists() => ctx.errors.push(ConfigError::whole_file(
            dir,
            "a longrun needs an executable `run` script; `up` is a oneshot's (is `type` wrong?)"
                .to_string(),
        )),
        Err(_) => ctx.errors.push(ConfigError::whole_file(
            dir,
            "a longrun needs an executable `run` script".to_string(),
        )),
    }
    let mut spec = base(name, dir, vec![run.display().to_string()]);
    // s6-notifyoncheck and `./data/check` count on the service's own
    // directory as cwd, as s6-supervise gives it.
    spec.working_dir = dir_abs.clone();
    spec.kill_group = false;
    spec.restart = Restart::Always;
    if let Some(timeout) = ctx.options.s6_stop_timeout {
        spec.stop_timeout = timeout;
    }
    if let Some(text) = control(ctx, dir, "notification-fd") {
        match parse_notification_fd(&text) {
            Ok(fd) => spec.ready = Some(Ready::Fd(fd)),
            Err(e) => ctx.errors.push(at_start(&dir.join("notification-fd"), e)),
        }
    }
    // s6-rc: absent or 0, no limit on the start (S6_CMD_WAIT_FOR_SERVICES_MAXTIME
    // bounds the whole boot instead).
    spec.ready_timeout = match millis(ctx, dir, "timeout-up") {
        Some(ms) if ms > 0 => ms_duration(ms),
        _ => MAX_DURATION,
    };
    // 0 is s6's "never SIGKILL"; corral always has a last resort, its default.
    if let Some(ms) = millis(ctx, dir, "timeout-kill").filter(|&ms| ms > 0) {
        spec.stop_timeout = ms_duration(ms);
    }
    if let Some(ms) = millis(ctx, dir, "timeout-finish").filter(|&ms| ms > 0) {
        spec.finish_timeout = ms_duration(ms);
    }
    if let Some(text) = control(ctx, dir, "down-signal") {
        match parse_signal(text.trim()) {
            Ok(signal) => spec.stop_signal = signal,
            Err(e) => ctx.errors.push(at_start(&dir.join("down-signal"), e)),
        }
    }
    let finish = dir_abs.join("finish");
    match fs::metadata(&finish) {
        Ok(meta) if meta.is_file() && executable(&meta) => spec.finish = Some(finish),
        Ok(meta) if meta.is_file() => ctx.errors.push(ConfigError::whole_file(
            &dir.join("finish"),
            "not executable (chmod +x it)".to_string(),
        )),
        Ok(_) => ctx.errors.push(ConfigError::whole_file(
            &dir.join("finish"),
            "not a regular file".to_string(),
        )),
        Err(_) => {}
    }
    spec.env = envdir(ctx, &dir.join("env"));
    (ctx.errors.len() == before).then_some(spec)
}

/// The spec of oneshot `name`, or `None` after pushing its errors.
pub(super) fn oneshot(name: &str, dir: &Path, ctx: &mut Ctx) -> Option<ServiceSpec> {
    let before = ctx.errors.len();
    let mut spec = base(name, dir, Vec::new());
    spec.oneshot = true;
    spec.restart = Restart::Never;
    spec.working_dir = PathBuf::from("/");
    match script(ctx, dir, "up") {
        Some(Some(argv)) => spec.command = argv,
        Some(None) if dir.join("run").exists() => ctx.errors.push(ConfigError::whole_file(
            dir,
            "a oneshot needs an `up` file (its command line); `run` is a longrun's (is `type` wrong?)"
                .to_string(),
        )),
        Some(None) => ctx.errors.push(ConfigError::whole_file(
            dir,
            "a oneshot needs an `up` file (its command line)".to_string(),
        )),
        None => {}
    }
    // An empty `down` does nothing, as in s6-rc.
    if let Some(Some(argv)) = script(ctx, dir, "down") {
        spec.down = (!argv.is_empty()).then_some(argv);
    }
    spec.run_timeout = millis(ctx, dir, "timeout-up")
        .filter(|&ms| ms > 0)
        .map(ms_duration);
    // The deadline of the `down` script (s6-rc: 0 or absent, none; corral
    // keeps its stop timeout as the last resort).
    if let Some(ms) = millis(ctx, dir, "timeout-down").filter(|&ms| ms > 0) {
        spec.stop_timeout = ms_duration(ms);
    }
    (ctx.errors.len() == before).then_some(spec)
}

/// The defaults every tree service shares.
fn base(name: &str, dir: &Path, command: Vec<String>) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, command);
    spec.source = dir.to_path_buf();
    spec.origin = Origin::S6Rc;
    spec
}

/// An `up` or `down` file as argv: `Some(None)` when absent, `None` after
/// an error. A plain command line runs as it is (an empty one, or only
/// comments, is an empty argv: nothing to run, success, as s6-rc does);
/// anything else (blocks) through `execlineb -P FILE`, which must then be
/// installed.
fn script(ctx: &mut Ctx, dir: &Path, file: &str) -> Option<Option<Vec<String>>> {
    let path = dir.join(file);
    let Some(text) = small_file(ctx, &path, crate::files::MAX_SIZE)? else {
        return Some(None);
    };
    match command_line(&text) {
        Ok(Some(argv)) => Some(Some(argv)),
        Ok(None) => {
            if !on_path(ctx.path_env.as_deref(), "execlineb") {
                ctx.errors.push(ConfigError::whole_file(
                    &path,
                    "this is an execline script (it uses blocks), and `execlineb` is not on PATH: install execline, or make it one command line".to_string(),
                ));
                return None;
            }
            Some(Some(vec![
                "execlineb".to_string(),
                "-P".to_string(),
                absolute(dir).join(file).display().to_string(),
            ]))
        }
        Err(e) => {
            ctx.errors.push(ConfigError {
                path,
                line: e.line,
                col: e.col,
                message: e.message,
            });
            None
        }
    }
}

/// Whether an executable file `program` is in one of the dirs of `path`.
pub(super) fn on_path(path: Option<&OsStr>, program: &str) -> bool {
    let Some(path) = path else { return false };
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .any(|dir| fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && executable(&m)))
}

/// A one-value control file's text, if present.
fn control(ctx: &mut Ctx, dir: &Path, file: &str) -> Option<String> {
    small_file(ctx, &dir.join(file), SMALL_LIMIT).flatten()
}

/// A `timeout-*` file: milliseconds, a decimal integer (s6-rc reads a
/// 32-bit one); blanks around it ignored.
fn millis(ctx: &mut Ctx, dir: &Path, file: &str) -> Option<u64> {
    let text = control(ctx, dir, file)?;
    match text.trim().parse::<u32>() {
        Ok(ms) => Some(u64::from(ms)),
        Err(_) => {
            ctx.errors.push(at_start(
                &dir.join(file),
                format!(
                    "expected a number of milliseconds (0 = no limit), found \"{}\"",
                    text.trim().escape_debug()
                ),
            ));
            None
        }
    }
}

fn ms_duration(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_DURATION)
}

/// An s6-envdir (`env/`): one variable per file, named after it; the value
/// is the file's first line without its trailing blanks, NUL bytes read as
/// newlines. An empty file unsets the variable in s6-envdir: here it is
/// left out (services get the container environment otherwise unchanged).
fn envdir(ctx: &mut Ctx, dir: &Path) -> Vec<(String, String)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(_) => return Vec::new(),
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    crate::sort::sort(&mut paths);
    let mut env = Vec::new();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            ctx.errors.push(ConfigError::whole_file(
                &path,
                "a variable name must be valid UTF-8".to_string(),
            ));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if name.contains('=') {
            ctx.errors.push(ConfigError::whole_file(
                &path,
                "a variable name cannot contain `=`".to_string(),
            ));
            continue;
        }
        let Some(Some(text)) = small_file(ctx, &path, crate::files::MAX_SIZE) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let first = text.split('\n').next().unwrap_or("");
        let value = first.trim_end_matches([' ', '\t']).replace('\0', "\n");
        env.push((name.to_string(), value));
    }
    env
}

fn at_start(path: &Path, message: String) -> ConfigError {
    ConfigError {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        message,
    }
}

fn executable(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// `dir` made absolute (`run` is executed after a chdir into it).
fn absolute(dir: &Path) -> PathBuf {
    fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}
