//! `s6-svstat` and `s6-svok` on corral's services: a service directory
//! path names a service by its last component, its state comes from the
//! control socket's `status`, and is printed in s6-svstat(8)'s words (the
//! human summary, or the `-o` fields).
//!
//! What it must never do: print what corral does not know as if it did
//! (`paused` is always false: corral does not track SIGSTOP), or print a
//! server's text unescaped.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use super::getopt::getopt;
use super::link::{Failure, Link};
use super::svc::service_name;
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::protocol::ServiceStatus;
use crate::text::{Form, escape};

const SVSTAT_USAGE: &str = "s6-svstat: usage: s6-svstat [ -uwNrpgest | -o up,wantedup,normallyup,ready,paused,pid,pgid,exitcode,signal,signum,updownsince,readysince,updownfor,readyfor ] [ -n ] servicedir";
const SVOK_USAGE: &str = "s6-svok: usage: s6-svok servicedir";

/// s6-svstat's and s6-svok's "not supervised".
const EXIT_NOT_SUPERVISED: u8 = 1;

/// One `-o` field of s6-svstat(8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Up,
    WantedUp,
    NormallyUp,
    Ready,
    Paused,
    Pid,
    Pgid,
    ExitCode,
    Signal,
    Signum,
    UpDownSince,
    ReadySince,
    UpDownFor,
    ReadyFor,
}

const FIELDS: [(&str, Field); 14] = [
    ("up", Field::Up),
    ("wantedup", Field::WantedUp),
    ("normallyup", Field::NormallyUp),
    ("ready", Field::Ready),
    ("paused", Field::Paused),
    ("pid", Field::Pid),
    ("pgid", Field::Pgid),
    ("exitcode", Field::ExitCode),
    ("signal", Field::Signal),
    ("signum", Field::Signum),
    ("updownsince", Field::UpDownSince),
    ("readysince", Field::ReadySince),
    ("updownfor", Field::UpDownFor),
    ("readyfor", Field::ReadyFor),
];

/// s6 prints at most this many fields.
const MAX_FIELDS: usize = 16;

#[derive(Debug, PartialEq, Eq)]
pub(super) struct SvstatArgs {
    /// Empty: the human summary.
    pub(super) fields: Vec<Field>,
    /// `-n`: signal numbers, not names, in the summary.
    pub(super) numeric: bool,
    pub(super) dir: PathBuf,
}

pub(super) fn parse_svstat(args: &[OsString]) -> Result<SvstatArgs, String> {
    let (opts, next) = getopt(args, "nuwNrpgest", "o")?;
    let mut fields = Vec::new();
    let mut numeric = false;
    for opt in opts {
        let more: Vec<Field> = match opt.letter {
            'n' => {
                numeric = true;
                continue;
            }
            'o' => opt
                .value
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|name| {
                    FIELDS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|&(_, f)| f)
                        .ok_or_else(|| format!("invalid option field: {name}"))
                })
                .collect::<Result<_, _>>()?,
            'u' => vec![Field::Up],
            'w' => vec![Field::WantedUp],
            'N' => vec![Field::NormallyUp],
            'r' => vec![Field::Ready],
            'p' => vec![Field::Pid],
            'g' => vec![Field::Pgid],
            'e' => vec![Field::ExitCode],
            's' => vec![Field::Signal],
            _ => vec![Field::UpDownFor],
        };
        fields.extend(more);
        if fields.len() > MAX_FIELDS {
            return Err("too many option fields".into());
        }
    }
    let dir = args
        .get(next)
        .map(PathBuf::from)
        .ok_or_else(|| "no service directory given".to_string())?;
    Ok(SvstatArgs {
        fields,
        numeric,
        dir,
    })
}

