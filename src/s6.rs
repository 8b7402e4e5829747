//! s6-overlay's `with-contenv` and `s6-svc` (SPEC section 4), for scripts
//! written for s6-overlay: corral runs as either when invoked through a link
//! of that name (`/usr/bin/with-contenv`, `/command/s6-svc`), or as
//! `corral with-contenv ...` / `corral s6-svc ...`.
//!
//! What it owns: the two command lines and their exit codes (s6's: 100
//! usage, 111 system failure, 99 timeout, 102 not a supervised service);
//! s6-envdir's reading of `/run/s6/container_environment`; and the
//! translation of s6-svc commands into control requests, sent over the same
//! socket as `corral ctl` (`CORRAL_SOCKET`, or the default paths).
//!
//! What it must never do: write a file (corral writes nothing but its
//! socket), or know more of the supervisor than the control protocol.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::control::client;
use crate::files;
use crate::protocol::{Request, Response, ServiceStatus, Targets, decode_response, encode_request};
use crate::text::{Form, escape, strerror};

/// s6's exit codes (s6-svc(8), s6-svlisten1(8)), which scripts may test.
const EXIT_TIMED_OUT: u8 = 99;
const EXIT_USAGE: u8 = 100;
const EXIT_NO_SERVICE: u8 = 102;
const EXIT_SYSTEM: u8 = 111;
/// A program that cannot be run, as the shell reports it.
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_CANNOT_RUN: u8 = 126;

// ---------------------------------------------------------------------------
// with-contenv

/// Where s6-overlay keeps the container environment: v2's path, then v3's.
/// corral writes neither; `cont-init.d` scripts may. On most images
/// `/var/run` is a link to `/run`: the same directory is read once.
pub const CONTAINER_ENV_DIRS: [&str; 2] = [
    "/var/run/s6/container_environment",
    "/run/s6/container_environment",
];

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
        for dir in CONTAINER_ENV_DIRS.map(Path::new) {
            let Ok(meta) = fs::metadata(dir) else {
                continue;
            };
            if !meta.is_dir() || read.contains(&(meta.dev(), meta.ino())) {
                continue;
            }
            read.push((meta.dev(), meta.ino()));
            match read_envdir(dir) {
                Ok(vars) => {
                    for (name, value) in vars {
                        match value {
                            Some(value) => cmd.env(name, value),
                            None => cmd.env_remove(name),
                        };
                    }
                }
                Err(err) => {
                    // s6-envdir's answer to an unreadable directory.
                    eprintln!("with-contenv: fatal: {err}");
                    return EXIT_SYSTEM;
                }
            }
        }
    }
    // exec(3) replaces this process; std resets the signal mask and SIGPIPE
    // to their defaults first, so PROG starts as it would from a shell.
    let err = cmd.exec();
    // strerror(3) text, without std's " (os error N)".
    eprintln!(
        "with-contenv: {}: {}",
        prog.to_string_lossy(),
        strerror(&err)
    );
    if err.kind() == io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    }
}

/// s6-overlay's with-contenv runs `s6-envdir` unless `S6_KEEP_ENV` is a
/// number other than 0 (its test is `0$S6_KEEP_ENV -eq 0`; anything that is
/// not a number counts as set, too).
fn keep_env(value: Option<OsString>) -> bool {
    value.is_some_and(|v| !v.as_bytes().iter().all(|&b| b == b'0'))
}

/// The variables of an s6 envdir, by name: `Some(value)` to set, `None` to
/// unset. s6-overlay's with-contenv reads the directory with `s6-envdir -Lf`:
/// every file whose name neither starts with `.` nor contains `=`; an empty
/// file unsets its variable; otherwise the whole content, less one trailing
/// newline, with NUL bytes turned into newlines (s6-envdir(8)).
pub fn read_envdir(dir: &Path) -> Result<Vec<(OsString, Option<OsString>)>, String> {
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
        vars.push((name, envdir_value(&content)));
    }
    vars.sort();
    Ok(vars)
}

