//! `with-contenv PROG [ARG]...`: exec PROG with the container environment
//! that s6-overlay keeps in `/run/s6/container_environment` (s6-envdir's
//! rules), unless `S6_KEEP_ENV` says to keep the current one.
//!
//! What it must never do: write the directory (corral writes nothing but
//! its socket), or open a file that could block (`files::read`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::exec::{apply_vars, exec};
use super::stage::runtime_dir;
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::files;

/// Where s6-overlay keeps the container environment: v2's path, then v3's
/// (`/run/s6/container_environment`, which corral writes at startup when an
/// s6 layout is in use: `stage.rs`; `cont-init.d` scripts may change it).
/// On most images `/var/run` is a link to `/run`: the same directory is
/// read once.
pub const CONTAINER_ENV_DIRS: [&str; 2] = [
    "/var/run/s6/container_environment",
    "/run/s6/container_environment",
];

/// The directories with-contenv reads, in order: v2's, then the one corral
/// writes (`/run/s6/...`, or under `CORRAL_S6_RUNTIME_DIR`).
fn container_env_dirs() -> [PathBuf; 2] {
    [
        PathBuf::from(CONTAINER_ENV_DIRS[0]),
        runtime_dir().join("container_environment"),
    ]
}

/// `with-contenv PROG [ARG]...` (`args` without the program name): exec
/// PROG with corral's environment (services already have the container's),
/// plus what the container environment directories say. Returns only when
/// PROG cannot be run.
pub fn with_contenv(args: &[OsString]) -> u8 {
    let Some((prog, rest)) = args.split_first() else {
        eprintln!("with-contenv: usage: with-contenv PROG [ARG]...");
        return EXIT_USAGE;
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    // s6-overlay: with S6_KEEP_ENV set, with-contenv does nothing but exec.
    if !keep_env(std::env::var_os("S6_KEEP_ENV")) {
        let mut read: Vec<(u64, u64)> = Vec::new();
        for dir in container_env_dirs() {
            let dir = dir.as_path();
            let Ok(meta) = fs::metadata(dir) else {
                continue;
            };
            if !meta.is_dir() || read.contains(&(meta.dev(), meta.ino())) {
                continue;
            }
            read.push((meta.dev(), meta.ino()));
            match read_envdir(dir) {
                Ok(vars) => apply_vars(&mut cmd, vars),
                Err(err) => {
                    // s6-envdir's answer to an unreadable directory.
                    eprintln!("with-contenv: fatal: {err}");
                    return EXIT_SYSTEM;
                }
            }
        }
    }
    exec(&mut cmd, prog, "with-contenv: ")
}

/// s6-overlay's with-contenv runs `s6-envdir` unless `S6_KEEP_ENV` is a
/// number other than 0 (its test is `0$S6_KEEP_ENV -eq 0`; anything that is
/// not a number counts as set, too).
pub(super) fn keep_env(value: Option<OsString>) -> bool {
    value.is_some_and(|v| !v.as_bytes().iter().all(|&b| b == b'0'))
}

/// The variables of an s6 envdir, by name: `Some(value)` to set, `None` to
/// unset. s6-overlay's with-contenv reads the directory with `s6-envdir -Lf`:
/// every file whose name neither starts with `.` nor contains `=`; an empty
/// file unsets its variable; otherwise the whole content, less one trailing
/// newline, with NUL bytes turned into newlines (s6-envdir(8)).
pub fn read_envdir(dir: &Path) -> Result<Vec<(OsString, Option<OsString>)>, String> {
    read_envdir_as(dir, &EnvdirRules::WHOLE)
}

/// How s6-envdir turns a file into a value (s6-envdir(8)'s options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EnvdirRules {
    /// `-f`: the whole file, not its first line.
    pub(super) whole: bool,
    /// `-n`: keep the last newline (with `-f`) or the trailing blanks.
    pub(super) no_chomp: bool,
    /// Without `-L`: only the first 4096 bytes of each file.
    pub(super) clamp: bool,
    /// `-c`: what a NUL byte becomes.
    pub(super) null_is: u8,
}

impl EnvdirRules {
    /// s6-envdir without options (envdir's rules).
    pub(super) const DEFAULT: EnvdirRules = EnvdirRules {
        whole: false,
        no_chomp: false,
        clamp: true,
        null_is: b'\n',
    };
    /// `-Lf`, as s6-overlay's with-contenv reads the container environment.
    pub(super) const WHOLE: EnvdirRules = EnvdirRules {
        whole: true,
        no_chomp: false,
        clamp: false,
        null_is: b'\n',
    };

