//! What corral's poll(2) threads share (the control socket's, the HTTP
//! endpoint's and the output thread): the wake-up pipe, since poll(2)
//! cannot wait for a channel; one round of poll(2) over it, a listener and
//! the connections (`wait`); deadlines turned into poll timeouts; the
//! share of the fd limit a server may hold, and the spare fd that makes
//! room for one accept(2) when corral has run out of them; and one warning
//! per burst of failures.
//!
//! What it must never do: block (the pipe is non-blocking at both ends),
//! or know what the threads serve.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::log::warn;

/// Failures less than this apart are one burst, logged once: near a limit,
/// clients are served and refused in turn, and a warning for each would
/// flood the log.
pub const BURST: Duration = Duration::from_secs(10);

/// How long a poll thread pauses when poll(2) fails (ENOMEM), rather than
/// spin on the failure.
pub const PAUSE: Duration = Duration::from_millis(100);

/// A wake-up pipe, close-on-exec and non-blocking at both ends: the read
/// end, polled for `POLLIN` and emptied with `drain`, and the `Wake`.
pub fn wake_pipe() -> io::Result<(OwnedFd, Wake)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((read, Wake(write)))
}

/// The write end of a poll thread's wake-up pipe.
#[derive(Debug)]
pub struct Wake(OwnedFd);

impl Wake {
    pub fn wake(&self) {
        // Non-blocking: a full pipe already guarantees a wake-up.
        let _ = nix::unistd::write(&self.0, &[1]);
    }
}

/// Read the wake-up pipe empty, so that the next poll(2) waits again.
pub fn drain(read: &OwnedFd) {
    let mut sink = [0u8; 64];
    while matches!(nix::unistd::read(read, &mut sink), Ok(n) if n > 0) {}
}

/// The poll(2) timeout that ends at `deadline` (none: wait for an event).
/// Rounded up to the millisecond: waking a little early would spin until
/// then.
pub fn timeout(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    deadline.map_or(PollTimeout::NONE, |at| {
        let ms = at
            .saturating_duration_since(now)
            .as_nanos()
            .div_ceil(1_000_000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    })
}

/// What one `wait` found.
#[derive(Debug)]
pub struct Ready {
    /// The wake-up pipe was written (it is drained already).
    pub woken: bool,
    /// The listener has a connection waiting (or an error to report).
    pub listener: bool,
    /// Each connection's `revents`, by token, in the order given.
    pub conns: Vec<(u64, PollFlags)>,
}

/// One poll(2) over the wake-up pipe `wake` (drained once written), the
/// `listener` when given, and each connection `(token, fd, events)`, until
/// `timeout`. `None`: go round again, because a signal interrupted the wait
/// (EINTR) or poll(2) failed (ENOMEM), which is logged once per burst (in
/// `failed_at`, as `"{thread}: poll failed"`) and paused on (`PAUSE`).
pub fn wait<'a>(
    wake: &OwnedFd,
    listener: Option<BorrowedFd<'a>>,
    conns: impl IntoIterator<Item = (u64, BorrowedFd<'a>, PollFlags)>,
    timeout: PollTimeout,
    failed_at: &mut Option<Instant>,
    thread: &str,
) -> Option<Ready> {
    let mut tokens = Vec::new();
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    fds.extend(listener.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
    for (token, fd, events) in conns {
        tokens.push(token);
        fds.push(PollFd::new(fd, events));
    }
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return None,
        Err(err) => {
            if new_burst(failed_at) {
                warn!(%err, "{thread}: poll failed");
            }
            thread::sleep(PAUSE);
            return None;
        }
    }
    let mut revents = fds
        .iter()
        .map(|fd| fd.revents().unwrap_or(PollFlags::empty()));
    let woken = revents.next().is_some_and(|r| !r.is_empty());
    let listener = listener.is_some() && revents.next().is_some_and(|r| !r.is_empty());
    let conns = tokens.into_iter().zip(revents).collect();
    if woken {
        drain(wake);
    }
    Some(Ready {
        woken,
        listener,
        conns,
    })
}

/// Whether something now starts a new burst (`last` is the one before);
/// records it in `last` either way.
pub fn new_burst(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    let new = last.is_none_or(|at| now.saturating_duration_since(at) >= BURST);
    *last = Some(now);
    new
}

/// corral's soft RLIMIT_NOFILE (getrlimit(2)); `u64::MAX` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively
    // borrowed `limit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur)
}