/// One envdir file's content as a value (`None`: unset the variable).
fn envdir_value(content: &[u8]) -> Option<OsString> {
    if content.is_empty() {
        return None;
    }
    let value = content.strip_suffix(b"\n").unwrap_or(content);
    Some(OsString::from_vec(
        value
            .iter()
            .map(|&b| if b == 0 { b'\n' } else { b })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------
// s6-svc

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

/// A `-w` wait, re-checked this often at first, doubling up to `POLL_MAX`.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// One s6-svc command, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SvcCommand {
    /// `-u`, `-U`: start.
    Up,
    /// `-o`: start; corral's restart policy still applies.
    Once,
    /// `-d`, `-D`: stop.
    Down,
    /// `-r`: restart, if it runs.
    Restart,
    /// `-t`, `-h`, ..., `-s SIG`.
    Signal(Signal),
}

/// What `-w` waits for, once the commands are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    /// `-wu`: a process runs.
    Up,
    /// `-wU`: up and ready.
    Ready,
    /// `-wd`: the process that ran has died.
    Down,
    /// `-wD`: down, and its `finish` script has exited.
    Finished,
    /// `-wr`: a new process runs.
    Restarted,
    /// `-wR`: a new process runs and is ready.
    RestartedReady,
}

#[derive(Debug, PartialEq, Eq)]
struct SvcArgs {
    commands: Vec<SvcCommand>,
    wait: Option<WaitFor>,
    /// `-T ms`; 0 or none: no limit.
    timeout: Option<Duration>,
    dirs: Vec<PathBuf>,
}

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
            Failure::NoService(why) | Failure::Refused(why) => {
                let why = escape(&why, Form::Text);
                eprintln!("s6-svc: fatal: unable to control {}: {why}", dir.display());
            }
        }
    }
    code
}

/// s6's getopt: options first (letters may be bundled, `-T` and `-w` and
/// `-s` take the rest of their word or the next one), `--` ends them, then
/// at least one directory.
fn parse_svc(args: &[OsString]) -> Result<SvcArgs, String> {
    let usage = |why: &str| format!("s6-svc: fatal: {why}\n{SVC_USAGE}");
    let mut commands = Vec::new();
    let mut wait = None;
    let mut timeout = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            i += 1;
            break;
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            break;
        }
        let Some(word) = arg.to_str() else {
            return Err(usage(&format!("unknown option {}", arg.to_string_lossy())));
        };
        let letters = word.char_indices().skip(1);
        for (at, letter) in letters {
            if matches!(letter, 'w' | 'T' | 's') {
                let rest = &word[at + letter.len_utf8()..];
                let value = if rest.is_empty() {
                    i += 1;
                    match args.get(i).and_then(|a| a.to_str()) {
                        Some(value) => value,
                        None => return Err(usage(&format!("option -{letter} needs a value"))),
                    }
                } else {
                    rest
                };
                match letter {
                    'w' => {
                        wait = Some(parse_wait(value).ok_or_else(|| {
                            usage(&format!(
                                "-w{value}: expected -wu, -wU, -wd, -wD, -wr or -wR"
                            ))
                        })?)
                    }
                    'T' => {
                        let ms: u64 = value.parse().map_err(|_| {
                            usage(&format!("-T {value}: expected a timeout in milliseconds"))
                        })?;
                        timeout = (ms > 0).then(|| Duration::from_millis(ms));
                    }
                    _ => commands.push(SvcCommand::Signal(
                        parse_s6_signal(value).map_err(|e| usage(&e))?,
                    )),
                }
                break;
            }
            commands.push(command(letter).map_err(|e| usage(&e))?);
        }
        i += 1;
    }
    let dirs: Vec<PathBuf> = args
        .get(i..)
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

