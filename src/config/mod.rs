//! Service definitions: services dirs of `NAME.toml` files → a validated
//! [`Spec`], or every error at once.
//!
//! This module owns reading the services dirs, the service file format of
//! SPEC section 3 (its defaults are `ServiceSpec::new` in `spec.rs`, those
//! inside `health` are in `hooks.rs`), and
//! every check on it: unknown keys (with a
//! "did you mean"), types, values, users and groups (resolved to ids here, so a
//! spawn never reads `/etc/passwd`), and the checks between services (`after`
//! targets exist and form no cycle). Every error carries `path:line:col` and
//! all of them are reported together; one bad key never hides another.
//!
//! What it must never do: start, signal or wait for anything (it only reads
//! files and the user database), or panic on any input — it also runs inside
//! PID 1 when the definitions are re-read on SIGHUP; every file is read
//! through `files::read` (regular files of at most 1 MiB, never a blocking
//! open), so no FIFO or huge file can hang or swell PID 1. It never reads
//! `env-file`s (read at each start) and never checks that `working-dir`
//! exists (init scripts, which run after validation, may create it), nor that
//! `watch` paths exist, nor resolves the hosts of `tcp` and `http` probes:
//! all of these may appear later. s6-style service directories (`NAME/run`,
//! SPEC section 4) are read by `s6dir.rs` into the same `ServiceSpec`, and
//! so is an s6-overlay v3 s6-rc source tree (SPEC section 9) by `s6rc/`.
//!
//! The flow: `load` walks the dirs; `file.rs` parses one file (TOML →
//! `raw.rs`, which type-checks each key, with `hooks.rs` for the tables
//! `ready`, `health`, `reload` and `pre-stop`, `log_file.rs` for `log-file` (whose
//! path it checks corral could write, creating nothing) and `limits.rs` for
//! `limits` (which it checks corral could set) → defaults and checks between keys of the
//! file, `credentials.rs`); then the tree of `LoadOptions::s6_rc_dir`, if
//! any (`s6rc::load`, given the services dirs' definitions for its
//! `legacy-services`); `validate.rs` checks between all of them.

mod credentials;
mod duration;
mod file;
mod hooks;
mod limits;
mod log_file;
mod raw;
mod s6dir;
mod s6rc;
mod schedule;
mod signal;
pub mod spec;
mod validate;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

pub use duration::{MAX_DURATION, parse_duration};
pub use limits::{UNLIMITED, check_limit, limit_name, show_limit};
pub use s6dir::parse_notification_fd;
pub use signal::{parse_signal, signal_name};
pub use spec::*;

use crate::{files, text};
use file::Parsed;

/// One problem in the definitions, as `path:line:col: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based; 0 when the error is about the file or directory as a whole.
    pub line: usize,
    /// 1-based, counted in characters.
    pub col: usize,
    pub message: String,
}

impl ConfigError {
    /// An error with no position in the file (`path: message`).
    fn whole_file(path: &Path, message: String) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads every services dir, in order: each `NAME.toml` in it defines service
/// NAME. Returns the services sorted by name, or every error of every file,
/// sorted by path then position.
///
/// Hidden files and editor or package-manager leftovers (`*~`, `*.swp`,
/// `*.bak`, `*.dpkg-*`) are skipped silently; other files that are not
/// `.toml` are skipped with a warning. A dir that cannot be read is an error
/// (so the caller should pass optional default dirs only when they exist).
pub fn load(dirs: &[PathBuf]) -> Result<Spec, Vec<ConfigError>> {
    load_with(dirs, &LoadOptions::default())
}

/// Settings that change the defaults of what is loaded. Nothing here is
/// read from the environment: the command line (`cli`, `s6::S6Env`) fills
/// it, and a SIGHUP re-read uses the same value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The default `stop-timeout` of s6-style service directories
    /// (s6-overlay's S6_SERVICES_GRACETIME).
    pub s6_stop_timeout: Option<std::time::Duration>,
    /// An s6-overlay v3 s6-rc source tree to read besides the services
    /// dirs (SPEC section 9, `--s6-rc-dir`); `None`: no tree.
    pub s6_rc_dir: Option<PathBuf>,
    /// s6-overlay's `S6_RUNTIME_BUNDLEDIR` (`S6Env::bundle_dir`): a second
    /// source dir for the `user` and `user2` bundles, read with the tree
    /// when the tree has no `user` of its own, and skipped when it does not
    /// exist. `None`: none.
    pub s6_bundle_dir: Option<PathBuf>,
}

/// `load`, with `options`.
pub fn load_with(dirs: &[PathBuf], options: &LoadOptions) -> Result<Spec, Vec<ConfigError>> {
    let mut errors = Vec::new();
    // The first definition of each name; later ones are errors.
    let mut services: BTreeMap<String, Parsed> = BTreeMap::new();
    for dir in dirs {
        for path in dir_entries(dir, &mut errors) {
            let Some(mut parsed) = read_entry(&path, options, &mut errors) else {
                continue;
            };
            errors.append(&mut parsed.errors);
            match services.get(&parsed.name) {
                Some(first) => errors.push(ConfigError::whole_file(
                    &path,
                    format!(
                        "service \"{}\" is already defined in {}",
                        parsed.name,
                        first.path.display()
                    ),
                )),
                None => {
                    services.insert(parsed.name.clone(), parsed);
                }
            }
        }
    }
    let mut tree = None;
    if let Some(dir) = &options.s6_rc_dir {
        // execline scripts need `execlineb`: looked for where corral's
        // children will look.
        let path = std::env::var_os("PATH");
        let mut read = s6rc::load(dir, options, &services, path, &mut errors);
        add_tree(&mut services, &mut read);
        tree = Some(read);
    }
    let all: Vec<&Parsed> = services.values().collect();
    errors.extend(validate::check_after(&all));
    errors.extend(validate::check_log_files(&all));
    errors.extend(validate::check_replica_names(&all));
    if !errors.is_empty() {
        file::sort(&mut errors);
        return Err(errors);
    }
    let tree = tree.unwrap_or_default();
    // BTreeMap order: sorted by name, each replicated service's instances
    // in its place.
    let mut list = Vec::new();
    let mut replicated = Vec::new();
    for spec in services.into_values().filter_map(|p| p.spec) {
        match spec.replicas {
            Some(n) => {
                list.extend((1..=n).map(|i| spec.instance(i, n)));
                replicated.push(spec);
            }
            None => list.push(spec),
        }
    }
    Ok(Spec {
        services: list,
        bundles: tree.bundles,
        notes: tree.notes,
        replicated,
    })
}

