//! `s6-rc` (`-u change NAME...`, `-d change NAME...`, `-a list`, and
//! `list NAME...`) and `halt` (`/run/s6/basedir/bin/halt`), on corral's
//! services through the control socket.
//!
//! s6-rc's exit codes (s6-rc(8)): 0 done, 1 a transition failed, 2 timed
//! out, 3 an unknown name, 100 usage, 111 corral cannot be asked.
//!
//! What it must never do: pretend to honour what corral has no equivalent
//! for (`-p` prune, `-n` dry run, `diff`, `listall`): it says so and exits
//! 100.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::getopt::{getopt, millis};
use super::link::{Failure, Link, refusal};
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::files;
use crate::protocol::{Request, ServiceStatus, Targets};
use crate::text::{Form, escape};

const USAGE: &str = "s6-rc: usage: s6-rc [ -v verbosity ] [ -t timeout ] [ -a ] [ -u | -d | -D ] change|list [ servicenames... ]";

const EXIT_FAILED: u8 = 1;
const EXIT_TIMED_OUT: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subcommand {
    Change,
    List,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct RcArgs {
    /// `-d` / `-D`: down (the default is up).
    pub(super) down: bool,
    /// `-a`: the active services join the selection.
    pub(super) active: bool,
    pub(super) verbosity: u32,
    pub(super) timeout: Option<Duration>,
    pub(super) subcommand: Subcommand,
    pub(super) names: Vec<String>,
}

pub(super) fn parse_rc(args: &[OsString]) -> Result<RcArgs, String> {
    let (opts, next) = getopt(args, "uUdDaEepb", "vtln")?;
    let mut parsed = RcArgs {
        down: false,
        active: false,
        verbosity: 1,
        timeout: None,
        subcommand: Subcommand::Change,
        names: Vec::new(),
    };
    for opt in opts {
        match opt.letter {
            'u' | 'U' => parsed.down = false,
            'd' | 'D' => parsed.down = true,
            'a' => parsed.active = true,
            'v' => {
                let value = opt.value.unwrap_or_default();
                parsed.verbosity = value
                    .parse()
                    .map_err(|_| format!("-v {value}: expected a number"))?;
            }
            't' => {
                let ms = millis('t', opt.value.as_deref())?;
                parsed.timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            // The live directory and the lock have no meaning for corral.
            'l' | 'b' | 'E' | 'e' => {}
            'p' => {
                return Err(
                    "-p (prune) is not supported by corral: name the services to bring down with -d change"
                        .into(),
                );
            }
            _ => return Err("-n (dry run) is not supported by corral".into()),
        }
    }
    let mut words = args.get(next..).unwrap_or_default().iter();
    parsed.subcommand = match words.next().and_then(|w| w.to_str()) {
        Some("change") => Subcommand::Change,
        Some("list") => Subcommand::List,
        Some(other @ ("listall" | "diff" | "help")) => {
            return Err(format!(
                "{other} is not supported by corral's s6-rc (it supports change and list)"
            ));
        }
        Some(other) => return Err(format!("unknown subcommand {other}")),
        None => return Err("no subcommand given".into()),
    };
    parsed.names = words
        .map(|w| {
            w.to_str()
                .map(str::to_string)
                .ok_or_else(|| format!("invalid service name {}", w.to_string_lossy()))
        })
        .collect::<Result<_, _>>()?;
    Ok(parsed)
}

/// The services `names` stand for, in order, each once: a service's own
/// name, or an s6-rc bundle's members (`user`, `user2`, an app's own,
/// bundles inside bundles), as corral resolves a name in any request — a
/// `status` of that name answers with the members. `all` is every service.
fn expand_names(
    link: &Link,
    names: &[String],
    all: &[ServiceStatus],
) -> Result<Vec<String>, Failure> {
    let mut services: Vec<String> = Vec::new();
    for name in names {
        let members: Vec<String> = if all.iter().any(|s| &s.name == name) {
            vec![name.clone()]
        } else {
            let response = link.ask(&Request::Status {
                services: vec![name.clone()],
            })?;
            if !response.ok {
                return Err(Failure::NoService(format!("unknown service name: {name}")));
            }
            response.services.into_iter().map(|s| s.name).collect()
        };
        for member in members {
            if !services.contains(&member) {
                services.push(member);
            }
        }
    }
    Ok(services)
}

/// `s6-rc [OPTIONS] change|list [NAME...]` (`args` without the program name).
pub fn rc(args: &[OsString]) -> u8 {
    let args = match parse_rc(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("s6-rc: fatal: {why}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let link = Link::from_env(args.timeout);
    match run(&link, &args) {
        Ok(()) => 0,
        Err(failure) => {
            let (code, why) = match failure {
                Failure::TimedOut => (EXIT_TIMED_OUT, "timed out".to_string()),
                Failure::Unreachable(why) => {
                    (EXIT_SYSTEM, format!("unable to reach corral: {why}"))
                }
                Failure::NoService(why) => (EXIT_UNKNOWN, why),
                Failure::Refused(why) | Failure::GaveUp(why) => (EXIT_FAILED, why),
            };
            eprintln!("s6-rc: fatal: {}", escape(&why, Form::Text));
            code
        }
    }
}

fn run(link: &Link, args: &RcArgs) -> Result<(), Failure> {
    let needs_all = args.active || (args.subcommand == Subcommand::List && args.down);
    let all = if needs_all || !args.names.is_empty() {
        link.all()?
    } else {
        Vec::new()
    };
    let mut selection = expand_names(link, &args.names, &all)?;
    if args.active {
        for status in all.iter().filter(|s| is_active(s)) {
            if !selection.contains(&status.name) {
                selection.push(status.name.clone());
            }
        }
    }
    match args.subcommand {
        Subcommand::List => {
            let listed: Vec<&str> = if args.down {
                // s6-rc -d list: the selection inverted.
                all.iter()
                    .map(|s| s.name.as_str())
                    .filter(|n| !selection.iter().any(|s| s == n))
                    .collect()
            } else {
                selection.iter().map(String::as_str).collect()
            };
            for name in listed {
                println!("{}", escape(name, Form::Line));
            }
            Ok(())
        }
        Subcommand::Change if selection.is_empty() => Ok(()),
        Subcommand::Change => {
            let targets = Targets {
                services: selection,
                all: false,
            };
            let request = if args.down {
                Request::Stop(targets)
            } else {
                Request::Start(targets)
            };
            let response = link.ask(&request)?;
            if args.verbosity >= 2 {
                for message in &response.messages {
                    eprintln!("s6-rc: info: {}", escape(message, Form::Line));
                }
            }
            if response.ok {
                Ok(())
            } else {
                Err(Failure::Refused(refusal(&response)))
            }
        }
    }
}

/// s6-rc's "active": up (a oneshot that ran counts).
fn is_active(status: &ServiceStatus) -> bool {
    status.is_up() || status.state == "starting" && status.pid.is_some()
}

/// Where s6-overlay's finish scripts leave the container's exit code for
/// `halt` (s6-overlay's README).
const EXITCODE_FILE: &str = "/run/s6-linux-init-container-results/exitcode";

/// `halt` (as `/run/s6/basedir/bin/halt`): corral's graceful shutdown, like
/// `corral ctl shutdown`, with the exit code a finish script may have
/// written to s6-overlay's exitcode file.
pub fn halt(args: &[OsString]) -> u8 {
    if let Some(extra) = args.first() {
        eprintln!(
            "halt: fatal: unexpected argument {} (usage: halt)",
            escape(&extra.to_string_lossy(), Form::Line)
        );
        return EXIT_USAGE;
    }
    let exit_code = exit_code_file(Path::new(EXITCODE_FILE));
    let link = Link::from_env(Some(Duration::from_secs(10)));
    match link.ask(&Request::Shutdown { exit_code }) {
        Ok(response) if response.ok => 0,
        Ok(response) => {
            eprintln!("halt: fatal: {}", escape(&refusal(&response), Form::Text));
            EXIT_SYSTEM
        }
        Err(Failure::Unreachable(why)) => {
            eprintln!(
                "halt: fatal: unable to reach corral: {}",
                escape(&why, Form::Text)
            );
            EXIT_SYSTEM
        }
        Err(Failure::TimedOut) => {
            eprintln!("halt: fatal: corral did not answer within 10 s");
            EXIT_SYSTEM
        }
        Err(Failure::NoService(why) | Failure::Refused(why) | Failure::GaveUp(why)) => {
            eprintln!("halt: fatal: {}", escape(&why, Form::Text));
            EXIT_SYSTEM
        }
    }
}

/// The number in `path`, if it holds one.
fn exit_code_file(path: &Path) -> Option<i32> {
    let content = files::read_limited(path, 64).ok()?;
    std::str::from_utf8(&content).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn parse(words: &[&str]) -> Result<RcArgs, String> {
        parse_rc(&args(words))
    }

    #[test]
    fn s6_rc_change_and_list() {
        assert_eq!(
            parse(&["-v2", "-t", "5000", "-u", "change", "web", "db"]),
            Ok(RcArgs {
                down: false,
                active: false,
                verbosity: 2,
                timeout: Some(Duration::from_millis(5000)),
                subcommand: Subcommand::Change,
                names: vec!["web".into(), "db".into()],
            })
        );
        let p = parse(&["-da", "change"]).unwrap();
        assert!(p.down && p.active && p.names.is_empty());
        let p = parse(&["-a", "list"]).unwrap();
        assert_eq!(
            (p.subcommand, p.active, p.down),
            (Subcommand::List, true, false)
        );
        // -l and -b mean nothing to corral, and are accepted.
        assert!(parse(&["-l", "/run/s6-rc", "-b", "change", "x"]).is_ok());
    }

    #[test]
    fn s6_rc_says_what_it_does_not_do() {
        let err = |words: &[&str]| parse(words).unwrap_err();
        assert!(err(&["-p", "change"]).contains("-p (prune) is not supported"));
        assert!(err(&["-n", "10", "change"]).contains("dry run"));
        assert!(err(&["diff"]).contains("diff is not supported"));
        assert_eq!(err(&["-u"]), "no subcommand given");
        assert_eq!(err(&["start", "x"]), "unknown subcommand start");
        assert_eq!(err(&["-v", "x", "change"]), "-v x: expected a number");
        assert_eq!(err(&["-z", "change"]), "unknown option -z");
    }

    #[test]
    fn the_exitcode_file_gives_halts_code() {
        let dir = std::env::temp_dir().join(format!("corral-unit-halt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("exitcode");
        std::fs::write(&file, "3\n").unwrap();
        assert_eq!(exit_code_file(&file), Some(3));
        std::fs::write(&file, "x").unwrap();
        assert_eq!(exit_code_file(&file), None);
        assert_eq!(exit_code_file(&dir.join("none")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
