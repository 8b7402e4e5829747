//! The `log-file` table (SPEC section 10): `{ path = "...", max-size =
//! "10MB", keep = 5 }`, its size strings, and the check that corral could
//! write the file.
//!
//! Sizes are whole numbers of bytes with an optional unit: `B`, `KB`, `MB`,
//! `GB` are powers of 1000 (as s6-log's `s1000000` and disk vendors count),
//! `KiB`, `MiB`, `GiB` powers of 1024; units are case-insensitive
//! (`"10mb"`), and a bare TOML integer is a number of bytes. The smallest
//! `max-size` is `"1KB"`; `keep` is from 1 to `MAX_KEEP`.
//!
//! The writability check writes nothing, so `corral check` can run it on a
//! live system: an existing `path` must be a regular file (not a symbolic
//! link: corral never follows one there) that corral may write, in a
//! directory it may write (to rotate); a missing
//! one needs its nearest existing parent to be a directory corral may write
//! and search (corral creates the missing directories at startup, `mkdir
//! -p`). Access is checked for the effective ids of the process reading the
//! file (`faccessat(AT_EACCESS)`), so `corral check` run as another user
//! than corral answers for that user; a read-only file system is refused
//! (`EROFS`).
//!
//! What it must never do: create or open anything (only `lstat`/`stat` and
//! `faccessat`), or stop at the first bad key of the table.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::unistd::AccessFlags;
use toml::de::DeValue;

use super::spec::LogFile;
use super::value::{At, Problem, Value, expected, integer, text};
use crate::text::closest;

/// The keys of a `log-file` table.
const KEYS: &[&str] = &["path", "max-size", "keep"];

/// The smallest `max-size`: "1KB".
const MIN_MAX_SIZE: u64 = 1000;
/// The most rotated files kept: each rotation renames them all.
const MAX_KEEP: u32 = 1000;

/// Units of a size string, lower-case, and their factors.
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("kib", 1024),
    ("mib", 1024 * 1024),
    ("gib", 1024 * 1024 * 1024),
];

/// A `log-file` as written: its path not yet resolved against the service
/// file's directory, nor checked on disk.
#[derive(Debug, Clone)]
pub(super) struct RawLogFile {
    /// Where the `log-file` key is (for errors about the table as a whole).
    pub key_at: usize,
    pub path: At<PathBuf>,
    pub max_size: u64,
    pub keep: u32,
}

impl RawLogFile {
    /// The validated `LogFile`, with its path relative to `base` (the
    /// service file's directory); `join` keeps an absolute path as it is.
    pub fn resolve(&self, base: &Path) -> LogFile {
        LogFile {
            path: base.join(&self.path.value),
            max_size: self.max_size,
            keep: self.keep,
        }
    }
}

/// Reads a `log-file` table: every bad or unknown key is reported; `None`
/// unless the whole table is good.
pub(super) fn log_file(
    key_at: usize,
    value: &Value<'_>,
    problems: &mut Vec<Problem>,
) -> Option<RawLogFile> {
    let DeValue::Table(table) = value.get_ref() else {
        problems.push(expected(
            "log-file",
            "a table such as { path = \"/var/log/web.log\" }",
            value,
        ));
        return None;
    };
    let mut path = None;
    let mut max_size = Some(LogFile::DEFAULT_MAX_SIZE);
    let mut keep = Some(LogFile::DEFAULT_KEEP);
    let mut good = true;
    let mut entries: Vec<_> = table.iter().collect();
    // The map may be sorted by name: report in file order.
    crate::sort::sort_by_key(&mut entries, |(k, _)| k.span().start);
    for (key, item) in entries {
        let name: &str = key.get_ref();
        let result = match name {
            "path" => file_path(item).map(|p| path = Some(p)),
            "max-size" => size("log-file.max-size", item).map(|s| max_size = Some(s)),
            "keep" => keep_count(item).map(|k| keep = Some(k)),
            _ => {
                let shown = name.escape_debug();
                let message = match closest(name, KEYS.iter().copied()) {
                    Some(guess) => {
                        format!("unknown key `{shown}` in `log-file` (did you mean `{guess}`?)")
                    }
                    None => format!("unknown key `{shown}` in `log-file`"),
                };
                Err(Problem::at(key.span().start, message))
            }
        };
        if let Err(problem) = result {
            problems.push(problem);
            good = false;
        }
    }
    // A bad `path` is reported already; only a missing one is new.
    if path.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "path") {
        problems.push(Problem::at(
            value.span().start,
            "`log-file`: missing required key `path`".to_string(),
        ));
    }
    match (good, path, max_size, keep) {
        (true, Some(path), Some(max_size), Some(keep)) => Some(RawLogFile {
            key_at,
            path,
            max_size,
            keep,
        }),
        _ => None,
    }
}