/// The tree's services join the services dirs' (a name defined in both is
/// already an error), and every services-dir service comes after the
/// members of `user`, as v3's `legacy-services` depends on `user`.
fn add_tree(services: &mut BTreeMap<String, Parsed>, tree: &mut s6rc::Tree) {
    for parsed in services.values_mut() {
        for member in &tree.user {
            if !parsed.after.iter().any(|a| a.name == *member) {
                parsed.after.push(file::AfterAt::implied(member));
            }
            if let Some(spec) = parsed.spec.as_mut()
                && !spec.after.iter().any(|a| a.name == *member)
            {
                spec.after.push(member.as_str().into());
            }
        }
    }
    for parsed in tree.services.drain(..) {
        if !services.contains_key(&parsed.name) {
            services.insert(parsed.name.clone(), parsed);
        }
    }
}

/// The entries of `dir`, sorted by name so that the result (and which of two
/// same-named files counts as the first) never depends on readdir order.
fn dir_entries(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(ConfigError::whole_file(
                dir,
                format!("cannot read services directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => paths.push(entry.path()),
            Err(e) => errors.push(ConfigError::whole_file(
                dir,
                format!("cannot read services directory: {e}"),
            )),
        }
    }
    crate::sort::sort(&mut paths);
    paths
}

/// One entry of a services dir: `None` when it defines no service.
fn read_entry(path: &Path, options: &LoadOptions, errors: &mut Vec<ConfigError>) -> Option<Parsed> {
    let file_name = path.file_name()?.to_string_lossy().into_owned();
    if is_skipped_silently(&file_name) {
        return None;
    }
    let name = file_name.strip_suffix(".toml");
    // `metadata` follows symlinks: a link to a file is a file.
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if name.is_some() => {
            errors.push(ConfigError::whole_file(path, text::io_reason(&e)));
            return None;
        }
        Err(e) => {
            crate::log::warn!(path = %path.display(), error = %e, "ignoring unreadable entry in services directory");
            return None;
        }
    };
    if metadata.is_dir() {
        return Some(s6dir::read(path, &file_name, options));
    }
    let Some(name) = name else {
        crate::log::warn!(path = %path.display(), "ignoring file in services directory: not a NAME.toml service definition");
        return None;
    };
    let unreadable = |message: String| Parsed {
        name: name.to_string(),
        path: path.to_path_buf(),
        spec: None,
        after_key: None,
        after: Vec::new(),
        log_file_at: None,
        errors: vec![ConfigError::whole_file(path, message)],
    };
    // Never blocks on a FIFO or a device, nor reads a 25 MB file into PID 1.
    let bytes = match files::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Some(unreadable(e.why.to_string())),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(file::parse(name, path, &text)),
        Err(e) => {
            let valid = e
                .as_bytes()
                .get(..e.utf8_error().valid_up_to())
                .unwrap_or(&[]);
            let (line, col) = file::line_col(&String::from_utf8_lossy(valid), valid.len());
            let mut parsed = unreadable(String::new());
            parsed.errors = vec![ConfigError {
                path: path.to_path_buf(),
                line,
                col,
                message: "not valid UTF-8".to_string(),
            }];
            Some(parsed)
        }
    }
}

/// Hidden files and leftovers of editors and package managers.
fn is_skipped_silently(file_name: &str) -> bool {
    file_name.starts_with('.')
        || file_name.ends_with('~')
        || file_name.ends_with(".swp")
        || file_name.ends_with(".bak")
        || file_name.contains(".dpkg-")
}

/// Parses one service file on its own, without the checks between services
/// (`after` targets and cycles). The service is named after the file:
/// `web.toml` defines `web`. Relative paths in it are relative to the
/// directory holding `path`.
pub fn parse_service(path: &Path, text: &str) -> Result<ServiceSpec, Vec<ConfigError>> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file_name.strip_suffix(".toml").unwrap_or(&file_name);
    let parsed = file::parse(name, path, text);
    match parsed.spec {
        Some(spec) if parsed.errors.is_empty() => Ok(spec),
        _ => Err(parsed.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_names_are_skipped_without_a_warning() {
        for name in [
            ".web.toml",
            ".git",
            "web.toml~",
            "web.toml.swp",
            "web.toml.bak",
            "web.toml.dpkg-new",
            "x.dpkg-dist",
        ] {
            assert!(is_skipped_silently(name), "{name}");
        }
        for name in ["web.toml", "README.md", "web.toml.orig"] {
            assert!(!is_skipped_silently(name), "{name}");
        }
    }
}
