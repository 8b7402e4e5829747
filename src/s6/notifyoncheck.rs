//! `s6-notifyoncheck [-d] [-3 fd] [-s initialsleep] [-T globaltimeout]
//! [-t localtimeout] [-w waitingtime] [-n tries] [-c checkprog] PROG...`
//! (s6-notifyoncheck(8)): readiness for a daemon that cannot say it is
//! ready, by polling it. This process forks a checker, closes the
//! notification fd and execs PROG; the checker runs `./data/check` (or the
//! `-c` command line) until it exits 0, then writes a newline to the
//! notification fd (from `-3`, else `./notification-fd` in the service
//! directory, the working directory), which corral reads as "ready".
//!
//! The checker gives up after `-n` failed checks (default 7, 0 = never),
//! at `-T`, or when PROG dies (it watches PROG through a pidfd opened
//! before the fork, so PROG's pid can never be mistaken for another).
//! `-d` makes the checker PROG's sibling, not its child (PROG may not
//! reap children it does not know of; s6 forks twice for this): its
//! parent, corral or a run script's shell, reaps it.
//!
//! What it must never do: leave the notification fd open in PROG (the
//! checker alone writes it), or keep running once PROG is gone. `fork` is
//! safe here: this process has one thread when it forks. Nothing here
//! blocks in a wait for a child: a check is collected with `try_wait`
//! once its pidfd says it ended.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Pid, fork};

use super::exec::exec;
use super::getopt::{getopt, millis};
use super::{EXIT_SYSTEM, EXIT_USAGE};
use crate::files;
use crate::text::execline::command_line;
use crate::text::strerror;

const USAGE: &str = "s6-notifyoncheck: usage: s6-notifyoncheck [ -d ] [ -3 notiffd ] [ -s initialsleep ] [ -T globaltimeout ] [ -t localtimeout ] [ -w waitingtime ] [ -n tries ] [ -c \"checkprog...\" ] prog...";

/// The checker's exit codes (s6-notifyoncheck(8)); nothing reads them.
const CHECKER_READY: i32 = 0;
const CHECKER_GAVE_UP: i32 = 1;
const CHECKER_PROG_DIED: i32 = 2;
const CHECKER_TIMED_OUT: i32 = 3;
const CHECKER_SYSTEM: i32 = 111;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckArgs {
    pub(super) double_fork: bool,
    /// `-3`; none: `./notification-fd`.
    pub(super) fd: Option<RawFd>,
    pub(super) initial_sleep: Duration,
    /// `-T`; none: forever.
    pub(super) global_timeout: Option<Duration>,
    /// `-t`; none: each check may take forever.
    pub(super) local_timeout: Option<Duration>,
    pub(super) waiting_time: Duration,
    /// `-n`; none: until it passes.
    pub(super) tries: Option<u32>,
    /// `-c`: an execline command line instead of `./data/check`.
    pub(super) check: Option<String>,
    pub(super) prog: Vec<OsString>,
}

impl CheckArgs {
    /// s6-notifyoncheck without options (s6-notifyoncheck(8)).
    pub(super) const DEFAULT: CheckArgs = CheckArgs {
        double_fork: false,
        fd: None,
        initial_sleep: Duration::from_millis(10),
        global_timeout: None,
        local_timeout: None,
        waiting_time: Duration::from_millis(1000),
        tries: Some(7),
        check: None,
        prog: Vec::new(),
    };
}

pub(super) fn parse_notifyoncheck(args: &[OsString]) -> Result<CheckArgs, String> {
    let (opts, next) = getopt(args, "d", "3sTtwnc")?;
    let mut parsed = CheckArgs::DEFAULT;
    let nonzero = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    for opt in opts {
        let value = opt.value.as_deref();
        match opt.letter {
            'd' => parsed.double_fork = true,
            '3' => {
                let text = value.unwrap_or_default();
                parsed.fd = Some(
                    text.parse::<u32>()
                        .ok()
                        .and_then(|n| RawFd::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("-3 {text}: notification-fd must be an unsigned integer")
                        })?,
                );
            }
            's' => parsed.initial_sleep = Duration::from_millis(millis('s', value)?),
            'T' => parsed.global_timeout = nonzero(millis('T', value)?),
            't' => parsed.local_timeout = nonzero(millis('t', value)?),
            'w' => parsed.waiting_time = Duration::from_millis(millis('w', value)?),
            'n' => {
                let text = value.unwrap_or_default();
                let n: u32 = text
                    .parse()
                    .map_err(|_| format!("-n {text}: expected a number of tries"))?;
                parsed.tries = (n > 0).then_some(n);
            }
            _ => parsed.check = value.map(str::to_string),
        }
    }
    parsed.prog = args.get(next..).unwrap_or_default().to_vec();
    if parsed.prog.is_empty() {
        return Err("no program given".into());
    }
    Ok(parsed)
}