fn file_path(value: &Value<'_>) -> Result<At<PathBuf>, Problem> {
    const KEY: &str = "log-file.path";
    let at = value.span().start;
    let s = text(KEY, "a path string", value)?;
    if s.is_empty() {
        return Err(Problem::at(at, format!("`{KEY}`: must not be empty")));
    }
    // "/var/log/", "logs/.", "..": a directory, not a file to append to.
    let names_a_file = !s.ends_with('/')
        && Path::new(&s)
            .file_name()
            .is_some_and(|n| n != "." && n != "..")
        && !s.ends_with("/.")
        && s != ".";
    if !names_a_file {
        return Err(Problem::at(
            at,
            format!(
                "`{KEY}`: \"{}\" names a directory: give the file, such as \"/var/log/web.log\"",
                s.escape_debug()
            ),
        ));
    }
    Ok(At {
        value: PathBuf::from(s),
        at,
    })
}

/// `max-size`: a size string or a number of bytes, at least `MIN_MAX_SIZE`.
fn size(key: &str, value: &Value<'_>) -> Result<u64, Problem> {
    let at = value.span().start;
    let bytes = match value.get_ref() {
        DeValue::String(s) => {
            parse_size(s).map_err(|message| Problem::at(at, format!("`{key}`: {message}")))?
        }
        DeValue::Integer(i) => integer(i.as_str(), i.radix())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                Problem::at(
                    at,
                    format!("`{key}`: {} is not a number of bytes", i.as_str()),
                )
            })?,
        _ => return Err(expected(key, "a size string such as \"10MB\"", value)),
    };
    if bytes < MIN_MAX_SIZE {
        return Err(Problem::at(
            at,
            format!(
                "`{key}`: must be at least \"1KB\" ({MIN_MAX_SIZE} bytes), found {bytes} bytes"
            ),
        ));
    }
    Ok(bytes)
}

/// A size string: a whole number and an optional unit (module doc), e.g.
/// `"512KB"`, `"10MB"`, `"1GiB"`, `"2048"`.
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid size \"{}\": expected a whole number and a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), such as \"10MB\"",
            s.escape_debug()
        )
    };
    let trimmed = s.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(invalid());
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let factor = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, factor)| *factor)
        .ok_or_else(invalid)?;
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("size \"{}\" is too large", s.escape_debug()))
}

fn keep_count(value: &Value<'_>) -> Result<u32, Problem> {
    let range = format!("an integer from 1 to {MAX_KEEP}");
    let DeValue::Integer(i) = value.get_ref() else {
        return Err(expected("log-file.keep", &range, value));
    };
    integer(i.as_str(), i.radix())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_KEEP).contains(n))
        .ok_or_else(|| {
            Problem::at(
                value.span().start,
                format!("`log-file.keep`: expected {range}, found {}", i.as_str()),
            )
        })
}