    /// One file's content as a value (`None`: unset the variable).
    pub(super) fn value(&self, content: &[u8]) -> Option<OsString> {
        if content.is_empty() {
            return None;
        }
        let content = if self.clamp {
            content.get(..CLAMP).unwrap_or(content)
        } else {
            content
        };
        let value = if self.whole {
            if self.no_chomp {
                content
            } else {
                content.strip_suffix(b"\n").unwrap_or(content)
            }
        } else {
            let line = content.split(|&b| b == b'\n').next().unwrap_or_default();
            if self.no_chomp {
                line
            } else {
                let keep = line
                    .iter()
                    .rposition(|&b| b != b' ' && b != b'\t')
                    .map_or(0, |i| i + 1);
                line.get(..keep).unwrap_or_default()
            }
        };
        Some(OsString::from_vec(
            value
                .iter()
                .map(|&b| if b == 0 { self.null_is } else { b })
                .collect(),
        ))
    }
}

/// s6-envdir reads no more of a file than this without `-L`.
const CLAMP: usize = 4096;

/// `read_envdir` with s6-envdir's `rules`.
pub(super) fn read_envdir_as(
    dir: &Path,
    rules: &EnvdirRules,
) -> Result<Vec<(OsString, Option<OsString>)>, String> {
    let cannot = |path: &Path, err: io::Error| format!("unable to read {}: {err}", path.display());
    let mut vars = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| cannot(dir, e))? {
        let entry = entry.map_err(|e| cannot(dir, e))?;
        let name = entry.file_name();
        if name.as_bytes().first() == Some(&b'.') || name.as_bytes().contains(&b'=') {
            continue;
        }
        let path = entry.path();
        // Through symbolic links; a subdirectory is not a variable.
        if !fs::metadata(&path).map_err(|e| cannot(&path, e))?.is_file() {
            continue;
        }
        // Never a blocking open, nor a file larger than 1 MiB (an argument
        // string may not pass 128 KiB anyway, execve(2)).
        let content = files::read(&path).map_err(|e| format!("unable to read {e}"))?;
        vars.push((name, rules.value(&content)));
    }
    crate::sort::sort(&mut vars);
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envdir_value(content: &[u8]) -> Option<OsString> {
        EnvdirRules::WHOLE.value(content)
    }

    #[test]
    fn envdir_values_without_options_are_first_lines_without_trailing_blanks() {
        let rules = EnvdirRules::DEFAULT;
        assert_eq!(rules.value(b""), None);
        assert_eq!(rules.value(b"a b \t \nsecond\n"), Some("a b".into()));
        assert_eq!(rules.value(b"x\0y\n"), Some("x\ny".into()));
        let no_chomp = EnvdirRules {
            no_chomp: true,
            ..rules
        };
        assert_eq!(no_chomp.value(b"a b \nz"), Some("a b ".into()));
        let whole_kept = EnvdirRules {
            no_chomp: true,
            ..EnvdirRules::WHOLE
        };
        assert_eq!(whole_kept.value(b"a\nb\n"), Some("a\nb\n".into()));
        let nul = EnvdirRules {
            null_is: b'_',
            ..rules
        };
        assert_eq!(nul.value(b"x\0y"), Some("x_y".into()));
        let long = vec![b'a'; 5000];
        assert_eq!(rules.value(&long).map(|v| v.len()), Some(4096));
        assert_eq!(EnvdirRules::WHOLE.value(&long).map(|v| v.len()), Some(5000));
    }

    #[test]
    fn envdir_values_follow_s6_envdir_f() {
        assert_eq!(envdir_value(b""), None);
        assert_eq!(envdir_value(b"\n"), Some(OsString::new()));
        assert_eq!(envdir_value(b"a b  \n"), Some("a b  ".into()));
        assert_eq!(envdir_value(b"one\ntwo\n"), Some("one\ntwo".into()));
        assert_eq!(envdir_value(b"one\n\n"), Some("one\n".into()));
        assert_eq!(envdir_value(b"x\0y"), Some("x\ny".into()));
    }

    #[test]
    fn an_envdir_is_read_by_name_skipping_dot_files_and_equals() {
        let dir = std::env::temp_dir().join(format!("corral-unit-envdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("B"), "2\n").unwrap();
        fs::write(dir.join("A"), "1").unwrap();
        fs::write(dir.join("EMPTY"), "").unwrap();
        fs::write(dir.join(".hidden"), "no").unwrap();
        fs::write(dir.join("X=Y"), "no").unwrap();
        // Not a variable, and never opened (no writer: it would block).
        nix::unistd::mkfifo(&dir.join("FIFO"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let vars = read_envdir(&dir).unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("2".into())),
                ("EMPTY".into(), None),
            ]
        );
        let _ = fs::remove_dir_all(&dir);
        assert!(
            read_envdir(&dir)
                .unwrap_err()
                .starts_with("unable to read ")
        );
    }

    #[test]
    fn s6_keep_env_is_any_number_but_zero() {
        assert!(!keep_env(None));
        assert!(!keep_env(Some("".into())));
        assert!(!keep_env(Some("0".into())));
        assert!(!keep_env(Some("00".into())));
        assert!(keep_env(Some("1".into())));
        assert!(keep_env(Some("yes".into())));
    }
}