/// `s6-notifyoncheck [OPTIONS] PROG...` (`args` without the program name).
pub fn notifyoncheck(args: &[OsString]) -> u8 {
    let args = match parse_notifyoncheck(args) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("s6-notifyoncheck: fatal: {why}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let fd = match args.fd {
        Some(fd) => fd,
        None => match notification_fd(Path::new("notification-fd")) {
            Ok(fd) => fd,
            Err((code, why)) => {
                eprintln!("s6-notifyoncheck: fatal: {why}");
                return code;
            }
        },
    };
    // SAFETY: fcntl(2) F_GETFD on an fd number only reads its flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        eprintln!(
            "s6-notifyoncheck: fatal: notification-fd {fd} sanity check failed: {}",
            strerror(&io::Error::last_os_error())
        );
        return EXIT_SYSTEM;
    }
    let check = match check_command(args.check.as_deref()) {
        Ok(check) => check,
        Err(why) => {
            eprintln!("s6-notifyoncheck: fatal: {why}");
            return EXIT_USAGE;
        }
    };
    // PROG's pid is ours: a pidfd opened now (close-on-exec: PROG does not
    // inherit it) tells the checker when PROG is gone.
    // SAFETY: pidfd_open(2) of our own pid, no flags; returns an fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let watch = Watch {
        pidfd: RawFd::try_from(pidfd).ok().filter(|&fd| fd >= 0),
        pid: Pid::this(),
    };
    match spawn_checker(args.double_fork) {
        Err(errno) => {
            eprintln!("s6-notifyoncheck: fatal: unable to fork: {}", errno.desc());
            return EXIT_SYSTEM;
        }
        Ok(true) => {
            let code = checker(&args, &check, fd, &watch);
            std::process::exit(code);
        }
        Ok(false) => {}
    }
    // PROG: without the notification fd (the checker writes it) and the pidfd.
    // SAFETY: close(2) of fds this process owns and no longer uses.
    unsafe {
        libc::close(fd);
        if let Some(pidfd) = watch.pidfd {
            libc::close(pidfd);
        }
    }
    let Some((prog, rest)) = args.prog.split_first() else {
        return EXIT_USAGE;
    };
    exec(
        Command::new(prog).args(rest),
        prog,
        "s6-notifyoncheck: fatal: unable to exec ",
    )
}

/// Fork the checker: `Ok(true)` in the checker, `Ok(false)` in the
/// process that goes on to exec PROG. With `sibling` (`-d`), the checker is
/// made PROG's sibling rather than its child (clone(2) `CLONE_PARENT`):
/// s6's double fork without a middle process to reap, so PROG never has a
/// child it did not start; its parent (corral, or a run script's shell)
/// reaps it. Where the kernel refuses that, it is PROG's child.
fn spawn_checker(sibling: bool) -> nix::Result<bool> {
    if sibling {
        // SAFETY: clone(2) without CLONE_VM and without a new stack is
        // fork(2) with another parent: the child runs on a copy of this
        // stack. This process has a single thread (no command starts one
        // before this), so no lock can be held in the copy.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_PARENT | libc::SIGCHLD,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        match pid {
            0 => return Ok(true),
            p if p > 0 => return Ok(false),
            _ => {}
        }
    }
    // SAFETY: as above, a single thread forks.
    match unsafe { fork() }? {
        ForkResult::Child => Ok(true),
        ForkResult::Parent { .. } => Ok(false),
    }
}

/// The number in `./notification-fd`: (exit code, message) if none.
fn notification_fd(path: &Path) -> Result<RawFd, (u8, String)> {
    let content = files::read_limited(path, 64).map_err(|e| {
        (
            EXIT_SYSTEM,
            format!("unable to read ./notification-fd: {e}"),
        )
    })?;
    std::str::from_utf8(&content)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .and_then(|n| RawFd::try_from(n).ok())
        .ok_or_else(|| (EXIT_USAGE, "invalid ./notification-fd".to_string()))
}