/// `s6-svstat [OPTIONS] DIR` (`args` without the program name).
pub fn svstat(args: &[OsString]) -> u8 {
    let args = match parse_svstat(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("s6-svstat: fatal: {why}\n{SVSTAT_USAGE}");
            return EXIT_USAGE;
        }
    };
    let dir = args.dir.display().to_string();
    let status = match lookup(&args.dir) {
        Ok(status) => status,
        Err(failure) => {
            return report("s6-svstat", &dir, failure);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let line = if args.fields.is_empty() {
        summary(&status, args.numeric)
    } else {
        fields(&status, &args.fields, now)
    };
    println!("{}", escape(&line, Form::Line));
    0
}

/// `s6-svok DIR`: 0 if corral supervises that service, 1 if not.
pub fn svok(args: &[OsString]) -> u8 {
    let dir = match args {
        [dir] if dir.as_os_str() != "--" => PathBuf::from(dir),
        [dashes, dir] if dashes.as_os_str() == "--" => PathBuf::from(dir),
        _ => {
            eprintln!("{SVOK_USAGE}");
            return EXIT_USAGE;
        }
    };
    match lookup(&dir) {
        Ok(_) => 0,
        Err(Failure::NoService(_)) => EXIT_NOT_SUPERVISED,
        Err(failure) => report("s6-svok", &dir.display().to_string(), failure),
    }
}

/// The status of the service `dir` names.
fn lookup(dir: &std::path::Path) -> Result<ServiceStatus, Failure> {
    let name = service_name(dir).ok_or_else(|| {
        Failure::NoService(
            "cannot tell which service this is (its last path component names it)".into(),
        )
    })?;
    Link::from_env(Some(Duration::from_secs(10))).status(&name)
}

/// s6's messages and exit codes: 1 for a directory corral does not
/// supervise, 111 when corral cannot be asked.
fn report(prog: &str, dir: &str, failure: Failure) -> u8 {
    match failure {
        Failure::NoService(why) => {
            let why = escape(&why, Form::Text);
            eprintln!(
                "{prog}: fatal: unable to read status for {dir}: not supervised by corral: {why}"
            );
            EXIT_NOT_SUPERVISED
        }
        Failure::Unreachable(why) => {
            eprintln!(
                "{prog}: fatal: unable to reach corral: {}",
                escape(&why, Form::Text)
            );
            EXIT_SYSTEM
        }
        Failure::TimedOut => {
            eprintln!("{prog}: fatal: unable to read status for {dir}: corral did not answer");
            EXIT_SYSTEM
        }
        Failure::Refused(why) | Failure::GaveUp(why) => {
            eprintln!(
                "{prog}: fatal: unable to read status for {dir}: {}",
                escape(&why, Form::Text)
            );
            EXIT_SYSTEM
        }
    }
}

/// How the service's last process ended, from `last_exit` (`exit 3`,
/// `killed by SIGTERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Code(i32),
    Signal(Signal),
}

fn ended(status: &ServiceStatus) -> Option<Ended> {
    let text = status.last_exit.as_deref()?;
    if let Some(code) = text.strip_prefix("exit ") {
        return code.parse().ok().map(Ended::Code);
    }
    let name = text.strip_prefix("killed by ")?;
    Signal::from_str(name).ok().map(Ended::Signal)
}

fn is_up(status: &ServiceStatus) -> bool {
    status.pid.is_some()
}

/// Never ran: s6's "not started yet".
fn not_started_yet(status: &ServiceStatus) -> bool {
    !is_up(status) && status.run == 0 && status.last_exit.is_none()
}

/// s6-supervise's readiness: up and ready, or down with no `finish` script
/// running (ready to be started again).
fn ready(status: &ServiceStatus) -> bool {
    if is_up(status) {
        status.ready
    } else {
        status.state != "finishing"
    }
}

fn seconds(ms: Option<u64>) -> u64 {
    ms.unwrap_or(0) / 1000
}

/// Time since the service became ready (or, down, since it went down).
fn ready_ms(status: &ServiceStatus) -> Option<u64> {
    if is_up(status) {
        status.ready_ms.or(status.updown_ms)
    } else {
        status.updown_ms
    }
}

