//! What an s6-svc command line asks (`SvcArgs`: its commands and its `-w`
//! wait), carried out on one service over the control socket (as `corral
//! ctl` does), bounded by `-T`: start, stop, restart, signals, the waits.
//!
//! What it must never do: know more of the supervisor than the control
//! protocol says, poll, or wait past the `-T` deadline. Every `-w` is the
//! protocol's `wait`, which corral answers the moment it holds; down and
//! restarted count from the run the service had before the commands, as
//! s6-svlisten1 takes the service's state before it runs s6-svc.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{EXIT_NO_SERVICE, EXIT_SYSTEM, EXIT_TIMED_OUT};
use crate::control::client;
use crate::protocol::{
    Request, Response, ServiceStatus, Targets, Until, decode_response, encode_request,
};

/// One s6-svc command, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SvcCommand {
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

#[derive(Debug, PartialEq, Eq)]
pub(super) struct SvcArgs {
    pub(super) commands: Vec<SvcCommand>,
    /// `-wu` `-wU` `-wd` `-wD` `-wr` `-wR`, once the commands are sent.
    pub(super) wait: Option<Until>,
    /// `-T ms`; 0 or none: no limit.
    pub(super) timeout: Option<Duration>,
    pub(super) dirs: Vec<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// `-T` ran out.
    TimedOut,
    /// No socket, or it refused us: where it was looked for, and why.
    Unreachable(String),
    /// The directory names no service of this corral's.
    NoService(String),
    /// corral answered with an error.
    Refused(String),
    /// The service will not come up: it failed for good.
    GaveUp(String),
}

impl Failure {
    pub(super) fn code(&self) -> u8 {
        match self {
            Failure::TimedOut => EXIT_TIMED_OUT,
            Failure::NoService(_) | Failure::GaveUp(_) => EXIT_NO_SERVICE,
            Failure::Unreachable(_) | Failure::Refused(_) => EXIT_SYSTEM,
        }
    }
}

/// Requests to corral, bounded by the `-T` deadline.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) socket: Option<PathBuf>,
    pub(super) deadline: Option<Instant>,
}

impl Link {
    /// A link to the socket `CORRAL_SOCKET` names (else the default places,
    /// as `corral ctl` looks), bounded by `timeout` from now.
    pub(super) fn from_env(timeout: Option<Duration>) -> Link {
        Link {
            socket: std::env::var_os("CORRAL_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    fn open(&self, request: &Request) -> Result<UnixStream, Failure> {
        let mut stream = client::connect(self.socket.as_deref()).map_err(Failure::Unreachable)?;
        stream
            .write_all(encode_request(request).as_bytes())
            .map_err(|e| Failure::Unreachable(format!("cannot send the request: {e}")))?;
        Ok(stream)
    }

    /// Hand the request over without waiting for its answer: corral carries
    /// it out all the same (a client that hangs up only loses the answer).
    pub(super) fn tell(&self, request: &Request) -> Result<(), Failure> {
        self.open(request).map(drop)
    }

    /// The answer to `request`, or `TimedOut` at the deadline.
    pub(super) fn ask(&self, request: &Request) -> Result<Response, Failure> {
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
    pub(super) fn carry_out(&self, request: &Request) -> Result<Response, Failure> {
        let response = self.ask(request)?;
        if response.ok {
            Ok(response)
        } else {
            Err(Failure::Refused(refusal(&response)))
        }
    }

    pub(super) fn status(&self, name: &str) -> Result<ServiceStatus, Failure> {
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

    /// Every service corral supervises, by name.
    pub(super) fn all(&self) -> Result<Vec<ServiceStatus>, Failure> {
        let response = self.carry_out(&Request::Status {
            services: Vec::new(),
        })?;
        Ok(response.services)
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
}

pub(super) fn refusal(response: &Response) -> String {
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
/// one applies to their result (`answered_before` says when the last one
/// is too). The `-w` wait counts from the service's run before any of them.
pub(super) fn control(link: &Link, name: &str, args: &SvcArgs) -> Result<(), Failure> {
    let before = link.status(name)?;
    let targets = || Targets {
        services: vec![name.to_string()],
        all: false,
    };
    let last = args.commands.len().saturating_sub(1);
    for (i, &command) in args.commands.iter().enumerate() {
        let answered = i != last || answered_before(command, args.wait);
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
        Some(until) => {
            link.carry_out(&wait_request(name, until, before.run))?;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Whether the last command, `command`, is carried out before the `wait`
/// (else it is only handed over, so that a `finish` script's `s6-svc -d .`
/// does not wait for itself): when corral's answer to it is the wait's
/// condition, so that a refusal is reported rather than waited past. A
/// stop is answered once down and finished (`-wD`, not `-wd`, which
/// returns before the `finish` script ends); a restart once the new run
/// is ready (`-wR`, not `-wr`, which returns once it runs).
fn answered_before(command: SvcCommand, wait: Option<Until>) -> bool {
    matches!(
        (command, wait),
        (SvcCommand::Down, Some(Until::Finished))
            | (SvcCommand::Restart, Some(Until::RestartedReady))
    )
}

/// The `-w` wait of service `name`, whose run was `run` before the
/// commands: what they did counts, even if done before the wait arrives
/// (`-t -wr`: the restart may be over by then).
fn wait_request(name: &str, until: Until, run: u32) -> Request {
    Request::wait(vec![name.to_string()], None, until, Some(run))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_from_the_run_before_the_commands() {
        assert_eq!(
            wait_request("web", Until::Restarted, 3),
            Request::Wait {
                services: vec!["web".into()],
                timeout_ms: None,
                ready: false,
                until: Some(Until::Restarted),
                since_run: Some(3),
            }
        );
        // -wu and -wU in the form every corral reads.
        assert_eq!(
            wait_request("web", Until::Ready, 3),
            Request::Wait {
                services: vec!["web".into()],
                timeout_ms: None,
                ready: true,
                until: None,
                since_run: None,
            }
        );
    }

    #[test]
    fn the_last_command_is_awaited_only_when_its_answer_is_the_wait() {
        use SvcCommand::{Down, Restart, Up};
        assert!(answered_before(Down, Some(Until::Finished)));
        assert!(answered_before(Restart, Some(Until::RestartedReady)));
        // A finish script's `s6-svc -d .` must not wait for itself.
        assert!(!answered_before(Down, None));
        // Their answers would come later than these waits hold.
        assert!(!answered_before(Down, Some(Until::Down)));
        assert!(!answered_before(Restart, Some(Until::Restarted)));
        assert!(!answered_before(Up, Some(Until::Ready)));
        assert!(!answered_before(Restart, Some(Until::Down)));
        assert!(!answered_before(
            SvcCommand::Signal(Signal::SIGTERM),
            Some(Until::Restarted)
        ));
    }
}
