//! `s6-envdir [-I|-i] [-n] [-f] [-L] [-c nullis] DIR PROG...` (standalone:
//! no supervisor involved) and `printcontenv VAR` (one variable of the
//! container environment, `/run/s6/container_environment`, where corral
//! writes it at startup: `stage::runtime_dir`).
//!
//! What it must never do: write the directory, or open a file that could
//! block (`files::read`, through `contenv`'s reading).

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::contenv::{EnvdirRules, keep_env, read_envdir_as};
use super::exec::{apply_vars, exec};
use super::getopt::getopt;
use super::stage::runtime_dir;
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::files;

const USAGE: &str =
    "s6-envdir: usage: s6-envdir [ -I | -i ] [ -n ] [ -f ] [ -L ] [ -c nullis ] dir prog...";

#[derive(Debug, PartialEq, Eq)]
pub(super) struct EnvdirArgs {
    /// `-I`: a missing DIR changes nothing.
    pub(super) loose: bool,
    pub(super) rules: EnvdirRules,
    pub(super) dir: PathBuf,
    pub(super) prog: Vec<OsString>,
}

pub(super) fn parse_envdir(args: &[OsString]) -> Result<EnvdirArgs, String> {
    let (opts, next) = getopt(args, "IinfL", "c")?;
    let mut loose = false;
    let mut rules = EnvdirRules::DEFAULT;
    for opt in opts {
        match opt.letter {
            'I' => loose = true,
            'i' => loose = false,
            'n' => rules.no_chomp = true,
            'f' => rules.whole = true,
            'L' => rules.clamp = false,
            _ => {
                rules.null_is = opt
                    .value
                    .as_deref()
                    .and_then(|v| v.bytes().next())
                    .unwrap_or(b'\n')
            }
        }
    }
    let rest = args.get(next..).unwrap_or_default();
    let [dir, prog @ ..] = rest else {
        return Err("too few arguments".into());
    };
    if prog.is_empty() {
        return Err("too few arguments".into());
    }
    Ok(EnvdirArgs {
        loose,
        rules,
        dir: PathBuf::from(dir),
        prog: prog.to_vec(),
    })
}

/// `s6-envdir [OPTIONS] DIR PROG...` (`args` without the program name).
pub fn envdir(args: &[OsString]) -> u8 {
    let args = match parse_envdir(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("s6-envdir: fatal: {why}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let Some((prog, rest)) = args.prog.split_first() else {
        return EXIT_USAGE;
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    let missing = matches!(
        std::fs::metadata(&args.dir),
        Err(ref e) if e.kind() == io::ErrorKind::NotFound
    );
    if !(missing && args.loose) {
        match read_envdir_as(&args.dir, &args.rules) {
            Ok(vars) => apply_vars(&mut cmd, vars),
            Err(why) => {
                eprintln!("s6-envdir: fatal: {why}");
                return EXIT_SYSTEM;
            }
        }
    }
    exec(&mut cmd, prog, "s6-envdir: fatal: unable to exec ")
}

/// `printcontenv VAR`: the variable's value and a newline on stdout, from
/// the container environment (or, with `S6_KEEP_ENV`, from this process's
/// own, as s6-overlay's does); exit 1 when it is not there.
pub fn printcontenv(args: &[OsString]) -> u8 {
    let Some(name) = args.first() else {
        eprintln!("printcontenv: fatal: too few arguments");
        return EXIT_USAGE;
    };
    let value = if keep_env(std::env::var_os("S6_KEEP_ENV")) {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.as_bytes().to_vec())
    } else {
        contenv_value(&runtime_dir().join("container_environment"), name)
    };
    let Some(value) = value else {
        return 1;
    };
    let mut out = io::stdout().lock();
    match out
        .write_all(&value)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(_) => EXIT_SYSTEM,
    }
}

/// The file `dir/name` as it is, if `name` is a plain file name there.
fn contenv_value(dir: &Path, name: &OsString) -> Option<Vec<u8>> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes.first() == Some(&b'.') {
        return None;
    }
    files::read(&dir.join(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn parse(words: &[&str]) -> Result<EnvdirArgs, String> {
        parse_envdir(&args(words))
    }

    #[test]
    fn envdir_options_are_s6s() {
        let p = parse(&["-I", "/etc/env", "prog", "-x"]).unwrap();
        assert!(p.loose);
        assert_eq!(p.rules, EnvdirRules::DEFAULT);
        assert_eq!(p.dir, PathBuf::from("/etc/env"));
        assert_eq!(p.prog, vec![OsString::from("prog"), OsString::from("-x")]);
        let p = parse(&["-Ifn", "-L", "-c", "_", "-i", "d", "p"]).unwrap();
        assert!(!p.loose);
        assert_eq!(
            p.rules,
            EnvdirRules {
                whole: true,
                no_chomp: true,
                clamp: false,
                null_is: b'_',
            }
        );
        assert_eq!(parse(&["d"]).unwrap_err(), "too few arguments");
        assert_eq!(parse(&["-z", "d", "p"]).unwrap_err(), "unknown option -z");
    }

    #[test]
    fn printcontenv_reads_plain_names_only() {
        let dir =
            std::env::temp_dir().join(format!("corral-unit-printcontenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("TZ"), "Europe/Paris").unwrap();
        assert_eq!(
            contenv_value(&dir, &"TZ".into()),
            Some(b"Europe/Paris".to_vec())
        );
        assert_eq!(contenv_value(&dir, &"NONE".into()), None);
        assert_eq!(contenv_value(&dir, &"../TZ".into()), None);
        assert_eq!(contenv_value(&dir, &"".into()), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