/// The connections a server may hold: `1/divisor` of the fds corral may
/// open (`soft_limit`; unknown: the common default of 1024), at least 1
/// and at most `max`. Children inherit corral's limits, so corral does not
/// raise its own.
pub fn share_of_fds(soft_limit: Option<u64>, divisor: u64, max: usize) -> usize {
    let share = soft_limit.unwrap_or(1024) / divisor.max(1);
    usize::try_from(share).unwrap_or(usize::MAX).clamp(1, max)
}

/// A spare fd, closed to make room for one accept(2) when corral has run
/// out of fds.
pub fn spare_fd() -> Option<File> {
    // std opens with O_CLOEXEC.
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_close_together_are_one_burst() {
        let mut last = None;
        assert!(new_burst(&mut last), "the first one starts a burst");
        assert!(!new_burst(&mut last));
        assert!(!new_burst(&mut last));
        let long_ago = Instant::now()
            .checked_sub(BURST + Duration::from_secs(1))
            .expect("an instant 11 s ago");
        last = Some(long_ago);
        assert!(new_burst(&mut last), "after a quiet BURST, a new one");
    }

    #[test]
    fn timeouts_round_up_to_the_millisecond() {
        let now = Instant::now();
        assert_eq!(timeout(None, now), PollTimeout::NONE);
        assert_eq!(timeout(Some(now), now), PollTimeout::ZERO);
        let soon = now + Duration::from_micros(1500);
        assert_eq!(timeout(Some(soon), now), PollTimeout::from(2u8));
        assert_eq!(timeout(Some(now), soon), PollTimeout::ZERO);
        let far = now + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(timeout(Some(far), now), PollTimeout::MAX);
    }

    #[test]
    fn a_share_of_the_fds_is_at_least_one() {
        assert_eq!(share_of_fds(Some(1024), 4, 2048), 256);
        assert_eq!(share_of_fds(None, 2, 1024), 512);
        assert_eq!(share_of_fds(Some(0), 2, 1024), 1);
        assert_eq!(share_of_fds(Some(u64::MAX), 2, 1024), 1024);
    }

    #[test]
    fn a_wait_reports_the_wake_the_listener_and_each_connection() {
        let (read, wake) = wake_pipe().expect("pipe");
        let (listener, _listener_w) = wake_pipe().expect("pipe");
        let (conn, conn_w) = wake_pipe().expect("pipe");
        let mut failed_at = None;
        let mut round = || {
            let conns = [(7, conn.as_fd(), PollFlags::POLLIN)];
            wait(
                &read,
                Some(listener.as_fd()),
                conns,
                PollTimeout::ZERO,
                &mut failed_at,
                "test",
            )
            .expect("a round")
        };
        let quiet = round();
        assert!(!quiet.woken && !quiet.listener, "{quiet:?}");
        assert_eq!(quiet.conns, [(7, PollFlags::empty())]);
        wake.wake();
        wake.wake();
        conn_w.wake();
        let busy = round();
        assert!(busy.woken && !busy.listener, "{busy:?}");
        assert_eq!(busy.conns, [(7, PollFlags::POLLIN)]);
        // The wake-up pipe was drained; the connection was not.
        let again = round();
        assert!(!again.woken, "{again:?}");
        assert_eq!(again.conns, [(7, PollFlags::POLLIN)]);
        assert_eq!(failed_at, None);
    }
}
