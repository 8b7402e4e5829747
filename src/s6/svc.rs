//! `s6-svc [OPTIONS] DIR...`: s6's command line (getopt, bundled letters,
//! the signal letters), and the report of each directory's outcome with
//! s6's exit codes. What each command does is `link.rs`.
//!
//! What it must never do: accept a command corral cannot honour (`-O`,
//! `-x`) as if it could: it says why, and what to do instead.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::EXIT_USAGE;
use super::getopt::scan;
use super::link::{Failure, Link, SvcArgs, SvcCommand, control};
use crate::protocol::Until;
use crate::text::{Form, escape};

const SVC_USAGE: &str = "s6-svc: usage: s6-svc [ -wu | -wU | -wd | -wD | -wr | -wR ] [ -T timeout ] [ -s signal | -abqhkti12pcy ] [ -roduDU ] servicedir...";

/// The signals s6-svc may send, by their option letter (s6-svc(8)).
const SIGNAL_LETTERS: [(char, Signal); 12] = [
    ('a', Signal::SIGALRM),
    ('b', Signal::SIGABRT),
    ('q', Signal::SIGQUIT),
    ('h', Signal::SIGHUP),
    ('k', Signal::SIGKILL),
    ('t', Signal::SIGTERM),
    ('i', Signal::SIGINT),
    ('1', Signal::SIGUSR1),
    ('2', Signal::SIGUSR2),
    ('p', Signal::SIGSTOP),
    ('c', Signal::SIGCONT),
    ('y', Signal::SIGWINCH),
];

/// `s6-svc [OPTIONS] DIR...` (`args` without the program name).
pub fn svc(args: &[OsString]) -> u8 {
    let args = match parse_svc(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_USAGE;
        }
    };
    let link = Link {
        socket: std::env::var_os("CORRAL_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        deadline: args.timeout.map(|t| Instant::now() + t),
    };
    // Like s6-svc with several directories: an error is reported and the next
    // directory is still controlled; the status is that of the last error.
    let mut code = 0;
    for dir in &args.dirs {
        let result = match service_name(dir) {
            Some(name) => control(&link, &name, &args),
            None => Err(Failure::NoService(
                "cannot tell which service this is (its last path component names it)".into(),
            )),
        };
        let Err(failure) = result else {
            continue;
        };
        code = failure.code();
        match failure {
            Failure::TimedOut => {
                let ms = args.timeout.unwrap_or_default().as_millis();
                eprintln!("s6-svc: fatal: {}: timed out after {ms} ms", dir.display());
                break;
            }
            // `why` may quote what corral (or whoever answered) said: escaped.
            Failure::Unreachable(why) => {
                let why = escape(&why, Form::Text);
                eprintln!("s6-svc: fatal: unable to reach corral: {why}");
                break;
            }
            Failure::NoService(why) | Failure::Refused(why) | Failure::GaveUp(why) => {
                let why = escape(&why, Form::Text);
                eprintln!("s6-svc: fatal: unable to control {}: {why}", dir.display());
            }
        }
    }
    code
}

/// s6's getopt (`getopt::scan`): options first (letters may be bundled,
/// `-T` and `-w` and `-s` take the rest of their word or the next one),
/// `--` ends them, then at least one directory. Each letter is judged as it
/// comes: the first error is the one reported.
fn parse_svc(args: &[OsString]) -> Result<SvcArgs, String> {
    let usage = |why: &str| format!("s6-svc: fatal: {why}\n{SVC_USAGE}");
    let mut commands = Vec::new();
    let mut wait = None;
    let mut timeout = None;
    let next = scan(args, "wTs", |letter, value| {
        match (letter, value) {
            ('w', Some(value)) => {
                let until = parse_wait(value);
                wait = Some(until.ok_or_else(|| {
                    format!("-w{value}: expected -wu, -wU, -wd, -wD, -wr or -wR")
                })?);
            }
            ('T', Some(value)) => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("-T {value}: expected a timeout in milliseconds"))?;
                timeout = (ms > 0).then(|| Duration::from_millis(ms));
            }
            ('s', Some(value)) => commands.push(SvcCommand::Signal(parse_s6_signal(value)?)),
            _ => commands.push(command(letter)?),
        }
        Ok(())
    })
    .map_err(|why| usage(&why))?;
    let dirs: Vec<PathBuf> = args
        .get(next..)
        .unwrap_or_default()
        .iter()
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        return Err(usage("no service directory given"));
    }
    Ok(SvcArgs {
        commands,
        wait,
        timeout,
        dirs,
    })
}

fn command(letter: char) -> Result<SvcCommand, String> {
    if let Some(&(_, signal)) = SIGNAL_LETTERS.iter().find(|(l, _)| *l == letter) {
        return Ok(SvcCommand::Signal(signal));
    }
    match letter {
        'u' | 'U' => Ok(SvcCommand::Up),
        'd' | 'D' => Ok(SvcCommand::Down),
        'o' => Ok(SvcCommand::Once),
        'r' => Ok(SvcCommand::Restart),
        'O' | 'Q' => Err(format!(
            "-{letter} (run at most once) is not supported by corral: give the service restart = \"never\" in its corral.toml"
        )),
        'x' | 'X' => Err(format!(
            "-{letter} (make the supervisor exit) has no equivalent in corral: to stop the container, use corral ctl shutdown"
        )),
        other => Err(format!(
            "unknown option -{other} (corral's s6-svc supports -u -U -d -D -o -r, the signals -abqhkti12pcy and -s SIG, -w{{u,U,d,D,r,R}} and -T)"
        )),
    }
}