/// The summary s6-svstat prints without options:
/// `up (pid 123 pgid 123) 45 seconds, ready 44 seconds`,
/// `down (exitcode 0) 3 seconds, normally up, want up, ready 3 seconds`.
pub(super) fn summary(status: &ServiceStatus, numeric: bool) -> String {
    let up = is_up(status);
    let fresh = not_started_yet(status);
    let mut line = match status.pid {
        // corral starts every service in a process group of its own.
        Some(pid) => format!("up (pid {pid} pgid {pid}) "),
        None if fresh => "down (not started yet) ".to_string(),
        None => match ended(status) {
            Some(Ended::Signal(signal)) if numeric => format!("down (signal {}) ", signal as i32),
            Some(Ended::Signal(signal)) => format!("down (signal {}) ", signal.as_str()),
            Some(Ended::Code(code)) => format!("down (exitcode {code}) "),
            None => "down (exitcode 0) ".to_string(),
        },
    };
    if !fresh {
        line.push_str(&format!("{} seconds", seconds(status.updown_ms)));
    }
    let want_up = status.want == "up";
    if up && !status.enabled {
        line.push_str(", normally down");
    }
    if !up && status.enabled {
        line.push_str(", normally up");
    }
    if !up && want_up {
        line.push_str(", want up");
    }
    if up && !want_up {
        line.push_str(", want down");
    }
    if ready(status) && !fresh {
        line.push_str(&format!(", ready {} seconds", seconds(ready_ms(status))));
    }
    line
}