/// Whether corral could append to `path`, creating it and its missing
/// directories (module doc); the error says why not. Writes nothing.
pub(super) fn check_writable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(format!(
                "{shown} is a symbolic link: corral does not follow links for log files"
            ));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(format!("{shown} exists and is not a regular file"));
        }
        Ok(_) => {
            access(path, AccessFlags::W_OK)
                .map_err(|e| format!("{shown} is not writable: {}", e.desc()))?;
            // Rotation renames in the directory.
            let dir = parent_dir(path);
            return access(&dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
                format!(
                    "{shown} could not be rotated: directory {} is not writable: {}",
                    dir.display(),
                    e.desc()
                )
            });
        }
        Err(e) if missing(&e) => {}
        Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
    }
    // The nearest existing ancestor: corral creates the rest.
    let mut dir = parent_dir(path);
    loop {
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(format!(
                    "cannot create {shown}: {} is not a directory",
                    dir.display()
                ));
            }
            Err(e) if missing(&e) => {
                let up = parent_dir(&dir);
                if up == dir {
                    return Err(format!("cannot create {shown}: {e}"));
                }
                dir = up;
            }
            Err(e) => return Err(format!("cannot create {shown}: {}: {e}", dir.display())),
        }
    }
    access(&dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
        format!(
            "cannot create {shown}: directory {} is not writable: {}",
            dir.display(),
            e.desc()
        )
    })
}

/// Nothing there: a component is missing, or is a file (reported when the
/// walk up reaches it).
fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// The directory holding `path` (`.` for a bare name; `/` for `/`).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => path.to_path_buf(),
    }
}