/// The check's argv: `./data/check`, or the `-c` command line. A plain
/// command line runs as it is; anything needing execline runs through
/// `execlineb -Pc`, as s6's does.
fn check_command(text: Option<&str>) -> Result<Vec<OsString>, String> {
    let Some(text) = text else {
        return Ok(vec!["./data/check".into()]);
    };
    match command_line(text) {
        Ok(Some(argv)) if !argv.is_empty() => Ok(argv.into_iter().map(OsString::from).collect()),
        Ok(Some(_)) => Err("-c: an empty command line".into()),
        Ok(None) => Ok(vec!["execlineb".into(), "-Pc".into(), text.into()]),
        Err(err) => Err(format!("-c: {err}")),
    }
}

/// What tells the checker that PROG is gone.
struct Watch {
    pidfd: Option<RawFd>,
    pid: Pid,
}

impl Watch {
    /// Wait up to `until` (none: forever) for PROG to die, or for
    /// `check` (a pidfd) to be readable. True if PROG died.
    fn wait(&self, until: Option<Instant>, check: Option<RawFd>) -> Result<bool, i32> {
        let mut fds: Vec<libc::pollfd> = self
            .pidfd
            .iter()
            .chain(check.iter())
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            let timeout = match until {
                None if self.pidfd.is_none() => 1000,
                None => -1,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    // Without a pidfd, look at PROG once a second.
                    let left = if self.pidfd.is_none() {
                        left.min(Duration::from_secs(1))
                    } else {
                        left
                    };
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
                }
            };
            let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
            // SAFETY: poll(2) on a vector of pollfd we own, its length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CHECKER_SYSTEM);
            }
            let prog_gone = match self.pidfd {
                Some(_) => fds.first().is_some_and(|p| p.revents != 0),
                None => kill(self.pid, None).is_err(),
            };
            if prog_gone {
                return Ok(true);
            }
            let check_done = match (self.pidfd, check) {
                (_, None) => false,
                (Some(_), Some(_)) => fds.get(1).is_some_and(|p| p.revents != 0),
                (None, Some(_)) => fds.first().is_some_and(|p| p.revents != 0),
            };
            if check_done || until.is_some_and(|at| Instant::now() >= at) {
                return Ok(false);
            }
        }
    }
}

/// The checker: the checks, at most `tries` of them, `waiting_time`
/// apart, until one passes (then the newline to `fd`) or it gives up.
fn checker(args: &CheckArgs, check: &[OsString], fd: RawFd, watch: &Watch) -> i32 {
    let global = args.global_timeout.map(|t| Instant::now() + t);
    let earlier = |a: Option<Instant>, b: Instant| Some(a.map_or(b, |a| a.min(b)));
    let mut sleep = args.initial_sleep;
    let mut left = args.tries;
    while left != Some(0) {
        left = left.map(|n| n - 1);
        match watch.wait(earlier(global, Instant::now() + sleep), None) {
            Ok(true) => return CHECKER_PROG_DIED,
            Ok(false) => {}
            Err(code) => return code,
        }
        if global.is_some_and(|at| Instant::now() >= at) {
            return CHECKER_TIMED_OUT;
        }
        sleep = args.waiting_time;
        let Some((prog, rest)) = check.split_first() else {
            return CHECKER_SYSTEM;
        };
        let mut child = match Command::new(prog).args(rest).spawn() {
            Ok(child) => child,
            Err(err) => {
                eprintln!(
                    "s6-notifyoncheck: warning: unable to spawn {}: {}",
                    prog.to_string_lossy(),
                    strerror(&err)
                );
                continue;
            }
        };
        match run_check(&mut child, args, global, watch) {
            Ok(Some(true)) => {
                // SAFETY: write(2) of one byte from a static buffer to the
                // notification fd this process was handed.
                unsafe {
                    libc::write(fd, b"\n".as_ptr().cast(), 1);
                    libc::close(fd);
                }
                return CHECKER_READY;
            }
            Ok(Some(false)) => {}
            Ok(None) => return CHECKER_PROG_DIED,
            Err(code) => return code,
        }
    }
    CHECKER_GAVE_UP
}

