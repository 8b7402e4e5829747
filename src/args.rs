//! A small command-line scanner: long options (`--name VALUE`,
//! `--name=VALUE`), short ones (`-n VALUE`, `-nVALUE`, `-f`), `--`, and
//! positional arguments, with a "did you mean" for a misspelt option.
//!
//! corral's command lines are few and fixed (SPEC section 1), so each is
//! described by a table of `Opt`s and built by hand from what `scan`
//! returns (`cli.rs`). A full argument-parsing crate cost about a quarter of
//! the binary (issue 6: corral must fit in 1.5 MB), for help screens we
//! write out anyway.

use std::ffi::OsString;

use crate::text;

/// One option of a command line.
#[derive(Debug)]
pub struct Opt {
    /// Without the leading `--`.
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's name in messages (`DIR`), or `None` for a flag.
    pub value: Option<&'static str>,
}

impl Opt {
    pub const fn flag(long: &'static str) -> Opt {
        Opt {
            long,
            short: None,
            value: None,
        }
    }

    pub const fn value(long: &'static str, name: &'static str) -> Opt {
        Opt {
            long,
            short: None,
            value: Some(name),
        }
    }

    pub const fn short(mut self, short: char) -> Opt {
        self.short = Some(short);
        self
    }

    fn spelled(&self) -> String {
        format!("--{}", self.long)
    }
}

/// What a command line said, in order.
#[derive(Debug, Default)]
pub struct Scanned {
    /// (index into the option table, value) in the order given.
    pub opts: Vec<(usize, Option<String>)>,
    pub positional: Vec<String>,
    /// `-h` / `--help` was given (anywhere before `--`).
    pub help: bool,
    /// `-V` / `--version` was given.
    pub version: bool,
}

impl Scanned {
    /// Every value given for option `index`, in order.
    pub fn values(&self, index: usize) -> impl Iterator<Item = &str> {
        self.opts
            .iter()
            .filter(move |(i, _)| *i == index)
            .filter_map(|(_, v)| v.as_deref())
    }

    /// The last value given for option `index` (a later one wins).
    pub fn last(&self, index: usize) -> Option<&str> {
        self.values(index).last()
    }

    pub fn has(&self, index: usize) -> bool {
        self.opts.iter().any(|(i, _)| *i == index)
    }
}

/// How positional arguments end the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positional {
    /// Options and positionals may be mixed (`ctl stop web --all`).
    Mixed,
    /// The first positional and everything after it are positional: they
    /// are the main COMMAND and its own arguments (`corral app -v`).
    Trailing,
}

/// Scan `args` (without the program name) against `table`.
pub fn scan(args: &[OsString], table: &[Opt], positional: Positional) -> Result<Scanned, String> {
    let mut out = Scanned::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str() else {
            return Err(format!(
                "argument {} is not valid UTF-8",
                arg.to_string_lossy()
            ));
        };
        if arg == "--" {
            out.positional.extend(rest(args)?);
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            match name {
                "help" => out.help = true,
                "version" => out.version = true,
                _ => {
                    let (index, opt) = find(table, |o| o.long == name)
                        .ok_or_else(|| unknown(&format!("--{name}"), table))?;
                    let value = value_of(opt, inline, &mut args)?;
                    out.opts.push((index, value));
                }
            }
            continue;
        }
        if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let letter = chars.next().unwrap_or('-');
            let attached = chars.as_str();
            match letter {
                'h' if attached.is_empty() => out.help = true,
                'V' if attached.is_empty() => out.version = true,
                _ => {
                    let (index, opt) = find(table, |o| o.short == Some(letter))
                        .ok_or_else(|| unknown(&format!("-{letter}"), table))?;
                    let inline = (!attached.is_empty()).then(|| attached.to_string());
                    let value = value_of(opt, inline, &mut args)?;
                    out.opts.push((index, value));
                }
            }
            continue;
        }
        out.positional.push(arg.to_string());
        if positional == Positional::Trailing {
            out.positional.extend(rest(args)?);
            break;
        }
    }
    Ok(out)
}

fn rest<'a>(args: impl Iterator<Item = &'a OsString>) -> Result<Vec<String>, String> {
    args.map(|a| {
        a.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("argument {} is not valid UTF-8", a.to_string_lossy()))
    })
    .collect()
}