fn parse_wait(value: &str) -> Option<Until> {
    match value {
        "u" => Some(Until::Started),
        "U" => Some(Until::Ready),
        "d" => Some(Until::Down),
        "D" => Some(Until::Finished),
        "r" => Some(Until::Restarted),
        "R" => Some(Until::RestartedReady),
        _ => None,
    }
}

/// `-s SIG`: a name (`HUP`, `SIGHUP`, any case) or number, among the
/// signals s6-svc has a letter for.
fn parse_s6_signal(value: &str) -> Result<Signal, String> {
    let signal = match value.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = value.to_ascii_uppercase();
            let full = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&full).ok()
        }
    };
    match signal {
        Some(signal) if SIGNAL_LETTERS.iter().any(|&(_, s)| s == signal) => Ok(signal),
        Some(_) => Err(format!(
            "-s {value}: not in the list of signals s6-svc may send (ALRM ABRT QUIT HUP KILL TERM INT USR1 USR2 STOP CONT WINCH)"
        )),
        None => Err(format!("-s {value}: invalid signal")),
    }
}

/// The service a directory path names: its last component
/// (`/var/run/s6/services/haproxy`, `/run/service/haproxy/`, `haproxy`);
/// for `.` or `..` (a script in its own service directory), the last
/// component of the directory it is.
pub(super) fn service_name(dir: &Path) -> Option<String> {
    let name = match dir.file_name() {
        Some(name) => name.to_os_string(),
        None => fs::canonicalize(dir).ok()?.file_name()?.to_os_string(),
    };
    name.into_string().ok().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn parse(words: &[&str]) -> Result<SvcArgs, String> {
        parse_svc(&args(words))
    }

    #[test]
    fn s6_svc_options_bundle_and_keep_their_order() {
        assert_eq!(
            parse(&["-twR", "/run/service/web", "db"]),
            Ok(SvcArgs {
                commands: vec![SvcCommand::Signal(Signal::SIGTERM)],
                wait: Some(Until::RestartedReady),
                timeout: None,
                dirs: vec!["/run/service/web".into(), "db".into()],
            })
        );
        assert_eq!(
            parse(&["-wU", "-T", "5000", "-u", "-h", "/var/run/s6/services/web"]),
            Ok(SvcArgs {
                commands: vec![SvcCommand::Up, SvcCommand::Signal(Signal::SIGHUP)],
                wait: Some(Until::Ready),
                timeout: Some(Duration::from_millis(5000)),
                dirs: vec!["/var/run/s6/services/web".into()],
            })
        );
        let parsed = parse(&["-T200", "-ruwr", "-sUSR1", "-s", "9", "--", "-odd-name"]).unwrap();
        assert_eq!(
            parsed.commands,
            vec![
                SvcCommand::Restart,
                SvcCommand::Up,
                SvcCommand::Signal(Signal::SIGUSR1),
                SvcCommand::Signal(Signal::SIGKILL),
            ]
        );
        assert_eq!(parsed.wait, Some(Until::Restarted));
        assert_eq!(parsed.timeout, Some(Duration::from_millis(200)));
        assert_eq!(parsed.dirs, vec![PathBuf::from("-odd-name")]);
        // -T 0: no limit, as in s6.
        assert_eq!(parse(&["-T", "0", "-d", "x"]).unwrap().timeout, None);
        // Every signal letter.
        let all = parse(&["-abqhkti12pcy", "x"]).unwrap();
        assert_eq!(all.commands.len(), 12);
    }

    #[test]
    fn s6_svc_usage_errors_say_what_is_wrong() {
        let err = |words: &[&str]| parse(words).unwrap_err();
        assert!(
            err(&["-u"]).starts_with("s6-svc: fatal: no service directory given\ns6-svc: usage: ")
        );
        assert!(err(&["-Z", "x"]).contains("unknown option -Z (corral's s6-svc supports"));
        assert!(err(&["-O", "x"]).contains("restart = \"never\""));
        assert!(err(&["-dx", "x"]).contains("corral ctl shutdown"));
        assert!(err(&["-wz", "x"]).contains("-wz: expected -wu, -wU"));
        assert!(err(&["-T", "1s", "x"]).contains("-T 1s: expected a timeout in milliseconds"));
        assert!(err(&["-d", "-w"]).contains("option -w needs a value"));
        assert!(err(&["-s", "SEGV", "x"]).contains("not in the list of signals"));
        assert!(err(&["-s", "NOPE", "x"]).contains("-s NOPE: invalid signal"));
    }

    #[test]
    fn the_last_path_component_names_the_service() {
        assert_eq!(
            service_name(Path::new("/var/run/s6/services/haproxy")).as_deref(),
            Some("haproxy")
        );
        assert_eq!(
            service_name(Path::new("/run/service/haproxy/")).as_deref(),
            Some("haproxy")
        );
        assert_eq!(
            service_name(Path::new("haproxy")).as_deref(),
            Some("haproxy")
        );
        let cwd = std::env::current_dir().unwrap();
        let here = cwd.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(service_name(Path::new(".")), Some(here));
        assert_eq!(service_name(Path::new("/")), None);
    }
}