fn parse_wait(value: &str) -> Option<WaitFor> {
    match value {
        "u" => Some(WaitFor::Up),
        "U" => Some(WaitFor::Ready),
        "d" => Some(WaitFor::Down),
        "D" => Some(WaitFor::Finished),
        "r" => Some(WaitFor::Restarted),
        "R" => Some(WaitFor::RestartedReady),
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
fn service_name(dir: &Path) -> Option<String> {
    let name = match dir.file_name() {
        Some(name) => name.to_os_string(),
        None => fs::canonicalize(dir).ok()?.file_name()?.to_os_string(),
    };
    name.into_string().ok().filter(|n| !n.is_empty())
}

#[derive(Debug)]
enum Failure {
    /// `-T` ran out.
    TimedOut,
    /// No socket, or it refused us: where it was looked for, and why.
    Unreachable(String),
    /// The directory names no service of this corral's.
    NoService(String),
    /// corral answered with an error.
    Refused(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::TimedOut => EXIT_TIMED_OUT,
            Failure::NoService(_) => EXIT_NO_SERVICE,
            Failure::Unreachable(_) | Failure::Refused(_) => EXIT_SYSTEM,
        }
    }
}

/// Requests to corral, bounded by the `-T` deadline.
struct Link {
    socket: Option<PathBuf>,
    deadline: Option<Instant>,
}

impl Link {
    fn open(&self, request: &Request) -> Result<UnixStream, Failure> {
        let mut stream = client::connect(self.socket.as_deref()).map_err(Failure::Unreachable)?;
        stream
            .write_all(encode_request(request).as_bytes())
            .map_err(|e| Failure::Unreachable(format!("cannot send the request: {e}")))?;
        Ok(stream)
    }

    /// Hand the request over without waiting for its answer: corral carries
    /// it out all the same (a client that hangs up only loses the answer).
    fn tell(&self, request: &Request) -> Result<(), Failure> {
        self.open(request).map(drop)
    }

    /// The answer to `request`, or `TimedOut` at the deadline.
    fn ask(&self, request: &Request) -> Result<Response, Failure> {
        let mut reader = BufReader::new(self.open(request)?);
        let mut line = String::new();
        loop {
            let left = self.left()?;
            reader
                .get_ref()
                .set_read_timeout(left)
                .map_err(|e| Failure::Refused(e.to_string()))?;
            match reader.read_line(&mut line) {
                Ok(0) => {
                    return Err(Failure::Refused(
                        "corral closed the connection without answering (is it exiting?)".into(),
                    ));
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Failure::TimedOut);
                }
                Err(e) => return Err(Failure::Refused(format!("reading corral's answer: {e}"))),
            }
        }
        decode_response(line.trim_end()).map_err(Failure::Refused)
    }

    /// `ask`, with an error answer as a failure.
    fn carry_out(&self, request: &Request) -> Result<Response, Failure> {
        let response = self.ask(request)?;
        if response.ok {
            Ok(response)
        } else {
            Err(Failure::Refused(refusal(&response)))
        }
    }

    fn status(&self, name: &str) -> Result<ServiceStatus, Failure> {
        let response = self.ask(&Request::Status {
            services: vec![name.to_string()],
        })?;
        if !response.ok {
            // `status` fails only on names: "no service "wbe" (did you mean "web"?)".
            return Err(Failure::NoService(refusal(&response)));
        }
        response
            .services
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Failure::NoService(format!("no service \"{name}\"")))
    }

    /// Time left before the deadline (`None`: no deadline).
    fn left(&self) -> Result<Option<Duration>, Failure> {
        match self.deadline {
            None => Ok(None),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(Failure::TimedOut)
                } else {
                    Ok(Some(left))
                }
            }
        }
    }

    /// Sleep `pause`, but not past the deadline.
    fn pause(&self, pause: Duration) -> Result<(), Failure> {
        let pause = self.left()?.map_or(pause, |left| left.min(pause));
        thread::sleep(pause);
        Ok(())
    }
}

fn refusal(response: &Response) -> String {
    response
        .error
        .clone()
        .unwrap_or_else(|| "failed (no reason given)".into())
}

/// Every command of `args`, in order, on one service; then the `-w` wait.
///
/// s6-svc only writes its commands to the supervisor and exits; so the last
/// command is handed over without waiting for corral to carry it out (a
/// `finish` script that runs `s6-svc -d` on its own service must not wait
/// for itself). Earlier commands are carried out first, so that the next
/// one applies to their result. A stop followed by `-wd`/`-wD`, or a restart
/// followed by `-wr`/`-wR`, waits for corral's answer, which says exactly that.
fn control(link: &Link, name: &str, args: &SvcArgs) -> Result<(), Failure> {
    let before = link.status(name)?;
    let targets = || Targets {
        services: vec![name.to_string()],
        all: false,
    };
    let last = args.commands.len().saturating_sub(1);
    for (i, &command) in args.commands.iter().enumerate() {
        let answered = i != last
            || matches!(
                (command, args.wait),
                (SvcCommand::Down, Some(WaitFor::Down | WaitFor::Finished))
                    | (
                        SvcCommand::Restart,
                        Some(WaitFor::Restarted | WaitFor::RestartedReady)
                    )
            );
        let request = match command {
            SvcCommand::Signal(signal) => {
                signal_service(link, name, signal)?;
                continue;
            }
            SvcCommand::Up => Request::Start(targets()),
            SvcCommand::Once => {
                eprintln!(
                    "s6-svc: warning: -o starts {name}, but corral restarts it per its restart policy when it exits (for run-once, give it restart = \"never\")"
                );
                Request::Start(targets())
            }
            SvcCommand::Down => Request::Stop(targets()),
            SvcCommand::Restart => {
                // s6: -r kills a running process for the supervisor to start
                // again; a service that is down stays down.
                let now = if i == 0 {
                    before.clone()
                } else {
                    link.status(name)?
                };
                if now.pid.is_none() {
                    eprintln!(
                        "s6-svc: warning: {name} is not running: -r does nothing (-u starts it)"
                    );
                    continue;
                }
                Request::Restart(targets())
            }
        };
        if answered {
            link.carry_out(&request)?;
        } else {
            link.tell(&request)?;
        }
    }
    match args.wait {
        Some(wait) => wait_for(link, name, wait, before.pid),
        None => Ok(()),
    }
}