/// access(2) as the effective ids (what `open` will be checked against);
/// `EROFS` for a read-only file system.
fn access(path: &Path, mode: AccessFlags) -> Result<(), Errno> {
    nix::unistd::faccessat(AT_FDCWD, path, mode, AtFlags::AT_EACCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_service;

    #[test]
    fn size_strings() {
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("3MiB"), Ok(3 * 1024 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert_eq!(parse_size("2048B"), Ok(2048));
        for bad in [
            "", "MB", "1.5MB", "-1MB", "10XB", "10 M B", "1e6", "10M", "ten",
        ] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.starts_with("invalid size"), "{bad:?}: {error}");
        }
        assert_eq!(
            parse_size("99999999999GB").unwrap_err(),
            "size \"99999999999GB\" is too large"
        );
    }

    fn errors(dir: &Path, text: &str) -> Vec<String> {
        match parse_service(&dir.join("web.toml"), text) {
            Ok(spec) => panic!("accepted: {spec:?}"),
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                .collect(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("corral-log-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn defaults_and_relative_paths() {
        let dir = tmp("defaults");
        let spec = parse_service(
            &dir.join("web.toml"),
            "command = \"true\"\nlog-file = { path = \"logs/web.log\" }\n",
        )
        .unwrap();
        assert_eq!(
            spec.log_file,
            Some(LogFile {
                path: dir.join("logs/web.log"),
                max_size: 10_000_000,
                keep: 5,
            })
        );
        let spec = parse_service(
            &dir.join("web.toml"),
            "command = \"true\"\n[log-file]\npath = \"/tmp/x/web.log\"\nmax-size = \"1KiB\"\nkeep = 1\n",
        )
        .unwrap();
        assert_eq!(
            spec.log_file,
            Some(LogFile {
                path: PathBuf::from("/tmp/x/web.log"),
                max_size: 1024,
                keep: 1,
            })
        );
        let spec = parse_service(&dir.join("web.toml"), "command = \"true\"\n").unwrap();
        assert_eq!(spec.log_file, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_bad_key_is_reported_at_its_place() {
        let dir = tmp("bad");
        let text =
            "command = \"true\"\nlog-file = { pth = \"a\", max-size = \"999B\", keep = 0 }\n";
        assert_eq!(
            errors(&dir, text),
            [
                "2:12: `log-file`: missing required key `path`",
                "2:14: unknown key `pth` in `log-file` (did you mean `path`?)",
                "2:36: `log-file.max-size`: must be at least \"1KB\" (1000 bytes), found 999 bytes",
                "2:51: `log-file.keep`: expected an integer from 1 to 1000, found 0",
            ]
        );
        let text = "command = \"true\"\nlog-file = { path = \"logs/\", max-size = \"10XB\", keep = \"5\" }\nx = 1\n";
        assert_eq!(
            errors(&dir, text),
            [
                "2:21: `log-file.path`: \"logs/\" names a directory: give the file, such as \"/var/log/web.log\"",
                "2:41: `log-file.max-size`: invalid size \"10XB\": expected a whole number and a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), such as \"10MB\"",
                "2:56: `log-file.keep`: expected an integer from 1 to 1000, found string",
                "3:1: unknown key `x`",
            ]
        );
        let text = "command = \"true\"\nlog-file = \"/var/log/web.log\"\n";
        assert_eq!(
            errors(&dir, text),
            [
                "2:12: `log-file`: expected a table such as { path = \"/var/log/web.log\" }, found string"
            ]
        );
        let text = "command = \"true\"\nlogfile = { path = \"a\" }\n";
        assert_eq!(
            errors(&dir, text),
            ["2:1: unknown key `logfile` (did you mean `log-file`?)"]
        );
        let text = "command = \"true\"\noutput = \"inherit\"\nlog-file = { path = \"a.log\" }\n";
        assert_eq!(
            errors(&dir, text),
            [
                "3:1: `log-file` needs corral to read the service's output: not with `output = \"inherit\"`"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_corral_could_not_write_are_errors() {
        let dir = tmp("unwritable");
        std::fs::write(dir.join("file"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let at = |path: &str| format!("command = \"true\"\nlog-file = {{ path = \"{path}\" }}\n");
        let d = dir.display();
        assert_eq!(
            errors(&dir, &at("file/x/web.log")),
            [format!(
                "2:21: `log-file.path`: cannot create {d}/file/x/web.log: {d}/file is not a directory"
            )]
        );
        assert_eq!(
            errors(&dir, &at("link")),
            [format!(
                "2:21: `log-file.path`: {d}/link is a symbolic link: corral does not follow links for log files"
            )]
        );
        assert_eq!(
            errors(&dir, &at("sub/..x/../")),
            [
                "2:21: `log-file.path`: \"sub/..x/../\" names a directory: give the file, such as \"/var/log/web.log\""
            ]
        );
        // Missing directories are fine (created at startup), and so is an
        // existing regular file.
        for good in ["a/b/c/web.log", "file", "sub/web.log"] {
            parse_service(&dir.join("web.toml"), &at(good)).unwrap();
        }
        // /proc/1 is a directory nobody may create files in, root included
        // (EACCES, or EPERM for root).
        let proc = errors(&dir, &at("/proc/1/web.log"));
        assert!(
            proc.len() == 1
                && proc[0].starts_with("2:21: `log-file.path`: cannot create /proc/1/web.log: directory /proc/1 is not writable: "),
            "{proc:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_services_may_not_share_a_log_file() {
        let dir = tmp("shared");
        let services = dir.join("services");
        std::fs::create_dir(&services).unwrap();
        let log = dir.join("logs/app.log");
        for name in ["api", "web", "db"] {
            let path = if name == "db" {
                dir.join("logs/db.log")
            } else {
                log.clone()
            };
            std::fs::write(
                services.join(format!("{name}.toml")),
                format!(
                    "command = \"true\"\nlog-file = {{ path = \"{}\" }}\n",
                    path.display()
                ),
            )
            .unwrap();
        }
        let errors = crate::config::load(std::slice::from_ref(&services)).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [format!(
                "{}:2:21: `log-file.path`: {} is already the log file of service \"api\"",
                services.join("web.toml").display(),
                log.display()
            )]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