/// Kill a check and collect it once its pidfd (if any) says it is gone.
fn end_check(child: &mut Child, pid: Pid, pidfd: Option<RawFd>) {
    let _ = kill(pid, Signal::SIGTERM);
    loop {
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return,
        }
        match pidfd {
            Some(fd) => {
                let mut pollfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) on one pollfd we own, for at most 1 s.
                unsafe {
                    libc::poll(&mut pollfd, 1, 1000);
                }
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One check: `Some(passed)`, or `None` if PROG died meanwhile; the
/// check is killed at its `-t` or at `-T`.
fn run_check(
    child: &mut Child,
    args: &CheckArgs,
    global: Option<Instant>,
    watch: &Watch,
) -> Result<Option<bool>, i32> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    // SAFETY: pidfd_open(2) of our own child, not reaped yet.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = RawFd::try_from(pidfd).ok().filter(|&fd| fd >= 0);
    let local = args.local_timeout.map(|t| Instant::now() + t);
    let until = match (local, global) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Ok(Some(status.success()));
        }
        match watch.wait(until, pidfd) {
            Ok(true) => {
                end_check(child, pid, pidfd);
                break Ok(None);
            }
            Ok(false) => {}
            Err(code) => break Err(code),
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Ok(Some(status.success()));
        }
        if until.is_some_and(|at| Instant::now() >= at) {
            end_check(child, pid, pidfd);
            if global.is_some_and(|at| Instant::now() >= at) {
                break Err(CHECKER_TIMED_OUT);
            }
            break Ok(Some(false));
        }
        if pidfd.is_none() {
            // No pidfd to wake on: look again shortly.
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    if let Some(fd) = pidfd {
        // SAFETY: close(2) of the pidfd opened above.
        unsafe {
            libc::close(fd);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s6::args;

    fn parse(words: &[&str]) -> Result<CheckArgs, String> {
        parse_notifyoncheck(&args(words))
    }

    #[test]
    fn notifyoncheck_defaults_are_s6s() {
        let p = parse(&["daemon", "-f"]).unwrap();
        assert_eq!(
            p,
            CheckArgs {
                prog: vec!["daemon".into(), "-f".into()],
                ..CheckArgs::DEFAULT
            }
        );
        let d = CheckArgs::DEFAULT;
        assert_eq!(
            (
                d.double_fork,
                d.fd,
                d.global_timeout,
                d.local_timeout,
                d.check
            ),
            (false, None, None, None, None)
        );
        assert_eq!(
            (d.initial_sleep, d.waiting_time, d.tries),
            (Duration::from_millis(10), Duration::from_secs(1), Some(7))
        );
    }

    #[test]
    fn notifyoncheck_options() {
        let p = parse(&[
            "-d",
            "-3",
            "5",
            "-s",
            "0",
            "-T",
            "3000",
            "-t500",
            "-w",
            "1000",
            "-n",
            "300",
            "-c",
            "nc -z localhost 80",
            "--",
            "daemon",
        ])
        .unwrap();
        assert!(p.double_fork);
        assert_eq!(p.fd, Some(5));
        assert_eq!(p.initial_sleep, Duration::ZERO);
        assert_eq!(p.global_timeout, Some(Duration::from_secs(3)));
        assert_eq!(p.local_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.tries, Some(300));
        assert_eq!(p.check.as_deref(), Some("nc -z localhost 80"));
        assert_eq!(p.prog, vec![OsString::from("daemon")]);
        // -n 0 and -T 0: no limit.
        let p = parse(&["-n0", "-T0", "x"]).unwrap();
        assert_eq!((p.tries, p.global_timeout), (None, None));
        assert_eq!(parse(&["-d"]).unwrap_err(), "no program given");
        assert!(
            parse(&["-3", "x", "p"])
                .unwrap_err()
                .contains("unsigned integer")
        );
        assert!(
            parse(&["-n", "-1", "p"])
                .unwrap_err()
                .contains("number of tries")
        );
    }

    #[test]
    fn the_check_is_data_check_or_the_command_line() {
        let argv = |words: &[&str]| Ok(words.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(check_command(None), argv(&["./data/check"]));
        assert_eq!(
            check_command(Some("nc -z \"localhost\" 8080")),
            argv(&["nc", "-z", "localhost", "8080"])
        );
        assert_eq!(
            check_command(Some("if { true } nc -z localhost 80")),
            argv(&["execlineb", "-Pc", "if { true } nc -z localhost 80"])
        );
        assert!(
            check_command(Some("nc \"open"))
                .unwrap_err()
                .starts_with("-c: 1:")
        );
        assert_eq!(
            check_command(Some("  ")),
            Err("-c: an empty command line".into())
        );
    }

    #[test]
    fn notification_fd_files_hold_a_number() {
        let dir = std::env::temp_dir().join(format!("corral-unit-notif-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("notification-fd");
        std::fs::write(&file, "3\n").unwrap();
        assert_eq!(notification_fd(&file), Ok(3));
        std::fs::write(&file, "three").unwrap();
        assert_eq!(
            notification_fd(&file),
            Err((EXIT_USAGE, "invalid ./notification-fd".into()))
        );
        let missing = notification_fd(&dir.join("none")).unwrap_err();
        assert_eq!(missing.0, EXIT_SYSTEM);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