/// The `-o` fields, space-separated.
pub(super) fn fields(status: &ServiceStatus, fields: &[Field], now: Duration) -> String {
    let up = is_up(status);
    let flag = |b: bool| if b { "true" } else { "false" }.to_string();
    let gone = if up || not_started_yet(status) {
        None
    } else {
        ended(status)
    };
    let field = |field: Field| match field {
        Field::Up => flag(up),
        Field::WantedUp => flag(status.want == "up"),
        Field::NormallyUp => flag(status.enabled),
        Field::Ready => flag(up && status.ready),
        Field::Paused => flag(false),
        Field::Pid | Field::Pgid => status.pid.unwrap_or(-1).to_string(),
        Field::ExitCode => match gone {
            Some(Ended::Code(code)) => code.to_string(),
            _ => "-1".into(),
        },
        Field::Signal => match gone {
            Some(Ended::Signal(signal)) => signal.as_str().to_string(),
            _ => "NA".into(),
        },
        Field::Signum => match gone {
            Some(Ended::Signal(signal)) => (signal as i32).to_string(),
            _ => "-1".into(),
        },
        Field::UpDownSince => tai64n(now, status.updown_ms),
        Field::ReadySince => tai64n(now, ready_ms(status)),
        Field::UpDownFor => seconds(status.updown_ms).to_string(),
        Field::ReadyFor => seconds(ready_ms(status)).to_string(),
    };
    fields
        .iter()
        .map(|&f| field(f))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The TAI64N label of `ago_ms` before `now` (time since the epoch): `@`
/// and 24 hex digits, 2^62 + TAI seconds, then nanoseconds. TAI is UTC + 37
/// seconds since 2017, as skalibs counts it.
fn tai64n(now: Duration, ago_ms: Option<u64>) -> String {
    const TAI64_BASE: u64 = 1 << 62;
    const TAI_MINUS_UTC: u64 = 37;
    let at = now.saturating_sub(Duration::from_millis(ago_ms.unwrap_or(0)));
    format!(
        "@{:016x}{:08x}",
        TAI64_BASE + TAI_MINUS_UTC + at.as_secs(),
        at.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn up() -> ServiceStatus {
        ServiceStatus {
            name: "web".into(),
            state: "ready".into(),
            want: "up".into(),
            pid: Some(123),
            uptime_ms: Some(45_300),
            updown_ms: Some(45_300),
            ready_ms: Some(44_900),
            run: 1,
            ready: true,
            enabled: true,
            ..ServiceStatus::default()
        }
    }

    fn down(last_exit: &str) -> ServiceStatus {
        ServiceStatus {
            name: "web".into(),
            state: "backoff".into(),
            want: "up".into(),
            updown_ms: Some(3_100),
            run: 2,
            last_exit: Some(last_exit.into()),
            enabled: true,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn svstat_options_are_s6s() {
        let parsed = parse_svstat(&args(&[
            "-ur",
            "-o",
            "pid,exitcode",
            "-n",
            "/run/service/web",
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            SvstatArgs {
                fields: vec![Field::Up, Field::Ready, Field::Pid, Field::ExitCode],
                numeric: true,
                dir: "/run/service/web".into(),
            }
        );
        let all = parse_svstat(&args(&["-uwNrpgest", "x"])).unwrap();
        assert_eq!(all.fields.len(), 9);
        assert_eq!(
            parse_svstat(&args(&["-o", "up,bogus", "x"])),
            Err("invalid option field: bogus".into())
        );
        assert_eq!(
            parse_svstat(&args(&["-u"])),
            Err("no service directory given".into())
        );
        assert_eq!(
            parse_svstat(&args(&["-x", "d"])),
            Err("unknown option -x".into())
        );
        let many = vec![
            "-o",
            "up,up,up,up,up,up,up,up,up,up,up,up,up,up,up,up,up",
            "x",
        ];
        assert_eq!(
            parse_svstat(&args(&many)),
            Err("too many option fields".into())
        );
    }

    #[test]
    fn the_summary_reads_as_s6s() {
        assert_eq!(
            summary(&up(), false),
            "up (pid 123 pgid 123) 45 seconds, ready 44 seconds"
        );
        let not_ready = ServiceStatus {
            ready: false,
            ready_ms: None,
            want: "down".into(),
            enabled: false,
            ..up()
        };
        assert_eq!(
            summary(&not_ready, false),
            "up (pid 123 pgid 123) 45 seconds, normally down, want down"
        );
        assert_eq!(
            summary(&down("exit 0"), false),
            "down (exitcode 0) 3 seconds, normally up, want up, ready 3 seconds"
        );
        assert_eq!(
            summary(&down("killed by SIGTERM"), false),
            "down (signal SIGTERM) 3 seconds, normally up, want up, ready 3 seconds"
        );
        assert_eq!(
            summary(&down("killed by SIGTERM"), true),
            "down (signal 15) 3 seconds, normally up, want up, ready 3 seconds"
        );
        let finishing = ServiceStatus {
            state: "finishing".into(),
            want: "down".into(),
            ..down("exit 3")
        };
        assert_eq!(
            summary(&finishing, false),
            "down (exitcode 3) 3 seconds, normally up"
        );
        let fresh = ServiceStatus {
            state: "stopped".into(),
            want: "down".into(),
            enabled: false,
            updown_ms: None,
            run: 0,
            last_exit: None,
            ..down("")
        };
        assert_eq!(summary(&fresh, false), "down (not started yet) ");
    }

    #[test]
    fn fields_print_as_s6_prints_them() {
        use Field::*;
        let now = Duration::from_secs(1_700_000_000);
        let all = [
            Up, WantedUp, NormallyUp, Ready, Paused, Pid, Pgid, ExitCode, Signal, Signum,
            UpDownFor, ReadyFor,
        ];
        assert_eq!(
            fields(&up(), &all, now),
            "true true true true false 123 123 -1 NA -1 45 44"
        );
        assert_eq!(
            fields(&down("killed by SIGKILL"), &all, now),
            "false true true false false -1 -1 -1 SIGKILL 9 3 3"
        );
        assert_eq!(
            fields(&down("exit 4"), &[ExitCode, Signal, Signum], now),
            "4 NA -1"
        );
        // 2^62 + 37 + the time, then nanoseconds.
        assert_eq!(
            fields(&up(), &[UpDownSince], now),
            format!(
                "@{:016x}{:08x}",
                (1u64 << 62) + 37 + 1_700_000_000 - 46,
                700_000_000
            )
        );
    }
}
