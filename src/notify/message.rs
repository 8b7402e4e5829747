//! What a datagram says: sd_notify(3)'s `KEY=VALUE` lines turned into a
//! `NotifyMessage` (`parse`), and `Refusal`, every reason a datagram is
//! dropped, as the warning says it.
//!
//! What it must never do: judge who sent a datagram (`sender` does), or
//! panic on any bytes: whatever a sender writes is a message or a
//! `Refusal` (`parse` is fuzzed: fuzz/src/lib.rs).

use crate::event::NotifyMessage;

/// Longest datagram accepted, as systemd does (`NOTIFY_BUFFER_MAX`, PIPE_BUF):
/// a longer one is dropped whole.
pub const MAX_DATAGRAM: usize = 4096;

/// One sd_notify datagram: newline-separated `KEY=VALUE` assignments
/// (sd_notify(3)). Only the keys corral acts on are kept; unknown keys and
/// lines without `=` are ignored, bytes that are not UTF-8 replaced. A
/// `MAINPID=` that is not a pid (a positive number) makes the whole
/// datagram invalid: a sender that names a process wrongly may have meant
/// the rest for someone else too.
pub fn parse(datagram: &[u8]) -> Result<NotifyMessage, Refusal> {
    let text = String::from_utf8_lossy(datagram);
    let mut message = NotifyMessage::default();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => message.ready |= value == "1",
            "RELOADING" => message.reloading |= value == "1",
            "STOPPING" => message.stopping |= value == "1",
            "MAINPID" => match value.parse::<i32>() {
                Ok(pid) if pid > 0 => message.main_pid = Some(pid),
                _ => return Err(Refusal::BadMainPid),
            },
            "STATUS" => message.status = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(message)
}

/// Why a datagram was dropped; said in the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel attached no `SCM_CREDENTIALS` (not expected with `SO_PASSCRED`).
    NoCredentials,
    /// Sender pid 0: a process outside corral's pid namespace.
    Hidden,
    /// The sender is not the service's process, in its group or below it.
    Outside,
    /// The sender exited (and was reaped) before it could be checked.
    Gone,
    /// Longer than `MAX_DATAGRAM`.
    TooLong,
    /// `MAINPID=` is not a positive number.
    BadMainPid,
    /// `MAINPID=1`.
    MainPidInit,
    /// `MAINPID=` of corral itself.
    MainPidCorral,
    /// `MAINPID=` of a process that is not the service's.
    MainPidOutside(i32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoCredentials => f.write_str("no sender credentials"),
            Refusal::Hidden => f.write_str("sender outside corral's pid namespace"),
            Refusal::Outside => f.write_str("sender is not a process of the service"),
            Refusal::Gone => f.write_str("sender exited before it could be checked"),
            Refusal::TooLong => write!(f, "longer than {MAX_DATAGRAM} bytes"),
            Refusal::BadMainPid => f.write_str("MAINPID= is not a pid"),
            Refusal::MainPidInit => f.write_str("MAINPID=1 names PID 1"),
            Refusal::MainPidCorral => f.write_str("MAINPID= names corral itself"),
            Refusal::MainPidOutside(pid) => {
                write!(f, "MAINPID={pid} is not a process of the service")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(datagram: &[u8]) -> NotifyMessage {
        parse(datagram).expect("a valid datagram")
    }

    #[test]
    fn parse_keeps_the_keys_corral_acts_on() {
        assert_eq!(
            parsed(b"READY=1\nSTATUS=Listening on :80\nMAINPID=42\n"),
            NotifyMessage {
                ready: true,
                main_pid: Some(42),
                status: Some("Listening on :80".into()),
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parsed(b"RELOADING=1\nMONOTONIC_USEC=123"),
            NotifyMessage {
                reloading: true,
                ..NotifyMessage::default()
            }
        );
        assert_eq!(
            parsed(b"STOPPING=1"),
            NotifyMessage {
                stopping: true,
                ..NotifyMessage::default()
            }
        );
        // Unknown keys, lines without '=', READY=0: nothing.
        assert_eq!(
            parsed(b"WATCHDOG=1\nFDSTORE=1\ngarbage\nREADY=0\n\n"),
            NotifyMessage::default()
        );
        // The value may contain '='; invalid UTF-8 is replaced.
        assert_eq!(
            parsed(b"STATUS=a=b \xff").status.as_deref(),
            Some("a=b \u{fffd}")
        );
        // An empty STATUS= clears the status: it is a message.
        assert_eq!(parsed(b"STATUS=").status.as_deref(), Some(""));
    }

    #[test]
    fn a_mainpid_that_is_not_a_pid_spoils_the_whole_datagram() {
        for bad in [
            "0",
            "-1",
            "-42",
            "x",
            "",
            " 42",
            "42 ",
            "0x10",
            "2147483648",
        ] {
            let datagram = format!("READY=1\nMAINPID={bad}\nSTATUS=up");
            assert_eq!(
                parse(datagram.as_bytes()),
                Err(Refusal::BadMainPid),
                "{datagram:?}"
            );
        }
        // The last valid one wins; MAINPID=1 parses (it is refused later,
        // where corral's pid is known).
        assert_eq!(parsed(b"MAINPID=7\nMAINPID=9").main_pid, Some(9));
        assert_eq!(parsed(b"MAINPID=1").main_pid, Some(1));
    }
}
