//! How a process ended, and the exit code corral derives from it.

use std::fmt;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

/// The end of a process, as `waitpid(2)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    /// `None` for wait statuses that are not an end (stopped, continued, still alive).
    pub fn from_wait_status(status: WaitStatus) -> Option<(nix::unistd::Pid, Exit)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, signal, _core) => Some((pid, Exit::Signal(signal))),
            _ => None,
        }
    }

    /// The status a shell would report: the code, or 128+N when killed by signal N.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal as i32,
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Signal(signal) => write!(f, "killed by {}", signal.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_shell_convention() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(Signal::SIGKILL).code(), 137);
        assert_eq!(Exit::Signal(Signal::SIGTERM).code(), 143);
        assert_eq!(
            Exit::Signal(Signal::SIGSEGV).to_string(),
            "killed by SIGSEGV"
        );
        assert_eq!(Exit::Code(1).to_string(), "exit 1");
        assert!(Exit::Code(0).success());
        assert!(!Exit::Signal(Signal::SIGTERM).success());
    }
}
