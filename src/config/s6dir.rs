//! s6-style service directories (SPEC section 4): `NAME/run` is the command,
//! started in the directory; `finish` runs after each exit; a `down` file
//! means not started automatically; `notification-fd` holds the readiness
//! fd; `down-signal` the stop signal; an optional `corral.toml` adds any key
//! of the service file format except `command`. `kill-group` defaults to
//! false, as in s6: signalling `run` leaves its background children alone.
//! Every file is read through `files` (regular, capped, never a blocking
//! open); `run` and `finish` are only stat'ed, never opened.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::file::{self, Parsed};
use super::signal::parse_signal;
use super::spec::{Ready, ServiceSpec};
use super::{ConfigError, LoadOptions};
use crate::files;

/// The service defined by directory `dir`, named `name`.
pub(super) fn read(dir: &Path, name: &str, options: &LoadOptions) -> Parsed {
    let mut errors = Vec::new();
    // Absolute: `run` is executed after the chdir into the directory.
    let dir_abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let run = dir_abs.join("run");
    match fs::metadata(&run) {
        Ok(meta) if meta.is_file() && is_executable(&meta) => {}
        Ok(meta) if meta.is_file() => errors.push(ConfigError::whole_file(
            &dir.join("run"),
            "not executable (chmod +x it)".to_string(),
        )),
        _ => errors.push(ConfigError::whole_file(
            dir,
            "a service directory needs an executable `run` script".to_string(),
        )),
    }
    let mut defaults = ServiceSpec::new(name, vec![run.display().to_string()]);
    defaults.source = dir.to_path_buf();
    defaults.working_dir = dir_abs.clone();
    defaults.kill_group = false;
    defaults.origin = super::spec::Origin::S6Dir;
    if let Some(timeout) = options.s6_stop_timeout {
        defaults.stop_timeout = timeout;
    }
    defaults.enabled = !dir.join("down").exists();
    if let Some(text) = small_file(dir, "notification-fd", &mut errors) {
        match parse_notification_fd(&text) {
            Ok(fd) => defaults.ready = Some(Ready::Fd(fd)),
            Err(e) => errors.push(ConfigError::whole_file(&dir.join("notification-fd"), e)),
        }
    }
    if let Some(text) = small_file(dir, "down-signal", &mut errors) {
        match parse_signal(text.trim()) {
            Ok(signal) => defaults.stop_signal = signal,
            Err(e) => errors.push(ConfigError::whole_file(&dir.join("down-signal"), e)),
        }
    }
    let finish = dir_abs.join("finish");
    match fs::metadata(&finish) {
        Ok(meta) if meta.is_file() && is_executable(&meta) => defaults.finish = Some(finish),
        Ok(meta) if meta.is_file() => errors.push(ConfigError::whole_file(
            &dir.join("finish"),
            "not executable (chmod +x it)".to_string(),
        )),
        _ => {}
    }
    if dir.join("log").is_dir() {
        crate::log::warn!(
            service = name,
            "ignoring {}/log: corral prefixes each output line with the service name instead of running a logger",
            dir.display()
        );
    }
    let toml = dir.join("corral.toml");
    let (path, text) = match files::read(&toml) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => (toml, text),
            Err(_) => {
                errors.push(ConfigError::whole_file(
                    &toml,
                    "not valid UTF-8".to_string(),
                ));
                (toml, String::new())
            }
        },
        Err(e) if e.why.is_not_found() => (dir.to_path_buf(), String::new()),
        Err(e) => {
            errors.push(ConfigError::whole_file(&toml, e.why.to_string()));
            (toml, String::new())
        }
    };
    let mut parsed = file::parse_over(name, &path, &text, defaults);
    // Point every message at the directory's own files, and report the
    // directory's problems with the rest.
    parsed.path = dir.to_path_buf();
    if !errors.is_empty() {
        parsed.spec = None;
        parsed.errors.extend(errors);
    }
    parsed
}

/// The contents of a `notification-fd` file: a file descriptor number from
/// 3 to 1023, surrounding whitespace (the usual trailing newline) ignored.
pub fn parse_notification_fd(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(fd) if (3..=1023).contains(&fd) => Ok(fd),
        _ => Err(format!(
            "expected a file descriptor number from 3 to 1023, found {:?}",
            text.trim()
        )),
    }
}

fn is_executable(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// A one-line control file of the directory, if present (at most 4 KiB:
/// these hold a number or a name).
fn small_file(dir: &Path, name: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
    let path: PathBuf = dir.join(name);
    match files::read_limited(&path, 4096) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                errors.push(ConfigError::whole_file(
                    &path,
                    "not valid UTF-8".to_string(),
                ));
                None
            }
        },
        Err(e) if e.why.is_not_found() => None,
        Err(e) => {
            errors.push(ConfigError::whole_file(&path, e.why.to_string()));
            None
        }
    }
}