/// A signal to the service's process (its group with `kill-group = true`).
/// Like s6-supervise, a service that is not running is left alone.
fn signal_service(link: &Link, name: &str, signal: Signal) -> Result<(), Failure> {
    let response = link.ask(&Request::Signal {
        signal: signal.as_str().to_string(),
        services: vec![name.to_string()],
    })?;
    if response.ok {
        return Ok(());
    }
    if link.status(name)?.pid.is_none() {
        eprintln!(
            "s6-svc: warning: {name} is not running: {} not sent",
            signal.as_str()
        );
        return Ok(());
    }
    Err(Failure::Refused(refusal(&response)))
}

/// Block until `wait` holds. Up and ready are corral's own `wait`; the
/// others compare the service's pid with the one it had before the commands
/// (`old_pid`), re-reading its status until they hold.
fn wait_for(link: &Link, name: &str, wait: WaitFor, old_pid: Option<i32>) -> Result<(), Failure> {
    if matches!(wait, WaitFor::Up | WaitFor::Ready) {
        link.carry_out(&Request::Wait {
            services: vec![name.to_string()],
            timeout_ms: None,
            ready: wait == WaitFor::Ready,
        })?;
        return Ok(());
    }
    let mut pause = POLL_FIRST;
    loop {
        if reached(wait, &link.status(name)?, old_pid) {
            return Ok(());
        }
        link.pause(pause)?;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// Whether `status` satisfies `wait`, the service having had `old_pid`.
fn reached(wait: WaitFor, status: &ServiceStatus, old_pid: Option<i32>) -> bool {
    let new_process = status.pid.is_some() && status.pid != old_pid;
    match wait {
        WaitFor::Up => status.pid.is_some(),
        WaitFor::Ready => status.ready,
        WaitFor::Down => status.pid.is_none() || new_process,
        // No pid but still "stopping": its finish script runs.
        WaitFor::Finished => (status.pid.is_none() && status.state != "stopping") || new_process,
        WaitFor::Restarted => new_process,
        WaitFor::RestartedReady => new_process && status.ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse(words: &[&str]) -> Result<SvcArgs, String> {
        parse_svc(&args(words))
    }

    #[test]
    fn s6_svc_options_bundle_and_keep_their_order() {
        assert_eq!(
            parse(&["-twR", "/run/service/web", "db"]),
            Ok(SvcArgs {
                commands: vec![SvcCommand::Signal(Signal::SIGTERM)],
                wait: Some(WaitFor::RestartedReady),
                timeout: None,
                dirs: vec!["/run/service/web".into(), "db".into()],
            })
        );
        assert_eq!(
            parse(&["-wU", "-T", "5000", "-u", "-h", "/var/run/s6/services/web"]),
            Ok(SvcArgs {
                commands: vec![SvcCommand::Up, SvcCommand::Signal(Signal::SIGHUP)],
                wait: Some(WaitFor::Ready),
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
        assert_eq!(parsed.wait, Some(WaitFor::Restarted));
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

    #[test]
    fn waits_compare_with_the_pid_before() {
        let st = |pid: Option<i32>, state: &str, ready: bool| ServiceStatus {
            name: "web".into(),
            state: state.into(),
            pid,
            ready,
            ..ServiceStatus::default()
        };
        let old = Some(10);
        assert!(!reached(
            WaitFor::Down,
            &st(Some(10), "stopping", false),
            old
        ));
        assert!(reached(WaitFor::Down, &st(None, "stopping", false), old));
        assert!(reached(
            WaitFor::Down,
            &st(Some(11), "starting", false),
            old
        ));
        // Finishing: no pid, still "stopping".
        assert!(!reached(
            WaitFor::Finished,
            &st(None, "stopping", false),
            old
        ));
        assert!(reached(WaitFor::Finished, &st(None, "stopped", false), old));
        assert!(reached(WaitFor::Finished, &st(None, "backoff", false), old));
        assert!(!reached(
            WaitFor::Restarted,
            &st(Some(10), "running", true),
            old
        ));
        assert!(reached(
            WaitFor::Restarted,
            &st(Some(11), "starting", false),
            old
        ));
        assert!(!reached(
            WaitFor::RestartedReady,
            &st(Some(11), "starting", false),
            old
        ));
        assert!(reached(
            WaitFor::RestartedReady,
            &st(Some(11), "ready", true),
            old
        ));
        // Already down before: -wd holds at once, as s6-svlisten1's first check.
        assert!(reached(WaitFor::Down, &st(None, "stopped", false), None));
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