/// The option that `matches`, with its index in `table`.
fn find(table: &[Opt], matches: impl Fn(&Opt) -> bool) -> Option<(usize, &Opt)> {
    table.iter().enumerate().find(|(_, o)| matches(o))
}

fn value_of<'a>(
    opt: &Opt,
    inline: Option<String>,
    args: &mut impl Iterator<Item = &'a OsString>,
) -> Result<Option<String>, String> {
    match (opt.value, inline) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!("option {} takes no value", opt.spelled())),
        (Some(_), Some(value)) => Ok(Some(value)),
        (Some(name), None) => match args.next() {
            Some(value) => value.to_str().map(|v| Some(v.to_string())).ok_or_else(|| {
                format!(
                    "the value of {} is not valid UTF-8: {}",
                    opt.spelled(),
                    value.to_string_lossy()
                )
            }),
            None => Err(format!("option {} needs a value ({name})", opt.spelled())),
        },
    }
}

fn unknown(given: &str, table: &[Opt]) -> String {
    let longs: Vec<String> = table.iter().map(Opt::spelled).collect();
    match text::closest(given, longs.iter().map(String::as_str)) {
        Some(close) => format!("unknown option {given} (did you mean {close}?)"),
        None => format!("unknown option {given}"),
    }
}

/// A command line that does not run: help or version (printed on stdout,
/// exit 0), or a usage error (on stderr, exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Print(String),
    Usage { program: String, message: String },
}

impl Stop {
    pub fn usage(program: &str, message: impl Into<String>) -> Stop {
        Stop::Usage {
            program: program.to_string(),
            message: message.into(),
        }
    }

    /// Print it where it belongs; the exit status to end with.
    pub fn report(&self) -> u8 {
        match self {
            Stop::Print(text) => {
                print!("{text}");
                0
            }
            Stop::Usage { program, message } => {
                eprintln!("{program}: {message}\nTry '{program} --help' for more information.");
                2
            }
        }
    }
}

/// The value of environment variable `name`, unless unset or empty (an
/// empty `CORRAL_*` variable is as good as absent).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Opt] = &[
        Opt::value("services", "DIR"),
        Opt::flag("json"),
        Opt::value("lines", "N").short('n'),
        Opt::flag("follow").short('f'),
    ];

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn long_short_inline_and_separate_values() {
        let s = scan(
            &args(&[
                "--services",
                "a",
                "--services=b",
                "-n5",
                "-f",
                "-n",
                "7",
                "x",
            ]),
            TABLE,
            Positional::Mixed,
        )
        .unwrap();
        assert_eq!(s.values(0).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.last(2), Some("7"));
        assert!(s.has(3) && !s.has(1));
        assert_eq!(s.positional, ["x"]);
    }

    #[test]
    fn trailing_positionals_keep_their_options() {
        let s = scan(
            &args(&["--json", "app", "-v", "--json"]),
            TABLE,
            Positional::Trailing,
        )
        .unwrap();
        assert_eq!(s.positional, ["app", "-v", "--json"]);
        assert_eq!(s.opts.len(), 1);
        let s = scan(&args(&["--", "--json"]), TABLE, Positional::Mixed).unwrap();
        assert_eq!(s.positional, ["--json"]);
        assert!(s.opts.is_empty());
    }

    #[test]
    fn errors_name_the_option() {
        let err = |list: &[&str]| scan(&args(list), TABLE, Positional::Mixed).unwrap_err();
        assert_eq!(
            err(&["--servics", "x"]),
            "unknown option --servics (did you mean --services?)"
        );
        assert_eq!(err(&["-z"]), "unknown option -z");
        assert_eq!(
            err(&["--services"]),
            "option --services needs a value (DIR)"
        );
        assert_eq!(err(&["--json=yes"]), "option --json takes no value");
    }

    #[test]
    fn help_and_version_anywhere_before_the_command() {
        let s = scan(&args(&["x", "--help"]), TABLE, Positional::Mixed).unwrap();
        assert!(s.help);
        let s = scan(&args(&["-V"]), TABLE, Positional::Trailing).unwrap();
        assert!(s.version);
        // After the main command, they are the command's own.
        let s = scan(&args(&["app", "--help"]), TABLE, Positional::Trailing).unwrap();
        assert!(!s.help);
        // A lone `-` is a positional (stdin, by convention).
        let s = scan(&args(&["-"]), TABLE, Positional::Mixed).unwrap();
        assert_eq!(s.positional, ["-"]);
    }
}
